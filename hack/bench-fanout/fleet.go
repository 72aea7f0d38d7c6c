package main

import (
	"context"
	"fmt"
	"os/exec"
	"time"

	"github.com/csmops/etcd-repopulate/internal/sshfleet"
	"github.com/csmops/etcd-repopulate/internal/sshtest"
)

// fleet is what the benchmark needs of a test fleet: both the OpenSSH
// fleet (sshtest) and the remote-like one (sshfleet) serve pdsh and sshfan
// through one client config.
type fleet interface {
	configFile() string
	knownHosts() string
	nodeNames() []string
	pdshCommand(ctx context.Context, fanout int, hosts []string, command string, sshArgs ...string) *exec.Cmd
	resetRestarts() error
	restarts() (map[string]int, error)
	// wantRestarts is how often a run must restart node: 1, or 0 where
	// nothing listens.
	wantRestarts(node string) int
	// serverCPU is the servers' CPU so far; connections the TCP
	// connections they accepted so far, -1 if they do not count them.
	serverCPU() (time.Duration, error)
	connections() (int64, error)
	stop()
}

type opensshFleet struct{ *sshtest.Fleet }

func (f opensshFleet) configFile() string  { return f.ConfigFile }
func (f opensshFleet) knownHosts() string  { return f.KnownHosts }
func (f opensshFleet) nodeNames() []string { return f.NodeNames }
func (f opensshFleet) pdshCommand(ctx context.Context, fanout int, hosts []string, command string, sshArgs ...string) *exec.Cmd {
	return f.PdshCommand(ctx, fanout, hosts, command, sshArgs...)
}
func (f opensshFleet) resetRestarts() error              { return f.ResetRestarts() }
func (f opensshFleet) restarts() (map[string]int, error) { return f.Restarts() }
func (f opensshFleet) wantRestarts(string) int           { return 1 }
func (f opensshFleet) serverCPU() (time.Duration, error) { return f.ServerCPU() }
func (f opensshFleet) connections() (int64, error)       { return -1, nil }
func (f opensshFleet) stop()                             { f.Stop() }

type remoteFleet struct{ *sshfleet.Process }

func (f remoteFleet) configFile() string  { return f.ConfigFile }
func (f remoteFleet) knownHosts() string  { return f.KnownHosts }
func (f remoteFleet) nodeNames() []string { return f.NodeNames }
func (f remoteFleet) pdshCommand(ctx context.Context, fanout int, hosts []string, command string, sshArgs ...string) *exec.Cmd {
	return f.PdshCommand(ctx, fanout, hosts, command, sshArgs...)
}
func (f remoteFleet) resetRestarts() error              { return f.ResetRestarts() }
func (f remoteFleet) restarts() (map[string]int, error) { return f.Restarts() }
func (f remoteFleet) wantRestarts(node string) int {
	if f.Roles[node] == sshfleet.RoleUnreachable {
		return 0
	}
	return 1
}
func (f remoteFleet) serverCPU() (time.Duration, error) { return f.ServerCPU() }
func (f remoteFleet) connections() (int64, error) {
	s, err := f.Stats()
	return s.Connections, err
}
func (f remoteFleet) stop() { f.Stop() }

// fleetOptions are the -fleet flags.
type fleetOptions struct {
	kind           string // openssh or remote
	binary         string // the sshfleet binary for remote
	stragglers     float64
	stragglerDelay time.Duration
	failures       float64
	unreachable    float64
	seed           uint64
}

func (o fleetOptions) check() error {
	switch o.kind {
	case "openssh":
		if o.stragglers != 0 || o.failures != 0 || o.unreachable != 0 {
			return fmt.Errorf("-stragglers, -failures and -unreachable need -fleet remote (the OpenSSH fleet's nodes all restart in -delay)")
		}
	case "remote":
	default:
		return fmt.Errorf("-fleet %q: give openssh (loopback sshd processes, internal/sshtest) or remote (one x/crypto/ssh server process, internal/sshfleet)", o.kind)
	}
	return nil
}

// startFleet starts the fleet and returns a line describing it.
func startFleet(ctx context.Context, o fleetOptions, dir string, nodes int, delay time.Duration) (fleet, string, error) {
	started := time.Now()
	if o.kind == "openssh" {
		f, err := sshtest.Start(ctx, sshtest.Options{Dir: dir, Nodes: nodes, RestartDelay: delay})
		if err != nil {
			return nil, "", err
		}
		return opensshFleet{f}, fmt.Sprintf("fleet openssh: %d nodes on 127.1.0.0/16, %d sshd processes (%s), restart delay %v, started in %v",
			nodes, (nodes+sshtest.MaxNodesPerSSHD-1)/sshtest.MaxNodesPerSSHD, sshtest.SSHD, delay, time.Since(started).Round(time.Millisecond)), nil
	}
	if o.stragglers == 0 {
		o.stragglerDelay = 0
	}
	p, err := sshfleet.StartProcess(ctx, o.binary, sshfleet.Options{Dir: dir, Nodes: nodes, RestartDelay: delay,
		Stragglers: o.stragglers, StragglerDelay: o.stragglerDelay, Failures: o.failures, Unreachable: o.unreachable, Seed: o.seed})
	if err != nil {
		return nil, "", err
	}
	roles := map[sshfleet.Role]int{}
	for _, r := range p.Roles {
		roles[r]++
	}
	return remoteFleet{p}, fmt.Sprintf("fleet remote: %d nodes on 127.1.0.0/16, one %s process (x/crypto/ssh, a listener per node, nice 10), restart delay %v; %d stragglers at %v, %d failing, %d unreachable (seed %d); started in %v",
		nodes, o.binary, delay, roles[sshfleet.RoleStraggler], o.stragglerDelay, roles[sshfleet.RoleFailing], roles[sshfleet.RoleUnreachable], o.seed,
		time.Since(started).Round(time.Millisecond)), nil
}
