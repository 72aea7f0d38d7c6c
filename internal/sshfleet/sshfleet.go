// Package sshfleet is a benchmark SSH fleet that behaves like remote nodes:
// one Go process (golang.org/x/crypto/ssh's server side) answers for every
// node, each on its own loopback address (127.1.x.y, one listener per node,
// all on one port), so a connection costs a goroutine and a handshake, not
// the process tree per connection of OpenSSH's sshd (internal/sshtest). On
// a real system each node's sshd runs on that node; here the fleet's CPU
// stays small next to the client's and is measured apart (ServerCPU).
//
// Like internal/sshtest it writes an OpenSSH client config naming every node
// (nid%06d-nmn), a known_hosts file (one host key for all nodes) and a user
// key, so the system ssh, pdsh and the sshfan library reach the same fleet
// through the same config. Authentication is by that public key only.
//
// The only command the nodes know is `systemctl restart <unit>`: it counts
// in the ledger (restarts per node), sleeps the restart delay (the
// stragglers' delay on straggler nodes) and exits 0, or on failing nodes
// writes a systemctl-like line to stderr and exits 1. Unreachable nodes are
// named in the config at an address where nothing listens (connection
// refused). Which nodes straggle, fail or are unreachable is a seeded
// random choice, reproducible with the same Options.
//
// The benchmark runs the fleet as its own process (hack/sshfleet, see
// StartProcess) so that its CPU is neither in the client's rusage nor in
// its Go scheduler; tests may run it in this process with Start.
package sshfleet

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"fmt"
	"math"
	mrand "math/rand/v2"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/csmops/etcd-repopulate/internal/sshtest"
	"golang.org/x/crypto/ssh"
)

// MaxNodes is the number of node addresses in 127.1.0.0/16 the fleet uses
// (250 per third octet, as internal/sshtest).
const MaxNodes = 250 * 250

// Options configures a fleet.
type Options struct {
	// Dir holds the generated files (keys, client config, known_hosts).
	// Required. pdsh splits its ssh arguments on whitespace, so the path
	// must not contain any.
	Dir string
	// Nodes is the number of nodes, named nid000001-nmn .. nidNNNNNN-nmn.
	Nodes int
	// RestartDelay is how long the stand-in restart takes on most nodes.
	RestartDelay time.Duration
	// Stragglers is the share of nodes (0..1) whose restart takes
	// StragglerDelay instead.
	Stragglers     float64
	StragglerDelay time.Duration
	// Failures is the share of nodes whose restart fails: after the delay
	// it writes a line to stderr and exits 1.
	Failures float64
	// Unreachable is the share of nodes nothing listens for.
	Unreachable float64
	// Seed chooses which nodes straggle, fail or are unreachable.
	Seed uint64
}

// Role is how a node behaves.
type Role string

const (
	RoleNormal      Role = "normal"
	RoleStraggler   Role = "straggler"
	RoleFailing     Role = "failing"
	RoleUnreachable Role = "unreachable"
)

// Files are the client-side files of a fleet and its nodes.
type Files struct {
	Dir          string
	ConfigFile   string   // OpenSSH client config (ssh -F) naming every node
	KnownHosts   string   // known_hosts with every node's host key
	IdentityFile string   // the user's private key (ed25519, no passphrase)
	NodeNames    []string // every node, in order
	Roles        map[string]Role
}

// Stats are the fleet's counters since it started.
type Stats struct {
	Connections int64 `json:"connections"` // TCP connections accepted
	Handshakes  int64 `json:"handshakes"`  // SSH handshakes completed (authenticated)
	Restarts    int64 `json:"restarts"`    // stand-in restarts started
}

// Fleet is a running fleet in this process.
type Fleet struct {
	Files
	Port int

	opts      Options
	roles     []Role
	byIP      map[string]int
	userKey   []byte // the authorized public key, wire format
	server    *ssh.ServerConfig
	listeners []net.Listener
	ledger    []atomic.Int64
	stats     struct{ conns, handshakes, restarts atomic.Int64 }
	closed    chan struct{}
	closeOnce sync.Once
	wg        sync.WaitGroup
	mu        sync.Mutex
	conns     map[net.Conn]struct{} // open connections, closed by Close; nil once closed
}

// Validate checks every option; its errors name the option and the fix.
func (o Options) Validate() error {
	if o.Dir == "" {
		return errors.New("sshfleet: Options.Dir is empty: give a directory for keys and client files (e.g. t.TempDir())")
	}
	if strings.ContainsAny(o.Dir, " \t\n'\"") {
		return fmt.Errorf("sshfleet: Options.Dir %q contains whitespace or quotes, which pdsh's ssh argument splitting breaks: use another directory", o.Dir)
	}
	if o.Nodes < 1 || o.Nodes > MaxNodes {
		return fmt.Errorf("sshfleet: Options.Nodes %d out of range: give 1..%d", o.Nodes, MaxNodes)
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"RestartDelay", o.RestartDelay}, {"StragglerDelay", o.StragglerDelay}} {
		if d.v < 0 {
			return fmt.Errorf("sshfleet: Options.%s %v is negative: give 0 or more", d.name, d.v)
		}
	}
	for _, s := range []struct {
		name string
		v    float64
	}{{"Stragglers", o.Stragglers}, {"Failures", o.Failures}, {"Unreachable", o.Unreachable}} {
		if math.IsNaN(s.v) || s.v < 0 || s.v > 1 {
			return fmt.Errorf("sshfleet: Options.%s %v is not a share: give 0..1 (0.01 for 1 %%)", s.name, s.v)
		}
	}
	if sum := o.Stragglers + o.Failures + o.Unreachable; sum > 1 {
		return fmt.Errorf("sshfleet: Options.Stragglers+Failures+Unreachable is %v: a node has one role, so the shares add up to at most 1", sum)
	}
	if o.Stragglers > 0 && o.StragglerDelay == 0 {
		return errors.New("sshfleet: Options.Stragglers is set but StragglerDelay is 0: give the stragglers' restart time (e.g. 10s)")
	}
	return nil
}

// roles assigns each node its role: a seeded shuffle, the first
// round(share×N) stragglers, then failing, then unreachable nodes.
func (o Options) roles() []Role {
	roles := make([]Role, o.Nodes)
	for i := range roles {
		roles[i] = RoleNormal
	}
	perm := mrand.New(mrand.NewPCG(o.Seed, 0x5eed)).Perm(o.Nodes)
	k := 0
	for _, r := range []struct {
		role  Role
		share float64
	}{{RoleStraggler, o.Stragglers}, {RoleFailing, o.Failures}, {RoleUnreachable, o.Unreachable}} {
		n := int(math.Round(r.share * float64(o.Nodes)))
		for j := 0; j < n && k < len(perm); j++ {
			roles[perm[k]] = r.role
			k++
		}
	}
	return roles
}

// Start writes the keys and client files into opts.Dir and starts one
// listener per reachable node. It returns once every listener is bound.
func Start(opts Options) (*Fleet, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	if err := checkNofile(opts.Nodes); err != nil {
		return nil, err
	}
	dir, err := filepath.Abs(opts.Dir)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("sshfleet: %w", err)
	}
	f := &Fleet{
		Files: Files{
			Dir:          dir,
			ConfigFile:   filepath.Join(dir, "ssh_config"),
			KnownHosts:   filepath.Join(dir, "known_hosts"),
			IdentityFile: filepath.Join(dir, "id_ed25519"),
			Roles:        map[string]Role{},
		},
		opts:   opts,
		roles:  opts.roles(),
		byIP:   map[string]int{},
		ledger: make([]atomic.Int64, opts.Nodes),
		closed: make(chan struct{}),
		conns:  map[net.Conn]struct{}{},
	}
	hostSigner, hostPub, err := newKey(filepath.Join(dir, "ssh_host_ed25519_key"), "sshfleet host key")
	if err != nil {
		return nil, err
	}
	_, userPub, err := newKey(f.IdentityFile, "sshfleet user key")
	if err != nil {
		return nil, err
	}
	f.userKey = userPub.Marshal()
	f.server = &ssh.ServerConfig{
		PublicKeyCallback: func(_ ssh.ConnMetadata, key ssh.PublicKey) (*ssh.Permissions, error) {
			if string(key.Marshal()) == string(f.userKey) {
				return nil, nil
			}
			return nil, errors.New("unknown public key")
		},
		ServerVersion: "SSH-2.0-sshfleet",
	}
	// One key exchange for every client, as on nodes whose OpenSSH predates
	// 9.9 (the first with mlkem768x25519): this box's ssh 9.2, under pdsh,
	// gets curve25519-sha256 from this server, while sshfan and x/crypto's
	// server would otherwise agree on the costlier mlkem768x25519.
	f.server.Config.KeyExchanges = []string{"curve25519-sha256", "curve25519-sha256@libssh.org"}
	f.server.AddHostKey(hostSigner)

	ips := make([]string, opts.Nodes)
	for i := range ips {
		ips[i] = fmt.Sprintf("127.1.%d.%d", i/250, i%250+1)
		f.byIP[ips[i]] = i
		name := fmt.Sprintf("nid%06d-nmn", i+1)
		f.NodeNames = append(f.NodeNames, name)
		f.Roles[name] = f.roles[i]
	}
	if err := f.listen(ips); err != nil {
		return nil, err
	}
	if err := f.writeClientFiles(ips, hostPub); err != nil {
		f.Close()
		return nil, err
	}
	for _, l := range f.listeners {
		f.wg.Add(1)
		go f.accept(l)
	}
	return f, nil
}

// listen binds every reachable node's address on one port, trying other
// ports when the first is taken on some address. Unreachable nodes get no
// listener: connecting to them is refused.
func (f *Fleet) listen(ips []string) error {
	var lastErr error
	for attempt := 0; attempt < 5; attempt++ {
		l0, err := net.Listen("tcp", net.JoinHostPort(ips[0], "0"))
		if err != nil {
			return fmt.Errorf("sshfleet: listen on %s: %w", ips[0], err)
		}
		port := l0.Addr().(*net.TCPAddr).Port
		ls := make([]net.Listener, 0, len(ips))
		if f.roles[0] != RoleUnreachable {
			ls = append(ls, l0)
		} else {
			l0.Close()
		}
		lastErr = nil
		for i := 1; i < len(ips); i++ {
			if f.roles[i] == RoleUnreachable {
				continue
			}
			l, err := net.Listen("tcp", fmt.Sprintf("%s:%d", ips[i], port))
			if err != nil {
				lastErr = err
				break
			}
			ls = append(ls, l)
		}
		if lastErr == nil {
			f.Port, f.listeners = port, ls
			return nil
		}
		for _, l := range ls {
			l.Close()
		}
		if errors.Is(lastErr, syscall.EMFILE) {
			return fmt.Errorf("sshfleet: %w: %d nodes need one file descriptor each plus one per connection; raise `ulimit -n`", lastErr, len(ips))
		}
		if !errors.Is(lastErr, syscall.EADDRINUSE) {
			break
		}
	}
	return fmt.Errorf("sshfleet: %w", lastErr)
}

// connectionHeadroom is the number of file descriptors Start keeps free
// beyond one listener per node, for connections (a fan-out of width 256
// holds 256) and files.
const connectionHeadroom = 512

// checkNofile checks the open-file limit holds a listener per node and
// the connections. (Go raises the soft limit to the hard one at start.)
func checkNofile(nodes int) error {
	var l syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l); err != nil {
		return fmt.Errorf("sshfleet: reading the open-file limit: %w", err)
	}
	if need := uint64(nodes) + connectionHeadroom; l.Cur < need {
		return fmt.Errorf("sshfleet: %d nodes need %d file descriptors (a listener per node plus %d for connections) but the open-file limit is %d (hard %d): raise it, e.g. `ulimit -n %d`, or run fewer nodes",
			nodes, need, connectionHeadroom, l.Cur, l.Max, need)
	}
	return nil
}

// writeClientFiles writes the fleet's client config and known_hosts as
// sshtest's fleet has them, so that one client config reaches either.
func (f *Fleet) writeClientFiles(ips []string, hostPub ssh.PublicKey) error {
	u, err := user.Current()
	if err != nil {
		return fmt.Errorf("sshfleet: current user: %w", err)
	}
	nodes := make([]sshtest.Node, len(ips))
	for i, ip := range ips {
		nodes[i] = sshtest.Node{Name: f.NodeNames[i], IP: ip, Port: f.Port}
	}
	cfg, kh := sshtest.ClientFiles("sshfleet", nodes, u.Username, f.IdentityFile, f.KnownHosts, hostPub)
	if err := os.WriteFile(f.ConfigFile, cfg, 0o644); err != nil {
		return fmt.Errorf("sshfleet: %w", err)
	}
	if err := os.WriteFile(f.KnownHosts, kh, 0o644); err != nil {
		return fmt.Errorf("sshfleet: %w", err)
	}
	return nil
}

// newKey generates an ed25519 key, writes the private half (0600, as ssh
// insists) and the public half next to it.
func newKey(path, comment string) (ssh.Signer, ssh.PublicKey, error) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	block, err := ssh.MarshalPrivateKey(priv, comment)
	if err != nil {
		return nil, nil, err
	}
	if err := os.WriteFile(path, pem.EncodeToMemory(block), 0o600); err != nil {
		return nil, nil, fmt.Errorf("sshfleet: %w", err)
	}
	signer, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		return nil, nil, err
	}
	sp, err := ssh.NewPublicKey(pub)
	if err != nil {
		return nil, nil, err
	}
	if err := os.WriteFile(path+".pub", ssh.MarshalAuthorizedKey(sp), 0o644); err != nil {
		return nil, nil, fmt.Errorf("sshfleet: %w", err)
	}
	return signer, sp, nil
}

func (f *Fleet) accept(l net.Listener) {
	defer f.wg.Done()
	for {
		c, err := l.Accept()
		if err != nil {
			select {
			case <-f.closed:
				return
			default:
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) {
				time.Sleep(10 * time.Millisecond)
				continue
			}
			return
		}
		f.stats.conns.Add(1)
		f.wg.Add(1)
		go f.serve(c)
	}
}

// serve runs one connection: the handshake, then session channels whose
// only request honoured is exec.
func (f *Fleet) serve(c net.Conn) {
	defer f.wg.Done()
	defer c.Close()
	node, ok := f.byIP[c.LocalAddr().(*net.TCPAddr).IP.String()]
	if !ok || !f.track(c) {
		return
	}
	defer f.untrack(c)
	_ = c.SetDeadline(time.Now().Add(30 * time.Second)) // handshake only
	conn, chans, reqs, err := ssh.NewServerConn(c, f.server)
	if err != nil {
		return
	}
	_ = c.SetDeadline(time.Time{})
	f.stats.handshakes.Add(1)
	defer conn.Close()
	go ssh.DiscardRequests(reqs)
	var wg sync.WaitGroup
	for nc := range chans {
		if nc.ChannelType() != "session" {
			_ = nc.Reject(ssh.UnknownChannelType, "only session channels")
			continue
		}
		ch, chReqs, err := nc.Accept()
		if err != nil {
			continue
		}
		wg.Add(1)
		go func() { defer wg.Done(); f.session(node, ch, chReqs) }()
	}
	wg.Wait()
}

// track records an open connection for Close; false once closed.
func (f *Fleet) track(c net.Conn) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.conns == nil {
		return false
	}
	f.conns[c] = struct{}{}
	return true
}

func (f *Fleet) untrack(c net.Conn) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.conns, c)
}

// session answers a session's requests; the first exec runs the stand-in.
func (f *Fleet) session(node int, ch ssh.Channel, reqs <-chan *ssh.Request) {
	defer ch.Close()
	for req := range reqs {
		if req.Type != "exec" {
			if req.WantReply {
				_ = req.Reply(false, nil)
			}
			continue
		}
		var p struct{ Command string }
		if err := ssh.Unmarshal(req.Payload, &p); err != nil {
			_ = req.Reply(false, nil)
			continue
		}
		_ = req.Reply(true, nil)
		go ssh.DiscardRequests(reqs)
		code := f.run(node, p.Command, ch.Stderr())
		_, _ = ch.SendRequest("exit-status", false, ssh.Marshal(struct{ Status uint32 }{uint32(code)}))
		return
	}
}

// run is the stand-in for the command on node; it returns the exit status.
func (f *Fleet) run(node int, command string, stderr interface{ Write([]byte) (int, error) }) int {
	fields := strings.Fields(command)
	if len(fields) != 3 || fields[0] != "systemctl" || fields[1] != "restart" {
		fmt.Fprintf(stderr, "sshfleet: %s: only `systemctl restart <unit>` is known here\n", command)
		return 127
	}
	f.ledger[node].Add(1)
	f.stats.restarts.Add(1)
	delay := f.opts.RestartDelay
	if f.roles[node] == RoleStraggler {
		delay = f.opts.StragglerDelay
	}
	if delay > 0 {
		t := time.NewTimer(delay)
		select {
		case <-t.C:
		case <-f.closed:
			t.Stop()
			return 143
		}
	}
	if f.roles[node] == RoleFailing {
		fmt.Fprintf(stderr, "Job for %s.service failed because the control process exited with error code.\n", strings.TrimSuffix(fields[2], ".service"))
		return 1
	}
	return 0
}

// Restarts returns the ledger: stand-in restarts per node name, every node
// listed (0 for none).
func (f *Fleet) Restarts() map[string]int {
	out := make(map[string]int, len(f.NodeNames))
	for i, n := range f.NodeNames {
		out[n] = int(f.ledger[i].Load())
	}
	return out
}

// ResetRestarts zeroes the ledger.
func (f *Fleet) ResetRestarts() {
	for i := range f.ledger {
		f.ledger[i].Store(0)
	}
}

// Stats returns the fleet's counters.
func (f *Fleet) Stats() Stats {
	return Stats{Connections: f.stats.conns.Load(), Handshakes: f.stats.handshakes.Load(), Restarts: f.stats.restarts.Load()}
}

// Close stops the listeners, ends running sessions and waits for them.
func (f *Fleet) Close() {
	f.closeOnce.Do(func() {
		close(f.closed)
		for _, l := range f.listeners {
			l.Close()
		}
		f.mu.Lock()
		for c := range f.conns {
			c.Close()
		}
		f.conns = nil
		f.mu.Unlock()
	})
	f.wg.Wait()
}
