package workflows

import (
	"github.com/csmops/etcd-repopulate/internal/api"
	"github.com/csmops/etcd-repopulate/internal/catalog"
	"github.com/csmops/etcd-repopulate/workflows/procedure"
)

// procedureOf is the procedure a plan names; one the catalog does not
// have runs as a failure that names it.
func procedureOf(name api.Procedure) procedure.Procedure {
	if p, ok := catalog.ProcedureOf(name); ok {
		return p
	}
	return procedure.Procedure{Name: name}
}

// Steps lists the steps of a service in order, gates included, so that
// status shows what is still to come before it starts.
func Steps(in ServiceInput) []string { return procedureOf(in.Plan.Procedure).StepsOf(in) }

// Gates lists the approval gates of a service, in the order they are reached.
func Gates(in ServiceInput) []string { return procedureOf(in.Plan.Procedure).GatesOf(in) }
