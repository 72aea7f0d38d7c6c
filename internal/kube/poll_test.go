package kube

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestPollReportsProgressAndEndsWhenDone(t *testing.T) {
	var seen []string
	looks := 0
	state, err := Poll(context.Background(), Wait{Budget: time.Minute, Interval: time.Millisecond, Progress: func(s string) { seen = append(seen, s) }}, "x",
		func(context.Context) (string, bool, error) {
			looks++
			return map[bool]string{true: "done", false: "not yet"}[looks == 3], looks == 3, nil
		})
	if err != nil || state != "done" || len(seen) != 2 || seen[0] != "not yet" {
		t.Fatalf("state %q, err %v, progress %q: want done after two reports", state, err, seen)
	}
}

func TestPollBudgetRunsFromSince(t *testing.T) {
	// A retried wait whose first attempt began long ago gives up after one
	// look, naming what it waited for and what it saw last.
	looks := 0
	_, err := Poll(context.Background(), Wait{Since: time.Now().Add(-time.Hour), Budget: time.Minute, Interval: time.Millisecond}, "Job services/j to complete",
		func(context.Context) (string, bool, error) { looks++; return "active 1", false, nil })
	var timeout *TimeoutError
	if !errors.As(err, &timeout) || timeout.State != "active 1" || timeout.What != "Job services/j to complete" || looks != 1 {
		t.Fatalf("err %v after %d looks, want a TimeoutError after one", err, looks)
	}
}

func TestPollStopsWithItsContextAndOnCheckErrors(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	_, err := Poll(ctx, Wait{Budget: time.Minute, Interval: time.Hour, Progress: func(string) { cancel() }}, "x",
		func(context.Context) (string, bool, error) { return "", false, nil })
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err %v, want context.Canceled", err)
	}
	failed := &JobFailedError{}
	if _, err := Poll(context.Background(), Wait{Budget: time.Minute}, "x", func(context.Context) (string, bool, error) { return "", false, failed }); err != failed {
		t.Fatalf("err %v, want the check's error as it is", err)
	}
}
