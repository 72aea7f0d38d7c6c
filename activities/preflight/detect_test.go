package preflight_test

import (
	"errors"
	"strings"
	"testing"

	"go.temporal.io/sdk/temporal"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/csmops/etcd-repopulate/activities"
	"github.com/csmops/etcd-repopulate/activities/preflight"
	"github.com/csmops/etcd-repopulate/internal/activitytest"
	"github.com/csmops/etcd-repopulate/internal/api"
	"github.com/csmops/etcd-repopulate/internal/badinput"
	"github.com/csmops/etcd-repopulate/internal/productcatalog"
	"github.com/csmops/etcd-repopulate/internal/simcluster"
)

// catalogOf is a cluster whose product catalog lists versions (none: no ConfigMap).
func catalogOf(versions []string) *fake.Clientset {
	if versions == nil {
		return fake.NewClientset()
	}
	var data strings.Builder
	for _, v := range versions {
		data.WriteString(productcatalog.Entry(v))
	}
	return fake.NewClientset(&corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: productcatalog.Namespace, Name: productcatalog.ConfigMap}, Data: map[string]string{productcatalog.Key: data.String()}})
}

// TestDetectReleaseFromTheCatalogConfirmedByProbes: against the emulator of
// each release, auto finds the release from a seeded catalog and the probes
// confirm it.
func TestDetectReleaseFromTheCatalogConfirmedByProbes(t *testing.T) {
	for _, rel := range api.Releases {
		t.Run(string(rel), func(t *testing.T) {
			a := detector(t, rel, api.ReleaseAuto, catalogOf(simcluster.CatalogVersions[rel]))
			d, err := run[api.ReleaseDetection](t, a, a.DetectRelease, preflight.DetectReleaseRequest{})
			if err != nil {
				t.Fatal(err)
			}
			if d.Release != rel || d.CatalogVersion == "" || d.Probes == nil || !strings.Contains(d.How, "confirmed by API probes") {
				t.Errorf("detection %+v", d)
			}
			t.Logf("%s: %s", rel, d.How)
		})
	}
}

func TestDetectReleaseRefusals(t *testing.T) {
	cases := []struct {
		name       string
		emulator   api.Release
		configured api.Release
		catalog    []string
		want       []string
		input      string
	}{
		{"catalog missing, probes inconclusive", api.CSM13, api.ReleaseAuto, nil,
			[]string{"cannot tell which CSM release this is", "ConfigMap services/cray-product-catalog not found", "they fit csm-1.3 or csm-1.5", "set release: in the worker config"},
			"release: auto, no ConfigMap services/cray-product-catalog, APIs of CSM 1.3 (which 1.5 serves alike)"},
		{"configured release contradicted", api.CSM10, api.CSM13, nil,
			[]string{"release csm-1.3 is configured, but the CSM APIs answer like csm-1.0", "BOS /v2 absent", "nothing was changed"},
			"release: csm-1.3 on a system whose APIs are CSM 1.0's"},
		{"catalog contradicted", api.CSM12, api.ReleaseAuto, []string{"1.2.2", "1.5.0"},
			[]string{"highest CSM version is 1.5.0, but the CSM APIs answer like csm-1.2"},
			"release: auto, catalog lists 1.5.0, APIs are CSM 1.2's"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			a := detector(t, tc.emulator, tc.configured, catalogOf(tc.catalog))
			_, err := run[api.ReleaseDetection](t, a, a.DetectRelease, preflight.DetectReleaseRequest{})
			var appErr *temporal.ApplicationError
			if !errors.As(err, &appErr) || !appErr.NonRetryable() || appErr.Type() != preflight.ErrRelease {
				t.Fatalf("error %v, want non-retryable %s", err, preflight.ErrRelease)
			}
			for _, w := range tc.want {
				if !strings.Contains(appErr.Message(), w) {
					t.Errorf("message %q lacks %q", appErr.Message(), w)
				}
			}
			badinput.Record(t, badinput.Case{Area: badinput.Cluster, Input: tc.input, Message: appErr.Message(),
				Exit: "run fails at preflight, type " + api.PreflightFailedError, Unchanged: "only the catalog and the probes were read; preflight never ran"})
		})
	}
}

func TestDetectReleaseCatalogForbiddenNamesTheRule(t *testing.T) {
	core := fake.NewClientset()
	core.PrependReactor("get", "configmaps", func(k8stesting.Action) (bool, runtime.Object, error) {
		return true, nil, apierrors.NewForbidden(schema.GroupResource{Resource: "configmaps"}, productcatalog.ConfigMap, nil)
	})
	a := detector(t, api.CSM13, api.ReleaseAuto, core)
	_, err := run[api.ReleaseDetection](t, a, a.DetectRelease, preflight.DetectReleaseRequest{})
	var appErr *temporal.ApplicationError
	if !errors.As(err, &appErr) || !appErr.NonRetryable() || !strings.Contains(appErr.Message(), "deploy/rbac.yaml") || !strings.Contains(appErr.Message(), "forbidden") {
		t.Fatalf("error %v", err)
	}
}

// detector is the release detection of a worker configured with release
// whose API gateway is an emulator of emulated and whose cluster is core.
func detector(t *testing.T, emulated, release api.Release, core kubernetes.Interface) *preflight.Activities {
	t.Helper()
	_, c := activitytest.CSM(t, emulated, nil)
	cfg := testConfig()
	cfg.Release = release
	return &preflight.Activities{Config: cfg, Kube: &activities.Kube{Core: core}, CSM: c}
}
