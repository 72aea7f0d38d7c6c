package config

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/csmops/etcd-repopulate/internal/api"
	"github.com/csmops/etcd-repopulate/internal/badinput"
	"github.com/csmops/etcd-repopulate/internal/catalog"
	"github.com/csmops/etcd-repopulate/procedures/bssrestore"
	"github.com/csmops/etcd-repopulate/procedures/fasloader"
)

func TestDefaultsAreTheRunbooks(t *testing.T) {
	cfg := Default()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	if cfg.Release != api.ReleaseAuto {
		t.Errorf("default release %q, want auto", cfg.Release)
	}
	if p := cfg.Plan(api.CSM10, api.BSS); p.Procedure != api.RerunJob || p.Object.String() != "services/cray-reds-init" {
		t.Errorf("bss plan %+v", p)
	}
	if p := cfg.Plan(api.CSM10, api.ExternalDNS); p.Object.String() != "services/cray-externaldns-etcd" {
		t.Errorf("externaldns plan %+v", p)
	}
	if p := cfg.Plan(api.CSM10, api.MEDS); p.Pods.Selector != "app.kubernetes.io/name=cray-meds" {
		t.Errorf("meds plan %+v", p)
	}
	if p := cfg.Plan(api.CSM10, api.HMNFD); p.Procedure != api.RestartOrca || p.HMNFD.Pods.String() != "services pods app.kubernetes.io/name=cray-hmnfd" || p.HMNFD.PodsReadyTimeout <= 0 {
		t.Errorf("hmnfd plan %+v", p.HMNFD)
	}
	if p := cfg.Plan(api.CSM10, api.BOS); p.Procedure != api.RestoreBOSTemplates || p.Gates.OnDeadline != api.OnDeadlineFail || p.Gates.Deadline != 0 || p.APIs.BOS != api.APIv1 {
		t.Errorf("bos plan %+v", p)
	}
	if p := cfg.Plan(api.CSM10, api.CPS); p.Procedure != api.RemountCPS || p.CPS == nil || len(p.CPS.Nodes) != 0 || p.CPS.BootTimeout <= 0 {
		t.Errorf("cps plan %+v", p)
	}
	for _, r := range api.Releases {
		if p := cfg.Plan(r, api.FAS); p.Procedure != api.RunFASLoaderAPI || p.Object.Name != "" {
			t.Errorf("fas on %s must use the loader API and name no Job: %+v", r, p)
		}
	}
}

// TestReleasesChooseWhatDrifted follows CSM-APIS.md §8 and §10.
func TestReleasesChooseWhatDrifted(t *testing.T) {
	cfg := Default()
	type want struct {
		units, ncns []string
		absent      []api.Service
		bos         api.Procedure
		apis        api.APIVersions
	}
	workers, storage := "ncn-w00[1-4]-can.local", "ncn-s00[1-4]-can.local"
	cases := map[api.Release]want{
		api.CSM10: {[]string{"cray-dvs-orca", "cray-orca"}, []string{workers, storage}, nil, api.RestoreBOSTemplates, api.APIVersions{BOS: "v1", HMNFD: "v1"}},
		api.CSM12: {[]string{"cray-orca"}, []string{workers, storage}, []api.Service{api.ExternalDNS}, api.RestoreBOSTemplates, api.APIVersions{BOS: "v1", HMNFD: "v2"}},
		api.CSM13: {[]string{"cray-orca"}, []string{workers}, []api.Service{api.ExternalDNS}, api.CheckBOSTemplates, api.APIVersions{BOS: "v2", HMNFD: "v2"}},
		api.CSM15: {[]string{"cray-orca"}, []string{workers}, []api.Service{api.ExternalDNS, api.CRUS, api.REDS, api.CPS}, api.CheckBOSTemplates, api.APIVersions{BOS: "v2", HMNFD: "v2"}},
		api.CSM16: {[]string{"cray-orca"}, []string{workers}, []api.Service{api.ExternalDNS, api.CRUS, api.REDS, api.CPS}, api.CheckBOSTemplates, api.APIVersions{BOS: "v2", HMNFD: "v2"}},
	}
	for r, w := range cases {
		h := cfg.Plan(r, api.HMNFD)
		if !slices.Equal(h.HMNFD.Units, w.units) || !slices.Equal(h.HMNFD.NCNGroups, w.ncns) || h.APIs != w.apis {
			t.Errorf("%s hmnfd %+v apis %+v", r, h.HMNFD, h.APIs)
		}
		if p := cfg.Plan(r, api.BOS); p.Procedure != w.bos || p.APIs != w.apis {
			t.Errorf("%s bos %+v", r, p)
		}
		for _, s := range catalog.Services() {
			p := cfg.Plan(r, s)
			if absent := slices.Contains(w.absent, s); absent != (p.Procedure == api.NotInRelease) || (absent && p.Reason == "") {
				t.Errorf("%s %s: %+v (absent %v)", r, s, p, absent)
			}
		}
	}
	// From 1.5 bss restores from a snapshot behind gate bss-restore, and
	// shows the age of its etcd backup CronJob there.
	bss := cfg.Plan(api.CSM15, api.BSS)
	if bss.Procedure != api.RestoreBSSFromSnapshot || bss.EtcdBackup != (api.ObjectRef{Namespace: "services", Name: "cray-bss-bitnami-etcd-snapshotter"}) {
		t.Errorf("csm-1.5 bss: %+v", bss)
	}
	if err := Parse([]byte("release: csm-1.4\nservices:\n  hmnfd:\n    unit: my-orca\n    ncnGroups: []\n"), &cfg); err != nil {
		t.Fatal(err)
	}
	if cfg.Release != api.CSM13 {
		t.Errorf("csm-1.4 must be read as csm-1.3, got %s", cfg.Release)
	}
	if h := cfg.Plan(cfg.Release, api.HMNFD).HMNFD; !slices.Equal(h.Units, []string{"my-orca"}) || len(h.NCNGroups) != 0 {
		t.Errorf("the file's own values must win over the release: %+v", h)
	}
}

// TestOldProfileKeyKeepsItsRelease: a file written for the profile setting
// acts for the release it named (not auto) and says the key is old.
func TestOldProfileKeyKeepsItsRelease(t *testing.T) {
	cfg := Default()
	if err := Parse([]byte("profile: csm-1.2\n"), &cfg); err != nil {
		t.Fatal(err)
	}
	if cfg.Release != api.CSM12 || len(cfg.Warnings) != 1 || !strings.Contains(cfg.Warnings[0], "old name of release") {
		t.Errorf("release %s, warnings %q", cfg.Release, cfg.Warnings)
	}
}

func TestFileOverridesOnlyWhatItNames(t *testing.T) {
	cfg := Default()
	err := Parse([]byte("services:\n  bss:\n    job: reds-init-v2\n    completeTimeout: 45m\npollInterval: 1s\n"), &cfg)
	if err != nil {
		t.Fatal(err)
	}
	bss := SettingsOf[*bssrestore.BSSSettings](cfg, api.BSS)
	if bss.Job != "reds-init-v2" || time.Duration(bss.CompleteTimeout) != 45*time.Minute || bss.Namespace != "services" {
		t.Errorf("bss %+v", bss)
	}
	if time.Duration(cfg.PollInterval) != time.Second || SettingsOf[*fasloader.FASSettings](cfg, api.FAS).Job != "" || SettingsOf[*fasloader.FASSettings](cfg, api.FAS).Namespace != "services" {
		t.Error("other values must keep their defaults")
	}
}

// TestBadConfigIsRefusedWithTheKeyAndTheFix: one case per kind of bad value.
func TestBadConfigIsRefusedWithTheKeyAndTheFix(t *testing.T) {
	cases := map[string]struct{ yaml, want string }{
		"malformed YAML":   {"services: [", "not valid YAML: yaml: line 1: did not find expected node content: fix the file's syntax"},
		"unknown key":      {"services:\n  bss:\n    jobb: x\n", `services.bss: unknown key "jobb" (docs/configuration.md lists the keys)`},
		"unknown service":  {"services:\n  dns:\n    job: x\n", `unknown key "services.dns": the services are bos,bss,`},
		"not a map":        {"services:\n  meds: 5\n", `services.meds: must be a map of keys, got a number`},
		"wrong type":       {"services:\n  hmnfd:\n    batchSize: many\n", `services.hmnfd.batchSize: must be a whole number, got a string`},
		"negative timeout": {"deleteTimeout: -5m\n", "deleteTimeout: must be a positive duration"},
		"not a duration":   {"pollInterval: 5\n", `duration must be a string such as "90s"`},
		"bad duration":     {"pollInterval: soon\n", `duration "soon"`},
		"empty selector":   {"services:\n  meds:\n    selector: \"\"\n", "services.meds.selector: empty selector would match every pod"},
		"bad selector":     {"services:\n  reds:\n    selector: \"a=b=c\"\n", "services.reds.selector"},
		"bad name":         {"services:\n  fas:\n    job: Cray_FAS\n", `services.fas.job: "Cray_FAS" is not a valid Job name`},
		"zero attempts":    {"activityAttempts: 0\n", "activityAttempts: must be at least 1"},
		"poll too slow":    {"pollInterval: 1m\nheartbeatTimeout: 30s\n", "must be shorter than heartbeatTimeout"},
		// The old defaults: one token fetch inside a wait outlasted the heartbeat.
		"csm timeout vs heartbeat": {"csm:\n  timeout: 30s\nheartbeatTimeout: 30s\n", "csm.timeout (30s) must be under a third of heartbeatTimeout (30s)"},
		"batch too big":            {"services:\n  hmnfd:\n    batchSize: 5000\n", "services.hmnfd.batchSize: must be 1 to 1000 nodes"},
		"batches in flight":        {"services:\n  hmnfd:\n    batchesInFlight: 0\n", "services.hmnfd.batchesInFlight: must be 1 to 16 batches running at once"},
		"heartbeat too short":      {"heartbeatTimeout: 4s\n", "set csm.timeout to 1.333s or less, or heartbeatTimeout above 24s"},
		"unknown release":          {"release: csm-2.0\n", `release: "csm-2.0" is not one of auto, csm-1.0, csm-1.2, csm-1.3, csm-1.5, csm-1.6 (csm-1.4 is csm-1.3)`},
		"unknown profile":          {"profile: csm-1.1\n", `release: "csm-1.1" is not one of auto`},
		"profile+release":          {"profile: csm-1.0\nrelease: auto\n", `profile: "csm-1.0" is the old name of release: and the file sets both; remove profile`},
		"unit and units":           {"services:\n  hmnfd:\n    unit: a\n    units: [b]\n", "services.hmnfd: set unit (one unit) or units"},
		"empty units":              {"services:\n  hmnfd:\n    units: []\n", "services.hmnfd.units: empty list"},
		"hmnfd selector":           {"services:\n  hmnfd:\n    pods:\n      selector: \"\"\n", "services.hmnfd.pods.selector: empty selector"},
		"bad host range":           {"services:\n  hmnfd:\n    ncnGroups: [\"ncn-w00[0-4-can\"]\n", "services.hmnfd.ncnGroups[0]"},
		"bad unit":                 {"services:\n  hmnfd:\n    unit: \"orca; reboot\"\n", "is not a systemd unit name"},
		"relative URL":             {"csm:\n  baseURL: api-gw\n", "csm.baseURL"},
		"two secrets":              {"csm:\n  clientSecret: {file: /a, env: B}\n", "set exactly one of kubernetes, file or env (got 2)"},
		"zero concurrency":         {"ssh:\n  concurrency: 0\n", "ssh.concurrency: must be at least 1"},
		"cps bad xname":            {"services:\n  cps:\n    nodes: [nid000001]\n    template: cos\n", `services.cps.nodes[0]: "nid000001" is not a node xname`},
		"cps no template":          {"services:\n  cps:\n    nodes: [x3000c0s19b1n0]\n", "services.cps.template: name the BOS session template"},
		"gate deadline":            {"gates:\n  deadline: -1h\n", "gates.deadline: must be 0"},
		"gate onDeadline":          {"gates:\n  onDeadline: wait\n", `gates.onDeadline: "wait" must be fail or skip`},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			cfg := Default()
			err := Parse([]byte(tc.yaml), &cfg)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one containing %q", err, tc.want)
			}
			badinput.Record(t, badinput.Case{Area: badinput.Config, Input: tc.yaml, Message: err.Error(),
				Exit: "config.Parse error", Unchanged: "refused while parsing, before any client is built"})
		})
	}
}

func TestLoadNamesTheFile(t *testing.T) {
	if _, err := Load(filepath.Join(t.TempDir(), "missing.yaml")); err == nil || !strings.Contains(err.Error(), "missing.yaml") {
		t.Errorf("missing file: %v", err)
	}
	path := filepath.Join(t.TempDir(), "bad.yaml")
	_ = os.WriteFile(path, []byte("nope: 1\n"), 0o644)
	if _, err := Load(path); err == nil || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "nope") {
		t.Errorf("bad file: %v", err)
	}
	if cfg, err := Load(""); err != nil || SettingsOf[*bssrestore.BSSSettings](cfg, api.BSS).Job != "cray-reds-init" {
		t.Errorf("no file: %v", err)
	}
}
