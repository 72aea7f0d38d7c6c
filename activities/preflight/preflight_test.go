package preflight_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/csmops/etcd-repopulate/activities"
	"github.com/csmops/etcd-repopulate/activities/preflight"
	"github.com/csmops/etcd-repopulate/internal/activitytest"
	"github.com/csmops/etcd-repopulate/internal/api"
	"github.com/csmops/etcd-repopulate/internal/badinput"
	"github.com/csmops/etcd-repopulate/internal/config"
	"github.com/csmops/etcd-repopulate/internal/simcluster"
	"github.com/csmops/etcd-repopulate/internal/testenv"
	"github.com/csmops/etcd-repopulate/procedures/bssrestore"
	"github.com/csmops/etcd-repopulate/procedures/etcdcluster"
	"github.com/csmops/etcd-repopulate/procedures/fasloader"
	"github.com/csmops/etcd-repopulate/procedures/orca"
	"github.com/csmops/etcd-repopulate/procedures/restartpods"
	"go.temporal.io/sdk/temporal"
	"k8s.io/client-go/rest"
)

// One seeded control plane (real etcd, kube-apiserver, controller-manager,
// kwok) serves the whole package; each test leaves it seeded as it found it.
var cluster *simcluster.Cluster

func TestMain(m *testing.M) { activitytest.ClusterMain(m, "preflight", &cluster) }

func testConfig() config.Config {
	cfg := config.Default()
	cfg.PollInterval = config.Duration(200 * time.Millisecond)
	cfg.HeartbeatTimeout = config.Duration(5 * time.Second)
	return cfg
}

// TestPreflightRefusesBadTargets: each missing or unreadable target is a
// non-retryable error that names it, and nothing is deleted.
func TestPreflightRefusesBadTargets(t *testing.T) {
	var a *preflight.Activities
	missing := func(edit func(*config.Config)) *preflight.Activities {
		k := checks(cluster.Config)
		edit(&k.Config)
		return k
	}
	impersonated := rest.CopyConfig(cluster.Config)
	impersonated.Impersonate = rest.ImpersonationConfig{UserName: "nobody"}
	cases := []struct {
		name     string
		input    string // for docs/bad-input.md
		k        *preflight.Activities
		services []api.Service
		wantType string
		wantText string
	}{
		{"job missing", "services.bss.job names a Job that does not exist", missing(func(c *config.Config) {
			config.SettingsOf[*bssrestore.BSSSettings](*c, api.BSS).Job = "cray-reds-init-x"
		}), []api.Service{api.BSS, api.MEDS}, activities.ErrPreflight, "Job services/cray-reds-init-x not found"},
		{"cluster missing", "services.externaldns.etcdCluster names an EtcdCluster that does not exist", missing(func(c *config.Config) {
			config.SettingsOf[*etcdcluster.EtcdClusterSettings](*c, api.ExternalDNS).EtcdCluster = "nope"
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
		{"forbidden", "worker's Kubernetes identity not allowed to read (Forbidden)", checks(impersonated), []api.Service{api.BSS}, activities.ErrPreflight, "forbidden"},
		{"hmnfd pods missing", "services.hmnfd.pods.selector matches no pod", missing(func(c *config.Config) {
			config.SettingsOf[*orca.HMNFDSettings](*c, api.HMNFD).Pods.Selector = "app.kubernetes.io/name=cray-hmnfdx"
		}), []api.Service{api.HMNFD}, activities.ErrPreflight, `no pods match "app.kubernetes.io/name=cray-hmnfdx"`},
		{"run from before releases", "a run started before release detection whose preflight is retried on a worker with release: auto", missing(func(c *config.Config) {}), []api.Service{api.BSS}, activities.ErrPreflight, "start the run again, or set release: in the worker config"},
	}
	before := activitytest.Fingerprint(t, cluster)
	var seen []badinput.Case
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			req := preflight.PreflightRequest{Services: tc.services, Release: api.CSM10}
			if tc.name == "run from before releases" {
				req.Release = ""
			}
			_, err := run[preflight.PreflightResult](t, tc.k, a.Preflight, req)
			if activitytest.ErrType(err) != tc.wantType || !strings.Contains(err.Error(), tc.wantText) {
				t.Fatalf("error %v, want %s containing %q", err, tc.wantType, tc.wantText)
			}
			seen = append(seen, badinput.Case{Area: badinput.Cluster, Input: tc.input, Message: activitytest.Message(err),
				Exit:      "activity fails, type " + activitytest.ErrType(err) + " (not retried): the run fails before any step",
				Unchanged: "UIDs and resourceVersions of every Job/EtcdCluster/pod unchanged"})
		})
	}
	if after := activitytest.Fingerprint(t, cluster); !testenv.EqualJSON(before, after) {
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
	var a *preflight.Activities
	for _, tc := range []struct {
		job, want, note string
	}{
		{"", string(api.RunFASLoaderAPI), ""},
		{simcluster.FASLoaderJob, string(api.RerunJob), "re-running Job services/cray-fas-loader: services.fas.job names it and it exists"},
		{"cray-fas-loader-gone", string(api.RunFASLoaderAPI), "names Job services/cray-fas-loader-gone but it does not exist (FAS removed its loader Job before CSM 1.0): loading firmware through the loader API instead"},
	} {
		k := checks(cluster.Config)
		config.SettingsOf[*fasloader.FASSettings](k.Config, api.FAS).Job = tc.job
		res, err := run[preflight.PreflightResult](t, k, a.Preflight, preflight.PreflightRequest{Services: []api.Service{api.FAS}, Release: api.CSM10})
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

// TestUnreachableAPIServerIsRetryableAndSaysWhere: a transient failure is
// left to the retry policy, with the address in the message.
func TestUnreachableAPIServerIsRetryableAndSaysWhere(t *testing.T) {
	dead := rest.CopyConfig(cluster.Config)
	dead.Host = "https://127.0.0.1:1"
	dead.Timeout = 2 * time.Second
	var a *preflight.Activities
	_, err := run[preflight.PreflightResult](t, checks(dead), a.Preflight, preflight.PreflightRequest{Services: []api.Service{api.BSS}, Release: api.CSM10})
	var appErr *temporal.ApplicationError
	if err == nil || activitytest.ErrType(err) == activities.ErrPreflight || !strings.Contains(err.Error(), "127.0.0.1:1") || !errors.As(err, &appErr) || appErr.NonRetryable() {
		t.Fatalf("error %v, want a retryable error naming the address", err)
	}
	badinput.Record(t, badinput.Case{Area: badinput.Cluster, Input: "API server unreachable at preflight", Message: activitytest.Message(err),
		Exit: "activity fails, retryable: the retry policy (activityAttempts) tries again", Unchanged: "nothing listens on 127.0.0.1:1, so no request reached any API server"})
}

// checks are the preflight activities reading the cluster at cfg.
func checks(cfg *rest.Config) *preflight.Activities {
	return &preflight.Activities{Config: testConfig(), Kube: activitytest.Kube(cfg), CSM: &activities.CSM{}}
}

// run executes one preflight activity as Temporal would, against the real API server.
func run[T any](t *testing.T, a *preflight.Activities, fn any, arg any) (T, error) {
	t.Helper()
	out, _, err := activitytest.Run[T](t, a, fn, arg, nil)
	return out, err
}

// TestDataCheckNeedsTheCSMAPI: bss re-runs a Kubernetes Job, but its data
// check reads BSS and HSM: a worker without csm.baseURL is refused before
// anything changes, naming the service and the setting.
func TestDataCheckNeedsTheCSMAPI(t *testing.T) {
	a := checks(cluster.Config) // CSM: no client, as without csm.baseURL
	plan := a.Config.Plan(api.CSM10, api.BSS)
	if plan.DataCheck != api.CheckBootParameters {
		t.Fatalf("bss plan names data check %q", plan.DataCheck)
	}
	before := activitytest.Fingerprint(t, cluster)
	_, err := run[activities.Outcome](t, a, a.CheckAccess, preflight.CSMPreflightRequest{Plans: []api.ServicePlan{plan}})
	if activitytest.ErrType(err) != activities.ErrPreflight || !strings.Contains(err.Error(), "bss: the CSM API gateway is not configured: set csm.baseURL") {
		t.Fatalf("error %v, want %s naming bss and csm.baseURL", err, activities.ErrPreflight)
	}
	// The same plan recorded before data checks needed no API.
	plan.DataCheck = ""
	if _, err := run[activities.Outcome](t, a, a.CheckAccess, preflight.CSMPreflightRequest{Plans: []api.ServicePlan{plan}}); err != nil {
		t.Fatalf("a plan without a data check: %v", err)
	}
	if after := activitytest.Fingerprint(t, cluster); !testenv.EqualJSON(before, after) {
		t.Fatalf("preflight changed the cluster:\n%v\n%v", before, after)
	}
	badinput.Record(t, badinput.Case{Area: badinput.Config, Input: "worker config without csm.baseURL, run of bss (its data check reads BSS)", Message: activitytest.Message(err),
		Exit:      "activity fails, type " + activitytest.ErrType(err) + " (not retried): the run fails before any step",
		Unchanged: "UIDs and resourceVersions of every Job/EtcdCluster/pod unchanged"})
}
