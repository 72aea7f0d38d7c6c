package main

import (
	"strings"
	"testing"
	"time"
)

// TestFleetOptions: the straggler, failure and unreachable options need
// the remote fleet, and an unknown fleet is named with the known ones.
func TestFleetOptions(t *testing.T) {
	for _, c := range []struct {
		o    fleetOptions
		want string
	}{
		{fleetOptions{kind: "openssh"}, ""},
		{fleetOptions{kind: "remote", stragglers: 0.01, failures: 0.01, unreachable: 0.01}, ""},
		{fleetOptions{kind: "openssh", stragglers: 0.01}, "need -fleet remote"},
		{fleetOptions{kind: "openssh", unreachable: 0.01}, "need -fleet remote"},
		{fleetOptions{kind: "sshd"}, `-fleet "sshd": give openssh`},
	} {
		err := c.o.check()
		if c.want == "" && err != nil || c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)) {
			t.Errorf("check(%+v) = %v, want %q", c.o, err, c.want)
		}
	}
}

// TestIdeal is issue 14's reference wall: ⌈N/W⌉ × delay, plus the
// stragglers' delay once.
func TestIdeal(t *testing.T) {
	remote := fleetOptions{kind: "remote"}
	if got := ideal(remote, 1000, 256, time.Second); got != 4*time.Second {
		t.Errorf("1000 nodes, W 256, 1s: %v, want 4s", got)
	}
	remote.stragglers, remote.stragglerDelay = 0.01, 10*time.Second
	if got := ideal(remote, 1000, 256, time.Second); got != 14*time.Second {
		t.Errorf("with stragglers at 10s: %v, want 14s", got)
	}
	if got := ideal(fleetOptions{kind: "openssh"}, 1000, 256, time.Second); got != 0 {
		t.Errorf("openssh: %v, want 0 (no ideal)", got)
	}
}

// TestBoxLimit: the OpenSSH fleet's limit is the servers' CPU over the
// cores or the restarts at width W, whichever is longer.
func TestBoxLimit(t *testing.T) {
	if got := boxLimit(100*time.Second, 2, 1000, 256, time.Second); got != 50*time.Second {
		t.Errorf("CPU-bound: %v, want 100s / 2 cores = 50s", got)
	}
	if got := boxLimit(2*time.Second, 2, 1000, 256, time.Second); got != 4*time.Second {
		t.Errorf("restart-bound: %v, want ⌈1000/256⌉ × 1s = 4s", got)
	}
	if got := boxLimit(3*time.Second, 4, 1000, 256, 0); got != 750*time.Millisecond {
		t.Errorf("0s restarts: %v, want 3s / 4 cores", got)
	}
}

// TestDefaultTimeout: 20 minutes per 1,000 nodes, at least 20.
func TestDefaultTimeout(t *testing.T) {
	for n, want := range map[int]time.Duration{1: 20 * time.Minute, 1000: 20 * time.Minute, 1001: 40 * time.Minute, 10000: 200 * time.Minute} {
		if got := defaultTimeout(n); got != want {
			t.Errorf("defaultTimeout(%d) = %v, want %v", n, got, want)
		}
	}
}
