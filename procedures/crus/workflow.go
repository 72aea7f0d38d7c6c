// Package crus is the runbook's CRUS section: follow the CRUS sessions,
// restart the cray-crus pods (procedures/restartpods) so CRUS rediscovers
// what etcd holds again, and confirm it lists the sessions again.
package crus

import (
	"fmt"
	"strings"
	"time"

	"go.temporal.io/sdk/workflow"

	"github.com/csmops/etcd-repopulate/activities"
	"github.com/csmops/etcd-repopulate/internal/api"
	"github.com/csmops/etcd-repopulate/procedures/restartpods"
	"github.com/csmops/etcd-repopulate/workflows/procedure"
)

// Steps of restart-crus besides the pod restart's.
const (
	StepCheckCRUS   = "check-crus-sessions"
	StepConfirmCRUS = "confirm-crus-sessions"
)

// Procedure follows the CRUS sessions and restarts the CRUS pods.
var Procedure = procedure.Procedure{
	Defaults:   defaults,
	Name:       api.RestartCRUS,
	Steps:      procedure.FixedSteps(StepCheckCRUS, restartpods.StepSnapshotPods, restartpods.StepDeletePods, restartpods.StepWaitPods, StepConfirmCRUS),
	Run:        Run,
	Needs:      procedure.Needs{Kube: procedure.PlanPods, CSMAPI: true},
	Activities: named,
	Proof: func(in procedure.Input) (string, string) {
		return StepConfirmCRUS, fmt.Sprintf("CRUS sessions listed again after the replacement pods were Ready (%s)", in.Plan.Pods)
	},
}

// Run looks at the sessions (follows unfinished ones until they complete or
// are stuck), restarts the cray-crus pod so it rediscovers what etcd holds
// again, and confirms it lists the sessions again. CRUS not installed skips
// the service.
func Run(w *procedure.Run, ctx workflow.Context) error {
	plan := w.In.Plan
	budget := plan.CRUS.StuckAfter + plan.CRUS.Poll*2
	if w.In.DryRun {
		budget = 0 // list once; do not wait in a dry-run
	}
	var check CRUSCheck
	err := w.Step(ctx, StepCheckCRUS, procedure.WaitOptions(plan.Timings, budget), func(ctx workflow.Context) (activities.Outcome, error) {
		err := workflow.ExecuteActivity(ctx, api.ActivityCheckCRUSSessions, CRUSCheckRequest{Plan: *plan.CRUS, Budget: budget}).Get(ctx, &check)
		return check.Outcome, err
	})
	if err != nil {
		return err
	}
	if check.NotInstalled {
		for _, step := range w.Status.Steps[1:] {
			w.Finish(ctx, step.Name, api.Skipped, "CRUS is not installed", 0)
		}
		w.Status.State, w.Status.Message = api.Skipped, "CRUS is not installed on this system (its API answered 404)"
		return nil
	}
	var ids []string
	for _, s := range check.Sessions {
		ids = append(ids, s.UpgradeID)
		if s.Stuck {
			w.Status.FollowUps = append(w.Status.FollowUps, fmt.Sprintf("CRUS session %s is stuck in %s (last: %s): describe it (cray crus session describe %s) and recreate it if it failed", s.UpgradeID, s.State, strings.Join(s.LastMessage, " / "), s.UpgradeID))
		}
	}
	if err := restartpods.Run(w, ctx); err != nil {
		return err
	}
	if w.In.DryRun {
		w.Finish(ctx, StepConfirmCRUS, api.Skipped, fmt.Sprintf("dry-run: would check that CRUS lists its %d sessions again", len(ids)), 0)
		return nil
	}
	return w.Step(ctx, StepConfirmCRUS, procedure.WaitOptions(plan.Timings, plan.Timings.Wait), func(ctx workflow.Context) (activities.Outcome, error) {
		var out activities.Outcome
		err := workflow.ExecuteActivity(ctx, api.ActivityConfirmCRUSSessions, CRUSConfirmRequest{UpgradeIDs: ids, Budget: plan.Timings.Wait, Poll: plan.Timings.Poll}).Get(ctx, &out)
		return out, err
	})
}

// Defaults of fields an older run's plan may lack.
const (
	defaultPoll  = 10 * time.Second
	defaultStuck = 15 * time.Minute
)

// defaults fills an older plan's zero poll interval and stuck limit.
func defaults(p *api.ServicePlan) {
	if p.CRUS == nil {
		return
	}
	c := *p.CRUS
	procedure.OrDefault(&c.Poll, defaultPoll)
	procedure.OrDefault(&c.StuckAfter, defaultStuck)
	p.CRUS = &c
}
