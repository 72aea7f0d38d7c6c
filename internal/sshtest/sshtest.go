// Package sshtest starts a fleet of real OpenSSH servers (Debian's
// /usr/sbin/sshd) on loopback for tests and benchmarks of SSH fan-out.
//
// Every node has its own loopback address (127.1.x.y; the nodes added with
// AddWrongKeyNode and AddUnreachableNode get 127.2.0.y), so the command the
// servers force, a stand-in for `systemctl restart cray-dvs-orca`, knows
// which node it ran on from the server address in $SSH_CONNECTION. One sshd
// process serves up to 16 nodes, one ListenAddress line per node: Debian's
// sshd 9.2 refuses more ("Too many listen sockets. Enlarge MAX_LISTEN_SOCKS").
//
// The fleet writes an OpenSSH client config naming every node (nid%06d-nmn),
// a known_hosts file and a user key, so the same fleet serves the system ssh
// client, pdsh (see PdshEnv) and the sshfan library. No traffic leaves
// 127.0.0.0/8.
package sshtest

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/crypto/ssh"
)

// SSHD is the OpenSSH server binary the fleet runs; sshd re-executes itself
// per connection, so it must be an absolute path.
const SSHD = "/usr/sbin/sshd"

// MaxNodesPerSSHD is the number of listen sockets one sshd 9.2 accepts.
const MaxNodesPerSSHD = 16

// InstallHint is the command that installs what the fleet needs.
const InstallHint = "run `hack/install-tools.sh ssh-peers` (apt-get install openssh-server openssh-client pdsh)"

// Options configures Start.
type Options struct {
	// Dir holds every generated file (keys, configs, logs). Required; a
	// test's t.TempDir() is the usual choice. pdsh splits its ssh arguments
	// on whitespace, so the path must not contain any.
	Dir string
	// Nodes is the number of nodes, named nid000001-nmn .. nidNNNNNN-nmn.
	Nodes int
	// NodesPerSSHD is how many nodes one sshd process serves. Default and
	// maximum: MaxNodesPerSSHD (16), the limit compiled into sshd 9.2.
	NodesPerSSHD int
	// RestartDelay is how long the stand-in restart command takes.
	RestartDelay time.Duration
}

// Node is one name in the client config.
type Node struct {
	Name string
	IP   string
	Port int
}

// Fleet is a running set of sshd processes and the files that describe it.
type Fleet struct {
	Dir          string
	ConfigFile   string   // OpenSSH client config (ssh -F) naming every node
	KnownHosts   string   // known_hosts with every node's expected host key
	IdentityFile string   // the user's private key (ed25519, no passphrase)
	LogFile      string   // the stand-in's log: "<server-ip> <command>" per run
	Standin      string   // the ForceCommand script
	NodeNames    []string // the Nodes good nodes, in order

	user     string
	hostPub  ssh.PublicKey // the host key known_hosts expects
	hostKey  string        // its private key file
	userPub  []byte
	delay    time.Duration
	perSSHD  int
	mu       sync.Mutex
	nodes    []Node         // all nodes in config order, good and special
	byIP     map[string]int // index into nodes
	procs    []*sshdProc
	nextSpec int // last host byte used in 127.2.0.0/24
}

type sshdProc struct {
	cmd  *exec.Cmd
	done chan struct{}
	err  error
	log  string
}

// Start generates keys and configs in opts.Dir and starts the sshd
// processes, returning once every node accepts SSH connections. On error
// it stops whatever it started.
func Start(ctx context.Context, opts Options) (*Fleet, error) {
	if opts.Dir == "" {
		return nil, errors.New("sshtest: Options.Dir is empty: give a directory for keys, configs and logs (e.g. t.TempDir())")
	}
	if strings.ContainsAny(opts.Dir, " \t\n'\"") {
		return nil, fmt.Errorf("sshtest: Options.Dir %q contains whitespace or quotes, which pdsh's ssh argument splitting breaks: use another directory", opts.Dir)
	}
	if opts.Nodes < 0 || opts.Nodes > 250*250 {
		return nil, fmt.Errorf("sshtest: Options.Nodes %d out of range: give 0..%d", opts.Nodes, 250*250)
	}
	if opts.NodesPerSSHD == 0 {
		opts.NodesPerSSHD = MaxNodesPerSSHD
	}
	if opts.NodesPerSSHD < 1 || opts.NodesPerSSHD > MaxNodesPerSSHD {
		return nil, fmt.Errorf("sshtest: Options.NodesPerSSHD %d: sshd 9.2 serves 1..%d listen addresses (MAX_LISTEN_SOCKS); leave it 0 for %d",
			opts.NodesPerSSHD, MaxNodesPerSSHD, MaxNodesPerSSHD)
	}
	if opts.RestartDelay < 0 {
		return nil, fmt.Errorf("sshtest: Options.RestartDelay %v is negative", opts.RestartDelay)
	}
	if err := CheckTools(); err != nil {
		return nil, err
	}
	if err := ensurePrivsepDir(); err != nil {
		return nil, err
	}
	dir, err := filepath.Abs(opts.Dir)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("sshtest: %w", err)
	}
	u, err := user.Current()
	if err != nil {
		return nil, fmt.Errorf("sshtest: current user: %w", err)
	}
	f := &Fleet{
		Dir:          dir,
		ConfigFile:   filepath.Join(dir, "ssh_config"),
		KnownHosts:   filepath.Join(dir, "known_hosts"),
		IdentityFile: filepath.Join(dir, "id_ed25519"),
		LogFile:      filepath.Join(dir, "restarts.log"),
		Standin:      filepath.Join(dir, "standin.sh"),
		user:         u.Username,
		hostKey:      filepath.Join(dir, "ssh_host_ed25519_key"),
		delay:        opts.RestartDelay,
		perSSHD:      opts.NodesPerSSHD,
		byIP:         map[string]int{},
	}
	if f.hostPub, err = writeKey(f.hostKey, "sshtest host key"); err != nil {
		return nil, err
	}
	userPub, err := writeKey(f.IdentityFile, "sshtest user key")
	if err != nil {
		return nil, err
	}
	f.userPub = ssh.MarshalAuthorizedKey(userPub)
	if err := os.WriteFile(filepath.Join(dir, "authorized_keys"), f.userPub, 0o600); err != nil {
		return nil, fmt.Errorf("sshtest: %w", err)
	}
	if err := os.WriteFile(f.LogFile, nil, 0o644); err != nil {
		return nil, fmt.Errorf("sshtest: %w", err)
	}
	if err := os.MkdirAll(filepath.Join(dir, "fail"), 0o755); err != nil {
		return nil, fmt.Errorf("sshtest: %w", err)
	}
	if err := os.WriteFile(f.Standin, []byte(f.standinScript()), 0o755); err != nil {
		return nil, fmt.Errorf("sshtest: %w", err)
	}

	for i := 1; i <= opts.Nodes; i++ {
		k := i - 1
		ip := fmt.Sprintf("127.1.%d.%d", k/250, k%250+1)
		f.NodeNames = append(f.NodeNames, fmt.Sprintf("nid%06d-nmn", i))
		f.nodes = append(f.nodes, Node{Name: f.NodeNames[k], IP: ip})
	}
	// Start every sshd, then wait for all: startups overlap.
	type group struct{ lo, hi int }
	var groups []group
	for lo := 0; lo < opts.Nodes; lo += f.perSSHD {
		groups = append(groups, group{lo, min(lo+f.perSSHD, opts.Nodes)})
	}
	var wg sync.WaitGroup
	errs := make([]error, len(groups))
	sem := make(chan struct{}, 8)
	for gi, g := range groups {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			ips := make([]string, 0, g.hi-g.lo)
			for _, n := range f.nodes[g.lo:g.hi] {
				ips = append(ips, n.IP)
			}
			port, p, err := f.startSSHD(ctx, fmt.Sprintf("sshd-%04d", gi), ips, f.hostKey)
			errs[gi] = err
			if err != nil {
				return
			}
			f.mu.Lock()
			f.procs = append(f.procs, p)
			for i := g.lo; i < g.hi; i++ {
				f.nodes[i].Port = port
			}
			f.mu.Unlock()
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		f.Stop()
		return nil, err
	}
	f.mu.Lock()
	for i, n := range f.nodes {
		f.byIP[n.IP] = i
	}
	err = f.writeClientFiles()
	f.mu.Unlock()
	if err != nil {
		f.Stop()
		return nil, err
	}
	return f, nil
}

// CheckTools reports, with the command that installs them, whether sshd,
// ssh, pdsh and flock are missing.
func CheckTools() error {
	var missing []string
	if _, err := os.Stat(SSHD); err != nil {
		missing = append(missing, SSHD)
	}
	for _, b := range []string{"ssh", "pdsh", "flock"} {
		if _, err := exec.LookPath(b); err != nil {
			missing = append(missing, b)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("sshtest: %s not found: %s", strings.Join(missing, ", "), InstallHint)
	}
	return nil
}

// ensurePrivsepDir creates /run/sshd, which sshd checks for at start even
// when it runs unprivileged.
func ensurePrivsepDir() error {
	if st, err := os.Stat("/run/sshd"); err == nil && st.IsDir() {
		return nil
	}
	if err := os.MkdirAll("/run/sshd", 0o755); err != nil {
		return fmt.Errorf("sshtest: sshd needs its privilege separation directory /run/sshd: %w; run `sudo mkdir -p -m 0755 /run/sshd`", err)
	}
	return nil
}

// writeKey generates an ed25519 key, writes the private half (0600, the
// mode ssh and sshd insist on) and returns the public half.
func writeKey(path, comment string) (ssh.PublicKey, error) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	block, err := ssh.MarshalPrivateKey(priv, comment)
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(path, pem.EncodeToMemory(block), 0o600); err != nil {
		return nil, fmt.Errorf("sshtest: %w", err)
	}
	sp, err := ssh.NewPublicKey(pub)
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(path+".pub", ssh.MarshalAuthorizedKey(sp), 0o644); err != nil {
		return nil, fmt.Errorf("sshtest: %w", err)
	}
	return sp, nil
}

func shQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

// standinScript is the ForceCommand: it logs "<server-ip> <command>" under
// flock, so lines from concurrent sessions never interleave, then sleeps
// for the restart delay and exits 0, or as SetFailure said for the node.
func (f *Fleet) standinScript() string {
	var b strings.Builder
	b.WriteString("#!/bin/sh\n# sshtest stand-in for `systemctl restart cray-dvs-orca`: records which node ran what.\n")
	b.WriteString("set -- $SSH_CONNECTION\n")
	fmt.Fprintf(&b, "exec 9>>%s\n", shQuote(f.LogFile))
	b.WriteString("flock 9\n")
	b.WriteString("printf '%s %s\\n' \"$3\" \"$SSH_ORIGINAL_COMMAND\" >&9\n")
	b.WriteString("exec 9>&-\n")
	if f.delay > 0 {
		fmt.Fprintf(&b, "sleep %s\n", strconv.FormatFloat(f.delay.Seconds(), 'f', -1, 64))
	}
	// SetFailure: first line the exit status, the rest goes to stderr.
	fmt.Fprintf(&b, "fail=%s/\"$3\"\n", shQuote(filepath.Join(f.Dir, "fail")))
	// SetCommandFailure: the same, for one command only.
	b.WriteString("cmdfail=\"$fail.$(printf %s \"$SSH_ORIGINAL_COMMAND\" | tr -c 'A-Za-z0-9.-' _)\"\n")
	b.WriteString("if [ -f \"$cmdfail\" ]; then { read -r code; cat >&2; } <\"$cmdfail\"; exit \"$code\"; fi\n")
	b.WriteString("if [ -f \"$fail\" ]; then { read -r code; cat >&2; } <\"$fail\"; exit \"$code\"; fi\n")
	b.WriteString("exit 0\n")
	return b.String()
}

// sshdConfig is one sshd's configuration. sshd runs the ForceCommand with
// the user's login shell; Debian's bash sources ~/.bashrc when started by
// sshd unless it is a nested shell, and a developer's (or root's) .bashrc
// can cost more than everything else in a session (pyenv init: 100 forks,
// 0.5 s). SetEnv SHLVL=1 makes bash a nested shell, so it skips .bashrc.
func (f *Fleet) sshdConfig(name string, ips []string, port int, hostKey string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "# sshtest %s\n", name)
	for _, ip := range ips {
		fmt.Fprintf(&b, "ListenAddress %s:%d\n", ip, port)
	}
	fmt.Fprintf(&b, `HostKey %s
PidFile %s
AuthorizedKeysFile %s
UsePAM no
StrictModes no
PasswordAuthentication no
KbdInteractiveAuthentication no
PubkeyAuthentication yes
PermitRootLogin prohibit-password
MaxStartups 10000:30:10000
MaxSessions 1000
MaxAuthTries 6
LoginGraceTime 30
LogLevel ERROR
UseDNS no
PrintMotd no
PrintLastLog no
PermitTTY no
X11Forwarding no
AllowTcpForwarding no
AllowAgentForwarding no
AllowStreamLocalForwarding no
PermitTunnel no
SetEnv SHLVL=1
ForceCommand %s
`, hostKey, filepath.Join(f.Dir, name+".pid"), filepath.Join(f.Dir, "authorized_keys"), f.Standin)
	return b.String()
}

// startSSHD starts one sshd listening on every ip at one port, retrying
// with another port if the chosen one is taken on one of the addresses.
func (f *Fleet) startSSHD(ctx context.Context, name string, ips []string, hostKey string) (int, *sshdProc, error) {
	var lastErr error
	for attempt := 0; attempt < 5; attempt++ {
		port, err := freePort(ips[0])
		if err != nil {
			return 0, nil, err
		}
		conf := filepath.Join(f.Dir, name+".conf")
		if err := os.WriteFile(conf, []byte(f.sshdConfig(name, ips, port, hostKey)), 0o644); err != nil {
			return 0, nil, fmt.Errorf("sshtest: %w", err)
		}
		p := &sshdProc{done: make(chan struct{}), log: filepath.Join(f.Dir, name+".log")}
		logf, err := os.Create(p.log)
		if err != nil {
			return 0, nil, fmt.Errorf("sshtest: %w", err)
		}
		p.cmd = exec.Command(SSHD, "-D", "-e", "-r", "-f", conf)
		p.cmd.Stdout, p.cmd.Stderr = logf, logf
		p.cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin"}
		// Its own process group, killed if this process dies.
		p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
		if err := p.cmd.Start(); err != nil {
			logf.Close()
			return 0, nil, fmt.Errorf("sshtest: start %s: %w; %s", SSHD, err, InstallHint)
		}
		logf.Close()
		// The fleet stands for many machines on two shared cores: run it at
		// a lower priority (inherited by every per-connection sshd) so that
		// the Temporal server and the worker under test are not starved of
		// CPU by a thousand handshakes.
		_ = syscall.Setpriority(syscall.PRIO_PROCESS, p.cmd.Process.Pid, 10)
		go func() { p.err = p.cmd.Wait(); close(p.done) }()
		err = waitReady(ctx, p, ips, port)
		if err == nil {
			return port, p, nil
		}
		p.kill()
		lastErr = err
		if !strings.Contains(err.Error(), "Address already in use") {
			break
		}
	}
	return 0, nil, lastErr
}

// freePort asks the kernel for a port free on ip.
func freePort(ip string) (int, error) {
	l, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
	if err != nil {
		return 0, fmt.Errorf("sshtest: no free port on %s: %w", ip, err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// waitReady waits until sshd sends its banner on the first and the last
// address (it binds all before it accepts), or exits.
func waitReady(ctx context.Context, p *sshdProc, ips []string, port int) error {
	deadline := time.Now().Add(20 * time.Second)
	for _, ip := range []string{ips[0], ips[len(ips)-1]} {
		addr := net.JoinHostPort(ip, strconv.Itoa(port))
		for {
			select {
			case <-p.done:
				out, _ := os.ReadFile(p.log)
				return fmt.Errorf("sshtest: %s exited (%v) before listening on %s: %s", SSHD, p.err, addr, strings.TrimSpace(string(out)))
			case <-ctx.Done():
				return ctx.Err()
			default:
			}
			if banner(addr) {
				break
			}
			if time.Now().After(deadline) {
				out, _ := os.ReadFile(p.log)
				return fmt.Errorf("sshtest: sshd not answering on %s after 20s: %s", addr, strings.TrimSpace(string(out)))
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	return nil
}

func banner(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return false
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	return err == nil && strings.HasPrefix(line, "SSH-2.0-")
}

func (p *sshdProc) kill() {
	if p.cmd.Process == nil {
		return
	}
	syscall.Kill(-p.cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(3 * time.Second):
		syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		<-p.done
	}
}

// writeClientFiles rewrites the client config and known_hosts from f.nodes.
// Callers hold f.mu.
func (f *Fleet) writeClientFiles() error {
	cfg, kh := ClientFiles("sshtest", f.nodes, f.user, f.IdentityFile, f.KnownHosts, f.hostPub)
	if err := writeAtomic(f.ConfigFile, cfg); err != nil {
		return err
	}
	return writeAtomic(f.KnownHosts, kh)
}

// ClientFiles renders an OpenSSH client config naming every node (user,
// identity, strict host key checking against knownHosts, no prompts, no
// multiplexing) and the known_hosts that expects hostPub at each node's
// address: what pdsh, ssh -F and sshfan reach a test fleet through.
func ClientFiles(fleet string, nodes []Node, user, identity, knownHosts string, hostPub ssh.PublicKey) (config, knownHostsFile []byte) {
	var cfg, kh bytes.Buffer
	fmt.Fprintf(&cfg, "# %s fleet: ssh -F this-file NODE\n", fleet)
	hostLine := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(hostPub)))
	for _, n := range nodes {
		fmt.Fprintf(&cfg, "Host %s\n  HostName %s\n  Port %d\n  User %s\n  IdentityFile %s\n",
			n.Name, n.IP, n.Port, user, identity)
		fmt.Fprintf(&kh, "[%s]:%d %s\n", n.IP, n.Port, hostLine)
	}
	fmt.Fprintf(&cfg, `Host *
  IdentitiesOnly yes
  UserKnownHostsFile %s
  GlobalKnownHostsFile /dev/null
  StrictHostKeyChecking yes
  UpdateHostKeys no
  CheckHostIP no
  BatchMode yes
  ControlMaster no
  ControlPath none
  LogLevel ERROR
`, knownHosts)
	return cfg.Bytes(), kh.Bytes()
}

func writeAtomic(path string, data []byte) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		return fmt.Errorf("sshtest: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("sshtest: %w", err)
	}
	return nil
}

// nextSpecialIP hands out 127.2.0.1, 127.2.0.2, ... Callers hold f.mu.
func (f *Fleet) nextSpecialIP() (string, error) {
	if f.nextSpec >= 250 {
		return "", errors.New("sshtest: at most 250 special nodes")
	}
	f.nextSpec++
	return fmt.Sprintf("127.2.0.%d", f.nextSpec), nil
}

func (f *Fleet) checkNewName(name string) error {
	if name == "" || strings.ContainsAny(name, " \t\n*?!,[]") {
		return fmt.Errorf("sshtest: node name %q: give a plain host name", name)
	}
	for _, n := range f.nodes {
		if n.Name == name {
			return fmt.Errorf("sshtest: node name %q is already in the fleet", name)
		}
	}
	return nil
}

// AddWrongKeyNode adds a node whose sshd presents a host key other than
// the one known_hosts lists for it: connecting must fail host key checking.
func (f *Fleet) AddWrongKeyNode(ctx context.Context, name string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.checkNewName(name); err != nil {
		return err
	}
	ip, err := f.nextSpecialIP()
	if err != nil {
		return err
	}
	key := filepath.Join(f.Dir, "wrong_host_key_"+name)
	if _, err := writeKey(key, "sshtest wrong host key"); err != nil {
		return err
	}
	port, p, err := f.startSSHD(ctx, "sshd-wrongkey-"+name, []string{ip}, key)
	if err != nil {
		return err
	}
	f.procs = append(f.procs, p)
	f.byIP[ip] = len(f.nodes)
	f.nodes = append(f.nodes, Node{Name: name, IP: ip, Port: port})
	return f.writeClientFiles()
}

// AddNodes adds good nodes with the given names (e.g. NCN host names that
// a host range such as ncn-w00[1-3] expands to), served like the numbered
// ones: same host key, same stand-in. They get addresses of the special
// range, up to MaxNodesPerSSHD per sshd.
func (f *Fleet) AddNodes(ctx context.Context, names ...string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	seen := map[string]bool{}
	for _, name := range names {
		if err := f.checkNewName(name); err != nil {
			return err
		}
		if seen[name] {
			return fmt.Errorf("sshtest: node name %q given twice", name)
		}
		seen[name] = true
	}
	for lo := 0; lo < len(names); lo += f.perSSHD {
		group := names[lo:min(lo+f.perSSHD, len(names))]
		ips := make([]string, len(group))
		for i := range group {
			ip, err := f.nextSpecialIP()
			if err != nil {
				return err
			}
			ips[i] = ip
		}
		port, p, err := f.startSSHD(ctx, fmt.Sprintf("sshd-named-%s", group[0]), ips, f.hostKey)
		if err != nil {
			return err
		}
		f.procs = append(f.procs, p)
		for i, name := range group {
			f.byIP[ips[i]] = len(f.nodes)
			f.nodes = append(f.nodes, Node{Name: name, IP: ips[i], Port: port})
		}
	}
	return f.writeClientFiles()
}

// AddUnreachableNode adds a node that points at a loopback address and port
// where nothing listens: connecting is refused.
func (f *Fleet) AddUnreachableNode(name string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.checkNewName(name); err != nil {
		return err
	}
	ip, err := f.nextSpecialIP()
	if err != nil {
		return err
	}
	port, err := freePort(ip)
	if err != nil {
		return err
	}
	f.byIP[ip] = len(f.nodes)
	f.nodes = append(f.nodes, Node{Name: name, IP: ip, Port: port})
	return f.writeClientFiles()
}

// Nodes returns every node in the config, good and special, in order.
func (f *Fleet) Nodes() []Node {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]Node(nil), f.nodes...)
}

// Restarts reads the stand-in's log and counts runs per node name. Nodes
// that never ran the command are absent from the map.
func (f *Fleet) Restarts() (map[string]int, error) {
	data, err := os.ReadFile(f.LogFile)
	if err != nil {
		return nil, fmt.Errorf("sshtest: %w", err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	counts := map[string]int{}
	for i, line := range strings.Split(strings.TrimSuffix(string(data), "\n"), "\n") {
		if line == "" {
			continue
		}
		ip, _, _ := strings.Cut(line, " ")
		idx, ok := f.byIP[ip]
		if !ok {
			return nil, fmt.Errorf("sshtest: %s:%d: server address %q is no node of this fleet: %q", f.LogFile, i+1, ip, line)
		}
		counts[f.nodes[idx].Name]++
	}
	return counts, nil
}

// SetFailure makes the stand-in on node name fail from now on: after
// logging and sleeping it writes stderr to its stderr and exits with
// exitCode. exitCode 0 clears the failure.
func (f *Fleet) SetFailure(name string, exitCode int, stderr string) error {
	return f.setFailure(name, "", exitCode, stderr)
}

// SetCommandFailure is SetFailure for one command only, e.g. "systemctl
// restart cray-dvs-orca" with exit status 5 for a node without that unit.
func (f *Fleet) SetCommandFailure(name, command string, exitCode int, stderr string) error {
	return f.setFailure(name, command, exitCode, stderr)
}

func (f *Fleet) setFailure(name, command string, exitCode int, stderr string) error {
	f.mu.Lock()
	var ip string
	for _, n := range f.nodes {
		if n.Name == name {
			ip = n.IP
		}
	}
	f.mu.Unlock()
	if ip == "" {
		return fmt.Errorf("sshtest: SetFailure: no node %q", name)
	}
	path := filepath.Join(f.Dir, "fail", ip)
	if command != "" {
		path += "." + commandKey(command)
	}
	if exitCode == 0 {
		if err := os.Remove(path); err != nil && !os.IsNotExist(err) {
			return fmt.Errorf("sshtest: %w", err)
		}
		return nil
	}
	if exitCode < 0 || exitCode > 255 {
		return fmt.Errorf("sshtest: SetFailure: exit status %d out of 1..255", exitCode)
	}
	return writeAtomic(path, []byte(fmt.Sprintf("%d\n%s", exitCode, stderr)))
}

// commandKey is the stand-in's file name suffix for a command (its tr).
func commandKey(command string) string {
	return strings.Map(func(r rune) rune {
		if r >= 'A' && r <= 'Z' || r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '.' || r == '-' {
			return r
		}
		return '_'
	}, command)
}

// ResetRestarts empties the stand-in's log, under the same lock the
// stand-in takes.
func (f *Fleet) ResetRestarts() error {
	fh, err := os.OpenFile(f.LogFile, os.O_WRONLY, 0)
	if err != nil {
		return fmt.Errorf("sshtest: %w", err)
	}
	defer fh.Close()
	if err := syscall.Flock(int(fh.Fd()), syscall.LOCK_EX); err != nil {
		return fmt.Errorf("sshtest: flock %s: %w", f.LogFile, err)
	}
	return fh.Truncate(0)
}

// PdshEnv is what to add to the environment for pdsh to reach the fleet:
// its ssh module (PDSH_RCMD_TYPE=ssh), with this fleet's client config and
// BatchMode (never prompt) in PDSH_SSH_ARGS_APPEND, followed by
// extraSSHArgs. pdsh splits that variable on whitespace, so no argument
// may contain any. pdsh itself still adds its PDSH_SSH_ARGS default,
// "-2 -a -x -l%u %h".
func (f *Fleet) PdshEnv(extraSSHArgs ...string) []string {
	args := append([]string{"-F", f.ConfigFile, "-o", "BatchMode=yes"}, extraSSHArgs...)
	return []string{
		"PDSH_RCMD_TYPE=ssh",
		"PDSH_SSH_ARGS_APPEND=" + strings.Join(args, " "),
	}
}

// PdshCommand returns `pdsh -f fanout -w host,host,... command` with
// PdshEnv(extraSSHArgs...) added to this process's environment.
func (f *Fleet) PdshCommand(ctx context.Context, fanout int, hosts []string, command string, extraSSHArgs ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, "pdsh", "-f", strconv.Itoa(fanout), "-w", strings.Join(hosts, ","), command)
	cmd.Env = append(os.Environ(), f.PdshEnv(extraSSHArgs...)...)
	return cmd
}

// SSHCommand returns `ssh -F config host command` for the system client.
func (f *Fleet) SSHCommand(ctx context.Context, host, command string) *exec.Cmd {
	return exec.CommandContext(ctx, "ssh", "-F", f.ConfigFile, "-o", "BatchMode=yes", host, command)
}

// ServerCPU is the CPU time (user+sys) the fleet's sshd processes have
// spent so far on finished connections: what each listener's reaped
// per-connection children (sshd, the session's shell and the stand-in)
// used, read from /proc/PID/stat (cutime+cstime, in clock ticks of 10ms).
// Take the difference of two readings to get one run's server cost.
func (f *Fleet) ServerCPU() (time.Duration, error) {
	f.mu.Lock()
	procs := append([]*sshdProc(nil), f.procs...)
	f.mu.Unlock()
	var ticks int64
	for _, p := range procs {
		data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p.cmd.Process.Pid))
		if err != nil {
			return 0, fmt.Errorf("sshtest: %w", err)
		}
		// Fields after the parenthesised command name; cutime and cstime
		// are fields 16 and 17 of the line, 14 and 15 after the name.
		s := string(data)
		fields := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
		if len(fields) < 15 {
			return 0, fmt.Errorf("sshtest: unexpected /proc/%d/stat: %q", p.cmd.Process.Pid, s)
		}
		for _, fld := range fields[13:15] {
			v, err := strconv.ParseInt(fld, 10, 64)
			if err != nil {
				return 0, fmt.Errorf("sshtest: /proc/%d/stat: %w", p.cmd.Process.Pid, err)
			}
			ticks += v
		}
	}
	return time.Duration(ticks) * 10 * time.Millisecond, nil
}

// Stop terminates every sshd the fleet started and waits for them. Sessions
// still running go on until their client disconnects. Stop is idempotent.
func (f *Fleet) Stop() {
	f.mu.Lock()
	procs := f.procs
	f.procs = nil
	f.mu.Unlock()
	var wg sync.WaitGroup
	for _, p := range procs {
		wg.Add(1)
		go func() { defer wg.Done(); p.kill() }()
	}
	wg.Wait()
}
