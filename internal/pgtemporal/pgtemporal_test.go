package pgtemporal_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"

	"github.com/csmops/etcd-repopulate/internal/testenv"
)

// TestServerOnPostgres starts PostgreSQL and the Temporal server, finds the
// namespace registered, restarts the server on the same database and finds
// it again; the set-up script run a second time finds its work done.
func TestServerOnPostgres(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	began := time.Now()
	s, err := testenv.TemporalOnPostgres(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Remove()
	t.Logf("PostgreSQL + schema + server + namespace ready in %s (%s)", time.Since(began).Round(100*time.Millisecond), s.Address)
	describe := func() {
		t.Helper()
		c, err := client.Dial(client.Options{HostPort: s.Address})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		info, err := c.WorkflowService().DescribeNamespace(ctx, &workflowservice.DescribeNamespaceRequest{Namespace: "default"})
		if err != nil {
			t.Fatalf("describe namespace default: %v", err)
		}
		if got := info.Config.WorkflowExecutionRetentionTtl.AsDuration(); got != 30*24*time.Hour {
			t.Fatalf("retention %s, want 30d as in docker-compose.yml", got)
		}
		sys, err := c.WorkflowService().GetSystemInfo(ctx, &workflowservice.GetSystemInfoRequest{})
		if err != nil {
			t.Fatal(err)
		}
		if sys.ServerVersion != strings.TrimPrefix(serverVersion(t), "v") {
			t.Fatalf("server reports %s, install-tools pins %s", sys.ServerVersion, serverVersion(t))
		}
	}
	describe()
	s.StopServer()
	if err := s.StartServer(ctx); err != nil {
		t.Fatal(err)
	}
	describe()
}

// serverVersion is hack/install-tools.sh's TEMPORAL_SERVER_VERSION.
func serverVersion(t *testing.T) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(testenv.RepoRoot(), "hack", "install-tools.sh"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^TEMPORAL_SERVER_VERSION=(v\S+)$`).FindSubmatch(data)
	if m == nil {
		t.Fatal("hack/install-tools.sh sets no TEMPORAL_SERVER_VERSION")
	}
	return string(m[1])
}

// TestOneTemporalVersion holds the server the tests run, the server the
// Temporal CLI's dev server embeds and the images docker-compose.yml runs
// to one version.
func TestOneTemporalVersion(t *testing.T) {
	want := strings.TrimPrefix(serverVersion(t), "v")
	out, err := exec.Command(filepath.Join(testenv.BinDir(), "temporal"), "--version").CombinedOutput()
	if err != nil {
		t.Fatalf("temporal --version: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "Server "+want) {
		t.Errorf("the Temporal CLI embeds another server: %s(want Server %s): change TEMPORAL_SERVER_VERSION and hack/temporaltools with it", out, want)
	}
	out, err = exec.Command(filepath.Join(testenv.BinDir(), "temporal-server"), "--version").CombinedOutput()
	if err != nil || !strings.Contains(string(out), want) {
		t.Errorf("temporal-server --version: %s %v, want %s", out, err, want)
	}
	compose, err := os.ReadFile(filepath.Join(testenv.RepoRoot(), "docker-compose.yml"))
	if err != nil {
		t.Fatal(err)
	}
	images := regexp.MustCompile(`image: temporalio/(server|admin-tools):(\S+)`).FindAllSubmatch(compose, -1)
	if len(images) < 2 {
		t.Fatalf("docker-compose.yml runs no temporalio/server and admin-tools images")
	}
	for _, m := range images {
		// admin-tools tags name the tctl and CLI they bundle after the server's version.
		if tag := string(m[2]); tag != want && !(string(m[1]) == "admin-tools" && strings.HasPrefix(tag, want+"-tctl-")) {
			t.Errorf("docker-compose.yml runs temporalio/%s:%s, the tests run server %s: use the same version", m[1], m[2], want)
		}
	}
}

// TestComposeRunsTheSetupScript: the compose stack's schema and namespace
// jobs run hack/temporal-setup.sh, the script these tests run, and nothing
// else, so the two set-ups cannot drift.
func TestComposeRunsTheSetupScript(t *testing.T) {
	compose, err := os.ReadFile(filepath.Join(testenv.RepoRoot(), "docker-compose.yml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, step := range []string{"schema", "namespace"} {
		service := regexp.MustCompile(`(?ms)^  temporal-` + step + `:\n(.*?)\n(?:  )?\S`).FindSubmatch(compose)
		if service == nil {
			t.Errorf("docker-compose.yml has no service temporal-%s", step)
			continue
		}
		body := string(service[1])
		if !strings.Contains(body, "- ./hack/temporal-setup.sh:/etc/etcd-repopulate/temporal-setup.sh:ro") ||
			!strings.Contains(body, `entrypoint: ["/bin/sh", "/etc/etcd-repopulate/temporal-setup.sh", "`+step+`"]`) || strings.Contains(body, "command:") {
			t.Errorf("docker-compose.yml's temporal-%s does not run hack/temporal-setup.sh %s alone:\n%s", step, step, body)
		}
	}
}
