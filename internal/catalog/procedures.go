package catalog

import (
	"github.com/csmops/etcd-repopulate/internal/api"
	"github.com/csmops/etcd-repopulate/procedures/bos"
	"github.com/csmops/etcd-repopulate/procedures/bssrestore"
	"github.com/csmops/etcd-repopulate/procedures/cps"
	"github.com/csmops/etcd-repopulate/procedures/crus"
	"github.com/csmops/etcd-repopulate/procedures/datacheck"
	"github.com/csmops/etcd-repopulate/procedures/etcdcluster"
	"github.com/csmops/etcd-repopulate/procedures/fasloader"
	"github.com/csmops/etcd-repopulate/procedures/orca"
	"github.com/csmops/etcd-repopulate/procedures/rerunjob"
	"github.com/csmops/etcd-repopulate/procedures/restartpods"
	"github.com/csmops/etcd-repopulate/workflows/procedure"
)

// procedures are every procedure a service can run, each from its folder
// under procedures/: the one list the child workflow, preflight and the
// worker's activity registration read.
var procedures = []procedure.Procedure{
	restartpods.Procedure,
	orca.Procedure,
	rerunjob.Procedure,
	etcdcluster.Procedure,
	crus.Procedure,
	fasloader.Procedure,
	cps.Procedure,
	bos.RestoreProcedure,
	bos.CheckProcedure,
	bssrestore.Procedure,
}

// dataChecks are every data check an entry can name (procedures/datacheck).
var dataChecks = []procedure.Check{
	datacheck.BootParameters,
	datacheck.FASImages,
}

// DataChecks lists every data check.
func DataChecks() []procedure.Check { return dataChecks }

// DataCheckOf returns the data check named c.
func DataCheckOf(c api.DataCheck) (procedure.Check, bool) {
	for _, dc := range dataChecks {
		if dc.Name == c {
			return dc, true
		}
	}
	return procedure.Check{}, false
}

// Procedures lists every procedure.
func Procedures() []procedure.Procedure { return procedures }

// ProcedureOf returns the procedure named p; false for none (not-in-release).
func ProcedureOf(p api.Procedure) (procedure.Procedure, bool) {
	for _, proc := range procedures {
		if proc.Name == p {
			return proc, true
		}
	}
	return procedure.Procedure{}, false
}

// Rederives reports whether procedure p makes the service derive its data
// again (its pods restart), so that whether it needs a run follows its etcd
// cluster's age even where repopulate plan counts its data.
func Rederives(p api.Procedure) bool { return NeedsOf(p).Kube == procedure.PlanPods }

// NeedsOf returns what procedure p needs before a run starts.
func NeedsOf(p api.Procedure) procedure.Needs {
	proc, ok := ProcedureOf(p)
	if !ok && p != api.NotInRelease {
		panic("catalog: no procedure " + string(p)) // a procedure was named in api without its folder in the list
	}
	return proc.Needs
}

// RestoresBSSFromSnapshot reports whether bss on release r restores BSS
// boot parameters from a snapshot (repopulate start carries them then).
func RestoresBSSFromSnapshot(r api.Release) bool {
	e, _ := Lookup(api.BSS)
	return e.Variant(r).Procedure == api.RestoreBSSFromSnapshot
}
