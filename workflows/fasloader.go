package workflows

import (
	"fmt"

	"go.temporal.io/sdk/workflow"

	"github.com/csmops/etcd-repopulate/activities"
	"github.com/csmops/etcd-repopulate/internal/api"
	"github.com/csmops/etcd-repopulate/workflows/procedure"
)

// Steps of fas-loader-api.
const (
	StepStartFASLoader = "start-fas-loader"
	StepWaitFASLoader  = "wait-fas-loader"
)

var runFASLoaderProcedure = procedure.Procedure{
	Steps: procedure.FixedSteps(StepStartFASLoader, StepWaitFASLoader),
	Run:   runFASLoader,
}

// runFASLoader runs the FAS loader through the API (CSM 1.2 and later).
func runFASLoader(w *procedure.Run, ctx workflow.Context) error {
	plan := w.In.Plan
	req := activities.FASLoaderRequest{Budget: plan.Timings.Wait, Poll: plan.Timings.Poll}
	if w.In.DryRun {
		w.Finish(ctx, StepStartFASLoader, api.Skipped, "dry-Run: would POST /apis/fas/v1/loader/nexus (waiting while FAS answers 429)", 0)
		w.Finish(ctx, StepWaitFASLoader, api.Skipped, fmt.Sprintf("dry-Run: would wait up to %s for the loader to finish", plan.Timings.Wait), 0)
		return nil
	}
	var started activities.FASLoaderStarted
	err := w.Step(ctx, StepStartFASLoader, procedure.WaitOptions(plan.Timings, plan.Timings.Wait), func(ctx workflow.Context) (activities.Outcome, error) {
		err := workflow.ExecuteActivity(ctx, api.ActivityStartFASLoader, req).Get(ctx, &started)
		return started.Outcome, err
	})
	if err != nil {
		return err
	}
	return w.Step(ctx, StepWaitFASLoader, procedure.WaitOptions(plan.Timings, plan.Timings.Wait), func(ctx workflow.Context) (activities.Outcome, error) {
		var out activities.Outcome
		wait := req
		wait.LoaderRunID = started.LoaderRunID
		err := workflow.ExecuteActivity(ctx, api.ActivityWaitFASLoader, wait).Get(ctx, &out)
		return out, err
	})
}
