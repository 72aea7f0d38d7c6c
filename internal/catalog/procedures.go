package catalog

import (
	"fmt"

	"github.com/csmops/etcd-repopulate/internal/api"
	"github.com/csmops/etcd-repopulate/procedures/bos"
	"github.com/csmops/etcd-repopulate/procedures/cps"
	"github.com/csmops/etcd-repopulate/procedures/restartpods"
	"github.com/csmops/etcd-repopulate/workflows/procedure"
)

// procedures are every procedure a service can run, each from its folder
// under procedures/: the one list the child workflow, preflight and the
// worker's activity registration read.
var procedures = []procedure.Procedure{
	restartpods.Procedure,
	cps.Procedure,
	bos.RestoreProcedure,
	bos.CheckProcedure,
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

// legacyNeeds are the needs of procedures not yet in their folder.
var legacyNeeds = map[api.Procedure]procedure.Needs{
	api.RerunJob:            {Kube: procedure.PlanJob},
	api.RecreateEtcdCluster: {Kube: procedure.PlanEtcdCluster},
	api.RestartCRUS:         {Kube: procedure.PlanPods, CSMAPI: true},
	api.RestartOrca: {Kube: procedure.HMNFDPods, CSMAPI: true, SSH: true,
		Note: func(v api.APIVersions) string { return fmt.Sprintf("HMNFD %s", v.HMNFDVersion()) }},
	api.RunFASLoaderAPI: {Kube: procedure.LoaderJobIfNamed, CSMAPI: true,
		Note: func(api.APIVersions) string { return "or `rerun-job` where services.fas.job names a Job that exists" }},
	api.NotInRelease: {},
}

// Rederives reports whether procedure p makes the service derive its data
// again (its pods restart), so that whether it needs a run follows its etcd
// cluster's age even where repopulate plan counts its data.
func Rederives(p api.Procedure) bool { return NeedsOf(p).Kube == procedure.PlanPods }

// NeedsOf returns what procedure p needs before a run starts.
func NeedsOf(p api.Procedure) procedure.Needs {
	if proc, ok := ProcedureOf(p); ok {
		return proc.Needs
	}
	n, ok := legacyNeeds[p]
	if !ok {
		panic("catalog: no needs for procedure " + string(p)) // a procedure was added without its needs
	}
	return n
}
