package restartpods

import (
	"github.com/csmops/etcd-repopulate/internal/api"
	"github.com/csmops/etcd-repopulate/internal/settings"
)

// PodSettings restart the pods a selector picks (procedure restart-pods).
type PodSettings struct {
	Namespace string `json:"namespace"`
	Selector  string `json:"selector"`
	// ReadyTimeout bounds waiting for Ready replacements.
	ReadyTimeout settings.Duration `json:"readyTimeout" doc:"wait for Ready replacements"`
}

// Validate implements settings.Settings.
func (p *PodSettings) Validate(field string) []error {
	errs := settings.CheckName(field+".namespace", "namespace", p.Namespace)
	errs = append(errs, settings.CheckSelector(field+".selector", p.Selector)...)
	return append(errs, settings.CheckDuration(field+".readyTimeout", p.ReadyTimeout)...)
}

// Plan implements settings.Settings.
func (p *PodSettings) Plan(c settings.PlanContext) api.ServicePlan {
	return api.ServicePlan{Service: c.Service, Procedure: api.RestartPods, Pods: p.PodSet(), Timings: c.Timings(p.ReadyTimeout)}
}

// PodSets are the pods a run restarts (the test cluster seeds them).
func (p *PodSettings) PodSets() []api.PodSet { return []api.PodSet{p.PodSet()} }

// PodSet is the pods the settings select.
func (p *PodSettings) PodSet() api.PodSet {
	return api.PodSet{Namespace: p.Namespace, Selector: p.Selector}
}
