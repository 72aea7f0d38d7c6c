package deploy

import (
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/csmops/etcd-repopulate/internal/api"
	"github.com/csmops/etcd-repopulate/internal/config"
	"github.com/csmops/etcd-repopulate/internal/testenv"
)

// siteValues sets every value of the chart away from its default.
const siteValues = "testdata/chart-values.yaml"

func TestChartLint(t *testing.T) {
	for _, args := range [][]string{{"lint", "--strict", "chart"}, {"lint", "--strict", "chart", "--values", siteValues}} {
		if out, err := runHelm(args...); err != nil {
			t.Error(err)
		} else if !strings.Contains(out, "0 chart(s) failed") {
			t.Errorf("helm %v:\n%s", args, out)
		}
	}
}

// TestManifestsAreTheChart: deploy/*.yaml are exactly what
// hack/render-manifests.sh (make manifests) renders from the chart, so that
// every test of the manifests tests the chart.
func TestManifestsAreTheChart(t *testing.T) {
	dir := t.TempDir()
	cmd := exec.Command(filepath.Join(testenv.RepoRoot(), "hack", "render-manifests.sh"), dir)
	cmd.Env = append(os.Environ(), "HELM="+helmPath())
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("hack/render-manifests.sh: %v\n%s", err, out)
	}
	rendered, _ := filepath.Glob(filepath.Join(dir, "*.yaml"))
	committed, _ := filepath.Glob("*.yaml")
	names := func(paths []string) []string {
		var out []string
		for _, p := range paths {
			out = append(out, filepath.Base(p))
		}
		sort.Strings(out)
		return out
	}
	if !slices.Equal(names(rendered), names(committed)) {
		t.Errorf("deploy/ has %v, the chart renders %v: run make manifests (and delete manifests the chart does not render)", names(committed), names(rendered))
	}
	for _, p := range rendered {
		want, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(filepath.Base(p))
		if err != nil {
			continue // reported above
		}
		if string(got) != string(want) {
			t.Errorf("deploy/%s differs from the chart's rendering: edit deploy/chart, then run make manifests", filepath.Base(p))
		}
	}
}

// renderChart runs helm template with the values files, as the release in
// namespace services.
func renderChart(t *testing.T, values ...string) []*unstructured.Unstructured {
	t.Helper()
	args := []string{"template", release, "chart", "--namespace", workerNS}
	for _, v := range values {
		args = append(args, "--values", v)
	}
	out, err := runHelm(args...)
	if err != nil {
		t.Fatal(err)
	}
	objs, err := decodeObjects("helm template", []byte(out))
	if err != nil {
		t.Fatal(err)
	}
	return objs
}

// TestChartValues: each value reaches the object it is for.
func TestChartValues(t *testing.T) {
	objs := renderChart(t, siteValues)
	get := func(kind, ns, name string, out any) {
		t.Helper()
		for _, u := range objs {
			if u.GetKind() == kind && u.GetNamespace() == ns && u.GetName() == name {
				if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, out); err != nil {
					t.Fatal(err)
				}
				return
			}
		}
		t.Fatalf("the chart renders no %s %s/%s", kind, ns, name)
	}
	var dep appsv1.Deployment
	get("Deployment", workerNS, workerSA, &dep)
	var cm corev1.ConfigMap
	get("ConfigMap", workerNS, workerSA, &cm)
	var role, binding unstructured.Unstructured
	get("Role", "site-secrets", workerSA+"-client-secret", &role.Object)
	get("RoleBinding", "site-secrets", workerSA+"-client-secret", &binding.Object)

	if dep.Spec.Replicas == nil || *dep.Spec.Replicas != 3 {
		t.Errorf("replicas: %v, want 3", dep.Spec.Replicas)
	}
	pod := dep.Spec.Template.Spec
	c := pod.Containers[0]
	if c.Image != "registry.example/site/etcd-repopulate:1.2.3" || c.ImagePullPolicy != corev1.PullAlways {
		t.Errorf("image %s, pull policy %s", c.Image, c.ImagePullPolicy)
	}
	if c.Resources.Limits.Memory().String() != "1Gi" || c.Resources.Requests.Cpu().String() != "200m" {
		t.Errorf("resources: %+v", c.Resources)
	}
	env := map[string]string{}
	for _, e := range c.Env {
		env[e.Name] = e.Value
	}
	wantEnv := map[string]string{
		"TEMPORAL_ADDRESS": "temporal.example.net:7233", "TEMPORAL_NAMESPACE": "repopulate", "TEMPORAL_TLS": "true",
		"TEMPORAL_TLS_SERVER_NAME": "temporal-frontend.example.net",
		"TEMPORAL_TLS_CA":          "/etc/etcd-repopulate/temporal-tls/ca.crt",
		"TEMPORAL_TLS_CERT":        "/etc/etcd-repopulate/temporal-tls/tls.crt",
		"TEMPORAL_TLS_KEY":         "/etc/etcd-repopulate/temporal-tls/tls.key",
	}
	if !reflect.DeepEqual(env, wantEnv) {
		t.Errorf("env %v, want %v", env, wantEnv)
	}
	secrets := map[string]string{} // volume -> Secret name
	for _, v := range pod.Volumes {
		if v.Secret != nil {
			secrets[v.Name] = v.Secret.SecretName
		}
	}
	if secrets["temporal-tls"] != "etcd-repopulate-temporal-tls" || secrets["ssh"] != "site-ssh" {
		t.Errorf("Secret volumes %v", secrets)
	}
	mounts := map[string]string{}
	for _, m := range c.VolumeMounts {
		mounts[m.Name] = m.MountPath
	}
	if mounts["temporal-tls"] != "/etc/etcd-repopulate/temporal-tls" {
		t.Errorf("the TLS Secret is mounted at %q", mounts["temporal-tls"])
	}

	file := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(file, []byte(cm.Data["config.yaml"]), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(file)
	if err != nil {
		t.Fatalf("the worker refuses the chart's config.yaml: %v", err)
	}
	ks := cfg.CSM.ClientSecret.Kubernetes
	if cfg.Release != api.CSM15 || cfg.CSM.BaseURL != "https://api-gw.example.net" || cfg.SSH.User != "admin" ||
		ks == nil || *ks != (config.KubeSecret{Namespace: "site-secrets", Name: "repopulate-client", Key: "secret"}) {
		t.Errorf("config.yaml:\n%s", cm.Data["config.yaml"])
	}
	rules, _, _ := unstructured.NestedSlice(role.Object, "rules")
	if len(rules) != 1 || !reflect.DeepEqual(rules[0].(map[string]any)["resourceNames"], []any{"repopulate-client"}) {
		t.Errorf("the client secret's Role grants %v, want get on repopulate-client only", rules)
	}
}

// TestInstalledReleaseIsTheManifests: the release the RBAC tests run under
// (helm install with the default values) is, object for object, deploy/*.yaml.
func TestInstalledReleaseIsTheManifests(t *testing.T) {
	s := env(t)
	out, err := runHelm("get", "manifest", release, "--namespace", workerNS, "--kubeconfig", s.cluster.Kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	installed, err := decodeObjects("helm get manifest", []byte(out))
	if err != nil {
		t.Fatal(err)
	}
	key := func(u *unstructured.Unstructured) string {
		return u.GetKind() + " " + u.GetNamespace() + "/" + u.GetName()
	}
	byKey := map[string]*unstructured.Unstructured{}
	for _, u := range installed {
		byKey[key(u)] = u
	}
	objs := manifests(t)
	if len(objs) != len(installed) {
		t.Errorf("the release has %d objects, deploy/ %d", len(installed), len(objs))
	}
	for _, u := range objs {
		if got, ok := byKey[key(u)]; !ok {
			t.Errorf("%s: in deploy/, not in the release", key(u))
		} else if !reflect.DeepEqual(got.Object, u.Object) {
			t.Errorf("%s: the release's differs from deploy/'s", key(u))
		}
	}
}
