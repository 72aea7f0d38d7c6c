package bssrestore_test

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/workflow"

	"github.com/csmops/etcd-repopulate/internal/api"
	"github.com/csmops/etcd-repopulate/internal/badinput"
	"github.com/csmops/etcd-repopulate/internal/csm"
	"github.com/csmops/etcd-repopulate/internal/csmemu"
	"github.com/csmops/etcd-repopulate/procedures/bssrestore"
	"github.com/csmops/etcd-repopulate/workflows/procedure"
)

// walk is bss's child workflow walking restore-bss-from-snapshot.
func walk(ctx workflow.Context, in procedure.Input) (api.ServiceStatus, error) {
	return procedure.Walk(ctx, in, bssrestore.Procedure, nil, nil)
}

// bssRun is one child run of bss on CSM 1.5 against an emulator whose BSS
// held 4 computes when the snapshot was taken and has lost 3 since, and a
// real API server holding BSS's etcd backup CronJob, last successful 5
// hours before the run.
type bssRun struct {
	e      *csmemu.Emulator
	before []csm.BootParams
	lost   []string
	in     procedure.Input
	acts   *bssrestore.Activities
}

func newBSSRun(t *testing.T, withSnapshot, withBSS bool) *bssRun {
	t.Helper()
	e, a := emu(t, 4)
	c := kubeCluster(t)
	a.Kube = kubeActs(c.Config).Kube
	ref := snapshotter(t, c, time.Now().Add(-5*time.Hour))
	r := &bssRun{e: e, before: e.BootParams(), acts: a}
	r.in = procedure.Input{RunID: "bss-restore-test", Plan: api.ServicePlan{Service: api.BSS, Procedure: api.RestoreBSSFromSnapshot, Release: api.CSM15,
		EtcdBackup: ref, Timings: api.Timings{Wait: time.Minute, Delete: time.Minute, Poll: time.Second, Heartbeat: 10 * time.Second, Attempts: 2}}}
	if withSnapshot {
		r.in.Snapshot = &api.SnapshotInput{Dir: "/var/tmp/snap", Taken: time.Now().Add(-26 * time.Hour)}
		if withBSS {
			r.in.Snapshot.BootParameters, r.in.Snapshot.BootParametersSaved = saved(t, e), true
		}
	}
	// The rebuild: BSS keeps one compute of four.
	var keep []csm.BootParams
	for _, b := range r.before {
		if h := b.Host(); h != "" {
			if len(keep) == 0 {
				keep = append(keep, b)
			} else {
				r.lost = append(r.lost, h)
			}
		}
	}
	if err := e.SetBootParams(keep); err != nil {
		t.Fatal(err)
	}
	e.ResetCounters()
	return r
}

// run walks the procedure in the test environment; decide, if not "",
// is sent to gate bss-restore once it waits.
func (r *bssRun) run(t *testing.T, decide api.Decision) (api.ServiceStatus, error) {
	t.Helper()
	var suite testsuite.WorkflowTestSuite
	env := suite.NewTestWorkflowEnvironment()
	env.RegisterWorkflow(walk)
	for name, fn := range bssrestore.Procedure.Activities(r.acts.Kube, r.acts.CSM) {
		env.RegisterActivityWithOptions(fn, activity.RegisterOptions{Name: name})
	}
	if decide != "" {
		env.RegisterDelayedCallback(func() {
			env.SignalWorkflow(api.GateDecisionSignal, api.GateDecision{Gate: api.GateBSSRestore, Decision: decide, By: "ops", Note: "checked the ages"})
		}, time.Minute)
	}
	env.ExecuteWorkflow(walk, r.in)
	if !env.IsWorkflowCompleted() {
		t.Fatal("the workflow did not complete")
	}
	var st api.ServiceStatus
	err := env.GetWorkflowResult(&st)
	if err != nil {
		var appErr *temporal.ApplicationError
		if errors.As(err, &appErr) && appErr.HasDetails() {
			_ = appErr.Details(&st)
		}
	}
	return st, err
}

func (r *bssRun) puts(t *testing.T) int {
	t.Helper()
	return r.e.Requests(csm.PathBSSBootParameters)
}

func step(st api.ServiceStatus, name string) api.StepStatus {
	for _, s := range st.Steps {
		if s.Name == name {
			return s
		}
	}
	return api.StepStatus{}
}

// TestApprovedRestoreWritesAndListsTheMissingEntries: approved, the three
// lost hosts are written, equal to the snapshot, and the report lists
// each; the gate showed both ages and the hosts it would write.
func TestApprovedRestoreWritesAndListsTheMissingEntries(t *testing.T) {
	r := newBSSRun(t, true, true)
	st, err := r.run(t, api.Approve)
	if err != nil || st.State != api.Done {
		t.Fatalf("status %+v, err %v", st, err)
	}
	after := hostEntries(r.e)
	for _, b := range r.before {
		if h := b.Host(); h != "" && !b.Equal(after[h]) {
			t.Errorf("host %s: %+v, want the snapshot's %+v", h, after[h], b)
		}
	}
	written := step(st, bssrestore.StepRestore).Message
	for _, h := range r.lost {
		if !strings.Contains(written, h) {
			t.Errorf("the report does not list %s as written: %q", h, written)
		}
	}
	if s := step(st, bssrestore.StepCheck); s.State != api.Done || !strings.Contains(s.Message, "all 3 hosts written are as the snapshot saved them") {
		t.Errorf("read-back step: %+v", s)
	}
	details := st.Gates[0].Details
	for _, want := range []string{"/var/tmp/snap", "(26h0m0s ago)", "cray-bss-bitnami-etcd-snapshotter", "5h0m0s ago", "missing (3): " + strings.Join(r.lost, ",")} {
		if !strings.Contains(details, want) {
			t.Errorf("gate details do not say %q:\n%s", want, details)
		}
	}
	if a := st.Gates[0].Action; !strings.Contains(a, "from the snapshot taken 26h0m0s ago") || !strings.Contains(a, "the newest etcd backup of BSS is 5h0m0s old") {
		t.Errorf("gate action (what status prints) lacks an age: %s", a)
	}
	if st.Gates[0].State != api.GateApproved || len(st.FollowUps) != 0 {
		t.Errorf("gate %+v, follow-ups %v", st.Gates[0], st.FollowUps)
	}
}

// TestRejectedRestoreWritesNothing: rejected, BSS is left as the rebuild
// left it, and the service is left to the etcd backup restore.
func TestRejectedRestoreWritesNothing(t *testing.T) {
	r := newBSSRun(t, true, true)
	st, err := r.run(t, api.Reject)
	if err != nil || st.State != api.Skipped {
		t.Fatalf("status %+v, err %v", st, err)
	}
	// The comparison read BSS; nothing was written.
	if n := r.puts(t); n != 1 {
		t.Errorf("%d requests to BSS, want the comparison's GET only", n)
	}
	if hosts := hostEntries(r.e); len(hosts) != 1 {
		t.Errorf("BSS holds %d hosts after the rejection, want the 1 the rebuild left", len(hosts))
	}
	if !slices.Contains(st.FollowUps, bssrestore.EtcdBackupFollowUp) || !strings.Contains(st.Message, "rejected by ops: checked the ages: nothing was written to BSS") {
		t.Errorf("status %q, follow-ups %v", st.Message, st.FollowUps)
	}
	for _, name := range []string{api.GateBSSRestore, bssrestore.StepRestore, bssrestore.StepCheck} {
		if s := step(st, name); s.State != api.Skipped {
			t.Errorf("step %s: %+v, want skipped", name, s)
		}
	}
}

// TestWithoutSnapshotBSSIsLeftToItsEtcdBackup: no snapshot, as before the
// procedure existed: skipped with the etcd backup restore as follow-up,
// BSS not even read.
func TestWithoutSnapshotBSSIsLeftToItsEtcdBackup(t *testing.T) {
	r := newBSSRun(t, false, false)
	st, err := r.run(t, "")
	if err != nil || st.State != api.Skipped || st.Message != bssrestore.NotRestoredReason || !slices.Equal(st.FollowUps, []string{bssrestore.EtcdBackupFollowUp}) {
		t.Fatalf("status %+v, err %v", st, err)
	}
	if len(st.Steps) != 0 || len(st.Gates) != 0 || r.puts(t) != 0 {
		t.Errorf("steps %v, gates %v, %d requests to BSS; want none", st.Steps, st.Gates, r.puts(t))
	}
}

// TestSnapshotWithoutBootParametersOnCSM15: the service fails with
// what is missing and how to get it, before reading or writing BSS.
func TestSnapshotWithoutBootParametersOnCSM15(t *testing.T) {
	r := newBSSRun(t, true, false)
	st, err := r.run(t, "")
	var appErr *temporal.ApplicationError
	if !errors.As(err, &appErr) || st.State != api.Failed {
		t.Fatalf("status %+v, err %v", st, err)
	}
	msg := step(st, bssrestore.StepCompare).Message
	for _, want := range []string{"/var/tmp/snap", "bss-bootparameters.json", "repopulate snapshot --out DIR", "nothing was changed"} {
		if !strings.Contains(msg, want) {
			t.Errorf("message does not say %q: %s", want, msg)
		}
	}
	if r.puts(t) != 0 {
		t.Errorf("%d requests to BSS, want none", r.puts(t))
	}
	badinput.Record(t, badinput.Case{Area: badinput.Request, Input: "bss on CSM 1.5 with a snapshot that has no bss-bootparameters.json (the run's input carries none)",
		Message: msg, Exit: "service bss fails at step " + bssrestore.StepCompare + " (" + bssrestore.ErrNoBootParameters + ")", Unchanged: "no request to BSS (emulator's request count 0)"})
}

// TestDryRunReadsAndWritesNothing: a dry-run compares and reads the
// backup's age, then says what approval would write, and writes nothing.
func TestDryRunReadsAndWritesNothing(t *testing.T) {
	r := newBSSRun(t, true, true)
	r.in.DryRun = true
	st, err := r.run(t, "")
	if err != nil || st.State != api.Done {
		t.Fatalf("status %+v, err %v", st, err)
	}
	if n := r.puts(t); n != 1 {
		t.Errorf("%d requests to BSS, want the comparison's GET only", n)
	}
	if s := step(st, bssrestore.StepRestore); s.State != api.Skipped || !strings.Contains(s.Message, "dry-run: would write the boot parameters of 3 hosts") {
		t.Errorf("restore step: %+v", s)
	}
	if s := step(st, bssrestore.StepEtcdBackupAge); s.State != api.Done {
		t.Errorf("backup age step: %+v", s)
	}
}
