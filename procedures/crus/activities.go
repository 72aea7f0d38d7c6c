package crus

import (
	"context"
	"fmt"
	"strings"
	"time"

	"go.temporal.io/sdk/activity"

	"github.com/csmops/etcd-repopulate/activities"
	"github.com/csmops/etcd-repopulate/internal/api"
	"github.com/csmops/etcd-repopulate/internal/csm"
)

// Activities follow CRUS sessions through the worker's CSM API client.
type Activities struct{ CSM *activities.CSM }

// named maps each contract name (internal/api) to its implementation.
func named(_ *activities.Kube, c *activities.CSM) map[string]any {
	a := &Activities{CSM: c}
	return map[string]any{
		api.ActivityCheckCRUSSessions:   a.CheckCRUSSessions,
		api.ActivityConfirmCRUSSessions: a.ConfirmCRUSSessions,
	}
}

// CRUSCheckRequest follows CRUS sessions.
type CRUSCheckRequest struct {
	Plan api.CRUSPlan `json:"plan"`
	// Budget bounds the whole follow, across retries.
	Budget time.Duration `json:"budget"`
}

// CRUSSessionState is where one session ended up.
type CRUSSessionState struct {
	UpgradeID   string   `json:"upgradeId"`
	State       string   `json:"state"`
	Completed   bool     `json:"completed"`
	Stuck       bool     `json:"stuck,omitempty"`
	LastMessage []string `json:"lastMessages,omitempty"`
}

// CRUSCheck is the outcome of following the sessions.
type CRUSCheck struct {
	// NotInstalled: the CRUS API answered 404; the service is skipped.
	NotInstalled bool               `json:"notInstalled,omitempty"`
	Sessions     []CRUSSessionState `json:"sessions"`
	activities.Outcome
}

// crusProgress is kept in heartbeat details: when each unfinished session
// last changed, so a retried follow keeps counting towards "stuck".
type crusProgress struct {
	Since   time.Time            `json:"since"`
	Changed map[string]time.Time `json:"changed"`
	Seen    map[string]string    `json:"seen"`
}

// CheckCRUSSessions lists the CRUS sessions and follows each unfinished one
// until it completes or stops progressing (same state, no new message) for
// StuckAfter, which is reported, not waited out.
func (a *Activities) CheckCRUSSessions(ctx context.Context, req CRUSCheckRequest) (CRUSCheck, error) {
	cl, err := a.CSM.APIClient()
	if err != nil {
		return CRUSCheck{}, err
	}
	progress := crusProgress{Since: time.Now(), Changed: map[string]time.Time{}, Seen: map[string]string{}}
	if activity.HasHeartbeatDetails(ctx) {
		var prev crusProgress
		if activity.GetHeartbeatDetails(ctx, &prev) == nil && prev.Changed != nil {
			progress = prev
		}
	}
	for {
		sessions, err := cl.CRUSSessions(ctx)
		if csm.KindOf(err) == csm.NotFound {
			return CRUSCheck{NotInstalled: true, Outcome: activities.NewOutcome(ctx, "CRUS is not installed (the API answered 404)")}, nil
		}
		if err != nil {
			return CRUSCheck{}, activities.CSMError(err)
		}
		now := time.Now()
		var out []CRUSSessionState
		waiting := 0
		for _, s := range sessions {
			st := CRUSSessionState{UpgradeID: s.UpgradeID, State: s.State, Completed: s.Completed, LastMessage: lastN(s.Messages, 3)}
			if !s.Completed {
				key := fmt.Sprintf("%s/%d", s.State, len(s.Messages))
				if progress.Seen[s.UpgradeID] != key {
					progress.Seen[s.UpgradeID], progress.Changed[s.UpgradeID] = key, now
				}
				if now.Sub(progress.Changed[s.UpgradeID]) >= req.Plan.StuckAfter {
					st.Stuck = true
				} else {
					waiting++
				}
			}
			out = append(out, st)
		}
		if waiting == 0 || now.Sub(progress.Since) > req.Budget {
			return summariseCRUS(ctx, out, waiting), nil
		}
		activities.RecordHeartbeat(ctx, progress)
		select {
		case <-ctx.Done():
			return CRUSCheck{}, ctx.Err()
		case <-time.After(req.Plan.Poll):
		}
	}
}

func summariseCRUS(ctx context.Context, sessions []CRUSSessionState, waiting int) CRUSCheck {
	var done, stuck []string
	for _, s := range sessions {
		switch {
		case s.Completed:
			done = append(done, s.UpgradeID)
		case s.Stuck:
			stuck = append(stuck, fmt.Sprintf("%s (%s: %s)", s.UpgradeID, s.State, strings.Join(s.LastMessage, " / ")))
		}
	}
	msg := fmt.Sprintf("%d CRUS sessions, %d completed", len(sessions), len(done))
	if len(stuck) > 0 {
		msg += fmt.Sprintf(", %d stuck: %s", len(stuck), strings.Join(stuck, "; "))
	}
	if waiting > 0 {
		msg += fmt.Sprintf(", %d still progressing when the wait ended", waiting)
	}
	return CRUSCheck{Sessions: sessions, Outcome: activities.NewOutcome(ctx, "%s", msg)}
}

func lastN(s []string, n int) []string {
	if len(s) <= n {
		return s
	}
	return s[len(s)-n:]
}

// CRUSConfirmRequest names the sessions that must be visible again.
type CRUSConfirmRequest struct {
	UpgradeIDs []string      `json:"upgradeIds"`
	Budget     time.Duration `json:"budget"`
	Poll       time.Duration `json:"poll"`
}

// ConfirmCRUSSessions waits until the restarted CRUS lists every session it
// listed before the restart.
func (a *Activities) ConfirmCRUSSessions(ctx context.Context, req CRUSConfirmRequest) (activities.Outcome, error) {
	cl, err := a.CSM.APIClient()
	if err != nil {
		return activities.Outcome{}, err
	}
	msg, err := activities.Poll(ctx, api.Timings{Poll: req.Poll}, req.Budget, "CRUS to list its sessions again", func(ctx context.Context) (string, bool, error) {
		sessions, err := cl.CRUSSessions(ctx)
		if err != nil {
			if csm.Retryable(err) || csm.KindOf(err) == csm.NotFound {
				return fmt.Sprintf("CRUS not answering yet: %v", err), false, nil // the pod is starting
			}
			return "", false, activities.CSMError(err)
		}
		seen := map[string]bool{}
		for _, s := range sessions {
			seen[s.UpgradeID] = true
		}
		var missing []string
		for _, id := range req.UpgradeIDs {
			if !seen[id] {
				missing = append(missing, id)
			}
		}
		if len(missing) > 0 {
			return fmt.Sprintf("%d of %d sessions listed; missing %s", len(req.UpgradeIDs)-len(missing), len(req.UpgradeIDs), strings.Join(missing, ", ")), false, nil
		}
		return fmt.Sprintf("all %d sessions listed again", len(req.UpgradeIDs)), true, nil
	})
	if err != nil {
		return activities.Outcome{}, err
	}
	return activities.NewOutcome(ctx, "%s", msg), nil
}
