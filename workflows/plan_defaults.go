package workflows

import (
	"time"

	"github.com/csmops/etcd-repopulate/internal/api"
	"github.com/csmops/etcd-repopulate/workflows/procedure"
)

// Defaults for plan fields a run's recorded input may lack: a plan read
// from an older run's history has zero in every field added since, and a
// zero timeout, budget or batch size must never be used as one (a zero
// budget times out at once, a zero batch size never advances).
const (
	defaultWait      = 10 * time.Minute
	defaultDelete    = 5 * time.Minute
	defaultPoll      = 2 * time.Second
	defaultHeartbeat = 30 * time.Second
	defaultAttempts  = 5
)

// withDefaults fills the plan's zero durations and counts, the
// procedure's own (Procedure.Defaults) included. Gates.Deadline
// stays as it is: zero there means wait until someone decides.
func withDefaults(p api.ServicePlan) api.ServicePlan {
	t := &p.Timings
	procedure.OrDefault(&t.Wait, defaultWait)
	procedure.OrDefault(&t.Delete, defaultDelete)
	procedure.OrDefault(&t.Poll, defaultPoll)
	procedure.OrDefault(&t.Heartbeat, defaultHeartbeat)
	if t.Attempts <= 0 {
		t.Attempts = defaultAttempts
	}
	if proc := procedureOf(p.Procedure); proc.Defaults != nil {
		proc.Defaults(&p)
	}
	return p
}
