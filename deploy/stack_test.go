// Package deploy holds no code: its tests prove the Helm chart in chart/,
// the manifests in this directory (the chart's rendering) and the
// repository's docker-compose.yml against real parts. The RBAC tests run the
// real worker binary as the ServiceAccount the chart installed, with only
// the chart's Role rules, on a real kube-apiserver and Temporal dev server.
package deploy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"sync"
	"testing"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/restmapper"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/csmops/etcd-repopulate/internal/api"
	"github.com/csmops/etcd-repopulate/internal/config"
	"github.com/csmops/etcd-repopulate/internal/csmemu"
	"github.com/csmops/etcd-repopulate/internal/devserver"
	"github.com/csmops/etcd-repopulate/internal/simcluster"
	"github.com/csmops/etcd-repopulate/internal/testenv"
	"github.com/csmops/etcd-repopulate/internal/workerconfig"
)

// The worker's identity, as the chart names it for release etcd-repopulate
// (deploy/serviceaccount.yaml, deploy/rbac.yaml).
const (
	release    = "etcd-repopulate"
	workerSA   = "etcd-repopulate-worker"
	workerNS   = simcluster.Namespace
	saUser     = "system:serviceaccount:" + workerNS + ":" + workerSA
	csmSecret  = "deploy-test-client-secret-3b9e"
	secretNS   = "default"
	secretName = "admin-client-auth"
)

// loadManifests reads every object of deploy/*.yaml (multi-document files
// included), sorted by file name and in file order.
func loadManifests() ([]*unstructured.Unstructured, error) {
	files, err := filepath.Glob("*.yaml")
	if err != nil || len(files) == 0 {
		return nil, fmt.Errorf("no manifests in deploy/ (%v)", err)
	}
	sort.Strings(files)
	var out []*unstructured.Unstructured
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		objs, err := decodeObjects("deploy/"+f, data)
		if err != nil {
			return nil, err
		}
		out = append(out, objs...)
	}
	return out, nil
}

// decodeObjects reads the objects of a multi-document YAML stream (a
// manifest file, helm's output) named what in errors.
func decodeObjects(what string, data []byte) ([]*unstructured.Unstructured, error) {
	var out []*unstructured.Unstructured
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(data), 4096)
	for {
		var obj map[string]any
		if err := dec.Decode(&obj); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			return nil, fmt.Errorf("%s: %w", what, err)
		}
		if obj == nil {
			continue // an empty document between two ---
		}
		u := &unstructured.Unstructured{Object: obj}
		if u.GetKind() == "" || u.GetName() == "" || u.GetNamespace() == "" {
			return nil, fmt.Errorf("%s: every object needs kind, metadata.name and metadata.namespace: %v", what, obj)
		}
		out = append(out, u)
	}
	return out, nil
}

// helmPath is the pinned helm of hack/install-tools.sh.
func helmPath() string { return filepath.Join(testenv.BinDir(), "helm") }

// runHelm runs helm and returns its stdout; the error carries its stderr.
func runHelm(args ...string) (string, error) {
	cmd := exec.Command(helmPath(), args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("helm %v: %w (run hack/install-tools.sh helm if it is missing)\n%s%s", args, err, stdout.String(), stderr.String())
	}
	return stdout.String(), nil
}

func manifests(t testing.TB) []*unstructured.Unstructured {
	t.Helper()
	objs, err := loadManifests()
	if err != nil {
		t.Fatal(err)
	}
	return objs
}

// ofKind returns the manifests of the given kinds.
func ofKind(t testing.TB, kinds ...string) []*unstructured.Unstructured {
	var out []*unstructured.Unstructured
	for _, u := range manifests(t) {
		for _, k := range kinds {
			if u.GetKind() == k {
				out = append(out, u)
			}
		}
	}
	if len(out) == 0 {
		t.Fatalf("deploy/ has no %v", kinds)
	}
	return out
}

// stack is what the RBAC and dry-run tests share: one Temporal dev server,
// one seeded control plane, the CSM emulator (crus needs it) and a
// kubeconfig that authenticates as the worker's ServiceAccount.
type stack struct {
	dir          string
	bin          string
	temporal     *devserver.Server
	tc           client.Client
	cluster      *simcluster.Cluster
	mapper       meta.RESTMapper
	emu          *csmemu.Emulator
	saKubeconfig string
	cancel       context.CancelFunc
}

var (
	sharedOnce sync.Once
	shared     *stack
	sharedErr  error
)

// env starts the shared stack the first time a test needs it, so that the
// compose and manifest-parsing tests run without it.
func env(t *testing.T) *stack {
	t.Helper()
	sharedOnce.Do(func() { shared, sharedErr = startStack() })
	if sharedErr != nil {
		t.Fatal(sharedErr)
	}
	return shared
}

func TestMain(m *testing.M) {
	code := m.Run()
	if shared != nil {
		shared.stop(code == 0)
	}
	os.Exit(code)
}

func startStack() (_ *stack, err error) {
	ctx, cancel := context.WithCancel(context.Background())
	s := &stack{cancel: cancel}
	if s.dir, err = os.MkdirTemp("", "deploy-"); err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			s.stop(false)
		}
	}()
	s.bin = filepath.Join(s.dir, "bin")
	if _, _, err := testenv.BuildCommands(s.bin); err != nil {
		return nil, err
	}
	if s.temporal, err = testenv.Temporal(ctx, s.dir); err != nil {
		return nil, err
	}
	if s.tc, err = client.Dial(client.Options{HostPort: s.temporal.Address}); err != nil {
		return nil, fmt.Errorf("dial temporal: %w", err)
	}
	if s.cluster, err = testenv.Cluster(ctx, filepath.Join(s.dir, "cluster"), true); err != nil {
		return nil, fmt.Errorf("start the real control plane: %w", err)
	}
	s.mapper = restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(s.cluster.Core.Discovery()))
	s.emu = csmemu.New(csmemu.Options{Release: api.CSM10, ClientSecret: csmSecret})
	// FAS holds its images, as on a running system: the simulated loader
	// Job loads nothing, and fas's data check counts them.
	s.emu.SetFASImages(csmemu.DefaultFASImages())
	if _, err := s.emu.Start(false); err != nil {
		return nil, err
	}
	// The Keycloak client secret where CSM keeps it and the chart's Role grants it.
	secret := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: secretName, Namespace: secretNS},
		Data:       map[string][]byte{"client-secret": []byte(csmSecret)},
	}
	if _, err := s.cluster.Core.CoreV1().Secrets(secretNS).Create(ctx, secret, metav1.CreateOptions{}); err != nil {
		return nil, fmt.Errorf("secret %s/%s: %w", secretNS, secretName, err)
	}
	// The product catalog of a CSM 1.0 system: release: auto finds 1.0.
	if err := s.cluster.SeedProductCatalog(ctx, simcluster.CatalogVersions[api.CSM10]); err != nil {
		return nil, fmt.Errorf("product catalog: %w", err)
	}
	// The identity and its rules as a site gets them: the chart installed
	// with its default values (deploy/*.yaml are its rendering, see
	// TestManifestsAreTheChart, and TestInstalledReleaseIsTheManifests).
	if _, err := runHelm("install", release, "chart", "--namespace", workerNS, "--kubeconfig", s.cluster.Kubeconfig); err != nil {
		return nil, err
	}
	if s.saKubeconfig, err = s.serviceAccountKubeconfig(ctx); err != nil {
		return nil, err
	}
	return s, nil
}

func (s *stack) stop(removeDir bool) {
	s.cancel()
	if s.emu != nil {
		_ = s.emu.Close()
	}
	if s.tc != nil {
		s.tc.Close()
	}
	if s.cluster != nil {
		s.cluster.Stop()
	}
	if s.temporal != nil {
		s.temporal.Stop()
	}
	if removeDir {
		os.RemoveAll(s.dir)
	} else {
		fmt.Fprintf(os.Stderr, "deploy: logs kept in %s\n", s.dir)
	}
}

// resource maps a manifest to its API resource through discovery.
func (s *stack) resource(u *unstructured.Unstructured) (*meta.RESTMapping, error) {
	gvk := u.GroupVersionKind()
	m, err := s.mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", gvk, u.GetName(), err)
	}
	return m, nil
}

// serviceAccountKubeconfig asks the TokenRequest API for a token of the
// worker's ServiceAccount and writes a kubeconfig that uses only that token.
func (s *stack) serviceAccountKubeconfig(ctx context.Context) (string, error) {
	tr, err := s.cluster.Core.CoreV1().ServiceAccounts(workerNS).CreateToken(ctx, workerSA, &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: new(int64(3600))},
	}, metav1.CreateOptions{})
	if err != nil {
		return "", fmt.Errorf("token for ServiceAccount %s/%s: %w", workerNS, workerSA, err)
	}
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["sim"] = &clientcmdapi.Cluster{Server: s.cluster.Config.Host, CertificateAuthority: s.cluster.Config.CAFile}
	cfg.AuthInfos[workerSA] = &clientcmdapi.AuthInfo{Token: tr.Status.Token}
	cfg.Contexts["sa"] = &clientcmdapi.Context{Cluster: "sim", AuthInfo: workerSA}
	cfg.CurrentContext = "sa"
	path := filepath.Join(s.dir, "sa-kubeconfig")
	return path, clientcmd.WriteToFile(*cfg, path)
}

// workerConfig points crus at the emulator, keeps the client secret where
// the ConfigMap has it (read through the API as the ServiceAccount) and
// shortens the waits.
func (s *stack) workerConfig() config.Config {
	c := workerconfig.Short(workerconfig.System{CSMURL: s.emu.URL(),
		SecretKube: &config.KubeSecret{Namespace: secretNS, Name: secretName, Key: "client-secret"}}, 2*time.Minute)
	c.ActivityAttempts = 2
	return c
}

// startWorker runs the real worker binary as the ServiceAccount on its own
// task queue until the test ends.
func (s *stack) startWorker(t *testing.T, queue string) {
	t.Helper()
	w := testenv.StartWorker(t, testenv.WorkerOptions{BinDir: s.bin, LogDir: s.dir, Address: s.temporal.Address, Queue: queue,
		Config: s.workerConfig(), Kubeconfig: s.saKubeconfig})
	s.waitPolling(t, queue, w.Log, w.Exited())
}

// waitPolling waits until the worker polls both kinds of task of queue: on a
// busy machine it can take longer to start than the CLI waits for an answer.
func (s *stack) waitPolling(t *testing.T, queue, log string, exited <-chan struct{}) {
	t.Helper()
	ctx := context.Background()
	deadline := time.Now().Add(90 * time.Second)
	for {
		polling := 0
		for _, kind := range []enumspb.TaskQueueType{enumspb.TASK_QUEUE_TYPE_WORKFLOW, enumspb.TASK_QUEUE_TYPE_ACTIVITY} {
			if d, err := s.tc.DescribeTaskQueue(ctx, queue, kind); err == nil && len(d.GetPollers()) > 0 {
				polling++
			}
		}
		if polling == 2 {
			return
		}
		select {
		case <-exited:
			t.Fatalf("the worker exited: see %s", log)
		case <-time.After(200 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("the worker does not poll task queue %s after 90s: see %s", queue, log)
		}
	}
}

// repopulate runs the CLI and returns its stdout and stderr together, and
// its exit code.
func (s *stack) repopulate(t *testing.T, queue string, args ...string) (string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	full := append([]string{"--address", s.temporal.Address, "--task-queue", queue}, args...)
	cmd := exec.CommandContext(ctx, filepath.Join(s.bin, "repopulate"), full...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	var exit *exec.ExitError
	switch {
	case errors.As(err, &exit):
		return out.String(), exit.ExitCode()
	case err != nil:
		t.Fatalf("repopulate %v: %v", args, err)
	}
	return out.String(), 0
}

// ensureNamespace creates ns unless it exists.
func (s *stack) ensureNamespace(t *testing.T, ns string) {
	t.Helper()
	_, err := s.cluster.Core.CoreV1().Namespaces().Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
}
