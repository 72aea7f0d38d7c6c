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

// checkOf returns the data check a plan names (nil: none), or one
// without Run that fails the service when this worker does not know it.
func checkOf(name api.DataCheck) *procedure.Check {
	if name == "" {
		return nil
	}
	if c, ok := catalog.DataCheckOf(name); ok {
		return &c
	}
	return &procedure.Check{Name: name, Step: "data-check"}
}

// Steps lists the steps of a service in order, gates included, so that
// status shows what is still to come before it starts.
func Steps(in ServiceInput) []string {
	steps := procedureOf(in.Plan.Procedure).StepsOf(in)
	if c := checkOf(in.Plan.DataCheck); c != nil {
		steps = append(steps, c.Step)
	}
	return steps
}

// Gates lists the approval gates of a service, in the order they are reached.
func Gates(in ServiceInput) []string { return procedureOf(in.Plan.Procedure).GatesOf(in) }
