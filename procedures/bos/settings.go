package bos

import (
	"time"

	"github.com/csmops/etcd-repopulate/internal/api"
	"github.com/csmops/etcd-repopulate/internal/settings"
)

// BOSSettings have no keys: BOS is reached through the CSM API settings.
// Its procedure is the release's (restore-bos-templates while templates
// live in etcd, check-bos-templates once they live in Redis).
type BOSSettings struct{}

// Validate implements settings.Settings.
func (BOSSettings) Validate(string) []error { return nil }

// bosRestoreTimeout bounds the restore: a few dozen templates, each a GET,
// maybe a PUT and a validation, across retries with room to spare.
const bosRestoreTimeout = 10 * time.Minute

// Plan implements settings.Settings.
func (BOSSettings) Plan(c settings.PlanContext) api.ServicePlan {
	return api.ServicePlan{Service: c.Service, Procedure: c.Procedure, Timings: c.Timings(settings.Duration(bosRestoreTimeout)), Gates: c.Gates}
}
