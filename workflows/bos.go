package workflows

import (
	"errors"
	"fmt"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/csmops/etcd-repopulate/activities"
	"github.com/csmops/etcd-repopulate/internal/api"
)

// Steps of restore-bos-templates and check-bos-templates.
const (
	StepRestoreTemplates = "restore-bos-templates"
	StepCheckTemplates   = "check-bos-templates"
)

// restoreBOSTemplates: with a snapshot, restore; without, gate
// bos-templates for a person to rebuild them, then check.
var restoreBOSTemplates = procedure{
	steps: func(in ServiceInput) []string {
		if hasTemplates(in) {
			return []string{StepRestoreTemplates}
		}
		return []string{api.GateBOSTemplates, StepCheckTemplates}
	},
	gates: func(in ServiceInput) []string {
		if hasTemplates(in) {
			return nil
		}
		return []string{api.GateBOSTemplates}
	},
	run: (*serviceRun).restoreBOS,
}

var checkBOSTemplates = procedure{steps: fixedSteps(StepCheckTemplates), run: (*serviceRun).checkBOS}

// restoreBOS is the runbook's BOS section. With a snapshot the templates
// are put back as they were and validated; without one a person must
// rebuild them from the product streams' procedures, so the service waits
// at gate bos-templates and then checks what BOS holds.
func (w *serviceRun) restoreBOS(ctx workflow.Context) error {
	plan := w.in.Plan
	if hasTemplates(w.in) {
		tmpls := w.in.Snapshot.SessionTemplates
		if w.in.DryRun {
			w.finish(ctx, StepRestoreTemplates, api.Skipped, fmt.Sprintf("dry-run: would restore %d session templates from the snapshot %s and validate each", len(tmpls), w.in.Snapshot.Dir), 0)
			return nil
		}
		var res activities.RestoreTemplatesResult
		err := w.step(ctx, StepRestoreTemplates, waitOptions(plan.Timings, plan.Timings.Wait), func(ctx workflow.Context) (activities.Outcome, error) {
			err := workflow.ExecuteActivity(ctx, api.ActivityRestoreSessionTemplates, activities.RestoreTemplatesRequest{Templates: tmpls, APIs: plan.APIs, SnapshotAPIs: w.in.Snapshot.APIs}).Get(ctx, &res)
			return res.Outcome, err
		})
		w.invalidTemplates(res.Invalid)
		return err
	}
	if w.in.DryRun {
		w.skipGate(ctx, api.GateBOSTemplates, "dry-run: no snapshot given, so a real run would wait here for the templates to be rebuilt by hand")
		w.finish(ctx, StepCheckTemplates, api.Skipped, "dry-run: would list and validate the session templates", 0)
		return nil
	}
	if err := w.gate(ctx, api.GateBOSTemplates,
		"check the BOS session templates that were rebuilt by hand (no snapshot was given to restore them from)",
		bosProductStreamInstructions); err != nil {
		return err
	}
	var res activities.TemplatesCheck
	// Thousands of templates take longer than one read: the check heartbeats
	// per template and a retry resumes from its index.
	err := w.step(ctx, StepCheckTemplates, waitOptions(plan.Timings, plan.Timings.Wait), func(ctx workflow.Context) (activities.Outcome, error) {
		err := workflow.ExecuteActivity(ctx, api.ActivityCheckSessionTemplates, activities.CheckTemplatesRequest{APIs: plan.APIs}).Get(ctx, &res)
		return res.Outcome, err
	})
	w.invalidTemplates(res.Invalid)
	return err
}

// checkBOS is the BOS section from CSM 1.3: session templates live in
// Redis there, not in etcd, so the rebuild did not touch them; the service
// checks that they exist and validate instead of restoring them.
func (w *serviceRun) checkBOS(ctx workflow.Context) error {
	plan := w.in.Plan
	var res activities.TemplatesCheck
	err := w.step(ctx, StepCheckTemplates, readOptions(plan.Timings), func(ctx workflow.Context) (activities.Outcome, error) {
		err := workflow.ExecuteActivity(ctx, api.ActivityCheckSessionTemplates, activities.CheckTemplatesRequest{APIs: plan.APIs}).Get(ctx, &res)
		var appErr *temporal.ApplicationError
		if errors.As(err, &appErr) && appErr.Type() == activities.ErrNoTemplates {
			return activities.Outcome{Message: bosInRedis + "; BOS holds no session template"}, nil
		}
		res.Message = bosInRedis + "; " + res.Message
		return res.Outcome, err
	})
	w.invalidTemplates(res.Invalid)
	return err
}

const bosInRedis = "CSM 1.3+ keeps BOS session templates in Redis, not etcd: checked them instead of restoring"

func (w *serviceRun) invalidTemplates(invalid []activities.TemplateProblem) {
	for _, p := range invalid {
		w.status.FollowUps = append(w.status.FollowUps, fmt.Sprintf("BOS session template %s is not valid (%s): fix it (cray bos v2 sessiontemplates describe %s) before booting with it", p.Name, p.Message, p.Name))
	}
}

// bosProductStreamInstructions are the runbook's BOS section, shown with
// the bos-templates gate.
const bosProductStreamInstructions = `Reconstruct boot session templates for impacted product streams (runbook, BOS section):
  - UANs: in the UAN product stream repository, "Install and Configure UANs", header "PREPARE UAN BOOT SESSION TEMPLATES".
  - Cray Operating System (COS): in the COS product stream documentation, "Boot COS", header "Create a Boot Session Template".
Then approve this gate; the run lists the templates BOS holds and validates each. Next time, take a snapshot before a rebuild (repopulate snapshot --out DIR) and start with --snapshot DIR to restore them automatically.`

func hasTemplates(in ServiceInput) bool {
	return in.Snapshot != nil && len(in.Snapshot.SessionTemplates) > 0
}
