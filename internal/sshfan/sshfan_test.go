package sshfan

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/csmops/etcd-repopulate/internal/badinput"
	"github.com/csmops/etcd-repopulate/internal/sshtest"
)

const restartCmd = "systemctl restart cray-dvs-orca"

// startFleet starts real sshd processes; it fails (never skips) when sshd,
// ssh, pdsh or flock is missing, with the command that installs them.
func startFleet(t *testing.T, nodes int, delay time.Duration) *sshtest.Fleet {
	t.Helper()
	if err := sshtest.CheckTools(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	f, err := sshtest.Start(ctx, sshtest.Options{Dir: t.TempDir(), Nodes: nodes, RestartDelay: delay})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(f.Stop)
	return f
}

func fleetOptions(f *sshtest.Fleet) Options {
	return Options{
		ConfigFile:     f.ConfigFile,
		KnownHosts:     []string{f.KnownHosts},
		Concurrency:    DefaultConcurrency,
		ConnectTimeout: 10 * time.Second,
		CommandTimeout: 30 * time.Second,
	}
}

func newRunner(t *testing.T, opts Options) *Runner {
	t.Helper()
	r, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

// collect runs and returns the results by host, failing on a host reported
// twice.
func collect(t *testing.T, ctx context.Context, r *Runner, hosts []string, cmd string) (map[string]Result, error) {
	t.Helper()
	got := map[string]Result{}
	err := r.Run(ctx, hosts, cmd, func(res Result) {
		if _, dup := got[res.Host]; dup {
			t.Errorf("%s reported twice", res.Host)
		}
		got[res.Host] = res
	})
	if len(got) != len(hosts) {
		t.Errorf("%d results for %d hosts: %v", len(got), len(hosts), got)
	}
	return got, err
}

// TestFleet is the acceptance test: three good nodes, one whose sshd
// presents a host key other than known_hosts says, one where nothing
// listens. Each good node restarts exactly once; the bad ones fail with
// the right status and reason and do not disturb the others.
func TestFleet(t *testing.T) {
	f := startFleet(t, 3, 0)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := f.AddWrongKeyNode(ctx, "wrongkey-nmn"); err != nil {
		t.Fatal(err)
	}
	if err := f.AddUnreachableNode("down-nmn"); err != nil {
		t.Fatal(err)
	}
	r := newRunner(t, fleetOptions(f))
	hosts := append(append([]string{}, f.NodeNames...), "wrongkey-nmn", "down-nmn")
	got, err := collect(t, ctx, r, hosts, restartCmd)
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range hosts {
		t.Logf("%s: %s %v %s", h, got[h].Status, got[h].Duration.Round(time.Millisecond), got[h].Reason)
	}
	for _, n := range f.NodeNames {
		if got[n].Status != StatusOK || got[n].Reason != "" || got[n].Duration <= 0 {
			t.Errorf("%s: %+v, want ok", n, got[n])
		}
	}
	if w := got["wrongkey-nmn"]; w.Status != StatusFailed || !strings.Contains(w.Reason, "host key mismatch") ||
		!strings.Contains(w.Reason, f.KnownHosts) {
		t.Errorf("wrong-key node: %+v, want failed with a host key mismatch naming known_hosts", w)
	}
	if d := got["down-nmn"]; d.Status != StatusUnreachable || !strings.Contains(d.Reason, "connection refused") {
		t.Errorf("unreachable node: %+v, want unreachable, connection refused", d)
	}
	restarts, err := f.Restarts()
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range f.NodeNames {
		if restarts[n] != 1 {
			t.Errorf("%s restarted %d times, want exactly 1", n, restarts[n])
		}
	}
	if len(restarts) != 3 {
		t.Errorf("restarts %v: the wrong-key and unreachable nodes must not run the command", restarts)
	}
	badinput.Record(t, badinput.Case{Area: badinput.Remote, Input: "node's SSH host key differs from known_hosts", Message: got["wrongkey-nmn"].Reason,
		Exit:      "node result " + string(got["wrongkey-nmn"].Status) + "; the other nodes go on",
		Unchanged: "the command never ran on that node (restart log); each good node restarted exactly once"})
	lines, _ := os.ReadFile(f.LogFile)
	if !strings.Contains(string(lines), " "+restartCmd+"\n") {
		t.Errorf("the stand-in did not log the command: %q", lines)
	}
}

func TestUnknownHostAndAuthFailure(t *testing.T) {
	f := startFleet(t, 2, 0)
	ctx := context.Background()

	// known_hosts without the first node: unknown host, never connected to.
	kh, _ := os.ReadFile(f.KnownHosts)
	lines := strings.SplitAfter(string(kh), "\n")
	partial := filepath.Join(t.TempDir(), "known_hosts")
	os.WriteFile(partial, []byte(strings.Join(lines[1:], "")), 0o644)
	opts := fleetOptions(f)
	opts.KnownHosts = []string{partial}
	got, _ := collect(t, ctx, newRunner(t, opts), f.NodeNames, restartCmd)
	unknown := got[f.NodeNames[0]]
	if unknown.Status != StatusFailed || !strings.Contains(unknown.Reason, "host key unknown") {
		t.Errorf("unknown host: %+v, want failed, host key unknown", unknown)
	}
	if got[f.NodeNames[1]].Status != StatusOK {
		t.Errorf("known host: %+v", got[f.NodeNames[1]])
	}

	// A key the servers do not authorise, through a config without
	// IdentityFile (so Options.IdentityFiles applies).
	cfg := filepath.Join(t.TempDir(), "config")
	nodes := f.Nodes()
	os.WriteFile(cfg, []byte("Host "+nodes[0].Name+"\n  HostName "+nodes[0].IP+"\n  Port "+itoa(nodes[0].Port)+"\n"), 0o644)
	opts = fleetOptions(f)
	opts.ConfigFile = cfg
	opts.IdentityFiles = []string{writeTestKey(t, nil)}
	got, _ = collect(t, ctx, newRunner(t, opts), f.NodeNames[:1], restartCmd)
	if a := got[f.NodeNames[0]]; a.Status != StatusFailed || !strings.Contains(a.Reason, "authentication as") {
		t.Errorf("unauthorised key: %+v, want failed, authentication", a)
	}
	if rs, _ := f.Restarts(); rs[f.NodeNames[0]] != 0 {
		t.Errorf("node restarted without host key or auth: %v", rs)
	}
	badinput.Record(t, badinput.Case{Area: badinput.Remote, Input: "node missing from known_hosts", Message: unknown.Reason,
		Exit: "node result " + string(unknown.Status) + "; the other nodes go on", Unchanged: "the command never ran on that node (restart log)"})
	badinput.Record(t, badinput.Case{Area: badinput.Remote, Input: "SSH key not authorised on the node", Message: got[f.NodeNames[0]].Reason,
		Exit: "node result " + string(got[f.NodeNames[0]].Status), Unchanged: "the command never ran on that node (restart log)"})
}

func itoa(i int) string { return strconv.Itoa(i) }

func TestNonZeroExitKeepsStderrTail(t *testing.T) {
	f := startFleet(t, 3, 0)
	long := strings.Repeat("x", 500) + "\nJob for cray-dvs-orca.service failed because the control process exited with error code."
	if err := f.SetFailure(f.NodeNames[1], 3, long); err != nil {
		t.Fatal(err)
	}
	got, err := collect(t, context.Background(), newRunner(t, fleetOptions(f)), f.NodeNames, restartCmd)
	if err != nil {
		t.Fatal(err)
	}
	bad := got[f.NodeNames[1]]
	if bad.Status != StatusFailed || !strings.HasPrefix(bad.Reason, "exit status 3: ") ||
		!strings.HasSuffix(bad.Reason, "exited with error code.") {
		t.Errorf("failing node: %+v", bad)
	}
	if tail := strings.TrimPrefix(bad.Reason, "exit status 3: "); len(tail) > stderrTail {
		t.Errorf("reason keeps %d bytes of stderr, want at most %d", len(tail), stderrTail)
	}
	for _, n := range []string{f.NodeNames[0], f.NodeNames[2]} {
		if got[n].Status != StatusOK {
			t.Errorf("%s: %+v, want ok", n, got[n])
		}
	}
}

func TestCommandTimeout(t *testing.T) {
	f := startFleet(t, 2, 5*time.Second)
	opts := fleetOptions(f)
	opts.CommandTimeout = 700 * time.Millisecond
	start := time.Now()
	got, err := collect(t, context.Background(), newRunner(t, opts), f.NodeNames, restartCmd)
	if err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 4*time.Second {
		t.Errorf("Run took %v; the command timeout is 700ms", d)
	}
	for _, n := range f.NodeNames {
		if r := got[n]; r.Status != StatusFailed || !strings.Contains(r.Reason, "timed out after 700ms") {
			t.Errorf("%s: %+v, want failed, timed out", n, r)
		}
	}
}

func TestConcurrencyBoundAndSerialisedCallback(t *testing.T) {
	const delay = 600 * time.Millisecond
	f := startFleet(t, 9, delay)
	opts := fleetOptions(f)
	opts.Concurrency = 3
	r := newRunner(t, opts)
	var inCallback atomic.Int32
	var calls int
	start := time.Now()
	err := r.Run(context.Background(), f.NodeNames, restartCmd, func(res Result) {
		if inCallback.Add(1) != 1 {
			t.Error("onResult called concurrently")
		}
		time.Sleep(5 * time.Millisecond) // widen the window for overlap
		calls++
		if res.Status != StatusOK {
			t.Errorf("%+v", res)
		}
		inCallback.Add(-1)
	})
	elapsed := time.Since(start)
	if err != nil {
		t.Fatal(err)
	}
	if calls != 9 {
		t.Errorf("onResult called %d times, want 9", calls)
	}
	// 9 hosts, 3 at a time, each taking at least 600ms: at least 3 waves.
	if elapsed < 3*delay {
		t.Errorf("9 hosts at concurrency 3 finished in %v, under 3 x %v: more than 3 ran at once", elapsed, delay)
	}
	rs, _ := f.Restarts()
	for _, n := range f.NodeNames {
		if rs[n] != 1 {
			t.Errorf("%s restarted %d times", n, rs[n])
		}
	}
}

func TestCancelStopsDispatchAndAbortsSessions(t *testing.T) {
	f := startFleet(t, 6, 10*time.Second)
	opts := fleetOptions(f)
	opts.Concurrency = 2
	r := newRunner(t, opts)
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		// Cancel once both in-flight sessions have started the command.
		for {
			rs, _ := f.Restarts()
			if len(rs) >= 2 {
				cancel()
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
	}()
	start := time.Now()
	got, err := collect(t, ctx, r, f.NodeNames, restartCmd)
	if !errors.Is(err, context.Canceled) {
		t.Errorf("Run returned %v, want context.Canceled", err)
	}
	if d := time.Since(start); d > 8*time.Second {
		t.Errorf("Run took %v after cancel; in-flight sessions were not aborted", d)
	}
	aborted, notStarted := 0, 0
	for _, n := range f.NodeNames {
		switch r := got[n]; {
		case r.Status == StatusFailed && strings.HasPrefix(r.Reason, "aborted"):
			aborted++
		case r.Status == StatusFailed && strings.HasPrefix(r.Reason, "not started"):
			notStarted++
		default:
			t.Errorf("%s: %+v", n, r)
		}
	}
	if aborted != 2 || notStarted != 4 {
		t.Errorf("%d aborted, %d not started; want 2 and 4", aborted, notStarted)
	}
	if rs, _ := f.Restarts(); len(rs) != 2 {
		t.Errorf("restarts %v: hosts after the cancel must not be contacted", rs)
	}
}

func TestAgent(t *testing.T) {
	f := startFleet(t, 2, 0)
	agentBin, err := exec.LookPath("ssh-agent")
	if err != nil {
		t.Fatalf("ssh-agent not found: %s", sshtest.InstallHint)
	}
	sock := filepath.Join(t.TempDir(), "agent.sock")
	cmd := exec.Command(agentBin, "-D", "-a", sock)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	for i := 0; ; i++ {
		if _, err := os.Stat(sock); err == nil {
			break
		}
		if i > 200 {
			t.Fatal("ssh-agent did not create its socket")
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Setenv("SSH_AUTH_SOCK", sock)

	// An empty agent and no key: no auth method.
	cfg := filepath.Join(t.TempDir(), "config")
	var b strings.Builder
	for _, n := range f.Nodes() {
		b.WriteString("Host " + n.Name + "\n  HostName " + n.IP + "\n  Port " + itoa(n.Port) + "\n")
	}
	os.WriteFile(cfg, []byte(b.String()), 0o644)
	opts := fleetOptions(f)
	opts.ConfigFile, opts.UseAgent = cfg, true
	if _, err := New(opts); err == nil || !strings.Contains(err.Error(), "holds no keys") {
		t.Fatalf("New with an empty agent: %v", err)
	}
	add := exec.Command("ssh-add", f.IdentityFile)
	add.Env = append(os.Environ(), "SSH_AUTH_SOCK="+sock)
	if out, err := add.CombinedOutput(); err != nil {
		t.Fatalf("ssh-add: %v %s", err, out)
	}
	got, err := collect(t, context.Background(), newRunner(t, opts), f.NodeNames, restartCmd)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range f.NodeNames {
		if got[n].Status != StatusOK {
			t.Errorf("%s via agent: %+v", n, got[n])
		}
	}
}

func writeTestKey(t *testing.T, passphrase []byte) string {
	t.Helper()
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	var block *pem.Block
	var err error
	if passphrase != nil {
		block, err = ssh.MarshalPrivateKeyWithPassphrase(priv, "", passphrase)
	} else {
		block, err = ssh.MarshalPrivateKey(priv, "")
	}
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "key")
	os.WriteFile(p, pem.EncodeToMemory(block), 0o600)
	return p
}

func TestNewErrors(t *testing.T) {
	dir := t.TempDir()
	kh := filepath.Join(dir, "known_hosts")
	os.WriteFile(kh, nil, 0o644)
	key := writeTestKey(t, nil)
	pub := filepath.Join(dir, "key.pub")
	s, _ := ssh.ParsePrivateKey(mustRead(t, key))
	os.WriteFile(pub, ssh.MarshalAuthorizedKey(s.PublicKey()), 0o644)
	badKH := filepath.Join(dir, "bad_known_hosts")
	os.WriteFile(badKH, []byte("host ssh-ed25519 notbase64!!\n"), 0o644)
	cfgMissingKey := filepath.Join(dir, "config_missing_key")
	os.WriteFile(cfgMissingKey, []byte("Host a\n  IdentityFile /nonexistent/id_ed25519\n"), 0o644)
	unreadable := filepath.Join(dir, "unreadable")
	os.Mkdir(unreadable, 0o755)

	good := Options{KnownHosts: []string{kh}, IdentityFiles: []string{key}, Concurrency: 1,
		ConnectTimeout: time.Second, CommandTimeout: time.Second}
	if r, err := New(good); err != nil {
		t.Fatalf("New(good): %v", err)
	} else {
		r.Close()
	}
	t.Setenv("SSH_AUTH_SOCK", "")
	for _, tc := range []struct {
		name   string
		modify func(*Options)
		want   []string
	}{
		{"zero concurrency", func(o *Options) { o.Concurrency = 0 }, []string{"Concurrency is 0", "at least 1"}},
		{"negative max startups", func(o *Options) { o.MaxStartups = -1 }, []string{"MaxStartups is -1"}},
		{"zero connect timeout", func(o *Options) { o.ConnectTimeout = 0 }, []string{"ConnectTimeout", "positive"}},
		{"negative command timeout", func(o *Options) { o.CommandTimeout = -time.Second }, []string{"CommandTimeout", "positive"}},
		{"no known_hosts", func(o *Options) { o.KnownHosts = nil }, []string{"KnownHosts is empty"}},
		{"missing known_hosts", func(o *Options) { o.KnownHosts = []string{dir + "/nope"} }, []string{dir + "/nope", "no such file", "fix Options.KnownHosts"}},
		{"known_hosts is a directory", func(o *Options) { o.KnownHosts = []string{unreadable} }, []string{unreadable, "directory"}},
		{"malformed known_hosts", func(o *Options) { o.KnownHosts = []string{badKH} }, []string{badKH, "fix or remove the bad line"}},
		{"missing identity", func(o *Options) { o.IdentityFiles = []string{dir + "/id_nope"} }, []string{dir + "/id_nope", "unreadable", "fix the path"}},
		{"public key as identity", func(o *Options) { o.IdentityFiles = []string{pub} }, []string{pub, "not a private key", "looks like a public key"}},
		{"not a key at all", func(o *Options) { o.IdentityFiles = []string{kh} }, []string{kh, "not a private key"}},
		{"passphrase-protected", func(o *Options) { o.IdentityFiles = []string{writeTestKey(t, []byte("secret"))} }, []string{"passphrase-protected", "ssh-add"}},
		{"missing config", func(o *Options) { o.ConfigFile = dir + "/no_config" }, []string{dir + "/no_config", "unreadable", "Options.ConfigFile"}},
		{"config names a missing key", func(o *Options) { o.ConfigFile = cfgMissingKey }, []string{cfgMissingKey + " line 2", "/nonexistent/id_ed25519", "unreadable"}},
		{"no auth method", func(o *Options) { o.IdentityFiles = nil }, []string{"no authentication method", "IdentityFiles", "UseAgent"}},
		{"agent without SSH_AUTH_SOCK", func(o *Options) { o.UseAgent = true }, []string{"SSH_AUTH_SOCK is empty"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := good
			tc.modify(&o)
			r, err := New(o)
			if err == nil {
				r.Close()
				t.Fatal("New succeeded, want an error")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

func mustRead(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestResolve(t *testing.T) {
	dir := t.TempDir()
	k1, k2, k3 := writeTestKey(t, nil), writeTestKey(t, nil), writeTestKey(t, nil)
	kh := filepath.Join(dir, "known_hosts")
	os.WriteFile(kh, nil, 0o644)
	cfg := filepath.Join(dir, "config")
	os.WriteFile(cfg, []byte(`
Host nid000001-nmn nid000002-nmn
  HostName 10.1.0.%h
  Port 2222
Host nid000001-nmn
  Port 3333
  User admin
  IdentityFile `+k1+`
Host *-can.local !ncn-w004-can.local
  User canuser
  IdentityFile `+k2+`
Host ncn-*
  Port 2200
Host *
  User fallback
`), 0o644)
	r := newRunner(t, Options{ConfigFile: cfg, KnownHosts: []string{kh}, IdentityFiles: []string{k3},
		Concurrency: 1, ConnectTimeout: time.Second, CommandTimeout: time.Second, User: "default"})
	for _, tc := range []struct {
		host string
		want Target
	}{
		{"nid000001-nmn", Target{Addr: "10.1.0.nid000001-nmn:2222", User: "admin", IdentityFiles: []string{k1}}},
		{"nid000002-nmn", Target{Addr: "10.1.0.nid000002-nmn:2222", User: "fallback"}},
		{"ncn-w001-can.local", Target{Addr: "ncn-w001-can.local:2200", User: "canuser", IdentityFiles: []string{k2}}},
		{"ncn-w004-can.local", Target{Addr: "ncn-w004-can.local:2200", User: "fallback"}},
		{"other", Target{Addr: "other:22", User: "fallback"}},
	} {
		got, err := r.Resolve(tc.host)
		if err != nil {
			t.Fatal(err)
		}
		tc.want.Host = tc.host
		if got.Addr != tc.want.Addr || got.User != tc.want.User || strings.Join(got.IdentityFiles, ",") != strings.Join(tc.want.IdentityFiles, ",") {
			t.Errorf("Resolve(%q) = %+v, want %+v", tc.host, got, tc.want)
		}
	}
	// Without a config: as given, port 22, Options.User.
	r2 := newRunner(t, Options{KnownHosts: []string{kh}, IdentityFiles: []string{k3},
		Concurrency: 1, ConnectTimeout: time.Second, CommandTimeout: time.Second, User: "default"})
	if got, _ := r2.Resolve("10.0.0.1"); got.Addr != "10.0.0.1:22" || got.User != "default" {
		t.Errorf("no config: %+v", got)
	}
}

func TestEmptyCommandAndNoHosts(t *testing.T) {
	kh := filepath.Join(t.TempDir(), "known_hosts")
	os.WriteFile(kh, nil, 0o644)
	r := newRunner(t, Options{KnownHosts: []string{kh}, IdentityFiles: []string{writeTestKey(t, nil)},
		Concurrency: 4, ConnectTimeout: time.Second, CommandTimeout: time.Second})
	if err := r.Run(context.Background(), []string{"a"}, " ", nil); err == nil {
		t.Error("empty command: want an error")
	}
	var mu sync.Mutex
	n := 0
	if err := r.Run(context.Background(), nil, "true", func(Result) { mu.Lock(); n++; mu.Unlock() }); err != nil || n != 0 {
		t.Errorf("no hosts: %v, %d results", err, n)
	}
}

// TestConnectAndHandshakeTimeouts uses listeners that accept and then stay
// silent, or send a banner and then stay silent: the first is unreachable
// after ConnectTimeout, the second after CommandTimeout, and neither holds
// up the other hosts.
func TestConnectAndHandshakeTimeouts(t *testing.T) {
	silent, err := net.Listen("tcp", "127.3.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	bannerOnly, err := net.Listen("tcp", "127.3.0.2:0")
	if err != nil {
		t.Fatal(err)
	}
	defer bannerOnly.Close()
	var conns sync.WaitGroup
	serve := func(l net.Listener, banner string) {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			conns.Add(1)
			go func() {
				defer conns.Done()
				defer c.Close()
				c.Write([]byte(banner))
				io.Copy(io.Discard, c) // until the client gives up
			}()
		}
	}
	go serve(silent, "")
	go serve(bannerOnly, "SSH-2.0-OpenSSH_9.2p1 stalled\r\n")

	dir := t.TempDir()
	cfg := filepath.Join(dir, "config")
	os.WriteFile(cfg, []byte(fmt.Sprintf("Host silent\n  HostName 127.3.0.1\n  Port %d\nHost stalled\n  HostName 127.3.0.2\n  Port %d\n",
		silent.Addr().(*net.TCPAddr).Port, bannerOnly.Addr().(*net.TCPAddr).Port)), 0o644)
	kh := filepath.Join(dir, "known_hosts")
	os.WriteFile(kh, nil, 0o644)
	r := newRunner(t, Options{ConfigFile: cfg, KnownHosts: []string{kh}, IdentityFiles: []string{writeTestKey(t, nil)},
		Concurrency: 4, ConnectTimeout: 300 * time.Millisecond, CommandTimeout: 900 * time.Millisecond})
	start := time.Now()
	got, err := collect(t, context.Background(), r, []string{"silent", "stalled"}, restartCmd)
	if err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("took %v", d)
	}
	if s := got["silent"]; s.Status != StatusUnreachable || !strings.Contains(s.Reason, "no SSH banner within the 300ms connect timeout") ||
		s.Duration < 250*time.Millisecond || s.Duration > 2*time.Second {
		t.Errorf("silent server: %+v", s)
	}
	if s := got["stalled"]; s.Status != StatusUnreachable || !strings.Contains(s.Reason, "did not finish within the 900ms command timeout") ||
		s.Duration < 800*time.Millisecond {
		t.Errorf("stalled server: %+v", s)
	}

	// MaxStartups 1: the two silent hosts wait for each other's connect
	// timeout, though Concurrency would allow both at once.
	os.WriteFile(cfg, []byte(fmt.Sprintf("Host silent1 silent2\n  HostName 127.3.0.1\n  Port %d\n", silent.Addr().(*net.TCPAddr).Port)), 0o644)
	r = newRunner(t, Options{ConfigFile: cfg, KnownHosts: []string{kh}, IdentityFiles: []string{writeTestKey(t, nil)},
		Concurrency: 2, MaxStartups: 1, ConnectTimeout: 300 * time.Millisecond, CommandTimeout: time.Second})
	start = time.Now()
	got, _ = collect(t, context.Background(), r, []string{"silent1", "silent2"}, restartCmd)
	if d := time.Since(start); d < 600*time.Millisecond {
		t.Errorf("2 silent hosts with MaxStartups 1 done in %v, want at least 2 x 300ms", d)
	}
	for h, res := range got {
		if res.Status != StatusUnreachable || !strings.Contains(res.Reason, "no SSH banner") {
			t.Errorf("%s: %+v", h, res)
		}
	}
	silent.Close()
	bannerOnly.Close()
	conns.Wait()
}

// countingProxy forwards one listener per node of f to its sshd and
// records when each connection opened and when the client closed it.
type countingProxy struct {
	mu    sync.Mutex
	spans [][2]time.Time
}

func (p *countingProxy) record(opened, closed time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.spans = append(p.spans, [2]time.Time{opened, closed})
}

// peak is the most connections open at once, not counting overlaps
// shorter than grace: the proxy sees a client's close and the next
// connect in two goroutines, in either order, when a slot changes hands.
func (p *countingProxy) peak(grace time.Duration) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	type event struct {
		at time.Time
		d  int
	}
	var events []event
	for _, s := range p.spans {
		if s[1].Sub(s[0]) > grace {
			events = append(events, event{s[0].Add(grace), 1}, event{s[1], -1})
		}
	}
	slices.SortFunc(events, func(a, b event) int {
		if c := a.at.Compare(b.at); c != 0 {
			return c
		}
		return a.d - b.d // a close before an open at the same instant
	})
	open, peak := 0, 0
	for _, e := range events {
		open += e.d
		peak = max(peak, open)
	}
	return peak
}

// proxied starts a countingProxy in front of every good node of f and
// returns Options reaching the nodes through it (same names, same host key).
func proxied(t *testing.T, f *sshtest.Fleet) (Options, *countingProxy) {
	t.Helper()
	p := &countingProxy{}
	good := map[string]bool{}
	for _, n := range f.NodeNames {
		good[n] = true
	}
	var nodes []sshtest.Node
	for _, n := range f.Nodes() {
		if !good[n.Name] {
			continue
		}
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ln.Close() })
		target := net.JoinHostPort(n.IP, strconv.Itoa(n.Port))
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				opened := time.Now()
				go func() {
					defer c.Close()
					s, err := net.Dial("tcp", target)
					if err != nil {
						return
					}
					defer s.Close()
					go func() { io.Copy(c, s); c.Close() }()
					io.Copy(s, c) // until the client closes
					p.record(opened, time.Now())
				}()
			}
		}()
		nodes = append(nodes, sshtest.Node{Name: n.Name, IP: "127.0.0.1", Port: ln.Addr().(*net.TCPAddr).Port})
	}
	direct := newRunner(t, fleetOptions(f))
	target, err := direct.Resolve(f.NodeNames[0])
	if err != nil {
		t.Fatal(err)
	}
	_, _, hostPub, _, _, err := ssh.ParseKnownHosts(mustRead(t, f.KnownHosts))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	opts := fleetOptions(f)
	opts.ConfigFile, opts.KnownHosts = filepath.Join(dir, "config"), []string{filepath.Join(dir, "known_hosts")}
	cfg, kh := sshtest.ClientFiles("proxied", nodes, target.User, f.IdentityFile, opts.KnownHosts[0], hostPub)
	if err := os.WriteFile(opts.ConfigFile, cfg, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(opts.KnownHosts[0], kh, 0o600); err != nil {
		t.Fatal(err)
	}
	return opts, p
}

// TestConcurrentRunsShareTheWidth: three Runs at once on one Runner (three
// batches in flight on a worker) never hold more than Concurrency
// connections together, and each reports each of its hosts once.
func TestConcurrentRunsShareTheWidth(t *testing.T) {
	const width, runs, perRun = 3, 3, 4
	f := startFleet(t, runs*perRun, 500*time.Millisecond)
	opts, proxy := proxied(t, f)
	opts.Concurrency = width
	r := newRunner(t, opts)
	var wg sync.WaitGroup
	for i := range runs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			got, err := collect(t, context.Background(), r, f.NodeNames[i*perRun:(i+1)*perRun], restartCmd)
			if err != nil {
				t.Error(err)
			}
			for h, res := range got {
				if res.Status != StatusOK {
					t.Errorf("%s: %+v", h, res)
				}
			}
		}()
	}
	wg.Wait()
	if p := proxy.peak(100 * time.Millisecond); p > width || p == 0 {
		t.Errorf("%d connections open at once for %d concurrent Runs, want at most Concurrency %d", p, runs, width)
	}
	rs, _ := f.Restarts()
	for _, n := range f.NodeNames {
		if rs[n] != 1 {
			t.Errorf("%s restarted %d times", n, rs[n])
		}
	}
}

// TestEarlierRunGetsSlotsFirst: a Run that starts while another holds the
// width waits for it; its hosts start only once the earlier Run's hosts
// have all had a slot, so batches finish in the order they started.
func TestEarlierRunGetsSlotsFirst(t *testing.T) {
	f := startFleet(t, 6, 400*time.Millisecond)
	opts := fleetOptions(f)
	opts.Concurrency = 2
	r := newRunner(t, opts)
	var mu sync.Mutex
	var order []string
	record := func(res Result) {
		mu.Lock()
		defer mu.Unlock()
		order = append(order, res.Host)
	}
	first, second := f.NodeNames[:4], f.NodeNames[4:]
	done := make(chan error)
	go func() { done <- r.Run(context.Background(), first, restartCmd, record) }()
	for { // the first Run holds both slots
		if rs, _ := f.Restarts(); len(rs) == 2 {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	go func() { done <- r.Run(context.Background(), second, restartCmd, record) }()
	for range 2 {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
	if len(order) != 6 {
		t.Fatalf("%d results, want 6: %v", len(order), order)
	}
	for _, h := range order[:4] {
		if !slices.Contains(first, h) {
			t.Errorf("results in order %v: %s of the later Run finished before the earlier Run's hosts", order, h)
		}
	}
}

// TestCancelWhileWaitingForSlots: a Run waiting for slots another Run
// holds, or for its turn behind a Run still handing out its hosts, reports
// its hosts "not started" when canceled, contacting none.
func TestCancelWhileWaitingForSlots(t *testing.T) {
	for _, tc := range []struct {
		name string
		busy int // hosts of the Run holding the one slot
	}{{"waiting for a slot", 1}, {"waiting for its turn", 2}} {
		t.Run(tc.name, func(t *testing.T) {
			f := startFleet(t, tc.busy+2, time.Second)
			opts := fleetOptions(f)
			opts.Concurrency = 1
			r := newRunner(t, opts)
			busyHosts, canceledHosts := f.NodeNames[:tc.busy], f.NodeNames[tc.busy:]
			busy := make(chan error)
			go func() { busy <- r.Run(context.Background(), busyHosts, restartCmd, nil) }()
			for {
				if rs, _ := f.Restarts(); len(rs) == 1 {
					break
				}
				time.Sleep(10 * time.Millisecond)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
			defer cancel()
			start := time.Now()
			got, err := collect(t, ctx, r, canceledHosts, restartCmd)
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("Run returned %v, want context.DeadlineExceeded", err)
			}
			// The busy Run holds the slot (and its turn) for a second.
			if d := time.Since(start); d > 700*time.Millisecond {
				t.Errorf("the canceled Run returned after %v: it waited past its 200ms", d)
			}
			for h, res := range got {
				if res.Status != StatusFailed || !strings.HasPrefix(res.Reason, "not started") {
					t.Errorf("%s: %+v, want not started", h, res)
				}
			}
			if err := <-busy; err != nil {
				t.Error(err)
			}
			rs, _ := f.Restarts()
			for _, h := range busyHosts {
				if rs[h] != 1 {
					t.Errorf("%s of the busy Run restarted %d times", h, rs[h])
				}
			}
			for _, h := range canceledHosts {
				if rs[h] != 0 {
					t.Errorf("%s of the canceled Run was contacted", h)
				}
			}
		})
	}
}
