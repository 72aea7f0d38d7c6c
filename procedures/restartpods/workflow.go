// Package restartpods is the runbook's MEDS and REDS sections: delete a
// service's pods and wait for Ready replacements, which derive the
// service's data again. CRUS and the orca fan-out restart pods through it.
package restartpods

import (
	"fmt"
	"strings"

	"go.temporal.io/sdk/workflow"

	"github.com/csmops/etcd-repopulate/activities"
	"github.com/csmops/etcd-repopulate/internal/api"
	"github.com/csmops/etcd-repopulate/workflows/procedure"
)

// Steps of restart-pods (and of restart-crus, which restarts pods too).
const (
	StepSnapshotPods = "snapshot-pods"
	StepDeletePods   = "delete-pods"
	StepWaitPods     = "wait-pods-ready"
)

// Procedure restarts the pods of the plan.
var Procedure = procedure.Procedure{
	Name:       api.RestartPods,
	Steps:      procedure.FixedSteps(StepSnapshotPods, StepDeletePods, StepWaitPods),
	Run:        Run,
	Needs:      procedure.Needs{Kube: procedure.PlanPods},
	Activities: named,
	Proof: func(in procedure.Input) (string, string) {
		return StepWaitPods, fmt.Sprintf("replacement pods Ready (%s)", in.Plan.Pods)
	},
}

// restartPods deletes the service's pods and waits for Ready replacements.
func Run(w *procedure.Run, ctx workflow.Context) error {
	plan := w.In.Plan
	var snap PodSnapshot
	err := w.Step(ctx, StepSnapshotPods, procedure.ReadOptions(plan.Timings), func(ctx workflow.Context) (activities.Outcome, error) {
		err := workflow.ExecuteActivity(ctx, api.ActivitySnapshotPods, plan.Pods).Get(ctx, &snap)
		return snap.Outcome, err
	})
	if err != nil {
		return err
	}
	if w.In.DryRun {
		var pods []string
		for _, p := range snap.Pods {
			pods = append(pods, fmt.Sprintf("%s (uid %s)", p.Name, p.UID))
		}
		w.Finish(ctx, StepDeletePods, api.Skipped, fmt.Sprintf("dry-run: would delete pods %s in %s", strings.Join(pods, ", "), plan.Pods.Namespace), 0)
		w.Finish(ctx, StepWaitPods, api.Skipped, fmt.Sprintf("dry-run: would wait up to %s for %d Ready replacements", plan.Timings.Wait, snap.Ready), 0)
		return nil
	}
	err = w.Step(ctx, StepDeletePods, procedure.WaitOptions(plan.Timings, plan.Timings.Delete), func(ctx workflow.Context) (activities.Outcome, error) {
		var out activities.Outcome
		err := workflow.ExecuteActivity(ctx, api.ActivityDeletePods, DeletePodsRequest{Namespace: plan.Pods.Namespace, Pods: snap.Pods}).Get(ctx, &out)
		return out, err
	})
	if err != nil {
		return err
	}
	return w.Step(ctx, StepWaitPods, procedure.WaitOptions(plan.Timings, plan.Timings.Wait), func(ctx workflow.Context) (activities.Outcome, error) {
		var out activities.Outcome
		err := workflow.ExecuteActivity(ctx, api.ActivityWaitPodsReplaced, WaitPodsRequest{Pods: plan.Pods, Snapshot: snap, Timings: plan.Timings}).Get(ctx, &out)
		return out, err
	})
}
