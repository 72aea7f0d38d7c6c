// Package etcdcluster is the runbook's External DNS section: save the
// etcd-operator EtcdCluster, delete it, create it from the copy, wait for
// the operator to report it Running (the flow in procedures/recreate).
package etcdcluster

import (
	"go.temporal.io/sdk/workflow"

	"github.com/csmops/etcd-repopulate/activities"
	"github.com/csmops/etcd-repopulate/internal/api"
	"github.com/csmops/etcd-repopulate/procedures/recreate"
	"github.com/csmops/etcd-repopulate/workflows/procedure"
)

// Steps of recreate-etcdcluster.
const (
	StepSaveCluster       = "save-etcdcluster"
	StepDeleteCluster     = "delete-etcdcluster"
	StepCreateCluster     = "create-etcdcluster"
	StepWaitClusterActive = "wait-etcdcluster-running"
)

var steps = recreate.Steps{Save: StepSaveCluster, Delete: StepDeleteCluster, Create: StepCreateCluster, Wait: StepWaitClusterActive}

// Procedure re-creates the plan's EtcdCluster. Its activities are the
// object activities shared in package activities, so it names none of its own.
var Procedure = procedure.Procedure{
	Name:  api.RecreateEtcdCluster,
	Steps: procedure.FixedSteps(steps.Names()...),
	Run:   Run,
	Needs: procedure.Needs{Kube: procedure.PlanEtcdCluster},
	Proof: func(in procedure.Input) (string, string) {
		return StepWaitClusterActive, "EtcdCluster " + in.Plan.Object.String() + " Running with every member ready"
	},
}

// Run re-creates the EtcdCluster from its saved copy and waits until it runs.
func Run(w *procedure.Run, ctx workflow.Context) error {
	return recreate.Run(w, ctx, activities.EtcdClusterKind, steps)
}
