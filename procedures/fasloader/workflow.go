// Package fasloader is the runbook's FAS section through the loader API:
// ask FAS to load firmware images from Nexus and wait for the load. Where
// a site names its loader Job and preflight finds it, FAS re-runs that Job
// instead (procedures/rerunjob).
package fasloader

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

// Procedure runs the FAS loader through the API.
var Procedure = procedure.Procedure{
	Name:  api.RunFASLoaderAPI,
	Steps: procedure.FixedSteps(StepStartFASLoader, StepWaitFASLoader),
	Run:   Run,
	Needs: procedure.Needs{Kube: procedure.LoaderJobIfNamed, CSMAPI: true,
		Note: func(api.APIVersions) string { return "or `rerun-job` where services.fas.job names a Job that exists" }},
	Activities: named,
	Proof: func(procedure.Input) (string, string) {
		return StepWaitFASLoader, "the FAS loader finished"
	},
}

// Run runs the FAS loader through the API (CSM 1.2 and later).
func Run(w *procedure.Run, ctx workflow.Context) error {
	plan := w.In.Plan
	req := FASLoaderRequest{Budget: plan.Timings.Wait, Poll: plan.Timings.Poll}
	if w.In.DryRun {
		w.Finish(ctx, StepStartFASLoader, api.Skipped, "dry-run: would POST /apis/fas/v1/loader/nexus (waiting while FAS answers 429)", 0)
		w.Finish(ctx, StepWaitFASLoader, api.Skipped, fmt.Sprintf("dry-run: would wait up to %s for the loader to finish", plan.Timings.Wait), 0)
		return nil
	}
	var started FASLoaderStarted
	err := w.Step(ctx, StepStartFASLoader, procedure.WaitOptions(plan.Timings, plan.Timings.Wait), func(ctx workflow.Context) (activities.Outcome, error) {
		err := workflow.ExecuteActivity(ctx, api.ActivityStartFASLoader, req).Get(ctx, &started)
		return started.Outcome, err
	})
	if err != nil {
		return err
	}
	w.LoaderRunID = started.LoaderRunID
	return w.Step(ctx, StepWaitFASLoader, procedure.WaitOptions(plan.Timings, plan.Timings.Wait), func(ctx workflow.Context) (activities.Outcome, error) {
		var out activities.Outcome
		wait := req
		wait.LoaderRunID = started.LoaderRunID
		err := workflow.ExecuteActivity(ctx, api.ActivityWaitFASLoader, wait).Get(ctx, &out)
		return out, err
	})
}
