package catalog

import (
	"time"

	"github.com/csmops/etcd-repopulate/internal/api"
)

// PodSettings restart the pods a selector picks (procedure restart-pods).
type PodSettings struct {
	Namespace string `json:"namespace"`
	Selector  string `json:"selector"`
	// ReadyTimeout bounds waiting for Ready replacements.
	ReadyTimeout Duration `json:"readyTimeout" doc:"wait for Ready replacements"`
}

// Validate implements Settings.
func (p *PodSettings) Validate(field string) []error {
	errs := CheckName(field+".namespace", "namespace", p.Namespace)
	errs = append(errs, CheckSelector(field+".selector", p.Selector)...)
	return append(errs, CheckDuration(field+".readyTimeout", p.ReadyTimeout)...)
}

// Plan implements Settings.
func (p *PodSettings) Plan(c PlanContext) api.ServicePlan {
	return api.ServicePlan{Service: c.Service, Procedure: api.RestartPods, Pods: p.podSet(), Timings: c.Timings(p.ReadyTimeout)}
}

func (p *PodSettings) podSets() []api.PodSet { return []api.PodSet{p.podSet()} }

func (p *PodSettings) podSet() api.PodSet {
	return api.PodSet{Namespace: p.Namespace, Selector: p.Selector}
}

// CRUSSettings follow CRUS sessions and restart the cray-crus pods
// (procedure restart-crus).
type CRUSSettings struct {
	PodSettings
	// SessionPoll is how often unfinished sessions are looked at again.
	SessionPoll Duration `json:"sessionPoll" doc:"how often unfinished CRUS sessions are looked at"`
	// StuckAfter: a session unchanged this long is reported stuck.
	StuckAfter Duration `json:"stuckAfter" doc:"unchanged this long = reported stuck, not waited out"`
}

// Validate implements Settings.
func (s *CRUSSettings) Validate(field string) []error {
	errs := s.PodSettings.Validate(field)
	errs = append(errs, CheckDuration(field+".sessionPoll", s.SessionPoll)...)
	return append(errs, CheckDuration(field+".stuckAfter", s.StuckAfter)...)
}

// Plan implements Settings.
func (s *CRUSSettings) Plan(c PlanContext) api.ServicePlan {
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
	RunningTimeout Duration `json:"runningTimeout" doc:"wait for etcd-operator to report it Running"`
}

// Validate implements Settings.
func (e *EtcdClusterSettings) Validate(field string) []error {
	errs := CheckName(field+".namespace", "namespace", e.Namespace)
	errs = append(errs, CheckName(field+".etcdCluster", "EtcdCluster", e.EtcdCluster)...)
	return append(errs, CheckDuration(field+".runningTimeout", e.RunningTimeout)...)
}

// Plan implements Settings.
func (e *EtcdClusterSettings) Plan(c PlanContext) api.ServicePlan {
	return api.ServicePlan{Service: c.Service, Procedure: api.RecreateEtcdCluster, Object: api.ObjectRef{Namespace: e.Namespace, Name: e.EtcdCluster}, Timings: c.Timings(e.RunningTimeout)}
}
