package workerconfig

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/csmops/etcd-repopulate/internal/api"
	"github.com/csmops/etcd-repopulate/internal/config"
	"github.com/csmops/etcd-repopulate/internal/simcluster"
	"github.com/csmops/etcd-repopulate/procedures/restartpods"
)

var fleetSystem = System{
	CSMURL: "https://127.0.0.1:40001", CABundle: "/scratch/csmemu-ca.pem", SecretFile: "/scratch/client-secret",
	SSHConfig: "/scratch/fleet/ssh_config", KnownHosts: "/scratch/fleet/known_hosts",
}

// variants are the configurations the demo and the test suites build.
func variants() map[string]config.Config {
	demoSystem := fleetSystem
	demoSystem.Release, demoSystem.Identity = api.CSM10, "/scratch/nodes/id_ed25519"
	webui := fleetSystem
	webui.Release = api.CSM10
	deploy := System{CSMURL: "http://127.0.0.1:40002", SecretKube: &config.KubeSecret{Namespace: "default", Name: "admin-client-auth", Key: "client-secret"}}
	return map[string]config.Config{
		"endpoints":                   Endpoints(webui),
		"short":                       Short(fleetSystem, 2*time.Minute),
		"short, secret in Kubernetes": Short(deploy, 2*time.Minute),
		"demo":                        Demo(demoSystem, []string{"ncn-w00[1-3]", "ncn-s00[1-3]"}, []string{"x1000c0s0b0n0", "x1000c0s1b0n0"}, "cos-2.0.30-cps"),
	}
}

// TestEveryVariantLoads: each configuration, written to a file, loads and
// validates through config.Load as the worker reads it, and is the same
// configuration again.
func TestEveryVariantLoads(t *testing.T) {
	for name, want := range variants() {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "worker.yaml")
			if err := Write(path, want); err != nil {
				t.Fatal(err)
			}
			got, err := config.Load(path)
			if err != nil {
				data, _ := os.ReadFile(path)
				t.Fatalf("%v\n%s", err, data)
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("loaded %+v\nwant %+v", got, want)
			}
		})
	}
}

// TestCarriesTheSystem: what the callers rely on is in the file.
func TestCarriesTheSystem(t *testing.T) {
	v := variants()
	short := v["short"]
	if short.CSM.BaseURL != fleetSystem.CSMURL || short.CSM.CABundle != fleetSystem.CABundle || short.CSM.ClientSecret.File != fleetSystem.SecretFile || short.CSM.ClientSecret.Kubernetes != nil {
		t.Errorf("csm: %+v", short.CSM)
	}
	if short.SSH.Config != fleetSystem.SSHConfig || !reflect.DeepEqual(short.SSH.KnownHosts, []string{fleetSystem.KnownHosts}) || short.SSH.IdentityFiles != nil {
		t.Errorf("ssh: %+v", short.SSH)
	}
	if FASLoaderJob != simcluster.FASLoaderJob {
		t.Errorf("FASLoaderJob %q, but the simulated cluster's is %q", FASLoaderJob, simcluster.FASLoaderJob)
	}
	if short.Release != api.ReleaseAuto || FAS(short).Job != simcluster.FASLoaderJob {
		t.Errorf("release %s, fas job %q", short.Release, FAS(short).Job)
	}
	if time.Duration(short.CSM.Timeout) != 1200*time.Millisecond || time.Duration(short.HeartbeatTimeout) != 4*time.Second || time.Duration(config.SettingsOf[*restartpods.PodSettings](short, api.MEDS).ReadyTimeout) != 2*time.Minute {
		t.Errorf("timings: csm %s, heartbeat %s, meds %s", time.Duration(short.CSM.Timeout), time.Duration(short.HeartbeatTimeout), time.Duration(config.SettingsOf[*restartpods.PodSettings](short, api.MEDS).ReadyTimeout))
	}
	if ks := v["short, secret in Kubernetes"].CSM.ClientSecret; ks.File != "" || ks.Kubernetes == nil || ks.Kubernetes.Key != "client-secret" {
		t.Errorf("secret in Kubernetes: %+v", ks)
	}
	demo := v["demo"]
	if demo.Release != api.CSM10 || !reflect.DeepEqual(demo.SSH.IdentityFiles, []string{"/scratch/nodes/id_ed25519"}) || CPS(demo).Template != "cos-2.0.30-cps" || len(CPS(demo).Nodes) != 2 {
		t.Errorf("demo: release %s, identities %v, cps %+v", demo.Release, demo.SSH.IdentityFiles, *CPS(demo))
	}
	// Endpoints only points at the system: every timing is the runbook's.
	e, d := v["endpoints"], config.Default()
	if e.HeartbeatTimeout != d.HeartbeatTimeout || !reflect.DeepEqual(e.Services, d.Services) || e.SSH.Concurrency != d.SSH.Concurrency {
		t.Errorf("endpoints changed a timing: %+v", e)
	}
}

// TestWritesOnlyWhatDiffers: a file names what its system changes.
func TestWritesOnlyWhatDiffers(t *testing.T) {
	data, err := Render(Endpoints(System{CSMURL: "https://csm.local", SecretFile: "/s"}))
	if err != nil {
		t.Fatal(err)
	}
	if want := "csm:\n  baseURL: https://csm.local\n  clientSecret:\n    file: /s\n"; string(data) != want {
		t.Errorf("got:\n%s\nwant:\n%s", data, want)
	}
}

// TestSecretSourceWrittenWhole: a secret named in the file replaces the
// default source, so a Kubernetes secret that differs from the default in
// one key is written with all three.
func TestSecretSourceWrittenWhole(t *testing.T) {
	c := Endpoints(System{CSMURL: "https://csm.local", SecretKube: &config.KubeSecret{Namespace: "vault", Name: "admin-client-auth", Key: "client-secret"}})
	data, err := Render(c)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"namespace: vault", "name: admin-client-auth", "key: client-secret"} {
		if !strings.Contains(string(data), k) {
			t.Errorf("%q missing:\n%s", k, data)
		}
	}
}

// TestRefusesWhatDoesNotValidate: a caller's bad tweak fails where it is
// made, naming the key, rather than as a worker that does not start.
func TestRefusesWhatDoesNotValidate(t *testing.T) {
	c := Short(fleetSystem, time.Minute)
	c.CSM.Timeout = config.Duration(2 * time.Second)
	if _, err := Render(c); err == nil || !strings.Contains(err.Error(), "csm.timeout") {
		t.Fatalf("got %v, want the csm.timeout refusal", err)
	}
}

// TestCloneSharesNothing: a Config's services are pointers, so a variant
// made from a copy must not change the configuration it was copied from.
func TestCloneSharesNothing(t *testing.T) {
	base := Short(fleetSystem, time.Minute)
	variant := Clone(base)
	HMNFD(variant).NCNGroups = []string{"ncn-w00[1-3]"}
	FAS(variant).Job = ""
	if HMNFD(base).NCNGroups != nil || FAS(base).Job != FASLoaderJob {
		t.Errorf("changing the clone changed the original: ncnGroups %v, fas job %q", HMNFD(base).NCNGroups, FAS(base).Job)
	}
	if !reflect.DeepEqual(Clone(base), base) {
		t.Error("a clone differs from its original")
	}
}
