// Package bos is the runbook's BOS section: the session templates an etcd
// rebuild wiped are restored from a snapshot, or rebuilt by a person behind
// gate bos-templates and checked (restore-bos-templates); from CSM 1.3,
// where they live outside etcd, they are only checked (check-bos-templates).
package bos

import (
	"errors"
	"fmt"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/csmops/etcd-repopulate/activities"
	"github.com/csmops/etcd-repopulate/internal/api"
	"github.com/csmops/etcd-repopulate/workflows/procedure"
)

// Steps of restore-bos-templates and check-bos-templates.
const (
	StepRestoreTemplates = "restore-bos-templates"
	StepCheckTemplates   = "check-bos-templates"
)

// RestoreProcedure: with a snapshot, restore; without, gate bos-templates
// for a person to rebuild them, then check.
var RestoreProcedure = procedure.Procedure{
	Name: api.RestoreBOSTemplates,
	Steps: func(in procedure.Input) []string {
		if hasTemplates(in) {
			return []string{StepRestoreTemplates}
		}
		return []string{api.GateBOSTemplates, StepCheckTemplates}
	},
	Gates: func(in procedure.Input) []string {
		if hasTemplates(in) {
			return nil
		}
		return []string{api.GateBOSTemplates}
	},
	Run:        restore,
	Needs:      procedure.Needs{CSMAPI: true, Note: bosVersion},
	Activities: namedRestore,
	Proof: func(in procedure.Input) (string, string) {
		if hasTemplates(in) {
			return StepRestoreTemplates, "BOS session templates equal to the snapshot's, and valid"
		}
		return StepCheckTemplates, "BOS session templates listed and valid"
	},
}

// CheckProcedure checks the templates BOS holds (CSM 1.3+).
var CheckProcedure = procedure.Procedure{
	Name:       api.CheckBOSTemplates,
	Steps:      procedure.FixedSteps(StepCheckTemplates),
	Run:        check,
	Needs:      procedure.Needs{CSMAPI: true, Note: bosVersion},
	Activities: namedCheck,
	Proof: func(procedure.Input) (string, string) {
		return StepCheckTemplates, "BOS session templates listed and valid"
	},
}

func bosVersion(v api.APIVersions) string { return "BOS " + v.BOSVersion() }

// restore is the runbook's BOS section. With a snapshot the templates
// are put back as they were and validated; without one a person must
// rebuild them from the product streams' procedures, so the service waits
// at gate bos-templates and then checks what BOS holds.
func restore(w *procedure.Run, ctx workflow.Context) error {
	plan := w.In.Plan
	if hasTemplates(w.In) {
		tmpls := w.In.Snapshot.SessionTemplates
		if w.In.DryRun {
			w.Finish(ctx, StepRestoreTemplates, api.Skipped, fmt.Sprintf("dry-run: would restore %d session templates from the snapshot %s and validate each", len(tmpls), w.In.Snapshot.Dir), 0)
			return nil
		}
		var res RestoreTemplatesResult
		err := w.Step(ctx, StepRestoreTemplates, procedure.WaitOptions(plan.Timings, plan.Timings.Wait), func(ctx workflow.Context) (activities.Outcome, error) {
			err := workflow.ExecuteActivity(ctx, api.ActivityRestoreSessionTemplates, RestoreTemplatesRequest{Templates: tmpls, APIs: plan.APIs, SnapshotAPIs: w.In.Snapshot.APIs}).Get(ctx, &res)
			return res.Outcome, err
		})
		invalidTemplates(w, res.Invalid)
		return err
	}
	if w.In.DryRun {
		w.SkipGate(ctx, api.GateBOSTemplates, "dry-run: no snapshot given, so a real run would wait here for the templates to be rebuilt by hand")
		w.Finish(ctx, StepCheckTemplates, api.Skipped, "dry-run: would list and validate the session templates", 0)
		return nil
	}
	if err := w.Gate(ctx, api.GateBOSTemplates,
		"check the BOS session templates that were rebuilt by hand (no snapshot was given to restore them from)",
		bosProductStreamInstructions); err != nil {
		return err
	}
	var res TemplatesCheck
	// Thousands of templates take longer than one read: the check heartbeats
	// per template and a retry resumes from its index.
	err := w.Step(ctx, StepCheckTemplates, procedure.WaitOptions(plan.Timings, plan.Timings.Wait), func(ctx workflow.Context) (activities.Outcome, error) {
		err := workflow.ExecuteActivity(ctx, api.ActivityCheckSessionTemplates, CheckTemplatesRequest{APIs: plan.APIs}).Get(ctx, &res)
		return res.Outcome, err
	})
	invalidTemplates(w, res.Invalid)
	return err
}

// check is the BOS section from CSM 1.3: session templates live in
// Redis there, not in etcd, so the rebuild did not touch them; the service
// checks that they exist and validate instead of restoring them.
func check(w *procedure.Run, ctx workflow.Context) error {
	plan := w.In.Plan
	var res TemplatesCheck
	err := w.Step(ctx, StepCheckTemplates, procedure.ReadOptions(plan.Timings), func(ctx workflow.Context) (activities.Outcome, error) {
		err := workflow.ExecuteActivity(ctx, api.ActivityCheckSessionTemplates, CheckTemplatesRequest{APIs: plan.APIs}).Get(ctx, &res)
		var appErr *temporal.ApplicationError
		if errors.As(err, &appErr) && appErr.Type() == ErrNoTemplates {
			return activities.Outcome{Message: bosInRedis + "; BOS holds no session template"}, nil
		}
		res.Message = bosInRedis + "; " + res.Message
		return res.Outcome, err
	})
	invalidTemplates(w, res.Invalid)
	return err
}

const bosInRedis = "CSM 1.3+ keeps BOS session templates in Redis, not etcd: checked them instead of restoring"

func invalidTemplates(w *procedure.Run, invalid []TemplateProblem) {
	for _, p := range invalid {
		w.Status.FollowUps = append(w.Status.FollowUps, fmt.Sprintf("BOS session template %s is not valid (%s): fix it (cray bos v2 sessiontemplates describe %s) before booting with it", p.Name, p.Message, p.Name))
	}
}

// bosProductStreamInstructions are the runbook's BOS section, shown with
// the bos-templates gate.
const bosProductStreamInstructions = `Reconstruct boot session templates for impacted product streams (runbook, BOS section):
  - UANs: in the UAN product stream repository, "Install and Configure UANs", header "PREPARE UAN BOOT SESSION TEMPLATES".
  - Cray Operating System (COS): in the COS product stream documentation, "Boot COS", header "Create a Boot Session Template".
Then approve this gate; the run lists the templates BOS holds and validates each. Next time, take a snapshot before a rebuild (repopulate snapshot --out DIR) and start with --snapshot DIR to restore them automatically.`

func hasTemplates(in procedure.Input) bool {
	return in.Snapshot != nil && len(in.Snapshot.SessionTemplates) > 0
}
