package workflows

import (
	"fmt"
	"strings"

	"go.temporal.io/sdk/workflow"

	"github.com/csmops/etcd-repopulate/activities"
	"github.com/csmops/etcd-repopulate/internal/api"
)

// Steps of restart-pods (and of restart-crus, which restarts pods too).
const (
	StepSnapshotPods = "snapshot-pods"
	StepDeletePods   = "delete-pods"
	StepWaitPods     = "wait-pods-ready"
)

// restartPods is the runbook's MEDS and REDS sections.
var restartPods = procedure{
	steps: fixedSteps(StepSnapshotPods, StepDeletePods, StepWaitPods),
	run:   (*serviceRun).restartPods,
}

// restartPods deletes the service's pods and waits for Ready replacements.
func (w *serviceRun) restartPods(ctx workflow.Context) error {
	plan := w.in.Plan
	var snap activities.PodSnapshot
	err := w.step(ctx, StepSnapshotPods, readOptions(plan.Timings), func(ctx workflow.Context) (activities.Outcome, error) {
		err := workflow.ExecuteActivity(ctx, api.ActivitySnapshotPods, plan.Pods).Get(ctx, &snap)
		return snap.Outcome, err
	})
	if err != nil {
		return err
	}
	if w.in.DryRun {
		var pods []string
		for _, p := range snap.Pods {
			pods = append(pods, fmt.Sprintf("%s (uid %s)", p.Name, p.UID))
		}
		w.finish(ctx, StepDeletePods, api.Skipped, fmt.Sprintf("dry-run: would delete pods %s in %s", strings.Join(pods, ", "), plan.Pods.Namespace), 0)
		w.finish(ctx, StepWaitPods, api.Skipped, fmt.Sprintf("dry-run: would wait up to %s for %d Ready replacements", plan.Timings.Wait, snap.Ready), 0)
		return nil
	}
	err = w.step(ctx, StepDeletePods, waitOptions(plan.Timings, plan.Timings.Delete), func(ctx workflow.Context) (activities.Outcome, error) {
		var out activities.Outcome
		err := workflow.ExecuteActivity(ctx, api.ActivityDeletePods, activities.DeletePodsRequest{Namespace: plan.Pods.Namespace, Pods: snap.Pods}).Get(ctx, &out)
		return out, err
	})
	if err != nil {
		return err
	}
	return w.step(ctx, StepWaitPods, waitOptions(plan.Timings, plan.Timings.Wait), func(ctx workflow.Context) (activities.Outcome, error) {
		var out activities.Outcome
		err := workflow.ExecuteActivity(ctx, api.ActivityWaitPodsReplaced, activities.WaitPodsRequest{Pods: plan.Pods, Snapshot: snap, Timings: plan.Timings}).Get(ctx, &out)
		return out, err
	})
}
