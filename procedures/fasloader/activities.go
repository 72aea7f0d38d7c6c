package fasloader

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/temporal"

	"github.com/csmops/etcd-repopulate/activities"
	"github.com/csmops/etcd-repopulate/internal/api"
	"github.com/csmops/etcd-repopulate/internal/csm"
)

// Activities run the FAS loader through the worker's CSM API client.
type Activities struct{ CSM *activities.CSM }

// named maps each contract name (internal/api) to its implementation.
func named(_ *activities.Kube, c *activities.CSM) map[string]any {
	a := &Activities{CSM: c}
	return map[string]any{
		api.ActivityStartFASLoader: a.StartFASLoader,
		api.ActivityWaitFASLoader:  a.WaitFASLoader,
	}
}

// FASLoaderRequest bounds the loader run.
type FASLoaderRequest struct {
	Budget time.Duration `json:"budget"`
	Poll   time.Duration `json:"poll"`
	// LoaderRunID is the run StartFASLoader started, for WaitFASLoader to follow.
	LoaderRunID string `json:"loaderRunId,omitempty"`
}

// FASLoaderStarted is the loader run this step started (or adopted).
type FASLoaderStarted struct {
	LoaderRunID string `json:"loaderRunId"`
	activities.Outcome
}

// fasStartProgress is StartFASLoader's heartbeat detail: the wait's start
// and the loader runs FAS listed before this step's first POST, recorded
// before the POST is sent.
type fasStartProgress struct {
	Since      time.Time `json:"since"`
	Last       string    `json:"last,omitempty"`
	RunsBefore []string  `json:"runsBefore"`
}

// StartFASLoader asks FAS to load firmware images from Nexus (`cray fas
// loader nexus create`; the loader API exists on every CSM release). While
// FAS answers 429 (a loader is already running) it waits and asks again.
//
// It is idempotent: the runs FAS lists before the first POST are kept in
// the heartbeat details, and a retry whose earlier attempt may have
// started a run and lost the answer (a reset, a gateway timeout) adopts a
// run that is not among them instead of starting a second Nexus load. A
// run someone else started meanwhile is adopted too: it is also a Nexus
// load made after the rebuild, which is what this step is for.
func (a *Activities) StartFASLoader(ctx context.Context, req FASLoaderRequest) (FASLoaderStarted, error) {
	cl, err := a.CSM.APIClient()
	if err != nil {
		return FASLoaderStarted{}, err
	}
	p := fasStartProgress{Since: time.Now()}
	if activity.HasHeartbeatDetails(ctx) {
		var prev fasStartProgress
		if activity.GetHeartbeatDetails(ctx, &prev) == nil && prev.RunsBefore != nil {
			p = prev
		}
	}
	if p.RunsBefore != nil {
		st, err := cl.FASLoaderStatus(ctx)
		if err != nil {
			return FASLoaderStarted{}, activities.CSMError(err)
		}
		var started []string
		for _, id := range st.LoaderRunList {
			if !slices.Contains(p.RunsBefore, id) {
				started = append(started, id)
			}
		}
		if len(started) > 0 {
			msg := fmt.Sprintf("adopted loader run %s, started after this step's first request (an earlier attempt's answer was lost)", started[0])
			if len(started) > 1 {
				msg += fmt.Sprintf("; %d other runs started since: %s", len(started)-1, strings.Join(started[1:], ", "))
			}
			return FASLoaderStarted{LoaderRunID: started[0], Outcome: activities.NewOutcome(ctx, "%s", msg)}, nil
		}
	} else {
		st, err := cl.FASLoaderStatus(ctx)
		if err != nil {
			return FASLoaderStarted{}, activities.CSMError(err)
		}
		p.RunsBefore = append([]string{}, st.LoaderRunList...)
	}
	interval := req.Poll
	if interval <= 0 {
		interval = 2 * time.Second
	}
	for {
		// Recorded before every POST: a retry must know the list.
		activities.RecordHeartbeat(ctx, p)
		id, err := cl.FASLoadNexus(ctx)
		switch {
		case err == nil:
			return FASLoaderStarted{LoaderRunID: id, Outcome: activities.NewOutcome(ctx, "started loader run %s", id)}, nil
		case csm.KindOf(err) != csm.Busy:
			return FASLoaderStarted{}, activities.CSMError(err)
		}
		p.Last = "FAS loader busy with another run (429)"
		if time.Since(p.Since) > req.Budget {
			return FASLoaderStarted{}, temporal.NewNonRetryableApplicationError(
				fmt.Sprintf("timed out after %s waiting for the FAS loader to accept a run: %s", req.Budget, p.Last), activities.ErrWaitTimedOut, nil)
		}
		select {
		case <-ctx.Done():
			return FASLoaderStarted{}, ctx.Err()
		case <-time.After(interval):
		}
	}
}

// WaitFASLoader waits until the loader is no longer busy and reports the
// run's output.
func (a *Activities) WaitFASLoader(ctx context.Context, req FASLoaderRequest) (activities.Outcome, error) {
	cl, err := a.CSM.APIClient()
	if err != nil {
		return activities.Outcome{}, err
	}
	msg, err := activities.Poll(ctx, api.Timings{Poll: req.Poll}, req.Budget, "the FAS loader to finish", func(ctx context.Context) (string, bool, error) {
		st, err := cl.FASLoaderStatus(ctx)
		if err != nil {
			if csm.Retryable(err) {
				return err.Error(), false, nil
			}
			return "", false, activities.CSMError(err)
		}
		if st.Busy() {
			return "loader busy", false, nil
		}
		images, err := cl.FASImages(ctx)
		if err != nil {
			return "", false, activities.CSMError(err)
		}
		msg := fmt.Sprintf("loader ready; FAS lists %d images", len(images))
		if req.LoaderRunID != "" {
			// The run's own output says what it loaded (or why it did not).
			run, err := cl.FASLoaderRun(ctx, req.LoaderRunID)
			if err != nil {
				return "", false, activities.CSMError(err)
			}
			if n := len(run.LoaderRunOutput); n > 0 {
				msg += fmt.Sprintf("; loader run %s: %s", req.LoaderRunID, run.LoaderRunOutput[n-1])
			}
		}
		return msg, true, nil
	})
	if err != nil {
		return activities.Outcome{}, err
	}
	return activities.NewOutcome(ctx, "%s", msg), nil
}
