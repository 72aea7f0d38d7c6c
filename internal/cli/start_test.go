package cli

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/csmops/etcd-repopulate/internal/api"
	"github.com/csmops/etcd-repopulate/internal/badinput"
	"github.com/csmops/etcd-repopulate/internal/plan"
)

// noTemporal are global flags that make any dial fail (exit 1): a start
// --services auto that exits 0 or with its own message started nothing.
var noTemporal = []string{"--address", "127.0.0.1:1", "--dial-timeout", "1s"}

// TestStartAutoStartsNothing: start --services auto takes plan's verdicts
// and starts nothing when no service lost data (exit 0, saying so) or when
// no service could be decided (exit 1, as plan); a bad plan input is
// refused like plan refuses it. Temporal is never dialled.
func TestStartAutoStartsNothing(t *testing.T) {
	cluster := simulatedCSM10(t)
	_, cfg := csm10Gateway(t)
	kc := cluster.Kubeconfig
	dir := filepath.Join(t.TempDir(), "snap")
	if code, _, errOut := runPlanCLI(t, "snapshot", "--out", dir, "--config", cfg, "--kubeconfig", kc); code != 0 {
		t.Fatalf("snapshot: exit %d: %s", code, errOut)
	}

	// Nothing wiped: meds cannot tell (its etcd is unconfirmed), the rest is intact.
	code, out, errOut := runPlanCLI(t, append(noTemporal, "start", "--services", "auto", "--snapshot", dir, "--config", cfg, "--kubeconfig", kc)...)
	t.Logf("nothing wiped:\n%s", out)
	for _, want := range []string{"Chosen by plan (--services auto; release csm-1.0, reference: the snapshot " + dir, "  bss          intact",
		"  meds         cannot tell  whether MEDS keeps data in etcd is unconfirmed", "nothing to start: no service is known to have lost data\ncannot tell for meds"} {
		if code != 0 || !strings.Contains(out, want) {
			t.Errorf("exit %d, output lacks %q:\n%s\n%s", code, want, out, errOut)
		}
	}
	if strings.Contains(out, "started run") || errOut != "" {
		t.Errorf("something was started or complained about:\n%s\n%s", out, errOut)
	}
	badinput.Record(t, badinput.Case{Area: badinput.Cluster, Input: "start --services auto when plan finds no service that lost data", Message: badinput.Line(out, "nothing to start"),
		Exit: fmt.Sprint(code), Unchanged: "no run started: Temporal was never dialled (--address 127.0.0.1:1 would have exited 1)"})

	code, out, _ = runPlanCLI(t, append(noTemporal, "start", "--services", "auto", "--snapshot", dir, "--config", cfg, "--kubeconfig", kc, "-o", "json")...)
	var js startedJSON
	if err := json.Unmarshal([]byte(out), &js); code != 0 || err != nil || js.Started == nil || *js.Started || js.RunID != "" ||
		js.ChosenByPlan == nil || len(js.ChosenByPlan.Services) != 9 || !strings.HasPrefix(js.Message, "nothing to start") {
		t.Errorf("-o json: exit %d %v\n%s", code, err, out)
	}

	// Nothing can be decided: the CSM API and Kubernetes are out of reach.
	t.Setenv("KUBECONFIG", "")
	t.Setenv("KUBERNETES_SERVICE_HOST", "")
	unreachable := CSMConfig(t, "http://127.0.0.1:1")
	code, out, errOut = runPlanCLI(t, append(noTemporal, "start", "--services", "auto", "--release", "csm-1.0", "--since", "1h", "--config", unreachable)...)
	want := "--services auto: no service could be decided: every verdict is cannot tell"
	if code != ExitFailed || !strings.Contains(errOut, want) || strings.Contains(out, "started run") {
		t.Fatalf("exit %d\nstdout %s\nstderr %s", code, out, errOut)
	}
	badinput.Record(t, badinput.Case{Area: badinput.Cluster, Input: "start --services auto where every verdict is cannot tell (CSM API and Kubernetes unreachable)",
		Message: badinput.Line(errOut, want), Exit: fmt.Sprint(code), Unchanged: "no run started: Temporal was never dialled; the verdicts and their reasons are printed"})

	// A plan input error.
	noURL := filepath.Join(t.TempDir(), "nourl.yaml")
	os.WriteFile(noURL, []byte("release: csm-1.0\n"), 0o600)
	code, out, errOut = runPlanCLI(t, append(noTemporal, "start", "--services", "auto", "--config", noURL)...)
	if code != ExitBadInput || out != "" || !strings.Contains(errOut, "csm.baseURL is not set") {
		t.Fatalf("exit %d\nstdout %s\nstderr %s", code, out, errOut)
	}
	badinput.Record(t, badinput.Case{Area: badinput.CLI, Input: "start --services auto --config FILE, FILE without csm.baseURL", Message: badinput.Line(errOut, "csm.baseURL is not set"),
		Exit: fmt.Sprint(code), Unchanged: "nothing printed, no run started"})
}

// TestNothingToDoWhenEveryServiceIsIntact: the words when no service lost
// data and none is in doubt.
func TestNothingToDoWhenEveryServiceIsIntact(t *testing.T) {
	rep := planReport{Services: []servicePlan{{Service: api.BSS, Decision: plan.Decision{Verdict: plan.Intact}}, {Service: api.HMNFD, Decision: plan.Decision{Verdict: plan.Intact}}}}
	if got := nothingToStart(rep); got != "nothing to do: every service is intact" {
		t.Errorf("every service intact: %q", got)
	}
	rep.Services[1].Verdict = plan.CannotTell
	if got := nothingToStart(rep); got != "nothing to start: no service is known to have lost data\ncannot tell for hmnfd: check them by hand (reasons above)" {
		t.Errorf("hmnfd cannot tell: %q", got)
	}
}

// TestChosenByPlanInStatus: status and report show the verdicts a run was
// chosen by, one line per service, with the reference.
func TestChosenByPlanInStatus(t *testing.T) {
	st := api.RunStatus{RunID: "r", State: api.Running, Services: []api.ServiceStatus{{Service: api.BSS, State: api.Running}},
		ChosenByPlan: &api.PlanVerdicts{Release: api.CSM10, Reference: time.Date(2026, 12, 1, 8, 0, 0, 0, time.UTC), ReferenceFrom: "the snapshot /snap",
			Services: []api.PlanVerdict{{Service: api.BSS, Verdict: "lost data", Reason: "BSS boot parameters: 0 now, 4 in the snapshot"},
				{Service: api.MEDS, Verdict: "cannot tell", Reason: "unconfirmed"}}}}
	var b bytes.Buffer
	writeText(&b, st)
	for _, want := range []string{"Chosen by plan (--services auto; release csm-1.0, reference: the snapshot /snap, 2026-12-01T08:00:00Z):\n",
		"  bss   lost data    BSS boot parameters: 0 now, 4 in the snapshot\n", "  meds  cannot tell  unconfirmed\n"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("status lacks %q:\n%s", want, b.String())
		}
	}
}

// TestStartAutoHelpAndCompletion: start --help explains auto; completion
// offers auto first, alone.
func TestStartAutoHelpAndCompletion(t *testing.T) {
	code, out, _ := runPlanCLI(t, "start", "--help")
	for _, want := range []string{"start [--services LIST|auto]", "--services auto runs repopulate plan first", `exactly the services whose verdict is "lost data"`,
		"nothing to do:\nevery service is intact", "with --services auto, for plan: when the rebuild started"} {
		if code != 0 || !strings.Contains(out, want) {
			t.Errorf("start --help lacks %q:\n%s", want, out)
		}
	}
	complete := func(arg string) []string {
		_, out, _ := runPlanCLI(t, append(noTemporal, "__complete", "start", "--services", arg)...)
		var got []string
		for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
			if !strings.HasPrefix(l, ":") {
				got = append(got, strings.SplitN(l, "\t", 2)[0])
			}
		}
		return got
	}
	if got := complete(""); len(got) != 10 || got[0] != "auto" {
		t.Errorf("--services offered %v, want auto and the nine", got)
	}
	if got := complete("bss,"); slices.Contains(got, "bss,auto") {
		t.Errorf("auto offered after a name: %v", got)
	}
}
