package sshtest

import (
	"context"
	"strings"
	"testing"
	"time"
)

func startFleet(t *testing.T, opts Options) *Fleet {
	t.Helper()
	if err := CheckTools(); err != nil {
		t.Fatal(err) // never skip: the tests must run against the real parts
	}
	if opts.Dir == "" {
		opts.Dir = t.TempDir()
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	f, err := Start(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(f.Stop)
	return f
}

// TestSystemSSH checks the fleet with OpenSSH's own client: every node
// answers on its own address, the stand-in logs it, a wrong host key is
// refused and the unreachable node is refused.
func TestSystemSSH(t *testing.T) {
	f := startFleet(t, Options{Nodes: 3, NodesPerSSHD: 2})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, n := range f.NodeNames {
		out, err := f.SSHCommand(ctx, n, "systemctl restart cray-dvs-orca").CombinedOutput()
		if err != nil {
			t.Fatalf("ssh -F %s %s: %v\n%s", f.ConfigFile, n, err, out)
		}
	}
	got, err := f.Restarts()
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range f.NodeNames {
		if got[n] != 1 {
			t.Errorf("%s restarted %d times, want 1 (all: %v)", n, got[n], got)
		}
	}
	nodes := f.Nodes()
	if nodes[0].IP != "127.1.0.1" || nodes[2].IP != "127.1.0.3" || nodes[0].Port != nodes[1].Port || nodes[1].Port == nodes[2].Port {
		t.Errorf("unexpected addresses (2 nodes per sshd): %+v", nodes)
	}

	// Named nodes (NCN host names) are served like the numbered ones.
	if err := f.AddNodes(ctx, "ncn-w001", "ncn-s001", "ncn-s002"); err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"ncn-w001", "ncn-s002"} {
		if out, err := f.SSHCommand(ctx, n, "systemctl restart cray-dvs-orca").CombinedOutput(); err != nil {
			t.Fatalf("ssh %s: %v\n%s", n, err, out)
		}
	}
	if got, err := f.Restarts(); err != nil || got["ncn-w001"] != 1 || got["ncn-s002"] != 1 || got["ncn-s001"] != 0 {
		t.Fatalf("restarts of named nodes: %v %v", got, err)
	}
	if err := f.AddNodes(ctx, "ncn-w001"); err == nil || !strings.Contains(err.Error(), "already in the fleet") {
		t.Errorf("AddNodes of a name in use: %v", err)
	}

	if err := f.AddWrongKeyNode(ctx, "wrongkey-nmn"); err != nil {
		t.Fatal(err)
	}
	if err := f.AddUnreachableNode("down-nmn"); err != nil {
		t.Fatal(err)
	}
	out, err := f.SSHCommand(ctx, "wrongkey-nmn", "true").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "HOST IDENTIFICATION HAS CHANGED") {
		t.Errorf("ssh to the wrong-key node: err %v, output %s; want a host key change refusal", err, out)
	}
	out, err = f.SSHCommand(ctx, "down-nmn", "true").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "Connection refused") {
		t.Errorf("ssh to the unreachable node: err %v, output %s; want connection refused", err, out)
	}
	if err := f.ResetRestarts(); err != nil {
		t.Fatal(err)
	}
	if got, err := f.Restarts(); err != nil || len(got) != 0 {
		t.Fatalf("after ResetRestarts: %v %v", got, err)
	}
}

// TestPdsh runs the real pdsh over three nodes with PdshEnv.
func TestPdsh(t *testing.T) {
	f := startFleet(t, Options{Nodes: 3, RestartDelay: 200 * time.Millisecond})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	start := time.Now()
	out, err := f.PdshCommand(ctx, 32, f.NodeNames, "systemctl restart cray-dvs-orca").CombinedOutput()
	if err != nil {
		t.Fatalf("pdsh: %v\n%s", err, out)
	}
	if strings.TrimSpace(string(out)) != "" {
		t.Errorf("pdsh printed %q, want nothing (the stand-in is silent)", out)
	}
	if d := time.Since(start); d < 200*time.Millisecond {
		t.Errorf("pdsh returned after %v, before the stand-in's restart delay", d)
	}
	got, err := f.Restarts()
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 {
		t.Errorf("restarts %v, want the 3 nodes once each", got)
	}
	for _, n := range f.NodeNames {
		if got[n] != 1 {
			t.Errorf("%s restarted %d times by pdsh, want 1", n, got[n])
		}
	}
}

func TestOptionsErrors(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		opts Options
		want string
	}{
		{Options{Nodes: 1}, "Options.Dir is empty"},
		{Options{Dir: "/tmp/a b", Nodes: 1}, "whitespace"},
		{Options{Dir: t.TempDir(), Nodes: 20, NodesPerSSHD: 17}, "MAX_LISTEN_SOCKS"},
		{Options{Dir: t.TempDir(), Nodes: -1}, "out of range"},
	} {
		if _, err := Start(ctx, tc.opts); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Start(%+v): %v, want an error containing %q", tc.opts, err, tc.want)
		}
	}
}
