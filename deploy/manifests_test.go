package deploy

import (
	"context"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/csmops/etcd-repopulate/internal/config"
)

// TestManifestsServerSideDryRun sends every object of deploy/ (the chart
// with its default values) and of the chart with every value set
// (testdata/chart-values.yaml) to the real API server as a server-side apply
// with dryRun=All: schema, defaulting and validation (probes, security
// context, volumes) run, nothing is stored.
func TestManifestsServerSideDryRun(t *testing.T) {
	s := env(t)
	for what, objs := range map[string][]*unstructured.Unstructured{"deploy": manifests(t), "chart-values": renderChart(t, siteValues)} {
		t.Run(what, func(t *testing.T) { s.dryRun(t, objs) })
	}
}

func (s *stack) dryRun(t *testing.T, objs []*unstructured.Unstructured) {
	ctx := context.Background()
	for _, u := range objs {
		s.ensureNamespace(t, u.GetNamespace())
		m, err := s.resource(u)
		if err != nil {
			t.Fatal(err)
		}
		_, err = s.cluster.Dynamic.Resource(m.Resource).Namespace(u.GetNamespace()).Apply(ctx, u.GetName(), u,
			metav1.ApplyOptions{DryRun: []string{metav1.DryRunAll}, FieldManager: "deploy-test", Force: true})
		if err != nil {
			t.Errorf("%s %s/%s: %v", u.GetKind(), u.GetNamespace(), u.GetName(), err)
		}
	}
}

// TestConfigFilesLoad: the worker accepts the ConfigMap's config.yaml and
// the compose stack's, and the Deployment mounts every file the ConfigMap
// names where it names it.
func TestConfigFilesLoad(t *testing.T) {
	var cm corev1.ConfigMap
	fromManifest(t, "ConfigMap", &cm)
	var dep appsv1.Deployment
	fromManifest(t, "Deployment", &dep)

	inCluster := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(inCluster, []byte(cm.Data["config.yaml"]), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{inCluster, "compose/worker.yaml"} {
		if _, err := config.Load(f); err != nil {
			t.Errorf("deploy config %s: %v", f, err)
		}
	}
	cfg, err := config.Load(inCluster)
	if err != nil {
		t.Fatal(err)
	}

	pod := dep.Spec.Template.Spec
	if pod.ServiceAccountName != workerSA {
		t.Errorf("Deployment runs as ServiceAccount %q, want %q (the one the Role is bound to)", pod.ServiceAccountName, workerSA)
	}
	worker := pod.Containers[0]
	// mounted maps each file the container sees to "volume/key".
	mounted := map[string]string{}
	for _, vm := range worker.VolumeMounts {
		i := slices.IndexFunc(pod.Volumes, func(v corev1.Volume) bool { return v.Name == vm.Name })
		if i < 0 {
			t.Fatalf("volumeMount %s has no volume", vm.Name)
		}
		v := pod.Volumes[i]
		switch {
		case v.ConfigMap != nil && v.ConfigMap.Name == cm.Name && vm.SubPath != "":
			mounted[vm.MountPath] = "configmap/" + vm.SubPath
		case v.Secret != nil:
			for _, item := range v.Secret.Items {
				mounted[path.Join(vm.MountPath, item.Path)] = "secret/" + item.Key
			}
		}
	}
	if !slices.Contains(worker.Args, "--config=/etc/etcd-repopulate/config.yaml") || mounted["/etc/etcd-repopulate/config.yaml"] != "configmap/config.yaml" {
		t.Errorf("the worker's --config is not the ConfigMap's config.yaml: args %v, mounts %v", worker.Args, mounted)
	}
	for _, f := range append(slices.Clone(cfg.SSH.KnownHosts), cfg.SSH.IdentityFiles...) {
		if !strings.HasPrefix(mounted[f], "secret/") {
			t.Errorf("config names %s but the Deployment mounts no Secret key there (mounts: %v)", f, mounted)
		}
	}
}

// fromManifest decodes the one manifest of kind into out.
func fromManifest(t *testing.T, kind string, out any) {
	t.Helper()
	objs := ofKind(t, kind)
	if len(objs) != 1 {
		t.Fatalf("deploy/ has %d %s objects, want 1", len(objs), kind)
	}
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(objs[0].Object, out); err != nil {
		t.Fatalf("%s: %v", kind, err)
	}
}
