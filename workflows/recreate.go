package workflows

import (
	"fmt"
	"strings"

	"go.temporal.io/sdk/workflow"

	"github.com/csmops/etcd-repopulate/activities"
	"github.com/csmops/etcd-repopulate/internal/api"
	"github.com/csmops/etcd-repopulate/workflows/procedure"
)

// Steps of rerun-job and recreate-etcdcluster.
const (
	StepSaveJob           = "save-job"
	StepDeleteJob         = "delete-job"
	StepCreateJob         = "create-job"
	StepWaitJob           = "wait-job-complete"
	StepSaveCluster       = "save-etcdcluster"
	StepDeleteCluster     = "delete-etcdcluster"
	StepCreateCluster     = "create-etcdcluster"
	StepWaitClusterActive = "wait-etcdcluster-running"
)

// rerunJob is the runbook's Job sections (BSS; FAS where a site names its
// loader Job): save the Job, delete it, create it from the copy, wait.
var rerunJob = procedure.Procedure{
	Steps: procedure.FixedSteps(StepSaveJob, StepDeleteJob, StepCreateJob, StepWaitJob),
	Run: func(w *procedure.Run, ctx workflow.Context) error {
		return recreate(w, ctx, activities.JobKind, StepSaveJob, StepDeleteJob, StepCreateJob, StepWaitJob)
	},
}

// recreateEtcdCluster is the runbook's External DNS section.
var recreateEtcdCluster = procedure.Procedure{
	Steps: procedure.FixedSteps(StepSaveCluster, StepDeleteCluster, StepCreateCluster, StepWaitClusterActive),
	Run: func(w *procedure.Run, ctx workflow.Context) error {
		return recreate(w, ctx, activities.EtcdClusterKind, StepSaveCluster, StepDeleteCluster, StepCreateCluster, StepWaitClusterActive)
	},
}

// recreate is the runbook's save → delete → create → wait for a Job or an
// EtcdCluster. The saved object is an activity result, so it is in history
// before the delete runs. Once the delete has started, delete and create run
// on a disconnected context: canceling the run never leaves the object deleted.
func recreate(w *procedure.Run, ctx workflow.Context, kind activities.Kind, saveStep, deleteStep, createStep, waitStep string) error {
	plan := w.In.Plan
	var saved activities.SavedObject
	err := w.Step(ctx, saveStep, procedure.ReadOptions(plan.Timings), func(ctx workflow.Context) (activities.Outcome, error) {
		err := workflow.ExecuteActivity(ctx, api.ActivitySaveObject, activities.ObjectRequest{Kind: kind, Ref: plan.Object}).Get(ctx, &saved)
		return saved.Outcome, err
	})
	if err != nil {
		return err
	}
	if w.In.DryRun {
		w.Finish(ctx, deleteStep, api.Skipped, fmt.Sprintf("dry-Run: would delete %s %s (uid %s) with background propagation and wait up to %s until it is gone", kind, plan.Object, saved.UID, plan.Timings.Delete), 0)
		w.Finish(ctx, createStep, api.Skipped, fmt.Sprintf("dry-Run: would create %s %s from the saved copy without %s", kind, plan.Object, strings.Join(saved.Stripped, ", ")), 0)
		w.Finish(ctx, waitStep, api.Skipped, fmt.Sprintf("dry-Run: would wait up to %s for it to be %s", plan.Timings.Wait, healthyWord(kind)), 0)
		return nil
	}
	if err := ctx.Err(); err != nil {
		return err
	}

	restoreCtx, _ := workflow.NewDisconnectedContext(ctx)
	err = w.Step(restoreCtx, deleteStep, procedure.WaitOptions(plan.Timings, plan.Timings.Delete), func(ctx workflow.Context) (activities.Outcome, error) {
		var out activities.Outcome
		err := workflow.ExecuteActivity(ctx, api.ActivityDeleteObject, activities.DeleteRequest{Saved: saved, Timings: plan.Timings}).Get(ctx, &out)
		return out, err
	})
	if err != nil {
		keepSavedCopy(w, saved, "the delete may have happened")
		return err
	}
	var created activities.Created
	err = w.Step(restoreCtx, createStep, procedure.ReadOptions(plan.Timings), func(ctx workflow.Context) (activities.Outcome, error) {
		err := workflow.ExecuteActivity(ctx, api.ActivityCreateObject, activities.CreateRequest{Saved: saved, RunID: w.In.RunID}).Get(ctx, &created)
		return created.Outcome, err
	})
	if err != nil {
		keepSavedCopy(w, saved, "it was deleted and could not be created again")
		return err
	}

	wait := api.ActivityWaitJobComplete
	if kind == activities.EtcdClusterKind {
		wait = api.ActivityWaitEtcdClusterRunning
	}
	return w.Step(ctx, waitStep, procedure.WaitOptions(plan.Timings, plan.Timings.Wait), func(ctx workflow.Context) (activities.Outcome, error) {
		var out activities.Outcome
		err := workflow.ExecuteActivity(ctx, wait, activities.WaitRequest{Kind: kind, Ref: plan.Object, UID: created.UID, Timings: plan.Timings}).Get(ctx, &out)
		return out, err
	})
}

// keepSavedCopy puts the saved manifest into the report when the object may
// be gone, so that a person can restore it with kubectl create -f.
func keepSavedCopy(w *procedure.Run, saved activities.SavedObject, why string) {
	w.Status.SavedManifest = saved.Manifest
	w.Status.FollowUps = append(w.Status.FollowUps, fmt.Sprintf(
		"%s %s: %s; its saved copy (uid %s) is in this report's JSON (savedManifest): strip %s and kubectl create -f it if it is still missing",
		saved.Kind, saved.Ref, why, saved.UID, strings.Join(saved.Stripped, ", ")))
}

func healthyWord(kind activities.Kind) string {
	if kind == activities.JobKind {
		return "Complete"
	}
	return "Running with every member ready"
}
