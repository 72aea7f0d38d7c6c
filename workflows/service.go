package workflows

import (
	"go.temporal.io/sdk/workflow"

	"github.com/csmops/etcd-repopulate/internal/api"
	"github.com/csmops/etcd-repopulate/internal/catalog"
	"github.com/csmops/etcd-repopulate/workflows/procedure"
)

// ServiceInput is a child workflow's request.
type ServiceInput = procedure.Input

// RepopulateService repopulates one service's data: it walks the
// procedure the service's plan names (the catalog has each).
func RepopulateService(ctx workflow.Context, in ServiceInput) (api.ServiceStatus, error) {
	in.Plan = withDefaults(in.Plan)
	return procedure.Walk(ctx, in, procedureOf(in.Plan.Procedure), checkOf(in.Plan.DataCheck), followUps(in))
}

// followUps are what the runbook leaves to a person once the steps are done.
func followUps(in ServiceInput) []string {
	e, _ := catalog.Lookup(in.Plan.Service)
	if in.DryRun || e.FollowUps == nil {
		return nil
	}
	return e.FollowUps(in.Snapshot)
}
