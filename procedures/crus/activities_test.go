package crus_test

import (
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"go.temporal.io/sdk/temporal"

	"github.com/csmops/etcd-repopulate/activities"
	"github.com/csmops/etcd-repopulate/internal/activitytest"
	"github.com/csmops/etcd-repopulate/internal/api"
	"github.com/csmops/etcd-repopulate/internal/csm"
	"github.com/csmops/etcd-repopulate/internal/csmemu"
	"github.com/csmops/etcd-repopulate/procedures/crus"
)

func check(stuckAfter, budget time.Duration) crus.CRUSCheckRequest {
	return crus.CRUSCheckRequest{Plan: api.CRUSPlan{Poll: 10 * time.Millisecond, StuckAfter: stuckAfter}, Budget: budget}
}

// TestCheckCRUSSessionsFollowsUntilCompleteOrStuck: a session that posts
// progress is followed until it completes; one that stops changing is
// reported stuck after stuckAfter, with its last messages, not waited out.
func TestCheckCRUSSessionsFollowsUntilCompleteOrStuck(t *testing.T) {
	e, a := csmEmuRelease(t, api.CSM10)
	stuck := csmemu.ExampleCRUSSession()
	e.AddCRUSSession(stuck) // no script: never changes
	progressing := e.AddCRUSSession(csm.CRUSSession{State: csm.CRUSUpdating}, csmemu.CRUSScript(1)...)

	got, _, err := activitytest.Run[crus.CRUSCheck](t, a, a.CheckCRUSSessions, check(500*time.Millisecond, 10*time.Second), nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Sessions) != 2 || got.NotInstalled {
		t.Fatalf("check = %+v, want both sessions", got)
	}
	s, p := got.Sessions[0], got.Sessions[1]
	if s.UpgradeID != stuck.UpgradeID || !s.Stuck || s.Completed || !slices.Equal(s.LastMessage, stuck.Messages) {
		t.Errorf("unchanged session = %+v, want stuck with its last 3 messages", s)
	}
	if p.UpgradeID != progressing || !p.Completed || p.Stuck || p.LastMessage[len(p.LastMessage)-1] != "Upgrade Session Completed" {
		t.Errorf("progressing session = %+v, want followed until completed", p)
	}
	if !strings.Contains(got.Message, "2 CRUS sessions, 1 completed, 1 stuck: "+stuck.UpgradeID+" (UPDATING: ") {
		t.Errorf("message %q", got.Message)
	}
}

// TestCheckCRUSSessionsRetryKeepsCountingTowardsStuck: a retried check
// resumes from the heartbeat details, so the time a session has already
// been unchanged counts: it is stuck at the retry's first look.
func TestCheckCRUSSessionsRetryKeepsCountingTowardsStuck(t *testing.T) {
	e, a := csmEmuRelease(t, api.CSM10)
	stuck := csmemu.ExampleCRUSSession()
	e.AddCRUSSession(stuck)
	req := check(time.Second, 100*time.Millisecond)

	first, beats, err := activitytest.Run[crus.CRUSCheck](t, a, a.CheckCRUSSessions, req, nil)
	if err != nil || first.Sessions[0].Stuck || len(beats) == 0 || !strings.Contains(first.Message, "1 still progressing when the wait ended") {
		t.Fatalf("first check = %+v, %v (heartbeats %d): want the session not yet stuck when the budget ends", first, err, len(beats))
	}
	time.Sleep(time.Second)
	lists := e.Requests(csm.PathCRUSSession)
	retry, _, err := activitytest.Run[crus.CRUSCheck](t, a, a.CheckCRUSSessions, req, json.RawMessage(beats[len(beats)-1]))
	if err != nil || !retry.Sessions[0].Stuck {
		t.Fatalf("retry = %+v, %v: want the session stuck", retry, err)
	}
	if n := e.Requests(csm.PathCRUSSession) - lists; n != 1 {
		t.Errorf("the retry listed the sessions %d times, want once (stuck since the first attempt)", n)
	}
}

// TestCheckCRUSSessionsNotInstalled: CSM 1.5 removed CRUS and its API
// answers 404; the check says so instead of failing.
func TestCheckCRUSSessionsNotInstalled(t *testing.T) {
	_, a := csmEmuRelease(t, api.CSM15)
	got, _, err := activitytest.Run[crus.CRUSCheck](t, a, a.CheckCRUSSessions, check(time.Second, time.Second), nil)
	if err != nil || !got.NotInstalled || !strings.Contains(got.Message, "CRUS is not installed") {
		t.Fatalf("check = %+v, %v: want not installed", got, err)
	}
}

// TestConfirmCRUSSessions: done once CRUS lists every session it listed
// before the restart; a session still missing when the wait ends is named.
func TestConfirmCRUSSessions(t *testing.T) {
	e, a := csmEmuRelease(t, api.CSM10)
	id := e.AddCRUSSession(csmemu.ExampleCRUSSession())
	got, _, err := activitytest.Run[activities.Outcome](t, a, a.ConfirmCRUSSessions, crus.CRUSConfirmRequest{UpgradeIDs: []string{id}, Budget: time.Second, Poll: 10 * time.Millisecond}, nil)
	if err != nil || !strings.Contains(got.Message, "all 1 sessions listed again") {
		t.Fatalf("confirm = %+v, %v", got, err)
	}
	const lost = "00000000-0000-4000-8000-000000000000"
	_, _, err = activitytest.Run[activities.Outcome](t, a, a.ConfirmCRUSSessions, crus.CRUSConfirmRequest{UpgradeIDs: []string{id, lost}, Budget: 200 * time.Millisecond, Poll: 10 * time.Millisecond}, nil)
	var appErr *temporal.ApplicationError
	if !errors.As(err, &appErr) || appErr.Type() != activities.ErrWaitTimedOut || !strings.Contains(err.Error(), "missing "+lost) {
		t.Fatalf("confirm with a session CRUS no longer lists: %v, want %s naming it", err, activities.ErrWaitTimedOut)
	}
}

// csmEmuRelease serves an emulator of rel's APIs and returns the crus
// activities talking to it.
func csmEmuRelease(t *testing.T, rel api.Release) (*csmemu.Emulator, *crus.Activities) {
	e, c := activitytest.CSM(t, rel, nil)
	return e, &crus.Activities{CSM: c}
}
