package workflows

import (
	"fmt"

	"go.temporal.io/sdk/workflow"

	"github.com/csmops/etcd-repopulate/activities"
	"github.com/csmops/etcd-repopulate/internal/api"
)

// Steps of fas-loader-api.
const (
	StepStartFASLoader = "start-fas-loader"
	StepWaitFASLoader  = "wait-fas-loader"
)

var runFASLoader = procedure{
	steps: fixedSteps(StepStartFASLoader, StepWaitFASLoader),
	run:   (*serviceRun).runFASLoader,
}

// runFASLoader runs the FAS loader through the API (CSM 1.2 and later).
func (w *serviceRun) runFASLoader(ctx workflow.Context) error {
	plan := w.in.Plan
	req := activities.FASLoaderRequest{Budget: plan.Timings.Wait, Poll: plan.Timings.Poll}
	if w.in.DryRun {
		w.finish(ctx, StepStartFASLoader, api.Skipped, "dry-run: would POST /apis/fas/v1/loader/nexus (waiting while FAS answers 429)", 0)
		w.finish(ctx, StepWaitFASLoader, api.Skipped, fmt.Sprintf("dry-run: would wait up to %s for the loader to finish", plan.Timings.Wait), 0)
		return nil
	}
	var started activities.FASLoaderStarted
	err := w.step(ctx, StepStartFASLoader, waitOptions(plan.Timings, plan.Timings.Wait), func(ctx workflow.Context) (activities.Outcome, error) {
		err := workflow.ExecuteActivity(ctx, api.ActivityStartFASLoader, req).Get(ctx, &started)
		return started.Outcome, err
	})
	if err != nil {
		return err
	}
	return w.step(ctx, StepWaitFASLoader, waitOptions(plan.Timings, plan.Timings.Wait), func(ctx workflow.Context) (activities.Outcome, error) {
		var out activities.Outcome
		wait := req
		wait.LoaderRunID = started.LoaderRunID
		err := workflow.ExecuteActivity(ctx, api.ActivityWaitFASLoader, wait).Get(ctx, &out)
		return out, err
	})
}
