package catalog

import (
	"fmt"

	"github.com/csmops/etcd-repopulate/internal/api"
)

// Needs is what a procedure needs before a run starts; preflight checks
// it for every service before anything changes.
type Needs struct {
	// Kube is the Kubernetes object preflight reads.
	Kube KubeObject
	// CSMAPI: the API gateway must accept the worker's credentials.
	CSMAPI bool
	// SSH: the worker's SSH settings must be usable.
	SSH bool
	// Note adds to the procedure's cell in docs/csm-releases.md.
	Note func(api.APIVersions) string
}

// KubeObject is what preflight reads of a plan.
type KubeObject string

// The objects preflight reads.
const (
	NoObject KubeObject = ""
	// PlanJob: the plan's Job (and its namespace).
	PlanJob KubeObject = "job"
	// PlanEtcdCluster: the plan's EtcdCluster (and its namespace).
	PlanEtcdCluster KubeObject = "etcdcluster"
	// PlanPods: the plan's pods (and their namespace).
	PlanPods KubeObject = "pods"
	// HMNFDPods: HMNFD's own pods, restarted when it is not ready.
	HMNFDPods KubeObject = "hmnfd-pods"
	// LoaderJobIfNamed: a FAS loader Job the config names; it decides
	// between the Job and the loader API.
	LoaderJobIfNamed KubeObject = "loader-job-if-named"
)

var needs = map[api.Procedure]Needs{
	api.RerunJob:            {Kube: PlanJob},
	api.RestartPods:         {Kube: PlanPods},
	api.RecreateEtcdCluster: {Kube: PlanEtcdCluster},
	api.RestartCRUS:         {Kube: PlanPods, CSMAPI: true},
	api.RestartOrca: {Kube: HMNFDPods, CSMAPI: true, SSH: true,
		Note: func(v api.APIVersions) string { return fmt.Sprintf("HMNFD %s", v.HMNFDVersion()) }},
	api.RunFASLoaderAPI: {Kube: LoaderJobIfNamed, CSMAPI: true,
		Note: func(api.APIVersions) string { return "or `rerun-job` where services.fas.job names a Job that exists" }},
	api.RemountCPS: {CSMAPI: true,
		Note: func(v api.APIVersions) string { return fmt.Sprintf("BOS %s sessions", v.BOSVersion()) }},
	api.RestoreBOSTemplates: {CSMAPI: true, Note: bosVersion},
	api.CheckBOSTemplates:   {CSMAPI: true, Note: bosVersion},
	api.NotInRelease:        {},
}

func bosVersion(v api.APIVersions) string { return "BOS " + v.BOSVersion() }

// Rederives reports whether procedure p makes the service derive its data
// again (its pods restart), so that whether it needs a run follows its etcd
// cluster's age even where repopulate plan counts its data.
func Rederives(p api.Procedure) bool { return NeedsOf(p).Kube == PlanPods }

// NeedsOf returns what procedure p needs before a run starts.
func NeedsOf(p api.Procedure) Needs {
	n, ok := needs[p]
	if !ok {
		panic("catalog: no needs for procedure " + string(p)) // a procedure was added without its needs
	}
	return n
}
