package workflows

import (
	"fmt"
	"strings"

	"go.temporal.io/sdk/workflow"

	"github.com/csmops/etcd-repopulate/activities"
	"github.com/csmops/etcd-repopulate/internal/api"
)

// Steps of restart-crus besides the pod restart's.
const (
	StepCheckCRUS   = "check-crus-sessions"
	StepConfirmCRUS = "confirm-crus-sessions"
)

var restartCRUS = procedure{
	steps: fixedSteps(StepCheckCRUS, StepSnapshotPods, StepDeletePods, StepWaitPods, StepConfirmCRUS),
	run:   (*serviceRun).restartCRUS,
}

// restartCRUS is the runbook's CRUS section: look at the sessions (follow
// unfinished ones until they complete or are stuck), restart the cray-crus
// pod so it rediscovers what etcd holds again, and confirm it lists the
// sessions again. CRUS not installed skips the service.
func (w *serviceRun) restartCRUS(ctx workflow.Context) error {
	plan := w.in.Plan
	budget := plan.CRUS.StuckAfter + plan.CRUS.Poll*2
	if w.in.DryRun {
		budget = 0 // list once; do not wait in a dry-run
	}
	var check activities.CRUSCheck
	err := w.step(ctx, StepCheckCRUS, waitOptions(plan.Timings, budget), func(ctx workflow.Context) (activities.Outcome, error) {
		err := workflow.ExecuteActivity(ctx, api.ActivityCheckCRUSSessions, activities.CRUSCheckRequest{Plan: *plan.CRUS, Budget: budget}).Get(ctx, &check)
		return check.Outcome, err
	})
	if err != nil {
		return err
	}
	if check.NotInstalled {
		for _, step := range w.status.Steps[1:] {
			w.finish(ctx, step.Name, api.Skipped, "CRUS is not installed", 0)
		}
		w.status.State, w.status.Message = api.Skipped, "CRUS is not installed on this system (its API answered 404)"
		return nil
	}
	var ids []string
	for _, s := range check.Sessions {
		ids = append(ids, s.UpgradeID)
		if s.Stuck {
			w.status.FollowUps = append(w.status.FollowUps, fmt.Sprintf("CRUS session %s is stuck in %s (last: %s): describe it (cray crus session describe %s) and recreate it if it failed", s.UpgradeID, s.State, strings.Join(s.LastMessage, " / "), s.UpgradeID))
		}
	}
	if err := w.restartPods(ctx); err != nil {
		return err
	}
	if w.in.DryRun {
		w.finish(ctx, StepConfirmCRUS, api.Skipped, fmt.Sprintf("dry-run: would check that CRUS lists its %d sessions again", len(ids)), 0)
		return nil
	}
	return w.step(ctx, StepConfirmCRUS, waitOptions(plan.Timings, plan.Timings.Wait), func(ctx workflow.Context) (activities.Outcome, error) {
		var out activities.Outcome
		err := workflow.ExecuteActivity(ctx, api.ActivityConfirmCRUSSessions, activities.CRUSConfirmRequest{UpgradeIDs: ids, Budget: plan.Timings.Wait, Poll: plan.Timings.Poll}).Get(ctx, &out)
		return out, err
	})
}
