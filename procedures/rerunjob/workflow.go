// Package rerunjob is the runbook's Job sections (BSS; FAS where a site
// names its loader Job): save the Job, delete it, create it from the copy,
// wait for it to complete (the flow in procedures/recreate).
package rerunjob

import (
	"go.temporal.io/sdk/workflow"

	"github.com/csmops/etcd-repopulate/activities"
	"github.com/csmops/etcd-repopulate/internal/api"
	"github.com/csmops/etcd-repopulate/procedures/recreate"
	"github.com/csmops/etcd-repopulate/workflows/procedure"
)

// Steps of rerun-job.
const (
	StepSaveJob   = "save-job"
	StepDeleteJob = "delete-job"
	StepCreateJob = "create-job"
	StepWaitJob   = "wait-job-complete"
)

var steps = recreate.Steps{Save: StepSaveJob, Delete: StepDeleteJob, Create: StepCreateJob, Wait: StepWaitJob}

// Procedure re-runs the plan's Job. Its activities are the object
// activities shared in package activities, so it names none of its own.
var Procedure = procedure.Procedure{
	Name:  api.RerunJob,
	Steps: procedure.FixedSteps(steps.Names()...),
	Run:   Run,
	Needs: procedure.Needs{Kube: procedure.PlanJob},
	Proof: func(in procedure.Input) (string, string) {
		return StepWaitJob, "Job " + in.Plan.Object.String() + " Complete"
	},
}

// Run re-creates the Job from its saved copy and waits for it to complete.
func Run(w *procedure.Run, ctx workflow.Context) error {
	return recreate.Run(w, ctx, activities.JobKind, steps)
}
