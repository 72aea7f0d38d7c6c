package workflows

import (
	"time"

	"github.com/csmops/etcd-repopulate/internal/api"
)

// Defaults for plan fields a run's recorded input may lack: a plan read
// from an older run's history has zero in every field added since, and a
// zero timeout, budget or batch size must never be used as one (a zero
// budget times out at once, a zero batch size never advances).
const (
	defaultWait          = 10 * time.Minute
	defaultDelete        = 5 * time.Minute
	defaultPoll          = 2 * time.Second
	defaultHeartbeat     = 30 * time.Second
	defaultAttempts      = 5
	defaultBatchSize     = 1000
	defaultBatchTimeout  = 30 * time.Minute
	defaultVerifyTimeout = 5 * time.Minute
	defaultCPSShutdown   = 15 * time.Minute
	defaultCPSBoot       = 45 * time.Minute
	defaultCRUSPoll      = 10 * time.Second
	defaultCRUSStuck     = 15 * time.Minute
)

// withDefaults fills the plan's zero durations and counts. Gates.Deadline
// stays as it is: zero there means wait until someone decides.
func withDefaults(p api.ServicePlan) api.ServicePlan {
	orDuration := func(d *time.Duration, def time.Duration) {
		if *d <= 0 {
			*d = def
		}
	}
	t := &p.Timings
	orDuration(&t.Wait, defaultWait)
	orDuration(&t.Delete, defaultDelete)
	orDuration(&t.Poll, defaultPoll)
	orDuration(&t.Heartbeat, defaultHeartbeat)
	if t.Attempts <= 0 {
		t.Attempts = defaultAttempts
	}
	if p.HMNFD != nil {
		h := *p.HMNFD
		if h.BatchSize <= 0 {
			h.BatchSize = defaultBatchSize
		}
		orDuration(&h.BatchTimeout, defaultBatchTimeout)
		orDuration(&h.VerifyTimeout, defaultVerifyTimeout)
		p.HMNFD = &h
	}
	if p.CPS != nil {
		c := *p.CPS
		orDuration(&c.ShutdownTimeout, defaultCPSShutdown)
		orDuration(&c.BootTimeout, defaultCPSBoot)
		p.CPS = &c
	}
	if p.CRUS != nil {
		c := *p.CRUS
		orDuration(&c.Poll, defaultCRUSPoll)
		orDuration(&c.StuckAfter, defaultCRUSStuck)
		p.CRUS = &c
	}
	return p
}
