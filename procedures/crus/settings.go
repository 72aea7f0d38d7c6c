package crus

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
