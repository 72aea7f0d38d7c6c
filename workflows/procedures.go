package workflows

import (
	"github.com/csmops/etcd-repopulate/internal/api"
	"github.com/csmops/etcd-repopulate/internal/catalog"
	"github.com/csmops/etcd-repopulate/workflows/procedure"
)

// legacyProcedures are the procedures not yet in their folder under procedures/.
var legacyProcedures = map[api.Procedure]procedure.Procedure{
	api.RerunJob:            rerunJob,
	api.RecreateEtcdCluster: recreateEtcdCluster,
	api.RestartCRUS:         restartCRUSProcedure,
	api.RestartOrca:         restartOrcaProcedure,
	api.RunFASLoaderAPI:     runFASLoaderProcedure,
}

// procedureOf is the procedure a plan names.
func procedureOf(name api.Procedure) procedure.Procedure {
	if p, ok := catalog.ProcedureOf(name); ok {
		return p
	}
	p := legacyProcedures[name]
	p.Name = name
	return p
}

// Steps lists the steps of a service in order, gates included, so that
// status shows what is still to come before it starts.
func Steps(in ServiceInput) []string { return procedureOf(in.Plan.Procedure).StepsOf(in) }

// Gates lists the approval gates of a service, in the order they are reached.
func Gates(in ServiceInput) []string { return procedureOf(in.Plan.Procedure).GatesOf(in) }
