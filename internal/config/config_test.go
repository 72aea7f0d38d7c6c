package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/csmops/etcd-repopulate/internal/api"
	"github.com/csmops/etcd-repopulate/internal/badinput"
)

func TestDefaultsAreTheRunbooks(t *testing.T) {
	cfg := Default()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	if p := cfg.Plan(api.BSS); p.Procedure != api.RerunJob || p.Object.String() != "services/cray-reds-init" {
		t.Errorf("bss plan %+v", p)
	}
	if p := cfg.Plan(api.ExternalDNS); p.Object.String() != "services/cray-externaldns-etcd" {
		t.Errorf("externaldns plan %+v", p)
	}
	if p := cfg.Plan(api.MEDS); p.Pods.Selector != "app.kubernetes.io/name=cray-meds" {
		t.Errorf("meds plan %+v", p)
	}
	if p := cfg.Plan(api.HMNFD); p.Procedure != api.RestartOrca || p.HMNFD.Unit != "cray-dvs-orca" || len(p.HMNFD.NCNGroups) != 2 {
		t.Errorf("hmnfd plan %+v", p.HMNFD)
	}
	if p := cfg.Plan(api.BOS); p.Procedure != api.RestoreBOSTemplates || p.Gates.OnDeadline != api.OnDeadlineFail || p.Gates.Deadline != 0 {
		t.Errorf("bos plan %+v", p)
	}
	if p := cfg.Plan(api.CPS); p.Procedure != api.RemountCPS || p.CPS == nil || len(p.CPS.Nodes) != 0 || p.CPS.BootTimeout <= 0 {
		t.Errorf("cps plan %+v", p)
	}
	if p := cfg.Plan(api.FAS); p.Procedure != api.RerunJob {
		t.Errorf("fas on csm-1.0 must re-run the loader Job: %+v", p)
	}
}

// TestProfilesChooseTheDefaultsThatDrifted follows CSM-APIS.md's table.
func TestProfilesChooseTheDefaultsThatDrifted(t *testing.T) {
	cfg := Default()
	if err := Parse([]byte("profile: csm-1.2\n"), &cfg); err != nil {
		t.Fatal(err)
	}
	h := cfg.Plan(api.HMNFD).HMNFD
	if h.Unit != "cray-orca" || len(h.NCNGroups) != 1 || h.NCNGroups[0] != "ncn-w00[0-4]-can.local" {
		t.Errorf("csm-1.2 hmnfd %+v", h)
	}
	if p := cfg.Plan(api.FAS); p.Procedure != api.RunFASLoaderAPI {
		t.Errorf("csm-1.2 fas %+v", p)
	}
	cfg = Default()
	if err := Parse([]byte("profile: csm-1.5\nservices:\n  hmnfd:\n    unit: my-orca\n"), &cfg); err != nil {
		t.Fatal(err)
	}
	for _, s := range []api.Service{api.REDS, api.CRUS, api.CPS, api.ExternalDNS, api.BSS} {
		if p := cfg.Plan(s); p.Procedure != api.NotInRelease || !strings.Contains(p.Reason, "CSM 1.5") {
			t.Errorf("csm-1.5 %s: %+v", s, p)
		}
	}
	if u := cfg.Plan(api.HMNFD).HMNFD.Unit; u != "my-orca" {
		t.Errorf("the file's own value must win over the profile: %s", u)
	}
}

func TestFileOverridesOnlyWhatItNames(t *testing.T) {
	cfg := Default()
	err := Parse([]byte("services:\n  bss:\n    job: reds-init-v2\n    completeTimeout: 45m\npollInterval: 1s\n"), &cfg)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Services.BSS.Job != "reds-init-v2" || time.Duration(cfg.Services.BSS.CompleteTimeout) != 45*time.Minute || cfg.Services.BSS.Namespace != "services" {
		t.Errorf("bss %+v", cfg.Services.BSS)
	}
	if time.Duration(cfg.PollInterval) != time.Second || cfg.Services.FAS.Job != "cray-fas-loader" {
		t.Error("other values must keep their defaults")
	}
}

// TestBadConfigIsRefusedWithTheKeyAndTheFix: one case per kind of bad value.
func TestBadConfigIsRefusedWithTheKeyAndTheFix(t *testing.T) {
	cases := map[string]struct{ yaml, want string }{
		"malformed YAML":   {"services: [", "not valid YAML: yaml: line 1: did not find expected node content: fix the file's syntax"},
		"unknown key":      {"services:\n  bss:\n    jobb: x\n", `unknown key "jobb" (docs/configuration.md lists the keys)`},
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
		"heartbeat too short":      {"heartbeatTimeout: 4s\n", "set csm.timeout to 1.333s or less, or heartbeatTimeout above 24s"},
		"unknown profile":          {"profile: csm-2.0\n", `profile: "csm-2.0" is not one of csm-1.0, csm-1.2, csm-1.5`},
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
	if cfg, err := Load(""); err != nil || cfg.Services.BSS.Job != "cray-reds-init" {
		t.Errorf("no file: %v", err)
	}
}
