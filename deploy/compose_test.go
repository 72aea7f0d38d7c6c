package deploy

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/loader"
	"github.com/compose-spec/compose-go/v2/types"

	"github.com/csmops/etcd-repopulate/internal/config"
	"github.com/csmops/etcd-repopulate/internal/testenv"
)

// loadCompose loads the repository's docker-compose.yml with the Compose
// Specification's own loader (schema validation, interpolation, relative
// paths resolved), as `docker compose config` would, with env as the
// environment.
func loadCompose(t *testing.T, env map[string]string) *types.Project {
	t.Helper()
	root := testenv.RepoRoot()
	p, err := loader.LoadWithContext(context.Background(), types.ConfigDetails{
		WorkingDir:  root,
		ConfigFiles: []types.ConfigFile{{Filename: filepath.Join(root, "docker-compose.yml")}},
		Environment: env,
	})
	if err != nil {
		t.Fatalf("docker-compose.yml: %v", err)
	}
	return p
}

func TestComposeStack(t *testing.T) {
	root := testenv.RepoRoot()
	p := loadCompose(t, map[string]string{"HOME": "/home/op"})

	svc := func(name string) types.ServiceConfig {
		t.Helper()
		s, ok := p.Services[name]
		if !ok {
			t.Fatalf("docker-compose.yml has no service %q (has %v)", name, slices.Sorted(func(yield func(string) bool) {
				for n := range p.Services {
					if !yield(n) {
						return
					}
				}
			}))
		}
		return s
	}
	// Each dependency is started only when the one before it is usable.
	for _, d := range []struct{ service, on, condition string }{
		{"temporal-schema", "postgresql", types.ServiceConditionHealthy},
		{"temporal", "temporal-schema", types.ServiceConditionCompletedSuccessfully},
		{"temporal-namespace", "temporal", types.ServiceConditionHealthy},
		{"temporal-ui", "temporal", types.ServiceConditionHealthy},
		{"worker", "temporal-namespace", types.ServiceConditionCompletedSuccessfully},
	} {
		if got := svc(d.service).DependsOn[d.on].Condition; got != d.condition {
			t.Errorf("%s depends on %s with condition %q, want %q", d.service, d.on, got, d.condition)
		}
	}
	for _, name := range []string{"postgresql", "temporal"} {
		if hc := svc(name).HealthCheck; hc == nil || len(hc.Test) == 0 || hc.Disable {
			t.Errorf("%s has no healthcheck: the services after it wait on service_healthy", name)
		}
	}
	// Pinned images: a tag that names a release, never latest; admin-tools
	// tags add the releases of the tools they bundle (-tctl-1.18.4-cli-1.5.0).
	pinned := regexp.MustCompile(`^[a-z0-9./-]+:[0-9]+(\.[0-9]+)+(-[a-z]+-[0-9]+(\.[0-9]+)+)*$`)
	for name, s := range p.Services {
		if s.Build == nil && !pinned.MatchString(s.Image) {
			t.Errorf("service %s: image %q is not pinned to a release tag", name, s.Image)
		}
	}
	if svc("temporal").Environment["DB"] == nil || *svc("temporal").Environment["DB"] != "postgres12" {
		t.Errorf("temporal does not persist to PostgreSQL: environment %v", svc("temporal").Environment)
	}

	w := svc("worker")
	if w.Build == nil || w.Build.Context != root || w.Build.Dockerfile != "Dockerfile" {
		t.Fatalf("worker must build from ./Dockerfile at the repository top: %+v", w.Build)
	}
	dockerfile, err := os.ReadFile(filepath.Join(root, "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"CGO_ENABLED=0 go build", "./worker", "./starter", "USER 65532", "ENTRYPOINT [\"/usr/local/bin/repopulate-worker\"]"} {
		if !strings.Contains(string(dockerfile), want) {
			t.Errorf("Dockerfile lacks %q", want)
		}
	}
	if addr := w.Environment["TEMPORAL_ADDRESS"]; addr == nil || *addr != "temporal:7233" {
		t.Errorf("worker's TEMPORAL_ADDRESS = %v, want the temporal service's frontend temporal:7233", addr)
	}
	mounts := map[string]string{}
	for _, v := range w.Volumes {
		mounts[v.Target] = v.Source
		if !v.ReadOnly {
			t.Errorf("worker mounts %s writable", v.Target)
		}
	}
	for _, flag := range []string{"--config=", "--kubeconfig="} {
		i := slices.IndexFunc(w.Command, func(a string) bool { return strings.HasPrefix(a, flag) })
		if i < 0 {
			t.Errorf("worker command %v has no %s", w.Command, flag)
			continue
		}
		if target := strings.TrimPrefix(w.Command[i], flag); mounts[target] == "" {
			t.Errorf("worker's %s names %s, which no volume mounts", flag, target)
		}
	}
	if got := mounts["/etc/etcd-repopulate/kubeconfig"]; got != "/home/op/.kube/config" {
		t.Errorf("kubeconfig defaults to %q, want $HOME/.kube/config", got)
	}
	// The default config file is the repository's, and the worker takes it.
	cfgFile := mounts["/etc/etcd-repopulate/config.yaml"]
	if _, err := config.Load(cfgFile); err != nil {
		t.Errorf("the compose stack's worker config: %v", err)
	}
	if !w.ReadOnly || w.User == "" || strings.HasPrefix(w.User, "0") {
		t.Errorf("worker: read_only %v, user %q: want a read-only root and a non-root user", w.ReadOnly, w.User)
	}

	// The variables the docs name override the defaults.
	p = loadCompose(t, map[string]string{"HOME": "/home/op", "KUBECONFIG_FILE": "/srv/kubeconfig", "REPOPULATE_UID": "1000"})
	w = p.Services["worker"]
	if !slices.ContainsFunc(w.Volumes, func(v types.ServiceVolumeConfig) bool { return v.Source == "/srv/kubeconfig" }) || w.User != "1000:65532" {
		t.Errorf("KUBECONFIG_FILE / REPOPULATE_UID not honoured: volumes %+v, user %q", w.Volumes, w.User)
	}
}
