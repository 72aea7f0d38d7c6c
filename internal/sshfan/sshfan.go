// Package sshfan runs one command on many hosts over SSH, in this process,
// with a bounded pool of workers: the runbook's
// `pdsh -w ^hosts "systemctl restart cray-dvs-orca"` without an ssh process
// per host.
//
// Host names are resolved through an OpenSSH client config (Host patterns,
// HostName, Port, User, IdentityFile). Host keys are checked against
// known_hosts files with golang.org/x/crypto/ssh/knownhosts only: an unknown
// host or a changed key fails that host, there is no fallback. Keys,
// known_hosts and the config are read once, in New, and shared by every
// connection.
//
// Differences from OpenSSH's ssh worth knowing: x/crypto/ssh negotiates
// curve25519-sha256 with OpenSSH 9.2 (ssh prefers the post-quantum hybrid
// sntrup761x25519-sha512, which x/crypto does not implement); only the
// config keywords above are honoured (no ProxyJump, Match exec, ...).
package sshfan

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"
	"golang.org/x/crypto/ssh/knownhosts"
)

// Status is a host's outcome.
type Status string

const (
	// StatusOK: the command ran and exited 0.
	StatusOK Status = "ok"
	// StatusFailed: the host answered but the command did not succeed: it
	// exited non-zero, timed out or was aborted, the host key did not match
	// known_hosts (or is unknown), or authentication failed.
	StatusFailed Status = "failed"
	// StatusUnreachable: no SSH session could be set up for network reasons:
	// connection refused, connect or handshake timeout, DNS failure, no
	// route, connection closed during the handshake. The command never ran.
	StatusUnreachable Status = "unreachable"
)

// Result is one host's outcome.
type Result struct {
	Host     string
	Status   Status
	Reason   string        // empty for StatusOK
	Duration time.Duration // from dispatch to outcome
	// ExitStatus is the command's exit status when it ran to an end
	// (0 for StatusOK), else -1.
	ExitStatus int
}

// Defaults a caller may use; New requires every value to be set.
const (
	DefaultConcurrency    = 256
	DefaultMaxStartups    = 32
	DefaultConnectTimeout = 10 * time.Second // pdsh's
	DefaultCommandTimeout = 2 * time.Minute
)

// stderrTail is how many trailing bytes of a failed command's stderr (or
// stdout, when stderr is empty) a Result's Reason keeps.
const stderrTail = 200

// Options configures a Runner.
type Options struct {
	// ConfigFile is an OpenSSH client config (as for ssh -F). Host patterns,
	// HostName (with %h), Port, User and IdentityFile are honoured. Empty:
	// none; host names are dialled as given on port 22.
	ConfigFile string
	// KnownHosts are the known_hosts files host keys are checked against.
	// Required.
	KnownHosts []string
	// IdentityFiles are private keys (no passphrase) used for hosts the
	// config names no IdentityFile for.
	IdentityFiles []string
	// UseAgent adds the keys of the agent at $SSH_AUTH_SOCK.
	UseAgent bool
	// User is the remote user when the config names none; empty: the local
	// user.
	User string
	// Concurrency is the number of hosts in flight at once, e.g.
	// DefaultConcurrency: the Runner's width, shared by all its concurrent
	// Runs.
	Concurrency int
	// MaxStartups bounds how many of those hosts may be setting up their
	// connection at once (TCP connect, SSH handshake, authentication): a
	// herd of simultaneous handshakes on a busy server makes them all late
	// together. 0 means min(Concurrency, DefaultMaxStartups).
	MaxStartups int
	// ConnectTimeout bounds, per host, the TCP connect and the wait for
	// the server's SSH version banner, as OpenSSH's ConnectTimeout does.
	ConnectTimeout time.Duration
	// CommandTimeout bounds, per host, everything after the banner: key
	// exchange, authentication, session and command. (Key exchange and
	// authentication are not under ConnectTimeout because hundreds of
	// handshakes at once on a busy server all finish late together.)
	CommandTimeout time.Duration
}

// Runner runs commands on hosts. It is safe for concurrent use; Close it to
// release the agent connection.
type Runner struct {
	opts        Options
	cfg         *sshConfig
	hostKeys    ssh.HostKeyCallback
	probeKey    ssh.PublicKey   // a key no host has, to ask known_hosts which key types it holds for a host
	defaultKeys []ssh.Signer    // from Options.IdentityFiles
	agentKeys   []ssh.Signer    // from the agent
	agentConn   net.Conn        // nil without UseAgent
	mu          sync.Mutex      // guards keys
	keys        map[string]keys // private keys by expanded path, loaded once
	// The width is the Runner's, shared by concurrent Runs (one batch per
	// activity, several in flight on a worker): slots holds one token per
	// host being worked on, startups one per connection being set up.
	slots    chan struct{}
	startups chan struct{}
	// dispatch is held by the one Run handing its hosts to free slots;
	// the others queue for it in arrival order (a channel's senders are
	// served first come, first served), so an earlier batch's hosts get
	// slots before a later batch's.
	dispatch chan struct{}
}

type keys struct {
	signer ssh.Signer
	err    error
}

// New checks every input and loads keys, known_hosts and the config once.
// Its errors name the input at fault and how to fix it.
func New(opts Options) (*Runner, error) {
	if opts.Concurrency < 1 {
		return nil, fmt.Errorf("sshfan: Options.Concurrency is %d: give at least 1 (e.g. %d)", opts.Concurrency, DefaultConcurrency)
	}
	if opts.MaxStartups < 0 {
		return nil, fmt.Errorf("sshfan: Options.MaxStartups is %d: give 0 for the default (%d) or a positive number", opts.MaxStartups, DefaultMaxStartups)
	}
	if opts.MaxStartups == 0 {
		opts.MaxStartups = min(opts.Concurrency, DefaultMaxStartups)
	}
	if opts.ConnectTimeout <= 0 {
		return nil, fmt.Errorf("sshfan: Options.ConnectTimeout is %v: give a positive duration (e.g. %v)", opts.ConnectTimeout, DefaultConnectTimeout)
	}
	if opts.CommandTimeout <= 0 {
		return nil, fmt.Errorf("sshfan: Options.CommandTimeout is %v: give a positive duration (e.g. %v)", opts.CommandTimeout, DefaultCommandTimeout)
	}
	if len(opts.KnownHosts) == 0 {
		return nil, errors.New("sshfan: Options.KnownHosts is empty: name at least one known_hosts file (host keys are always checked)")
	}
	for _, f := range opts.KnownHosts {
		if err := readable(f); err != nil {
			return nil, fmt.Errorf("sshfan: known_hosts file %s: %w; fix Options.KnownHosts or create the file (ssh-keyscan output, verified)", f, err)
		}
	}
	hostKeys, err := knownhosts.New(opts.KnownHosts...)
	if err != nil {
		return nil, fmt.Errorf("sshfan: known_hosts %s: %w; fix or remove the bad line", strings.Join(opts.KnownHosts, ", "), err)
	}
	r := &Runner{opts: opts, hostKeys: hostKeys, keys: map[string]keys{},
		slots: make(chan struct{}, opts.Concurrency), startups: make(chan struct{}, opts.MaxStartups), dispatch: make(chan struct{}, 1)}
	pub, _, _ := ed25519.GenerateKey(nil)
	r.probeKey, _ = ssh.NewPublicKey(pub)

	for _, f := range opts.IdentityFiles {
		s, err := loadKey(f)
		if err != nil {
			return nil, fmt.Errorf("sshfan: Options.IdentityFiles: %w", err)
		}
		r.keys[f] = keys{signer: s}
		r.defaultKeys = append(r.defaultKeys, s)
	}
	configKeys := 0
	if opts.ConfigFile != "" {
		if r.cfg, err = loadConfig(opts.ConfigFile); err != nil {
			return nil, err
		}
		for _, v := range r.cfg.allIdentityFiles() {
			if strings.EqualFold(unquote(v.value), "none") {
				continue
			}
			if strings.ContainsAny(strings.ReplaceAll(v.value, "%%", ""), "%") &&
				(strings.Contains(v.value, "%h") || strings.Contains(v.value, "%r") || strings.Contains(v.value, "%n")) {
				configKeys++ // depends on the host: loaded (once) when first needed
				continue
			}
			p, err := expandPath(v.value, "", "", "")
			if err != nil {
				return nil, fmt.Errorf("sshfan: %s line %d: %w", opts.ConfigFile, v.line, err)
			}
			if _, done := r.keys[p]; done {
				configKeys++
				continue
			}
			s, err := loadKey(p)
			if err != nil {
				return nil, fmt.Errorf("sshfan: IdentityFile at %s line %d: %w", opts.ConfigFile, v.line, err)
			}
			r.keys[p] = keys{signer: s}
			configKeys++
		}
	}
	if opts.UseAgent {
		sock := os.Getenv("SSH_AUTH_SOCK")
		if sock == "" {
			return nil, errors.New("sshfan: Options.UseAgent is set but SSH_AUTH_SOCK is empty: start ssh-agent and ssh-add a key, or use Options.IdentityFiles")
		}
		c, err := net.Dial("unix", sock)
		if err != nil {
			return nil, fmt.Errorf("sshfan: ssh-agent at SSH_AUTH_SOCK=%s: %w; start ssh-agent or unset Options.UseAgent", sock, err)
		}
		// One connection for every host: the agent client serialises its
		// requests on it.
		signers, err := agent.NewClient(c).Signers()
		if err != nil {
			c.Close()
			return nil, fmt.Errorf("sshfan: listing ssh-agent keys at %s: %w", sock, err)
		}
		r.agentConn, r.agentKeys = c, signers
	}
	if len(r.defaultKeys) == 0 && configKeys == 0 && len(r.agentKeys) == 0 {
		r.Close()
		msg := "sshfan: no authentication method: give Options.IdentityFiles, IdentityFile lines in Options.ConfigFile, or Options.UseAgent with keys in the agent"
		if opts.UseAgent {
			msg += " (the agent at SSH_AUTH_SOCK holds no keys: ssh-add one)"
		}
		return nil, errors.New(msg)
	}
	return r, nil
}

// Close releases the agent connection, if any.
func (r *Runner) Close() error {
	if r.agentConn != nil {
		return r.agentConn.Close()
	}
	return nil
}

func readable(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return err
	}
	if st.IsDir() {
		return errors.New("is a directory")
	}
	_, err = f.Read(make([]byte, 1))
	if err != nil && err != io.EOF {
		return err
	}
	return nil
}

// loadKey reads and parses one private key, with errors that say what to do.
func loadKey(path string) (ssh.Signer, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("identity file %s is unreadable: %w; fix the path or its permissions", path, err)
	}
	s, err := ssh.ParsePrivateKey(data)
	if err != nil {
		var pm *ssh.PassphraseMissingError
		if errors.As(err, &pm) {
			return nil, fmt.Errorf("identity file %s is passphrase-protected; sshfan cannot prompt: load it into ssh-agent (ssh-add %s) and set UseAgent, or use a key without a passphrase", path, path)
		}
		hint := ""
		if strings.HasPrefix(strings.TrimSpace(string(data)), "ssh-") {
			hint = " (it looks like a public key: name the private key, without .pub)"
		}
		return nil, fmt.Errorf("identity file %s is not a private key%s: %w", path, hint, err)
	}
	return s, nil
}

// signersFor returns the keys to offer for t: the config's IdentityFiles
// for this host, else Options.IdentityFiles, then the agent's keys.
func (r *Runner) signersFor(t Target) ([]ssh.Signer, error) {
	var out []ssh.Signer
	if len(t.IdentityFiles) == 0 {
		out = append(out, r.defaultKeys...)
	} else {
		r.mu.Lock()
		for _, p := range t.IdentityFiles {
			k, ok := r.keys[p]
			if !ok { // a path with %h or %r: load once, remember the outcome
				k.signer, k.err = loadKey(p)
				r.keys[p] = k
			}
			if k.err != nil {
				r.mu.Unlock()
				return nil, k.err
			}
			out = append(out, k.signer)
		}
		r.mu.Unlock()
	}
	out = append(out, r.agentKeys...)
	if len(out) == 0 {
		return nil, fmt.Errorf("no key to offer for %s", t.Host)
	}
	return out, nil
}

// Resolve returns where Run would connect for host and as whom.
func (r *Runner) Resolve(host string) (Target, error) { return r.resolve(host) }

// hostKeyAlgorithms asks known_hosts which key types it holds for addr, so
// that the server is asked for a key that can match (a server with RSA and
// ed25519 keys must not offer RSA when known_hosts has its ed25519 key).
func (r *Runner) hostKeyAlgorithms(addr string) []string {
	err := r.hostKeys(addr, &net.TCPAddr{IP: net.IPv4zero}, r.probeKey)
	var ke *knownhosts.KeyError
	if !errors.As(err, &ke) || len(ke.Want) == 0 {
		return nil // unknown host: the check will fail and say so
	}
	var algs []string
	seen := map[string]bool{}
	add := func(a ...string) {
		for _, x := range a {
			if !seen[x] {
				seen[x] = true
				algs = append(algs, x)
			}
		}
	}
	for _, k := range ke.Want {
		switch t := k.Key.Type(); t {
		case ssh.KeyAlgoRSA:
			add(ssh.KeyAlgoRSASHA512, ssh.KeyAlgoRSASHA256, ssh.KeyAlgoRSA)
		default:
			add(t)
		}
	}
	return algs
}

// Run runs command on every host and calls onResult once per host, as each
// finishes. At most Options.Concurrency hosts are worked on at once (of
// which at most Options.MaxStartups setting up their connection) across
// all the Runs in progress on r: concurrent Runs share the width, and a
// Run's hosts get free slots before those of a Run that started later.
// Calls to onResult are serialised within a Run (never concurrent; they
// come from the goroutines working on hosts, so a slow onResult slows the
// fan-out). onResult may be nil.
//
// Cancelling ctx stops dispatching: hosts not started yet (including those
// waiting for a slot) are reported failed with "not started", and
// in-flight sessions are closed and reported failed with "aborted"; Run
// then returns ctx.Err(). Otherwise it returns nil once every host is
// reported, whatever their outcomes. It returns an error without
// contacting any host if command is empty.
func (r *Runner) Run(ctx context.Context, hosts []string, command string, onResult func(Result)) error {
	if strings.TrimSpace(command) == "" {
		return errors.New("sshfan: empty command")
	}
	var mu sync.Mutex
	report := func(res Result) {
		if onResult == nil {
			return
		}
		mu.Lock()
		defer mu.Unlock()
		onResult(res)
	}
	var interrupted atomic.Bool
	notStarted := func(rest []string, err error) {
		interrupted.Store(true)
		for _, h := range rest {
			report(Result{Host: h, Status: StatusFailed, Reason: "not started: " + err.Error(), ExitStatus: -1})
		}
	}
	if len(hosts) == 0 {
		return nil
	}
	select {
	case r.dispatch <- struct{}{}:
	case <-ctx.Done():
		notStarted(hosts, ctx.Err())
		return ctx.Err()
	}
	var wg sync.WaitGroup
	for i, host := range hosts {
		slot := false
		if ctx.Err() == nil {
			select {
			case r.slots <- struct{}{}:
				slot = true
			case <-ctx.Done():
			}
		}
		if err := ctx.Err(); err != nil {
			if slot { // taken in the same instant as the cancel
				<-r.slots
			}
			notStarted(hosts[i:], err)
			break
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			res := r.runOne(ctx, host, command)
			<-r.slots
			if res.Status != StatusOK && ctx.Err() != nil {
				interrupted.Store(true)
			}
			report(res)
		}()
	}
	<-r.dispatch
	wg.Wait()
	if interrupted.Load() {
		return ctx.Err()
	}
	return nil
}

// bannerConn moves the connection's deadline from the connect timeout to
// the command timeout once the server's first line (its SSH banner)
// arrives. Only x/crypto's single reader calls Read.
type bannerConn struct {
	net.Conn
	after    time.Duration
	bannerAt time.Time // zero until the banner arrived
}

func (c *bannerConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if c.bannerAt.IsZero() && bytes.IndexByte(p[:n], '\n') >= 0 {
		c.bannerAt = time.Now()
		c.Conn.SetDeadline(c.bannerAt.Add(c.after))
	}
	return n, err
}

// tail keeps the last n bytes written to it.
type tail struct {
	n   int
	buf []byte
}

func (t *tail) Write(p []byte) (int, error) {
	t.buf = append(t.buf, p...)
	if len(t.buf) > 2*t.n {
		t.buf = append(t.buf[:0], t.buf[len(t.buf)-t.n:]...)
	}
	return len(p), nil
}

func (t *tail) String() string {
	b := t.buf
	if len(b) > t.n {
		b = b[len(b)-t.n:]
	}
	return strings.TrimSpace(strings.ToValidUTF8(string(b), "?"))
}

func (r *Runner) runOne(ctx context.Context, host, command string) Result {
	start := time.Now()
	res := Result{Host: host, ExitStatus: -1}
	done := func(s Status, reason string) Result {
		res.Status, res.Reason, res.Duration = s, reason, time.Since(start)
		return res
	}
	t, err := r.resolve(host)
	if err != nil {
		return done(StatusFailed, "config: "+err.Error())
	}
	signers, err := r.signersFor(t)
	if err != nil {
		return done(StatusFailed, err.Error())
	}

	// Connect, holding one of MaxStartups slots: TCP and the server's
	// banner within ConnectTimeout (counted from the slot); then key
	// exchange, authentication and the command within CommandTimeout.
	select {
	case r.startups <- struct{}{}:
	case <-ctx.Done():
		return done(StatusFailed, "aborted before connecting: "+ctx.Err().Error())
	}
	released := false
	release := func() {
		if !released {
			released = true
			<-r.startups
		}
	}
	defer release()
	connectBy := time.Now().Add(r.opts.ConnectTimeout)
	dctx, cancel := context.WithDeadline(ctx, connectBy)
	raw, err := (&net.Dialer{}).DialContext(dctx, "tcp", t.Addr)
	cancel()
	if err != nil {
		if ctx.Err() != nil {
			return done(StatusFailed, "aborted while connecting: "+ctx.Err().Error())
		}
		return done(StatusUnreachable, dialReason(t, err, r.opts.ConnectTimeout))
	}
	conn := &bannerConn{Conn: raw, after: r.opts.CommandTimeout}
	raw.SetDeadline(connectBy)
	var hostKeyErr error
	var presented ssh.PublicKey
	cfg := &ssh.ClientConfig{
		User: t.User,
		Auth: []ssh.AuthMethod{ssh.PublicKeys(signers...)},
		HostKeyCallback: func(hostname string, remote net.Addr, key ssh.PublicKey) error {
			err := r.hostKeys(hostname, remote, key)
			hostKeyErr, presented = err, key
			return err
		},
		HostKeyAlgorithms: r.hostKeyAlgorithms(t.Addr),
	}
	stopConn := context.AfterFunc(ctx, func() { raw.Close() })
	c, chans, reqs, err := ssh.NewClientConn(conn, t.Addr, cfg)
	release()
	if err != nil {
		raw.Close()
		stopConn()
		var ne net.Error
		switch {
		case ctx.Err() != nil:
			return done(StatusFailed, "aborted during the SSH handshake: "+ctx.Err().Error())
		case hostKeyErr != nil:
			return done(StatusFailed, hostKeyReason(t, hostKeyErr, presented, r.opts.KnownHosts))
		case strings.Contains(err.Error(), "unable to authenticate"):
			return done(StatusFailed, fmt.Sprintf("authentication as %s@%s failed: the server accepted none of the %d key(s) offered; check authorized_keys on the host and the identity files", t.User, t.Addr, len(signers)))
		case errors.As(err, &ne) && ne.Timeout() && conn.bannerAt.IsZero():
			return done(StatusUnreachable, fmt.Sprintf("%s (%s): no SSH banner within the %v connect timeout", t.Host, t.Addr, r.opts.ConnectTimeout))
		case errors.As(err, &ne) && ne.Timeout():
			return done(StatusUnreachable, fmt.Sprintf("%s (%s): SSH key exchange and authentication did not finish within the %v command timeout", t.Host, t.Addr, r.opts.CommandTimeout))
		}
		return done(StatusUnreachable, fmt.Sprintf("%s (%s): SSH handshake failed: %v", t.Host, t.Addr, err))
	}
	raw.SetDeadline(time.Time{})
	stopConn()
	client := ssh.NewClient(c, chans, reqs)
	defer client.Close()

	// Run: what is left of CommandTimeout; cancellation closes the
	// connection, which makes sshd hang up the command.
	var timedOut, aborted atomic.Bool
	timer := time.AfterFunc(time.Until(conn.bannerAt.Add(r.opts.CommandTimeout)), func() { timedOut.Store(true); client.Close() })
	stopRun := context.AfterFunc(ctx, func() { aborted.Store(true); client.Close() })
	defer func() { timer.Stop(); stopRun() }()

	sess, err := client.NewSession()
	if err != nil {
		switch {
		case aborted.Load():
			return done(StatusFailed, "aborted: "+ctx.Err().Error())
		case timedOut.Load():
			return done(StatusFailed, fmt.Sprintf("timed out after %v (command timeout) opening a session", r.opts.CommandTimeout))
		}
		return done(StatusFailed, fmt.Sprintf("opening a session on %s: %v", t.Addr, err))
	}
	stderr, stdout := &tail{n: stderrTail}, &tail{n: stderrTail}
	sess.Stdout, sess.Stderr = stdout, stderr
	err = sess.Run(command)
	switch {
	case aborted.Load():
		return done(StatusFailed, "aborted: "+ctx.Err().Error()+"; the command may have run in part")
	case timedOut.Load():
		return done(StatusFailed, fmt.Sprintf("command timed out after %v (counted from the server's banner); the connection was closed, the command may have run in part", r.opts.CommandTimeout))
	case err == nil:
		res.ExitStatus = 0
		return done(StatusOK, "")
	}
	out := stderr.String()
	if out == "" {
		out = stdout.String()
	}
	var ee *ssh.ExitError
	var em *ssh.ExitMissingError
	switch {
	case errors.As(err, &ee):
		why := fmt.Sprintf("exit status %d", ee.ExitStatus())
		if ee.Signal() != "" {
			why = "killed by signal " + ee.Signal()
		} else {
			res.ExitStatus = ee.ExitStatus()
		}
		if out != "" {
			why += ": " + out
		}
		return done(StatusFailed, why)
	case errors.As(err, &em):
		return done(StatusFailed, "the command ended without an exit status (connection lost?)"+suffix(out))
	}
	return done(StatusFailed, fmt.Sprintf("connection to %s lost while the command ran: %v%s", t.Addr, err, suffix(out)))
}

func suffix(s string) string {
	if s == "" {
		return ""
	}
	return ": " + s
}

func dialReason(t Target, err error, timeout time.Duration) string {
	var dnsErr *net.DNSError
	var ne net.Error
	switch {
	case errors.As(err, &dnsErr):
		return fmt.Sprintf("%s: DNS lookup of %s failed: %v; check the name, or give its HostName in the ssh config", t.Host, dnsErr.Name, dnsErr.Err)
	case errors.Is(err, syscall.ECONNREFUSED):
		return fmt.Sprintf("%s (%s): connection refused: nothing listens there (sshd down?)", t.Host, t.Addr)
	case errors.Is(err, syscall.EHOSTUNREACH), errors.Is(err, syscall.ENETUNREACH):
		return fmt.Sprintf("%s (%s): no route to host", t.Host, t.Addr)
	case errors.As(err, &ne) && ne.Timeout(), errors.Is(err, context.DeadlineExceeded):
		return fmt.Sprintf("%s (%s): connect timed out after %v", t.Host, t.Addr, timeout)
	}
	return fmt.Sprintf("%s (%s): connect failed: %v", t.Host, t.Addr, err)
}

func hostKeyReason(t Target, err error, presented ssh.PublicKey, files []string) string {
	var ke *knownhosts.KeyError
	var re *knownhosts.RevokedError
	known := knownhosts.Normalize(t.Addr)
	switch {
	case errors.As(err, &re):
		return fmt.Sprintf("host key for %s (%s) is revoked in %s:%d: refusing to connect", t.Host, known, re.Revoked.Filename, re.Revoked.Line)
	case errors.As(err, &ke) && len(ke.Want) > 0:
		var want []string
		for _, k := range ke.Want {
			want = append(want, fmt.Sprintf("%s %s (%s:%d)", k.Key.Type(), ssh.FingerprintSHA256(k.Key), k.Filename, k.Line))
		}
		return fmt.Sprintf("host key mismatch for %s (%s): the server presented %s %s, known_hosts expects %s. "+
			"Someone may be intercepting the connection, or the host was reinstalled: verify the new key out of band, then replace the line (ssh-keygen -R '%s')",
			t.Host, known, presented.Type(), ssh.FingerprintSHA256(presented), strings.Join(want, ", "), known)
	case errors.As(err, &ke):
		return fmt.Sprintf("host key unknown: %s (%s) is not in known_hosts (%s); the server presented %s %s: add its verified key there, sshfan never connects to unknown hosts",
			t.Host, known, strings.Join(files, ", "), presented.Type(), ssh.FingerprintSHA256(presented))
	}
	return fmt.Sprintf("host key check for %s (%s) failed: %v", t.Host, known, err)
}
