package csm_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/csmops/etcd-repopulate/internal/csm"
	"github.com/csmops/etcd-repopulate/internal/csmemu"
)

const testSecret = "s3cr3t-Very-Distinct-Value-42"

// startEmu serves a new emulator (HTTP unless useTLS) for the test.
func startEmu(t *testing.T, opts csmemu.Options, useTLS bool) (*csmemu.Emulator, string) {
	t.Helper()
	if opts.ClientSecret == "" {
		opts.ClientSecret = testSecret
	}
	e := csmemu.New(opts)
	u, err := e.Start(useTLS)
	if err != nil {
		t.Fatalf("start emulator: %v", err)
	}
	t.Cleanup(func() { e.Close() })
	return e, u
}

// newClient builds a client for base with the test secret; mod may adjust
// the config.
func newClient(t *testing.T, base string, mod func(*csm.Config)) *csm.Client {
	t.Helper()
	cfg := csm.Config{BaseURL: base, Secret: csm.SecretValue(testSecret), Timeout: 5 * time.Second}
	if mod != nil {
		mod(&cfg)
	}
	c, err := csm.New(cfg)
	if err != nil {
		t.Fatalf("csm.New: %v", err)
	}
	return c
}

func ctx(t *testing.T) context.Context {
	t.Helper()
	c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return c
}

// wantKind asserts err is a *csm.Error of kind k and returns it.
func wantKind(t *testing.T, err error, k csm.Kind) *csm.Error {
	t.Helper()
	if err == nil {
		t.Fatalf("got no error, want %s", k)
	}
	var e *csm.Error
	if !errors.As(err, &e) {
		t.Fatalf("error %T %q is not a *csm.Error", err, err)
	}
	if e.Kind != k {
		t.Fatalf("kind %s, want %s: %v", e.Kind, k, err)
	}
	return e
}

func wantContains(t *testing.T, s string, subs ...string) {
	t.Helper()
	for _, sub := range subs {
		if !strings.Contains(s, sub) {
			t.Errorf("%q does not contain %q", s, sub)
		}
	}
}

func nodes() []csm.Component {
	cs := csmemu.ComputeNodes(4)
	cs = append(cs,
		csm.Component{ID: "x1000c0s4b0n0", Type: "Node", State: "Off", Flag: "OK", Enabled: true, Role: "Compute", NID: 5, Arch: "X86", Class: "Mountain"},
		csm.Component{ID: "x1000c0s5b0n0", Type: "Node", State: "Standby", Flag: "Alert", Enabled: true, Role: "Compute", NID: 6},
		csm.Component{ID: "x3000c0s19b1n0", Type: "Node", State: "Ready", Flag: "OK", Enabled: true, Role: "Application", SubRole: "UAN", NID: 0, NetType: "Sling", Arch: "X86", Class: "River"},
		csm.Component{ID: "x3000c0s1b0n0", Type: "Node", State: "Ready", Flag: "OK", Enabled: true, Role: "Management", SubRole: "Worker"},
		csm.Component{ID: "x1000c0s0b0", Type: "NodeBMC", State: "Ready", Flag: "OK", Enabled: true},
	)
	return cs
}
