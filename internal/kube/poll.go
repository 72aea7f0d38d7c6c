package kube

import (
	"context"
	"fmt"
	"time"
)

// Wait bounds one wait.
type Wait struct {
	// Since is when the wait began (now, when zero); a retried wait passes
	// the first try's start, so that retries share one budget instead of
	// each starting anew.
	Since time.Time
	// Budget is how long after Since the wait gives up.
	Budget time.Duration
	// Interval is how often it looks again (2s when not positive).
	Interval time.Duration
	// Progress, when set, is called with the state of each look that did
	// not end the wait (the activities heartbeat with it).
	Progress func(state string)
}

// TimeoutError: a wait's budget passed before it was done.
type TimeoutError struct {
	Budget time.Duration
	What   string
	// State is what the last look saw.
	State string
}

func (e *TimeoutError) Error() string {
	return fmt.Sprintf("timed out after %s waiting for %s: %s", e.Budget, e.What, e.State)
}

// Poll calls check every w.Interval until it reports done or an error, or
// until w.Budget has passed since w.Since (a *TimeoutError naming what), or
// ctx ends (its error). Every wait of the activities goes through it, the
// CSM API's included, so that all of them keep one deadline rule.
func Poll(ctx context.Context, w Wait, what string, check func(context.Context) (state string, done bool, err error)) (string, error) {
	interval := w.Interval
	if interval <= 0 {
		interval = 2 * time.Second
	}
	if w.Since.IsZero() {
		w.Since = time.Now()
	}
	for {
		state, done, err := check(ctx)
		if err != nil || done {
			return state, err
		}
		if w.Progress != nil {
			w.Progress(state)
		}
		if time.Since(w.Since) > w.Budget {
			return "", &TimeoutError{Budget: w.Budget, What: what, State: state}
		}
		select {
		case <-ctx.Done():
			return "", ctx.Err()
		case <-time.After(interval):
		}
	}
}
