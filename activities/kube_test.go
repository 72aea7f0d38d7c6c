package activities_test

import (
	"context"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/csmops/etcd-repopulate/activities"
	"github.com/csmops/etcd-repopulate/internal/api"
	"github.com/csmops/etcd-repopulate/internal/badinput"
	"github.com/csmops/etcd-repopulate/internal/catalog"
	"github.com/csmops/etcd-repopulate/internal/config"
	"github.com/csmops/etcd-repopulate/internal/simcluster"
	"github.com/csmops/etcd-repopulate/internal/testenv"
)

// One seeded control plane (real etcd, kube-apiserver, controller-manager,
// kwok) serves the whole package; each test leaves it seeded as it found it.
var cluster *simcluster.Cluster

func TestMain(m *testing.M) {
	ctx, cancel := context.WithCancel(context.Background())
	dir := testenv.KeepDir("activities-cluster-")
	c, err := testenv.Cluster(ctx, dir, true)
	if err != nil {
		testenv.Fatalf("start the real control plane: %v", err)
	}
	cluster = c
	code := m.Run()
	cancel()
	c.Stop()
	if code == 0 {
		os.RemoveAll(dir)
	}
	os.Exit(code)
}

func testConfig() config.Config {
	cfg := config.Default()
	cfg.PollInterval = config.Duration(200 * time.Millisecond)
	cfg.HeartbeatTimeout = config.Duration(5 * time.Second)
	return cfg
}

func kube(cfg *rest.Config) *activities.Kube {
	return &activities.Kube{Config: testConfig(), Core: kubernetes.NewForConfigOrDie(cfg), Dynamic: dynamic.NewForConfigOrDie(cfg)}
}

// run executes one activity method as Temporal would, against the real API server.
func run[T any](t *testing.T, k *activities.Kube, fn any, arg any) (T, error) {
	t.Helper()
	var suite testsuite.WorkflowTestSuite
	env := suite.NewTestActivityEnvironment()
	env.RegisterActivity(k)
	var out T
	v, err := env.ExecuteActivity(fn, arg)
	if err == nil {
		err = v.Get(&out)
	}
	return out, err
}

func errType(err error) string {
	var appErr *temporal.ApplicationError
	if errors.As(err, &appErr) {
		return appErr.Type()
	}
	return ""
}

func ref(name string) api.ObjectRef {
	return api.ObjectRef{Namespace: simcluster.Namespace, Name: name}
}

func timings() api.Timings {
	return api.Timings{Wait: time.Minute, Delete: time.Minute, Poll: 200 * time.Millisecond, Heartbeat: 5 * time.Second, Attempts: 3}
}

// TestPodRestart deletes MEDS pods by UID and waits for Ready replacements.
func TestPodRestart(t *testing.T) {
	k := kube(cluster.Config)
	var a *activities.Kube
	set := api.PodSet{Namespace: simcluster.Namespace, Selector: simcluster.NameLabel + "=cray-meds"}
	snap, err := run[activities.PodSnapshot](t, k, a.SnapshotPods, set)
	if err != nil {
		t.Fatal(err)
	}
	if len(snap.Pods) != 2 || snap.Ready != 2 {
		t.Fatalf("snapshot %+v, want 2 Ready pods", snap)
	}
	if _, err := run[activities.Outcome](t, k, a.DeletePods, activities.DeletePodsRequest{Namespace: set.Namespace, Pods: snap.Pods}); err != nil {
		t.Fatal(err)
	}
	out, err := run[activities.Outcome](t, k, a.WaitPodsReplaced, activities.WaitPodsRequest{Pods: set, Snapshot: snap, Timings: timings()})
	if err != nil {
		t.Fatal(err)
	}
	pods, _ := cluster.Core.CoreV1().Pods(set.Namespace).List(context.Background(), metav1.ListOptions{LabelSelector: set.Selector})
	for _, p := range pods.Items {
		for _, old := range snap.Pods {
			if p.UID == old.UID {
				t.Errorf("old pod %s still there", p.Name)
			}
		}
	}
	if simcluster.ReadyPods(pods.Items) != 2 {
		t.Errorf("%d Ready pods after restart, want 2 (%s)", simcluster.ReadyPods(pods.Items), out.Message)
	}
	// A retried delete with the old UIDs leaves the replacements alone.
	if _, err := run[activities.Outcome](t, k, a.DeletePods, activities.DeletePodsRequest{Namespace: set.Namespace, Pods: snap.Pods}); err != nil {
		t.Fatal(err)
	}
	again, _ := cluster.Core.CoreV1().Pods(set.Namespace).List(context.Background(), metav1.ListOptions{LabelSelector: set.Selector})
	if simcluster.ReadyPods(again.Items) != 2 {
		t.Error("a stale delete touched the replacements")
	}
}

// TestPreflightRefusesBadTargets: each missing or unreadable target is a
// non-retryable error that names it, and nothing is deleted.
func TestPreflightRefusesBadTargets(t *testing.T) {
	var a *activities.Kube
	missing := func(edit func(*config.Config)) *activities.Kube {
		k := kube(cluster.Config)
		edit(&k.Config)
		return k
	}
	impersonated := rest.CopyConfig(cluster.Config)
	impersonated.Impersonate = rest.ImpersonationConfig{UserName: "nobody"}
	cases := []struct {
		name     string
		input    string // for docs/bad-input.md
		k        *activities.Kube
		services []api.Service
		wantType string
		wantText string
	}{
		{"job missing", "services.bss.job names a Job that does not exist", missing(func(c *config.Config) { config.SettingsOf[*catalog.JobSettings](*c, api.BSS).Job = "cray-reds-init-x" }), []api.Service{api.BSS, api.MEDS}, activities.ErrPreflight, "Job services/cray-reds-init-x not found"},
		{"cluster missing", "services.externaldns.etcdCluster names an EtcdCluster that does not exist", missing(func(c *config.Config) {
			config.SettingsOf[*catalog.EtcdClusterSettings](*c, api.ExternalDNS).EtcdCluster = "nope"
		}), []api.Service{api.ExternalDNS}, activities.ErrPreflight, "EtcdCluster services/nope not found"},
		{"namespace missing", "services.reds.namespace names a namespace that does not exist", missing(func(c *config.Config) {
			config.SettingsOf[*restartpods.PodSettings](*c, api.REDS).Namespace = "servicez"
		}), []api.Service{api.REDS}, activities.ErrPreflight, `namespace "servicez" not found`},
		{"no pods match", "services.meds.selector matches no pod", missing(func(c *config.Config) {
			config.SettingsOf[*restartpods.PodSettings](*c, api.MEDS).Selector = "app.kubernetes.io/name=cray-medz"
		}), []api.Service{api.MEDS}, activities.ErrPreflight, `no pods match "app.kubernetes.io/name=cray-medz"`},
		// Config.Validate refuses this first; the activity refuses it again
		// in case a plan reaches it some other way.
		{"empty selector", "empty pod selector reaching the activity (would match every pod)", missing(func(c *config.Config) { config.SettingsOf[*restartpods.PodSettings](*c, api.MEDS).Selector = " " }), []api.Service{api.MEDS}, activities.ErrPreflight, "would match every pod: refusing"},
		{"forbidden", "worker's Kubernetes identity not allowed to read (Forbidden)", kube(impersonated), []api.Service{api.BSS}, activities.ErrPreflight, "forbidden"},
		{"hmnfd pods missing", "services.hmnfd.pods.selector matches no pod", missing(func(c *config.Config) {
			config.SettingsOf[*catalog.HMNFDSettings](*c, api.HMNFD).Pods.Selector = "app.kubernetes.io/name=cray-hmnfdx"
		}), []api.Service{api.HMNFD}, activities.ErrPreflight, `no pods match "app.kubernetes.io/name=cray-hmnfdx"`},
		{"run from before releases", "a run started before release detection whose preflight is retried on a worker with release: auto", missing(func(c *config.Config) {}), []api.Service{api.BSS}, activities.ErrPreflight, "start the run again, or set release: in the worker config"},
	}
	before := snapshotUIDs(t)
	var seen []badinput.Case
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			req := activities.PreflightRequest{Services: tc.services, Release: api.CSM10}
			if tc.name == "run from before releases" {
				req.Release = ""
			}
			_, err := run[activities.PreflightResult](t, tc.k, a.Preflight, req)
			if errType(err) != tc.wantType || !strings.Contains(err.Error(), tc.wantText) {
				t.Fatalf("error %v, want %s containing %q", err, tc.wantType, tc.wantText)
			}
			seen = append(seen, badinput.Case{Area: badinput.Cluster, Input: tc.input, Message: appMessage(err),
				Exit:      "activity fails, type " + errType(err) + " (not retried): the run fails before any step",
				Unchanged: "UIDs and resourceVersions of every Job/EtcdCluster/pod unchanged"})
		})
	}
	if after := snapshotUIDs(t); !testenv.EqualJSON(before, after) {
		t.Fatalf("preflight changed the cluster:\n%v\n%v", before, after)
	}
	// Recorded only now that the cluster is known to be unchanged.
	for _, c := range seen {
		badinput.Record(t, c)
	}
}

// TestPreflightChoosesTheFASProcedure: the loader API unless the config
// names a Job that exists; a named Job that is missing falls back to the
// API and says so. Nothing is changed either way.
func TestPreflightChoosesTheFASProcedure(t *testing.T) {
	var a *activities.Kube
	for _, tc := range []struct {
		job, want, note string
	}{
		{"", string(api.RunFASLoaderAPI), ""},
		{simcluster.FASLoaderJob, string(api.RerunJob), "re-running Job services/cray-fas-loader: services.fas.job names it and it exists"},
		{"cray-fas-loader-gone", string(api.RunFASLoaderAPI), "names Job services/cray-fas-loader-gone but it does not exist (FAS removed its loader Job before CSM 1.0): loading firmware through the loader API instead"},
	} {
		k := kube(cluster.Config)
		config.SettingsOf[*catalog.FASSettings](k.Config, api.FAS).Job = tc.job
		res, err := run[activities.PreflightResult](t, k, a.Preflight, activities.PreflightRequest{Services: []api.Service{api.FAS}, Release: api.CSM10})
		if err != nil {
			t.Fatalf("job %q: %v", tc.job, err)
		}
		if p := res.Plans[0]; string(p.Procedure) != tc.want || (tc.want == string(api.RunFASLoaderAPI) && p.Object.Name != "") {
			t.Errorf("job %q: plan %+v, want %s", tc.job, p, tc.want)
		}
		if note := strings.Join(res.Notes, " "); tc.note != "" && !strings.Contains(note, tc.note) || tc.note == "" && note != "" {
			t.Errorf("job %q: notes %q, want %q", tc.job, note, tc.note)
		}
	}
}

// appMessage is the message of the ApplicationError in err, without the
// SDK's "activity error (type: ...)" wrapping.
func appMessage(err error) string {
	var appErr *temporal.ApplicationError
	if errors.As(err, &appErr) {
		return appErr.Message()
	}
	return err.Error()
}

// TestUnreachableAPIServerIsRetryableAndSaysWhere: a transient failure is
// left to the retry policy, with the address in the message.
func TestUnreachableAPIServerIsRetryableAndSaysWhere(t *testing.T) {
	dead := rest.CopyConfig(cluster.Config)
	dead.Host = "https://127.0.0.1:1"
	dead.Timeout = 2 * time.Second
	var a *activities.Kube
	_, err := run[activities.PreflightResult](t, kube(dead), a.Preflight, activities.PreflightRequest{Services: []api.Service{api.BSS}, Release: api.CSM10})
	var appErr *temporal.ApplicationError
	if err == nil || errType(err) == activities.ErrPreflight || !strings.Contains(err.Error(), "127.0.0.1:1") || !errors.As(err, &appErr) || appErr.NonRetryable() {
		t.Fatalf("error %v, want a retryable error naming the address", err)
	}
	badinput.Record(t, badinput.Case{Area: badinput.Cluster, Input: "API server unreachable at preflight", Message: appMessage(err),
		Exit: "activity fails, retryable: the retry policy (activityAttempts) tries again", Unchanged: "nothing listens on 127.0.0.1:1, so no request reached any API server"})
}

func snapshotUIDs(t *testing.T) map[string]string {
	t.Helper()
	fp, err := cluster.Fingerprint(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return fp
}
