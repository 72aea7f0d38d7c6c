package workflows

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	sdkpb "go.temporal.io/api/sdk/v1"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/workflow"

	"github.com/csmops/etcd-repopulate/internal/api"
	"github.com/csmops/etcd-repopulate/internal/badinput"
	"github.com/csmops/etcd-repopulate/procedures/cps"
	"github.com/csmops/etcd-repopulate/procedures/orca"
)

// decision is the outcome of one Update sent to the parent.
type decision struct {
	rejected error // the validator refused it
	result   api.GateStatus
	err      error
}

// decide sends the DecideGateUpdate at virtual time `at` and records the outcome.
func decide(env *testsuite.TestWorkflowEnvironment, at time.Duration, d api.GateDecision, out *decision) {
	env.RegisterDelayedCallback(func() {
		env.UpdateWorkflow(api.DecideGateUpdate, d.Gate+string(d.Decision)+at.String(), &testsuite.TestUpdateCallback{
			OnAccept: func() {},
			OnReject: func(err error) { out.rejected = err },
			OnComplete: func(r any, err error) {
				if gs, ok := r.(api.GateStatus); ok {
					out.result = gs
				}
				out.err = err
			},
		}, d)
	}, at)
}

// recordRefusal records a decision the validator refused, once the test's
// assertions about it have run; a decision that was not refused has already
// failed the test.
func recordRefusal(t *testing.T, input string, d decision, unchanged string) {
	t.Helper()
	if d.rejected == nil {
		return
	}
	badinput.Record(t, badinput.Case{Area: badinput.Request, Input: input, Message: d.rejected.Error(),
		Exit: "Update rejected by the validator", Unchanged: "refused by the validator; " + unchanged})
}

func cpsRun(t *testing.T, configure ...func(*kubeFake)) (*testsuite.TestWorkflowEnvironment, *kubeFake) {
	t.Helper()
	return newEnv(t, append([]func(*kubeFake){func(f *kubeFake) { f.cpsNodes = []string{"x1000c0s1b0n0", "x1000c0s2b0n0"} }}, configure...)...)
}

func TestCPSGatesApprovedInOrder(t *testing.T) {
	env, f := cpsRun(t)
	var early, unmount, twice, reboot decision
	// Before the service reaches cps-reboot, approving it must be refused.
	decide(env, time.Minute, api.GateDecision{Gate: api.GateCPSReboot, Decision: api.Approve, By: "ops@ncn-m001"}, &early)
	decide(env, 2*time.Minute, api.GateDecision{Gate: api.GateCPSUnmount, Decision: api.Approve, By: "ops@ncn-m001", Note: "nodes drained"}, &unmount)
	decide(env, 3*time.Minute, api.GateDecision{Gate: api.GateCPSUnmount, Decision: api.Approve, By: "other@ncn-m002"}, &twice)
	decide(env, 4*time.Minute, api.GateDecision{Gate: api.GateCPSReboot, Decision: api.Approve, By: "ops@ncn-m001", Note: "cps etcd healthy"}, &reboot)
	env.ExecuteWorkflow(api.RepopulateWorkflow, api.Request{Services: []string{"cps"}})
	if err := env.GetWorkflowError(); err != nil {
		t.Fatal(err)
	}
	if early.rejected == nil || !strings.Contains(early.rejected.Error(), "gate cps-reboot of service cps is not waiting yet") {
		t.Errorf("approving a gate not reached yet: rejected = %v", early.rejected)
	}
	if unmount.rejected != nil || unmount.err != nil || unmount.result.State != api.GateApproved || unmount.result.By != "ops@ncn-m001" {
		t.Errorf("approve cps-unmount: %+v", unmount)
	}
	if twice.rejected == nil || !strings.Contains(twice.rejected.Error(), "is not waiting: it was approved by ops@ncn-m001") {
		t.Errorf("approving twice: rejected = %v", twice.rejected)
	}
	if reboot.rejected != nil || reboot.err != nil {
		t.Errorf("approve cps-reboot: %+v", reboot)
	}
	var report api.Report
	if err := env.GetWorkflowResult(&report); err != nil {
		t.Fatal(err)
	}
	cps := serviceState(t, report, api.CPS)
	if cps.State != api.Done {
		t.Fatalf("cps %s: %s", cps.State, cps.Message)
	}
	if len(f.bosSessions) != 2 || f.bosSessions[0].Operation != "shutdown" || f.bosSessions[1].Operation != "boot" ||
		f.bosSessions[0].Name == f.bosSessions[1].Name || len(f.bosSessions[0].Xnames) != 2 {
		t.Errorf("BOS sessions %+v, want one shutdown then one boot of both nodes", f.bosSessions)
	}
	if len(f.nodeWaits) != 2 || f.nodeWaits[0].States[0] != "Off" || f.nodeWaits[1].States[0] != "Ready" {
		t.Errorf("HSM waits %+v, want Off then Ready", f.nodeWaits)
	}
	g := cps.Gates[0]
	if g.State != api.GateApproved || g.By != "ops@ncn-m001" || g.Note != "nodes drained" || g.Decided.Sub(g.Opened) < time.Minute ||
		!strings.Contains(g.ApproveCommand, "repopulate approve default-test-workflow-id cps-unmount") {
		t.Errorf("cps-unmount in the report: %+v", g)
	}
	if cps.Gates[1].State != api.GateApproved || cps.Gates[1].Note != "cps etcd healthy" {
		t.Errorf("cps-reboot in the report: %+v", cps.Gates[1])
	}
	recordRefusal(t, "approve cps-reboot before the run reaches it", early, "the gate was approved later, and only then were the nodes booted")
	recordRefusal(t, "approve cps-unmount a second time", twice, "the report keeps the first approval (by ops@ncn-m001)")
}

func TestUnknownGateAndBadDecisionsAreRefused(t *testing.T) {
	env, f := cpsRun(t)
	var unknown, noReason, bogus, reject decision
	decide(env, time.Minute, api.GateDecision{Gate: "cps-unmnt", Decision: api.Approve}, &unknown)
	decide(env, 2*time.Minute, api.GateDecision{Gate: api.GateCPSUnmount, Decision: api.Reject}, &noReason)
	decide(env, 3*time.Minute, api.GateDecision{Gate: api.GateCPSUnmount, Decision: "maybe"}, &bogus)
	decide(env, 4*time.Minute, api.GateDecision{Gate: api.GateCPSUnmount, Decision: api.Reject, By: "ops", Note: "jobs still running"}, &reject)
	env.ExecuteWorkflow(api.RepopulateWorkflow, api.Request{Services: []string{"cps"}})
	if unknown.rejected == nil || !strings.Contains(unknown.rejected.Error(), `has no gate "cps-unmnt"; its gates: cps-unmount (cps, waiting), cps-reboot (cps, pending)`) {
		t.Errorf("unknown gate: %v", unknown.rejected)
	}
	if noReason.rejected == nil || !strings.Contains(noReason.rejected.Error(), "needs a reason (--reason TEXT)") {
		t.Errorf("reject without reason: %v", noReason.rejected)
	}
	if bogus.rejected == nil || !strings.Contains(bogus.rejected.Error(), `decision "maybe" must be approve or reject`) {
		t.Errorf("bogus decision: %v", bogus.rejected)
	}
	if reject.rejected != nil {
		t.Fatalf("reject refused: %v", reject.rejected)
	}
	// Rejecting cps-unmount fails the service before anything is shut down.
	err := env.GetWorkflowError()
	var appErr *temporal.ApplicationError
	if !errors.As(err, &appErr) || appErr.Type() != api.ServicesFailedError {
		t.Fatalf("run error %v, want %s", err, api.ServicesFailedError)
	}
	var report api.Report
	if err := appErr.Details(&report); err != nil {
		t.Fatal(err)
	}
	cps := serviceState(t, report, api.CPS)
	if cps.State != api.Failed || !strings.Contains(cps.Message, "rejected by ops: jobs still running") || cps.Gates[0].State != api.GateRejected {
		t.Errorf("cps after rejection: %s %q gates %+v", cps.State, cps.Message, cps.Gates)
	}
	if len(f.bosSessions) != 0 || len(cps.FollowUps) != 0 {
		t.Errorf("rejected before shutdown: sessions %v follow-ups %v, want none", f.bosSessions, cps.FollowUps)
	}
	// Each refusal left cps-unmount waiting: the later reject was accepted.
	for _, c := range []struct {
		input string
		d     decision
	}{
		{"decide gate cps-unmnt (no such gate)", unknown},
		{"reject cps-unmount without a reason", noReason},
		{"decide cps-unmount with decision maybe", bogus},
	} {
		recordRefusal(t, c.input, c.d, "the gate stayed waiting (a later reject was accepted) and no BOS session was started")
	}
}

func TestRejectingRebootLeavesTheBootCommand(t *testing.T) {
	env, f := cpsRun(t)
	var unmount, reboot decision
	decide(env, time.Minute, api.GateDecision{Gate: api.GateCPSUnmount, Decision: api.Approve, By: "ops"}, &unmount)
	decide(env, 2*time.Minute, api.GateDecision{Gate: api.GateCPSReboot, Decision: api.Reject, By: "ops", Note: "CPS still broken"}, &reboot)
	env.ExecuteWorkflow(api.RepopulateWorkflow, api.Request{Services: []string{"cps"}})
	var appErr *temporal.ApplicationError
	if err := env.GetWorkflowError(); !errors.As(err, &appErr) {
		t.Fatalf("run error %v, want the cps service failed", err)
	}
	var report api.Report
	_ = appErr.Details(&report)
	cps := serviceState(t, report, api.CPS)
	if len(f.bosSessions) != 1 || len(cps.FollowUps) != 1 ||
		!strings.Contains(cps.FollowUps[0], "--template-name cos-2.0 --operation boot --limit x1000c0s1b0n0,x1000c0s2b0n0") {
		t.Errorf("sessions %v follow-ups %q, want the manual boot command", f.bosSessions, cps.FollowUps)
	}
}

func TestGateDeadline(t *testing.T) {
	for _, onDeadline := range []string{api.OnDeadlineFail, api.OnDeadlineSkip} {
		t.Run(onDeadline, func(t *testing.T) {
			env, f := newEnv(t, func(f *kubeFake) {
				f.planHook = func(p *api.ServicePlan) { p.Gates = api.GatePolicy{Deadline: 2 * time.Hour, OnDeadline: onDeadline} }
			})
			env.ExecuteWorkflow(api.RepopulateWorkflow, api.Request{Services: []string{"bos"}})
			var report api.Report
			err := env.GetWorkflowError()
			if onDeadline == api.OnDeadlineFail {
				var appErr *temporal.ApplicationError
				if !errors.As(err, &appErr) {
					t.Fatalf("run error %v, want bos failed", err)
				}
				_ = appErr.Details(&report)
			} else if err != nil {
				t.Fatal(err)
			} else {
				_ = env.GetWorkflowResult(&report)
			}
			bos := serviceState(t, report, api.BOS)
			want := map[string]api.State{api.OnDeadlineFail: api.Failed, api.OnDeadlineSkip: api.Skipped}[onDeadline]
			if bos.State != want || bos.Gates[0].State != api.GateExpired || !strings.Contains(bos.Steps[0].Message, "within gates.deadline (2h0m0s)") {
				t.Errorf("bos after the deadline: %s %q gate %+v step %+v", bos.State, bos.Message, bos.Gates[0], bos.Steps[0])
			}
			if f.checkedTmpls != 0 {
				t.Error("templates checked although nobody approved")
			}
		})
	}
}

func TestDecisionBySignalIsRoutedToTheChild(t *testing.T) {
	env, f := newEnv(t)
	env.RegisterDelayedCallback(func() {
		// What the Web UI's "Send a signal" or `temporal workflow signal` sends.
		env.SignalWorkflow(api.GateDecisionSignal, api.GateDecision{Gate: api.GateBOSTemplates, Decision: api.Approve, By: "web-ui"})
	}, 72*time.Hour) // a gate waits for days without a deadline
	env.ExecuteWorkflow(api.RepopulateWorkflow, api.Request{Services: []string{"bos"}})
	if err := env.GetWorkflowError(); err != nil {
		t.Fatal(err)
	}
	var report api.Report
	_ = env.GetWorkflowResult(&report)
	bos := serviceState(t, report, api.BOS)
	if g := bos.Gates[0]; g.Decided.Sub(g.Opened) < 72*time.Hour {
		t.Errorf("gate decided after %s, want the three days it waited", g.Decided.Sub(g.Opened))
	}
	if bos.State != api.Done || bos.Gates[0].By != "web-ui" || f.checkedTmpls != 1 {
		t.Errorf("bos: %s %q gate %+v checked %d", bos.State, bos.Message, bos.Gates[0], f.checkedTmpls)
	}
	if !strings.Contains(bos.Gates[0].Details, "PREPARE UAN BOOT SESSION TEMPLATES") {
		t.Errorf("bos-templates gate should carry the product-stream instructions: %q", bos.Gates[0].Details)
	}
}

func TestSnapshotReachesTheServicesThatUseIt(t *testing.T) {
	env, f := newEnv(t)
	snap := &api.SnapshotInput{
		Dir:              "/snap",
		SessionTemplates: []json.RawMessage{json.RawMessage(`{"name":"a"}`), json.RawMessage(`{"name":"b"}`)},
		SubscribedXnames: []string{"x1000c0s1b0n0", "x9000c0s1b0n0"},
		FASActions:       []api.SavedFASAction{{ActionID: "act-1", State: "running", Command: "update BMC firmware"}},
	}
	env.ExecuteWorkflow(api.RepopulateWorkflow, api.Request{Services: []string{"bos", "hmnfd", "fas"}, Snapshot: snap})
	if err := env.GetWorkflowError(); err != nil {
		t.Fatal(err)
	}
	var report api.Report
	_ = env.GetWorkflowResult(&report)
	if len(f.restored) != 1 || len(f.restored[0]) != 2 {
		t.Errorf("restored %v, want both templates", f.restored)
	}
	hmnfd := serviceState(t, report, api.HMNFD)
	if last := hmnfd.Steps[len(hmnfd.Steps)-1]; last.Name != orca.StepCompareSubs || last.State != api.Done {
		t.Errorf("hmnfd last step %+v, want %s done", last, orca.StepCompareSubs)
	}
	if strings.Join(f.verified, ",") != "x1000c0s1b0n0,x9000c0s1b0n0" {
		t.Errorf("last verification looked at %v, want the snapshot's subscribers", f.verified)
	}
	fas := serviceState(t, report, api.FAS)
	if !strings.Contains(strings.Join(fas.FollowUps, "\n"), "action act-1 (running): update BMC firmware") {
		t.Errorf("fas follow-ups %q, want the saved action", fas.FollowUps)
	}
}

// gates.onDeadline skip must not skip cps-reboot: the nodes are Off by
// then, and "skipped" would end the run done with them left off.
func TestSkipNeverAppliesToTheRebootGate(t *testing.T) {
	env, f := cpsRun(t, func(f *kubeFake) {
		f.planHook = func(p *api.ServicePlan) {
			p.Gates = api.GatePolicy{Deadline: 2 * time.Hour, OnDeadline: api.OnDeadlineSkip}
		}
	})
	var unmount decision
	decide(env, time.Minute, api.GateDecision{Gate: api.GateCPSUnmount, Decision: api.Approve, By: "ops"}, &unmount)
	env.ExecuteWorkflow(api.RepopulateWorkflow, api.Request{Services: []string{"cps"}})
	var appErr *temporal.ApplicationError
	if err := env.GetWorkflowError(); !errors.As(err, &appErr) || appErr.Type() != api.ServicesFailedError {
		t.Fatalf("run error %v, want %s: the nodes were left Off", env.GetWorkflowError(), api.ServicesFailedError)
	}
	var report api.Report
	_ = appErr.Details(&report)
	cps := serviceState(t, report, api.CPS)
	if cps.State != api.Failed || cps.Gates[1].State != api.GateExpired ||
		!strings.Contains(cps.Message, "2 CPS nodes may still be Off: x1000c0s1b0n0,x1000c0s2b0n0") ||
		!strings.Contains(cps.Message, "skip does not apply here") {
		t.Errorf("cps after cps-reboot expired: %s %q gates %+v", cps.State, cps.Message, cps.Gates)
	}
	if len(f.bosSessions) != 1 || len(cps.FollowUps) != 1 ||
		!strings.Contains(cps.FollowUps[0], "cray bos v2 sessions create --template-name cos-2.0 --operation boot --limit x1000c0s1b0n0,x1000c0s2b0n0") {
		t.Errorf("sessions %v follow-ups %q, want the exact boot command", f.bosSessions, cps.FollowUps)
	}
}

// BOS session names are unique per child execution, service, operation
// and group, and fit BOS v2's V2SessionName (read from the spec).
func TestBOSSessionNamesAreUniqueAndValid(t *testing.T) {
	spec, err := os.ReadFile("../../shared/csm-specs/bos-2.10.2-openapi.yaml")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?s)V2SessionName:.*?maxLength: (\d+)\s+pattern: '([^']+)'`).FindSubmatch(spec)
	if m == nil {
		t.Fatal("V2SessionName's maxLength and pattern not found in the BOS spec")
	}
	maxLen, _ := strconv.Atoi(string(m[1]))
	pattern := regexp.MustCompile(string(m[2]))
	seen := map[string]string{}
	for _, id := range []string{"00000000-0000-0000-0000-000000000000", "ffffffff-ffff-ffff-ffff-ffffffffffff", "6f1d2c8e-8f0a-4c1e-9a43-0b0f3d5e7a21", "6f1d2c8e-8f0a-4c1e-9a43-0b0f3d5e7a22", "default-test-run-id"} {
		for _, op := range []string{"shutdown", "boot"} {
			for _, g := range []int{0, 1, 999} {
				name := cps.BOSSessionNameOf(id, api.CPS, op, g)
				if len(name) > maxLen || !pattern.MatchString(name) {
					t.Errorf("%q (%d chars) breaks BOS's rule: at most %d characters matching %s", name, len(name), maxLen, pattern)
				}
				key := fmt.Sprintf("%s %s %d", id, op, g)
				if prev, dup := seen[name]; dup {
					t.Errorf("%s and %s share the name %s", prev, key, name)
				}
				seen[name] = key
				if cps.BOSSessionNameOf(id, api.CPS, op, g) != name {
					t.Errorf("%s: name not stable", key)
				}
			}
		}
	}
	// Two runs with the same run ID (the old FNV-32 scheme's weakness) differ
	// in their Temporal run IDs, so their sessions differ.
	if cps.BOSSessionNameOf("6f1d2c8e-8f0a-4c1e-9a43-0b0f3d5e7a21", api.CPS, "boot", 0) == cps.BOSSessionNameOf("6f1d2c8e-8f0a-4c1e-9a43-0b0f3d5e7a22", api.CPS, "boot", 0) {
		t.Error("names of two executions of one run ID must differ")
	}
}

// A run names its sessions after its child execution; a run started before
// the change keeps the names it used.
func TestBOSSessionNameVersions(t *testing.T) {
	for _, old := range []bool{false, true} {
		env, f := cpsRun(t)
		if old {
			env.OnGetVersion(cps.ChangeBOSSessionPerExecution, workflow.DefaultVersion, 1).Return(workflow.DefaultVersion)
		}
		var unmount, reboot decision
		decide(env, time.Minute, api.GateDecision{Gate: api.GateCPSUnmount, Decision: api.Approve, By: "ops"}, &unmount)
		decide(env, 2*time.Minute, api.GateDecision{Gate: api.GateCPSReboot, Decision: api.Approve, By: "ops"}, &reboot)
		env.ExecuteWorkflow(api.RepopulateWorkflow, api.Request{Services: []string{"cps"}})
		if err := env.GetWorkflowError(); err != nil {
			t.Fatal(err)
		}
		if len(f.bosSessions) != 2 {
			t.Fatalf("sessions %+v", f.bosSessions)
		}
		shutdown, boot := f.bosSessions[0].Name, f.bosSessions[1].Name
		if old {
			if shutdown != cps.BOSSessionName("default-test-workflow-id", "shutdown", 0) || boot != cps.BOSSessionName("default-test-workflow-id", "boot", 0) {
				t.Errorf("a run started before the change named its sessions %s, %s; want the FNV names it used", shutdown, boot)
			}
			continue
		}
		// The child's run ID is a fresh UUID here: both names carry the same one.
		id := strings.TrimSuffix(strings.TrimPrefix(shutdown, "cps-shutdown-"), "-0")
		if len(id) != 25 || boot != "cps-boot-"+id+"-0" {
			t.Errorf("sessions %s, %s; want cps-shutdown-<25 base-36 digits of the child's run ID>-0 and the boot one with the same digits", shutdown, boot)
		}
	}
}

// A gate of a service that has not started (cps waiting for bos) is
// listed; deciding it is refused with when it will open.
func TestGateOfAServiceNotStartedSaysWhenItOpens(t *testing.T) {
	env, f := cpsRun(t)
	var early, bos, reject decision
	decide(env, time.Minute, api.GateDecision{Gate: api.GateCPSUnmount, Decision: api.Approve, By: "ops"}, &early)
	decide(env, 2*time.Minute, api.GateDecision{Gate: api.GateBOSTemplates, Decision: api.Approve, By: "ops"}, &bos)
	decide(env, 3*time.Minute, api.GateDecision{Gate: api.GateCPSUnmount, Decision: api.Reject, By: "ops", Note: "not today"}, &reject)
	env.ExecuteWorkflow(api.RepopulateWorkflow, api.Request{Services: []string{"bos", "cps"}})
	if early.rejected == nil || !strings.Contains(early.rejected.Error(), "gate cps-unmount of service cps is not open yet: cps has not started (waiting for bos to finish first)") {
		t.Errorf("approving cps-unmount while cps waits for bos: %v", early.rejected)
	}
	if bos.rejected != nil || bos.err != nil || reject.rejected != nil || reject.err != nil {
		t.Errorf("later decisions: bos %+v, reject %+v", bos, reject)
	}
	if len(f.bosSessions) != 0 {
		t.Errorf("sessions %v: the early approval must not have counted", f.bosSessions)
	}
	recordRefusal(t, "approve cps-unmount while cps waits for bos", early, "cps later waited at cps-unmount and was rejected there; nothing was shut down")
}

// Decisions sent as signals (the Web UI's Send Signal dialog) that are
// refused are kept in status with the reason.
func TestRefusedSignalIsInStatus(t *testing.T) {
	env, _ := newEnv(t)
	env.RegisterDelayedCallback(func() {
		env.SignalWorkflow(api.GateDecisionSignal, map[string]string{"gate": "cps-rebot", "decision": "approve"})
		env.SignalWorkflow(api.GateDecisionSignal, map[string]string{"gate": api.GateBOSTemplates, "decision": "yes", "by": "web-ui"})
	}, time.Minute)
	var mid, later api.RunStatus
	env.RegisterDelayedCallback(func() {
		if v, err := env.QueryWorkflow(api.StatusQuery); err == nil {
			_ = v.Get(&mid)
		}
		for i := range 12 {
			env.SignalWorkflow(api.GateDecisionSignal, api.GateDecision{Gate: fmt.Sprintf("no-such-gate-%d", i), Decision: api.Approve})
		}
	}, 90*time.Second)
	env.RegisterDelayedCallback(func() {
		if v, err := env.QueryWorkflow(api.StatusQuery); err == nil {
			_ = v.Get(&later)
		}
		env.SignalWorkflow(api.GateDecisionSignal, api.GateDecision{Gate: api.GateBOSTemplates, Decision: api.Approve, By: "web-ui"})
	}, 2*time.Minute)
	env.ExecuteWorkflow(api.RepopulateWorkflow, api.Request{Services: []string{"bos"}})
	if err := env.GetWorkflowError(); err != nil {
		t.Fatal(err)
	}
	r := mid.RefusedDecisions
	if len(r) != 2 || r[0].Gate != "cps-rebot" || !strings.Contains(r[0].Reason, `has no gate "cps-rebot"; its gates: bos-templates (bos, waiting)`) ||
		r[1].By != "web-ui" || !strings.Contains(r[1].Reason, `decision "yes" must be approve or reject`) || r[1].At.IsZero() {
		t.Errorf("refused decisions in status: %+v", r)
	}
	if r := later.RefusedDecisions; len(r) != api.RefusedDecisionsKept || r[0].Gate != "no-such-gate-2" || r[9].Gate != "no-such-gate-11" {
		t.Errorf("after 14 refusals status keeps the latest %d: %+v", api.RefusedDecisionsKept, r)
	}
}

// A decision that reaches the child after its gate was decided another way
// is refused by the child, and the caller is told so instead of "decided".
func TestDecisionIsAcknowledgedByTheChild(t *testing.T) {
	env, f := newEnv(t, func(f *kubeFake) { f.checkTakes = time.Minute })
	var viaParent decision
	env.RegisterDelayedCallback(func() {
		// Someone approves on the child's own page ...
		env.SignalWorkflowByID("default-test-workflow-id/bos", api.GateDecisionSignal, api.GateDecision{Gate: api.GateBOSTemplates, Decision: api.Approve, By: "child-page"})
	}, time.Minute)
	// ... and, at the same moment, another person rejects through the parent.
	decide(env, time.Minute, api.GateDecision{Gate: api.GateBOSTemplates, Decision: api.Reject, By: "ops", Note: "wait"}, &viaParent)
	env.ExecuteWorkflow(api.RepopulateWorkflow, api.Request{Services: []string{"bos"}})
	if err := env.GetWorkflowError(); err != nil {
		t.Fatal(err)
	}
	var report api.Report
	_ = env.GetWorkflowResult(&report)
	bos := serviceState(t, report, api.BOS)
	if bos.Gates[0].State != api.GateApproved || bos.Gates[0].By != "child-page" || f.checkedTmpls != 1 {
		t.Fatalf("gate %+v", bos.Gates[0])
	}
	refused := viaParent.rejected
	if refused == nil {
		refused = viaParent.err
	}
	if refused == nil || viaParent.result.State == api.GateRejected ||
		!strings.Contains(refused.Error(), "gate bos-templates was already approved by child-page") && !strings.Contains(refused.Error(), "it was approved by child-page") {
		t.Errorf("the rejection through the parent: %+v (%v); want it refused, naming the approval that won", viaParent, refused)
	}
}

// The query, Update and signals carry descriptions (the Web UI shows them).
func TestHandlersCarryDescriptions(t *testing.T) {
	env, _ := newEnv(t)
	var meta *sdkpb.WorkflowMetadata
	env.RegisterDelayedCallback(func() {
		v, err := env.QueryWorkflow("__temporal_workflow_metadata")
		if err != nil {
			t.Errorf("metadata query: %v", err)
			return
		}
		meta = &sdkpb.WorkflowMetadata{}
		if err := v.Get(meta); err != nil {
			t.Errorf("metadata: %v", err)
		}
	}, time.Minute)
	env.RegisterDelayedCallback(func() {
		env.SignalWorkflow(api.GateDecisionSignal, api.GateDecision{Gate: api.GateBOSTemplates, Decision: api.Approve})
	}, 2*time.Minute)
	env.ExecuteWorkflow(api.RepopulateWorkflow, api.Request{Services: []string{"bos"}})
	if meta == nil {
		t.Fatal("no metadata")
	}
	described := map[string]string{}
	for _, d := range meta.GetDefinition().GetQueryDefinitions() {
		described["query "+d.GetName()] = d.GetDescription()
	}
	for _, d := range meta.GetDefinition().GetSignalDefinitions() {
		described["signal "+d.GetName()] = d.GetDescription()
	}
	for _, d := range meta.GetDefinition().GetUpdateDefinitions() {
		described["update "+d.GetName()] = d.GetDescription()
	}
	for _, name := range []string{"query " + api.StatusQuery, "signal " + api.GateDecisionSignal, "signal " + api.StepProgressSignal, "signal " + api.GateDecisionAckSignal, "update " + api.DecideGateUpdate} {
		if described[name] == "" {
			t.Errorf("%s has no description (definitions: %v)", name, described)
		}
	}
	if !strings.Contains(described["signal "+api.GateDecisionSignal], `{"gate":"GATE","decision":"approve"`) {
		t.Errorf("the gate-decision signal's description should show its JSON: %q", described["signal "+api.GateDecisionSignal])
	}
}
