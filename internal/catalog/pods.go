package catalog

import (
	"time"

	"github.com/csmops/etcd-repopulate/internal/api"
	"github.com/csmops/etcd-repopulate/internal/settings"
	"github.com/csmops/etcd-repopulate/procedures/restartpods"
)

// CRUSSettings follow CRUS sessions and restart the cray-crus pods
// (procedure restart-crus).
type CRUSSettings struct {
	restartpods.PodSettings
	// SessionPoll is how often unfinished sessions are looked at again.
	SessionPoll settings.Duration `json:"sessionPoll" doc:"how often unfinished CRUS sessions are looked at"`
	// StuckAfter: a session unchanged this long is reported stuck.
	StuckAfter settings.Duration `json:"stuckAfter" doc:"unchanged this long = reported stuck, not waited out"`
}

// Validate implements settings.Settings.
func (s *CRUSSettings) Validate(field string) []error {
	errs := s.PodSettings.Validate(field)
	errs = append(errs, settings.CheckDuration(field+".sessionPoll", s.SessionPoll)...)
	return append(errs, settings.CheckDuration(field+".stuckAfter", s.StuckAfter)...)
}

// Plan implements settings.Settings.
func (s *CRUSSettings) Plan(c settings.PlanContext) api.ServicePlan {
	p := s.PodSettings.Plan(c)
	p.Procedure = api.RestartCRUS
	p.CRUS = &api.CRUSPlan{Poll: time.Duration(s.SessionPoll), StuckAfter: time.Duration(s.StuckAfter)}
	return p
}

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
