package procedure

import (
	"testing"
	"time"

	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	"github.com/csmops/etcd-repopulate/internal/api"
)

// A service its procedure skips (absent, or a person chose the runbook's
// way) has no result to check: its data check step is skipped, not run
// and not left pending.
func TestASkippedServiceIsNotChecked(t *testing.T) {
	skips := Procedure{Name: "skips", Steps: FixedSteps("look"), Run: func(w *Run, ctx workflow.Context) error {
		w.Finish(ctx, "look", api.Skipped, "nothing here", 0)
		w.Status.State, w.Status.Message = api.Skipped, "absent"
		return nil
	}}
	checked := false
	check := &Check{Name: "c", Step: "data-check", Run: func(*Run, workflow.Context) error { checked = true; return nil }}
	var suite testsuite.WorkflowTestSuite
	env := suite.NewTestWorkflowEnvironment()
	// Under -race on a loaded machine a workflow task can take over the
	// default second of wall time without any deadlock.
	env.SetWorkerOptions(worker.Options{DeadlockDetectionTimeout: time.Minute})
	env.RegisterWorkflowWithOptions(func(ctx workflow.Context, in Input) (api.ServiceStatus, error) {
		return Walk(ctx, in, skips, check, nil)
	}, workflow.RegisterOptions{Name: "walk"})
	env.ExecuteWorkflow("walk", Input{RunID: "r", Plan: api.ServicePlan{Service: "x", Procedure: "skips"}})
	var st api.ServiceStatus
	if err := env.GetWorkflowResult(&st); err != nil {
		t.Fatal(err)
	}
	last := st.Steps[len(st.Steps)-1]
	if checked || st.State != api.Skipped || last.Name != "data-check" || last.State != api.Skipped || st.Evidence != nil {
		t.Errorf("checked %v, status %s, last step %+v, evidence %+v; want skipped, check skipped and no evidence", checked, st.State, last, st.Evidence)
	}
}
