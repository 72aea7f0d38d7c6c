package testenv

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"go.temporal.io/sdk/client"

	"github.com/csmops/etcd-repopulate/internal/api"
	"github.com/csmops/etcd-repopulate/internal/csmemu"
	"github.com/csmops/etcd-repopulate/internal/devserver"
	"github.com/csmops/etcd-repopulate/internal/simcluster"
	"github.com/csmops/etcd-repopulate/internal/sshtest"
	"github.com/csmops/etcd-repopulate/internal/workerconfig"
)

// CSMOptions say which CSM system to stand up on loopback.
type CSMOptions struct {
	Release      api.Release
	ClientSecret string
	// Computes are the emulator's Ready compute nodes in HSM.
	Computes int
	// FleetNodes are the sshd nodes nid000001-nmn..; Computes when 0.
	FleetNodes int
	// RestartDelay is how long the stand-in orca restart takes on a node.
	RestartDelay time.Duration
}

// CSM is a CSM system on loopback: the API emulator over TLS and a fleet of
// real sshd nodes, and what a worker configuration points at.
type CSM struct {
	Emu    *csmemu.Emulator
	Fleet  *sshtest.Fleet
	System workerconfig.System
}

// Emulator starts the CSM API emulator of o over TLS, its CA written into
// dir; the System names its URL and CA.
func Emulator(dir string, o CSMOptions) (*csmemu.Emulator, workerconfig.System, error) {
	emu := csmemu.New(csmemu.Options{Release: o.Release, ClientSecret: o.ClientSecret, Components: csmemu.ComputeNodes(o.Computes)})
	// FAS holds its images, as on a running system (BSS its boot
	// parameters): fas's data check counts them after a loader Job, which
	// here loads nothing. A test that plays FAS's rebuild empties them.
	emu.SetFASImages(csmemu.DefaultFASImages())
	base, err := emu.Start(true)
	if err != nil {
		return nil, workerconfig.System{}, err
	}
	ca, err := emu.CAFile(dir)
	if err != nil {
		_ = emu.Close()
		return nil, workerconfig.System{}, err
	}
	return emu, workerconfig.System{CSMURL: base, CABundle: ca}, nil
}

// StartCSM starts the emulator and the sshd fleet in dir and writes the
// client secret there; the fleet lives until ctx ends or Stop.
func StartCSM(ctx context.Context, dir string, o CSMOptions) (*CSM, error) {
	emu, sys, err := Emulator(dir, o)
	if err != nil {
		return nil, err
	}
	c := &CSM{Emu: emu}
	nodes := o.FleetNodes
	if nodes == 0 {
		nodes = o.Computes
	}
	if c.Fleet, err = sshtest.Start(ctx, sshtest.Options{Dir: filepath.Join(dir, "fleet"), Nodes: nodes, RestartDelay: o.RestartDelay}); err != nil {
		c.Stop()
		return nil, err
	}
	sys.SecretFile = filepath.Join(dir, "client-secret")
	if err := os.WriteFile(sys.SecretFile, []byte(o.ClientSecret+"\n"), 0o600); err != nil {
		c.Stop()
		return nil, err
	}
	sys.SSHConfig, sys.KnownHosts = c.Fleet.ConfigFile, c.Fleet.KnownHosts
	c.System = sys
	return c, nil
}

// Stop ends the fleet and the emulator.
func (c *CSM) Stop() {
	if c.Fleet != nil {
		c.Fleet.Stop()
	}
	_ = c.Emu.Close()
}

// Stack is a test package's shared system, started by Main: the commands
// built into BinDir, a Temporal dev server, the simulated cluster seeded
// like CSM, and a CSM system whose computes subscribe to HMNFD again when
// their orca restarts (OrcaResubscribes).
type Stack struct {
	Scratch, BinDir string
	Temporal        *devserver.Server
	Cluster         *simcluster.Cluster
	Client          client.Client
	*CSM
}

// Main runs a test package on a Stack (name is its scratch prefix and
// names it in messages) and exits with the tests' code. ready adjusts the
// stack before the tests run. The scratch directory, logs included, is
// removed when the tests pass and kept when they fail.
func Main(m *testing.M, name string, o CSMOptions, ready func(ctx context.Context, s *Stack) error) {
	ctx, cancel := context.WithCancel(context.Background())
	s := &Stack{Scratch: KeepDir(name + "-")}
	s.BinDir = filepath.Join(s.Scratch, "bin")
	if _, _, err := BuildCommands(s.BinDir); err != nil {
		Fatalf("%v", err)
	}
	var err error
	if s.Temporal, err = Temporal(ctx, s.Scratch); err != nil {
		Fatalf("%v", err)
	}
	if s.Cluster, err = Cluster(ctx, filepath.Join(s.Scratch, "cluster"), true); err != nil {
		Fatalf("start the real control plane: %v", err)
	}
	if s.Client, err = client.Dial(client.Options{HostPort: s.Temporal.Address}); err != nil {
		Fatalf("dial temporal: %v", err)
	}
	if s.CSM, err = StartCSM(ctx, s.Scratch, o); err != nil {
		Fatalf("%v", err)
	}
	go OrcaResubscribes(ctx, s.Emu, s.Fleet)
	if err := ready(ctx, s); err != nil {
		Fatalf("%v", err)
	}
	code := m.Run()
	s.CSM.Stop()
	s.Client.Close()
	cancel()
	s.Cluster.Stop()
	s.Temporal.Stop()
	if code == 0 {
		os.RemoveAll(s.Scratch)
	} else {
		fmt.Fprintf(os.Stderr, "%s: logs kept in %s\n", name, s.Scratch)
	}
	os.Exit(code)
}
