package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	taskqueuepb "go.temporal.io/api/taskqueue/v1"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"

	"github.com/csmops/etcd-repopulate/internal/loopback"
	"github.com/csmops/etcd-repopulate/internal/testenv"
	"github.com/csmops/etcd-repopulate/internal/tlstest"
)

// The test binary doubles as the worker binary, so the tests run the real
// process (flags, signals, exit code) without a separate go build.
func TestMain(m *testing.M) {
	if os.Getenv("REPOPULATE_WORKER_TEST_MAIN") == "1" {
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func workerCmd(args ...string) *exec.Cmd {
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), "REPOPULATE_WORKER_TEST_MAIN=1")
	return cmd
}

// TestWorkerOverMTLS runs the worker against a frontend that requires client
// certificates: it becomes ready, polls its task queue through the mTLS
// front, serves the SDK's metrics and stops cleanly on SIGTERM.
func TestWorkerOverMTLS(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	dir := t.TempDir()
	srv, err := testenv.Temporal(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Stop)
	pki, err := tlstest.NewPKI(dir, "temporal", "temporal.test")
	if err != nil {
		t.Fatal(err)
	}
	proxy, err := tlstest.StartMTLSProxy(pki, srv.Address)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = proxy.Close() })
	ports, err := loopback.FreePorts(1)
	if err != nil {
		t.Fatal(err)
	}
	httpBase := fmt.Sprintf("http://127.0.0.1:%d", ports[0])

	const queue, apiKey = "mtls-test", "api-key-must-not-be-logged-93e1"
	logFile, err := os.Create(filepath.Join(dir, "worker.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer logFile.Close()
	logs := func() string { b, _ := os.ReadFile(logFile.Name()); return string(b) }
	cmd := workerCmd("--address", proxy.Addr, "--task-queue", queue,
		"--tls-ca", pki.CA, "--tls-cert", pki.ClientCert, "--tls-key", pki.ClientKey, "--tls-server-name", pki.ServerName,
		"--kubeconfig", kubeconfig(t, dir), "--http-address", fmt.Sprintf("127.0.0.1:%d", ports[0]), "--log-level", "debug")
	// The dev server ignores the key; it is here to show it stays out of the logs.
	cmd.Env = append(cmd.Env, "TEMPORAL_API_KEY="+apiKey)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	defer func() {
		_ = cmd.Process.Kill()
		if t.Failed() {
			t.Logf("worker log:\n%s", logs())
		}
	}()

	start := time.Now()
	for {
		code, body := get(httpBase + "/healthz")
		if code == http.StatusOK {
			break
		}
		select {
		case err := <-exited:
			t.Fatalf("worker exited: %v", err)
		case <-time.After(100 * time.Millisecond):
		}
		if time.Since(start) > 30*time.Second {
			t.Fatalf("/healthz not 200 after 30s: %d %q", code, body)
		}
	}
	t.Logf("ready after %v", time.Since(start))

	// The frontend sees the worker's pollers, which only reach it through
	// the mTLS front.
	plain, err := client.Dial(client.Options{HostPort: srv.Address})
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	for {
		resp, err := plain.WorkflowService().DescribeTaskQueue(ctx, &workflowservice.DescribeTaskQueueRequest{
			Namespace: "default", TaskQueue: &taskqueuepb.TaskQueue{Name: queue, Kind: enumspb.TASK_QUEUE_KIND_NORMAL},
			TaskQueueType: enumspb.TASK_QUEUE_TYPE_WORKFLOW,
		})
		if err != nil {
			t.Fatal(err)
		}
		if len(resp.GetPollers()) > 0 {
			break
		}
		if time.Since(start) > 30*time.Second {
			t.Fatal("no pollers on the task queue")
		}
		time.Sleep(200 * time.Millisecond)
	}

	if _, body := get(httpBase + "/metrics"); !strings.Contains(body, `temporal_worker_start_total{`) || !strings.Contains(body, `task_queue="`+queue+`"`) {
		t.Fatalf("/metrics lacks the SDK's worker start:\n%s", body)
	}

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("worker exit after SIGTERM: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("worker still running 20s after SIGTERM")
	}
	out := logs()
	for _, want := range []string{`"mTLS":true`, `"worker stopped"`} {
		if !strings.Contains(out, want) {
			t.Errorf("worker log lacks %s", want)
		}
	}
	if strings.Contains(out, apiKey) {
		t.Error("worker log contains the API key")
	}
	if _, err := http.Get(httpBase + "/healthz"); err == nil {
		t.Error("/healthz still served after the worker stopped")
	}
}

// TestWorkerBadTLSFlags: a bad TLS setting stops the worker before it
// dials or touches Kubernetes, with the flag and the fix.
func TestWorkerBadTLSFlags(t *testing.T) {
	dir := t.TempDir()
	cmd := workerCmd("--tls-cert", filepath.Join(dir, "client.pem"), "--kubeconfig", filepath.Join(dir, "none"), "--http-address", "")
	out, err := cmd.CombinedOutput()
	if code := cmd.ProcessState.ExitCode(); code != 1 || err == nil {
		t.Fatalf("exit %d: %v\n%s", code, err, out)
	}
	want := "repopulate-worker: --tls-cert is set but --tls-key is not: give the client certificate's private key with --tls-key (env TEMPORAL_TLS_KEY)\n"
	if string(out) != want {
		t.Fatalf("output:\n%s\nwant:\n%s", out, want)
	}
}

// kubeconfig points at a port nobody listens on: the worker only warns
// that the API server is unreachable, which is all these tests need.
func kubeconfig(t *testing.T, dir string) string {
	path := filepath.Join(dir, "kubeconfig")
	data := `apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://127.0.0.1:1"}}]
users: [{name: u, user: {token: t}}]
contexts: [{name: x, context: {cluster: c, user: u}}]
current-context: x
`
	if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func get(url string) (int, string) {
	resp, err := http.Get(url)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}
