// Package recreate is the save → delete → create → wait flow that
// rerun-job (procedures/rerunjob) and recreate-etcdcluster
// (procedures/etcdcluster) share. It is a building block of those two
// procedures, not a procedure: it has no Procedure and no activities of its
// own (it calls the object activities shared in package activities).
package recreate

import (
	"fmt"
	"strings"

	"go.temporal.io/sdk/workflow"

	"github.com/csmops/etcd-repopulate/activities"
	"github.com/csmops/etcd-repopulate/internal/api"
	"github.com/csmops/etcd-repopulate/workflows/procedure"
)

// Steps names the four steps of one re-creation, as its procedure calls them.
type Steps struct {
	Save, Delete, Create, Wait string
}

// Names lists the steps in the order they run.
func (s Steps) Names() []string { return []string{s.Save, s.Delete, s.Create, s.Wait} }

// Run is the runbook's save → delete → create → wait for a Job or an
// EtcdCluster. The saved object is an activity result, so it is in history
// before the delete runs. Once the delete has started, delete and create run
// on a disconnected context: canceling the run never leaves the object deleted.
func Run(w *procedure.Run, ctx workflow.Context, kind activities.Kind, steps Steps) error {
	plan := w.In.Plan
	var saved activities.SavedObject
	err := w.Step(ctx, steps.Save, procedure.ReadOptions(plan.Timings), func(ctx workflow.Context) (activities.Outcome, error) {
		err := workflow.ExecuteActivity(ctx, api.ActivitySaveObject, activities.ObjectRequest{Kind: kind, Ref: plan.Object}).Get(ctx, &saved)
		return saved.Outcome, err
	})
	if err != nil {
		return err
	}
	if w.In.DryRun {
		w.Finish(ctx, steps.Delete, api.Skipped, fmt.Sprintf("dry-run: would delete %s %s (uid %s) with background propagation and wait up to %s until it is gone", kind, plan.Object, saved.UID, plan.Timings.Delete), 0)
		w.Finish(ctx, steps.Create, api.Skipped, fmt.Sprintf("dry-run: would create %s %s from the saved copy without %s", kind, plan.Object, strings.Join(saved.Stripped, ", ")), 0)
		w.Finish(ctx, steps.Wait, api.Skipped, fmt.Sprintf("dry-run: would wait up to %s for it to be %s", plan.Timings.Wait, healthyWord(kind)), 0)
		return nil
	}
	if err := ctx.Err(); err != nil {
		return err
	}

	restoreCtx, _ := workflow.NewDisconnectedContext(ctx)
	err = w.Step(restoreCtx, steps.Delete, procedure.WaitOptions(plan.Timings, plan.Timings.Delete), func(ctx workflow.Context) (activities.Outcome, error) {
		var out activities.Outcome
		err := workflow.ExecuteActivity(ctx, api.ActivityDeleteObject, activities.DeleteRequest{Saved: saved, Timings: plan.Timings}).Get(ctx, &out)
		return out, err
	})
	if err != nil {
		keepSavedCopy(w, saved, "the delete may have happened")
		return err
	}
	var created activities.Created
	err = w.Step(restoreCtx, steps.Create, procedure.ReadOptions(plan.Timings), func(ctx workflow.Context) (activities.Outcome, error) {
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
	return w.Step(ctx, steps.Wait, procedure.WaitOptions(plan.Timings, plan.Timings.Wait), func(ctx workflow.Context) (activities.Outcome, error) {
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
