package etcdcluster

import (
	"github.com/csmops/etcd-repopulate/internal/api"
	"github.com/csmops/etcd-repopulate/internal/settings"
)

// EtcdClusterSettings re-create an etcd-operator EtcdCluster (procedure
// recreate-etcdcluster).
type EtcdClusterSettings struct {
	Namespace   string `json:"namespace"`
	EtcdCluster string `json:"etcdCluster"`
	// RunningTimeout bounds waiting for the operator to report it Running.
	RunningTimeout settings.Duration `json:"runningTimeout" doc:"wait for etcd-operator to report it Running"`
}

// Validate implements settings.Settings.
func (e *EtcdClusterSettings) Validate(field string) []error {
	errs := settings.CheckName(field+".namespace", "namespace", e.Namespace)
	errs = append(errs, settings.CheckName(field+".etcdCluster", "EtcdCluster", e.EtcdCluster)...)
	return append(errs, settings.CheckDuration(field+".runningTimeout", e.RunningTimeout)...)
}

// Plan implements settings.Settings.
func (e *EtcdClusterSettings) Plan(c settings.PlanContext) api.ServicePlan {
	return api.ServicePlan{Service: c.Service, Procedure: api.RecreateEtcdCluster, Object: api.ObjectRef{Namespace: e.Namespace, Name: e.EtcdCluster}, Timings: c.Timings(e.RunningTimeout)}
}
