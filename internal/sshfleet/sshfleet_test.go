package sshfleet

import (
	"context"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/csmops/etcd-repopulate/internal/sshfan"
)

func startFleet(t *testing.T, opts Options) *Fleet {
	t.Helper()
	if opts.Dir == "" {
		opts.Dir = t.TempDir()
	}
	f, err := Start(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(f.Close)
	return f
}

// runAll runs command on hosts with sshfan (x/crypto/ssh's client) through
// the fleet's client config and the given known_hosts.
func runAll(t *testing.T, f Files, knownHosts string, hosts []string, command string) map[string]sshfan.Result {
	t.Helper()
	r, err := sshfan.New(sshfan.Options{ConfigFile: f.ConfigFile, KnownHosts: []string{knownHosts}, Concurrency: 64,
		ConnectTimeout: 5 * time.Second, CommandTimeout: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	got := map[string]sshfan.Result{}
	if err := r.Run(context.Background(), hosts, command, func(res sshfan.Result) { got[res.Host] = res }); err != nil {
		t.Fatal(err)
	}
	return got
}

// TestGoClientRestartsEveryNodeOnce: each node answers on its own address
// behind the config's host key and user key, and the ledger counts one
// restart per node, on that node.
func TestGoClientRestartsEveryNodeOnce(t *testing.T) {
	f := startFleet(t, Options{Nodes: 300, RestartDelay: 100 * time.Millisecond})
	got := runAll(t, f.Files, f.KnownHosts, f.NodeNames[:299], "systemctl restart cray-dvs-orca")
	for _, n := range f.NodeNames[:299] {
		if got[n].Status != sshfan.StatusOK {
			t.Fatalf("%s: %+v", n, got[n])
		}
	}
	ledger := f.Restarts()
	for _, n := range f.NodeNames[:299] {
		if ledger[n] != 1 {
			t.Errorf("%s restarted %d times, want 1", n, ledger[n])
		}
	}
	if last := f.NodeNames[299]; ledger[last] != 0 {
		t.Errorf("%s (not asked) restarted %d times", last, ledger[last])
	}
	if s := f.Stats(); s.Connections != 299 || s.Handshakes != 299 || s.Restarts != 299 {
		t.Errorf("stats %+v, want 299 connections, handshakes and restarts", s)
	}
	cfg, err := os.ReadFile(f.ConfigFile)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(cfg), "Host nid000300-nmn\n  HostName 127.1.1.50\n") {
		t.Errorf("node 300 is not at 127.1.1.50 in the config:\n%s", cfg[len(cfg)-600:])
	}

	// Anything but systemctl restart is refused and not counted.
	f.ResetRestarts()
	got = runAll(t, f.Files, f.KnownHosts, f.NodeNames[:1], "rm -rf /")
	if r := got[f.NodeNames[0]]; r.Status != sshfan.StatusFailed || r.ExitStatus != 127 {
		t.Errorf("unknown command: %+v, want failed with exit 127", r)
	}
	if n := f.Restarts()[f.NodeNames[0]]; n != 0 {
		t.Errorf("unknown command counted as %d restarts", n)
	}
}

// TestRoles: stragglers take their delay, failing nodes exit 1 with a
// stderr line and count, unreachable nodes refuse connections and do not.
func TestRoles(t *testing.T) {
	const straggle = 1500 * time.Millisecond
	f := startFleet(t, Options{Nodes: 40, RestartDelay: 0, Stragglers: 0.1, StragglerDelay: straggle, Failures: 0.1, Unreachable: 0.05, Seed: 7})
	count := map[Role]int{}
	for _, r := range f.Roles {
		count[r]++
	}
	if count[RoleStraggler] != 4 || count[RoleFailing] != 4 || count[RoleUnreachable] != 2 || count[RoleNormal] != 30 {
		t.Fatalf("roles %v, want 4 stragglers, 4 failing, 2 unreachable, 30 normal", count)
	}
	got := runAll(t, f.Files, f.KnownHosts, f.NodeNames, "systemctl restart cray-dvs-orca")
	ledger := f.Restarts()
	for _, n := range f.NodeNames {
		r := got[n]
		switch f.Roles[n] {
		case RoleNormal:
			if r.Status != sshfan.StatusOK || r.Duration > time.Second || ledger[n] != 1 {
				t.Errorf("normal %s: %+v, ledger %d", n, r, ledger[n])
			}
		case RoleStraggler:
			if r.Status != sshfan.StatusOK || r.Duration < straggle || ledger[n] != 1 {
				t.Errorf("straggler %s: %+v (want ≥ %v), ledger %d", n, r, straggle, ledger[n])
			}
		case RoleFailing:
			if r.Status != sshfan.StatusFailed || r.ExitStatus != 1 || !strings.Contains(r.Reason, "Job for cray-dvs-orca.service failed") || ledger[n] != 1 {
				t.Errorf("failing %s: %+v, ledger %d", n, r, ledger[n])
			}
		case RoleUnreachable:
			if r.Status != sshfan.StatusUnreachable || !strings.Contains(r.Reason, "refused") || ledger[n] != 0 {
				t.Errorf("unreachable %s: %+v, ledger %d", n, r, ledger[n])
			}
		}
	}
	// The same seed chooses the same nodes.
	g := startFleet(t, Options{Nodes: 40, Stragglers: 0.1, StragglerDelay: straggle, Failures: 0.1, Unreachable: 0.05, Seed: 7})
	for _, n := range f.NodeNames {
		if f.Roles[n] != g.Roles[n] {
			t.Errorf("seed 7 gave %s role %s, then %s", n, f.Roles[n], g.Roles[n])
		}
	}
}

// TestWrongKnownHostsRefused: a known_hosts listing another key for the
// nodes makes the client refuse them before anything runs.
func TestWrongKnownHostsRefused(t *testing.T) {
	f := startFleet(t, Options{Nodes: 2})
	other := startFleet(t, Options{Nodes: 2}) // same addresses' names, its own host key
	kh, err := os.ReadFile(other.KnownHosts)
	if err != nil {
		t.Fatal(err)
	}
	wrong := filepath.Join(t.TempDir(), "known_hosts")
	// Other's key, for f's addresses and port.
	khWrong := strings.ReplaceAll(string(kh), "]:"+strconv.Itoa(other.Port)+" ", "]:"+strconv.Itoa(f.Port)+" ")
	if err := os.WriteFile(wrong, []byte(khWrong), 0o644); err != nil {
		t.Fatal(err)
	}
	got := runAll(t, f.Files, wrong, f.NodeNames, "systemctl restart cray-dvs-orca")
	for _, n := range f.NodeNames {
		if r := got[n]; r.Status != sshfan.StatusFailed || !strings.Contains(r.Reason, "host key") {
			t.Errorf("%s with a wrong known_hosts: %+v, want failed on the host key", n, r)
		}
	}
	if s := f.Stats(); s.Restarts != 0 || s.Handshakes != 0 {
		t.Errorf("stats %+v: nothing should have run", s)
	}
	// The system ssh refuses it too.
	if _, err := exec.LookPath("ssh"); err == nil {
		out, err := exec.Command("ssh", "-F", f.ConfigFile, "-o", "UserKnownHostsFile="+wrong, f.NodeNames[0], "systemctl restart x").CombinedOutput()
		if err == nil || !strings.Contains(string(out), "HOST IDENTIFICATION HAS CHANGED") {
			t.Errorf("ssh with a wrong known_hosts: %v\n%s", err, out)
		}
	}
}

// TestSystemSSHAndPdsh: OpenSSH's client and pdsh reach the same fleet
// through the same config.
func TestSystemSSHAndPdsh(t *testing.T) {
	for _, b := range []string{"ssh", "pdsh"} {
		if _, err := exec.LookPath(b); err != nil {
			t.Fatalf("%s not found: run `hack/install-tools.sh ssh-peers`", b) // never skip: the real client is the point
		}
	}
	f := startFleet(t, Options{Nodes: 20, RestartDelay: 50 * time.Millisecond, Failures: 0.1, Unreachable: 0.05, Seed: 3})
	var failing, good string
	for _, n := range f.NodeNames {
		switch f.Roles[n] {
		case RoleFailing:
			failing = n
		case RoleNormal:
			good = n
		}
	}
	if out, err := exec.Command("ssh", "-F", f.ConfigFile, good, "systemctl restart cray-dvs-orca").CombinedOutput(); err != nil {
		t.Fatalf("ssh -F %s %s: %v\n%s", f.ConfigFile, good, err, out)
	}
	out, err := exec.Command("ssh", "-F", f.ConfigFile, failing, "systemctl restart cray-dvs-orca").CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 || !strings.Contains(string(out), "Job for cray-dvs-orca.service failed") {
		t.Errorf("ssh to failing %s: %v\n%s", failing, err, out)
	}
	f.ResetRestarts()
	out, _ = f.PdshCommand(context.Background(), 8, f.NodeNames, "systemctl restart cray-dvs-orca").CombinedOutput()
	ledger := f.Restarts()
	for _, n := range f.NodeNames {
		want := 1
		if f.Roles[n] == RoleUnreachable {
			want = 0
			if !strings.Contains(string(out), n+": ssh: connect to host") {
				t.Errorf("pdsh output does not show %s refused:\n%s", n, out)
			}
		}
		if ledger[n] != want {
			t.Errorf("pdsh: %s (%s) restarted %d times, want %d\n%s", n, f.Roles[n], ledger[n], want, out)
		}
	}
	if !strings.Contains(string(out), failing+": Job for cray-dvs-orca.service failed") {
		t.Errorf("pdsh output lacks %s's stderr line:\n%s", failing, out)
	}
}

// TestBadOptions: each bad option is refused with an error naming it.
func TestBadOptions(t *testing.T) {
	dir := t.TempDir()
	for _, c := range []struct {
		opts Options
		want string
	}{
		{Options{Nodes: 1}, "Options.Dir is empty"},
		{Options{Dir: "/tmp/a b", Nodes: 1}, "whitespace"},
		{Options{Dir: dir}, "Options.Nodes 0 out of range"},
		{Options{Dir: dir, Nodes: MaxNodes + 1}, "out of range"},
		{Options{Dir: dir, Nodes: 1, RestartDelay: -time.Second}, "Options.RestartDelay -1s is negative"},
		{Options{Dir: dir, Nodes: 1, Failures: 1.5}, "Options.Failures 1.5 is not a share"},
		{Options{Dir: dir, Nodes: 1, Stragglers: 0.6, StragglerDelay: time.Second, Unreachable: 0.6}, "add up to at most 1"},
		{Options{Dir: dir, Nodes: 1, Stragglers: 0.1}, "StragglerDelay is 0"},
	} {
		_, err := Start(c.opts)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Start(%+v): %v, want an error containing %q", c.opts, err, c.want)
		}
	}
}

// TestTooFewFileDescriptors: a fleet the open-file limit cannot hold is
// refused up front, naming the limit and how to raise it.
func TestTooFewFileDescriptors(t *testing.T) {
	var l syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l); err != nil {
		t.Fatal(err)
	}
	low := l
	low.Cur = 1000
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &low); err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &l); err != nil {
			t.Fatal(err)
		}
	}()
	_, err := Start(Options{Dir: t.TempDir(), Nodes: 600})
	if err == nil || !strings.Contains(err.Error(), "600 nodes need 1112 file descriptors") || !strings.Contains(err.Error(), "ulimit -n 1112") {
		t.Errorf("600 nodes under a limit of 1000: %v", err)
	}
}

// TestProcess runs the fleet as its own process, as the benchmark does:
// the ready line, the ledger over the control API, reset, and the
// process's CPU.
func TestProcess(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "sshfleet")
	if out, err := exec.Command("go", "build", "-o", bin, "../../hack/sshfleet").CombinedOutput(); err != nil {
		t.Fatalf("go build ./hack/sshfleet: %v\n%s", err, out)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	p, err := StartProcess(ctx, bin, Options{Dir: t.TempDir(), Nodes: 50, Failures: 0.02, Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Stop()
	if len(p.NodeNames) != 50 || p.Roles[p.NodeNames[0]] == "" {
		t.Fatalf("ready line: %d nodes, roles %v", len(p.NodeNames), p.Roles)
	}
	cpu0, err := p.ServerCPU()
	if err != nil {
		t.Fatal(err)
	}
	got := runAll(t, p.Files, p.KnownHosts, p.NodeNames, "systemctl restart cray-dvs-orca")
	ledger, err := p.Restarts()
	if err != nil {
		t.Fatal(err)
	}
	failed := 0
	for _, n := range p.NodeNames {
		if ledger[n] != 1 {
			t.Errorf("%s restarted %d times", n, ledger[n])
		}
		if got[n].Status == sshfan.StatusFailed {
			failed++
		}
	}
	if failed != 1 {
		t.Errorf("%d failed nodes, want 1 (2 %% of 50)", failed)
	}
	if s, err := p.Stats(); err != nil || s.Connections != 50 {
		t.Errorf("stats %+v, %v: want 50 connections", s, err)
	}
	cpu1, err := p.ServerCPU()
	if err != nil {
		t.Fatal(err)
	}
	if cpu1 < cpu0 {
		t.Errorf("server CPU went back: %v then %v", cpu0, cpu1)
	}
	t.Logf("fleet process CPU for 50 connections: %v", cpu1-cpu0)
	if err := p.ResetRestarts(); err != nil {
		t.Fatal(err)
	}
	if ledger, _ := p.Restarts(); ledger[p.NodeNames[0]] != 0 {
		t.Errorf("after reset: %v", ledger)
	}

	// A missing binary is named with the command that builds it.
	if _, err := StartProcess(ctx, filepath.Join(t.TempDir(), "nope"), Options{Dir: t.TempDir(), Nodes: 1}); err == nil || !strings.Contains(err.Error(), "go build -o") {
		t.Errorf("missing binary: %v", err)
	}
}

// TestCloseEndsSessions: Close does not wait for running restarts or for
// clients that never finish their handshake.
func TestCloseEndsSessions(t *testing.T) {
	f, err := Start(Options{Dir: t.TempDir(), Nodes: 2, RestartDelay: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	silent, err := net.Dial("tcp", net.JoinHostPort("127.1.0.2", strconv.Itoa(f.Port)))
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	done := make(chan map[string]sshfan.Result, 1)
	go func() { done <- runAll(t, f.Files, f.KnownHosts, f.NodeNames[:1], "systemctl restart cray-dvs-orca") }()
	for f.Stats().Restarts == 0 {
		time.Sleep(10 * time.Millisecond)
	}
	start := time.Now()
	f.Close()
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("Close took %v with a restart running and a silent client", d)
	}
	if r := (<-done)[f.NodeNames[0]]; r.Status == sshfan.StatusOK {
		t.Errorf("restart cut short by Close reported ok: %+v", r)
	}
}
