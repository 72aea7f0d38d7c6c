package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/csmops/etcd-repopulate/internal/sshfleet"
)

// TestMain lets the test binary be a tool's child, as main does.
func TestMain(m *testing.M) {
	if len(os.Args) == 2 && os.Args[1] == "-"+childFlag {
		os.Exit(childMain())
	}
	os.Exit(m.Run())
}

// localFleet is an in-process sshfleet behind the benchmark's fleet
// interface.
type localFleet struct{ *sshfleet.Fleet }

func (f localFleet) configFile() string  { return f.ConfigFile }
func (f localFleet) knownHosts() string  { return f.KnownHosts }
func (f localFleet) nodeNames() []string { return f.NodeNames }
func (f localFleet) pdshCommand(ctx context.Context, fanout int, hosts []string, command string, sshArgs ...string) *exec.Cmd {
	return f.PdshCommand(ctx, fanout, hosts, command, sshArgs...)
}
func (f localFleet) resetRestarts() error              { f.ResetRestarts(); return nil }
func (f localFleet) restarts() (map[string]int, error) { return f.Restarts(), nil }
func (f localFleet) wantRestarts(string) int           { return 1 }
func (f localFleet) serverCPU() (time.Duration, error) { return 0, nil }
func (f localFleet) connections() (int64, error)       { return f.Stats().Connections, nil }
func (f localFleet) stop()                             { f.Close() }

func startLocalFleet(t *testing.T, nodes int) localFleet {
	t.Helper()
	f, err := sshfleet.Start(sshfleet.Options{Dir: t.TempDir(), Nodes: nodes, RestartDelay: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(f.Close)
	return localFleet{f}
}

// TestSSHFanChild: the fan-out runs in a child process whose wait4 rusage
// (CPU, peak RSS) is the tool's, and every node restarts exactly once.
func TestSSHFanChild(t *testing.T) {
	f := startLocalFleet(t, 5)
	r, err := measure(f, "sshfan", 4, func() (toolRun, error) { return runSSHFanChild(f, 4, 10*time.Second) })
	if err != nil {
		t.Fatal(err)
	}
	if len(r.missed) > 0 {
		t.Errorf("not restarted exactly once: %v", r.missed)
	}
	if r.cpu <= 0 || r.maxRSS < 1<<20 || r.wall <= 0 {
		t.Errorf("child usage: wall %v, cpu %v, peak RSS %d bytes; want all of them above zero (RSS above 1 MiB)", r.wall, r.cpu, r.maxRSS)
	}
	if !strings.Contains(r.note, "5 ok") || r.conns != 5 {
		t.Errorf("note %q, %d connections; want 5 ok over 5 connections", r.note, r.conns)
	}
}

// TestChildError: a child that cannot run reports why.
func TestChildError(t *testing.T) {
	c, err := startChild(childSpec{Tool: "nonesuch"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.report(); err == nil || !strings.Contains(err.Error(), `unknown child tool "nonesuch"`) {
		t.Errorf("report: %v, want the unknown tool named", err)
	}
	if _, _, err := c.finish(); err == nil {
		t.Error("finish after the error report: no error")
	}
	if c.cmd.ProcessState == nil || c.cmd.ProcessState.ExitCode() != 1 {
		t.Errorf("the child's exit: %v, want status 1", c.cmd.ProcessState)
	}
}

// TestPdshHostFile: pdsh reads its hosts from a file, so that 10,000 host
// names do not make one -w argument past Linux's 128 KiB (MAX_ARG_STRLEN),
// and the real pdsh restarts every node of a fleet through it.
func TestPdshHostFile(t *testing.T) {
	if _, err := exec.LookPath("pdsh"); err != nil {
		t.Fatal("pdsh not found: run `hack/install-tools.sh ssh-peers`") // never skip: the real client is the point
	}
	dir := t.TempDir()
	many := make([]string, 10000)
	for i := range many {
		many[i] = fmt.Sprintf("nid%06d-nmn", i+1)
	}
	f := startLocalFleet(t, 3)
	cmd, err := pdshCommand(context.Background(), f, dir, 32, many)
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range cmd.Args {
		if len(a) >= 128<<10 {
			t.Errorf("pdsh argument of %d bytes: past MAX_ARG_STRLEN", len(a))
		}
	}
	if data, err := os.ReadFile(filepath.Join(dir, "pdsh-hosts")); err != nil || strings.Count(string(data), "\n") != 10000 {
		t.Errorf("host file: %v, %d lines; want 10000", err, strings.Count(string(data), "\n"))
	}
	r, err := measure(f, "pdsh -f 2", 2, func() (toolRun, error) { return runPdsh(context.Background(), f, dir, 2) })
	if err != nil {
		t.Fatal(err)
	}
	if len(r.missed) > 0 || r.cpu <= 0 {
		t.Errorf("pdsh: missed %v, cpu %v; want none missed and CPU above zero", r.missed, r.cpu)
	}
}

// TestWorkflowChild: a whole hmnfd run against the Temporal dev server with
// the worker in a child process: every node restarted once, the worker's
// CPU and peak RSS measured, the child's history counted and broken down.
func TestWorkflowChild(t *testing.T) {
	temporalBinary = filepath.Join("..", "..", "bin", "temporal")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	f := startLocalFleet(t, 4)
	wb, err := startWorkflowBench(ctx, t.TempDir(), f, 4, 4, 1000, 10*time.Second)
	defer wb.stop()
	if err != nil {
		t.Fatal(err)
	}
	r, err := measure(f, "workflow", 4, func() (toolRun, error) { return wb.run(ctx, "bench-test") })
	if err != nil {
		t.Fatal(err)
	}
	if len(r.missed) > 0 {
		t.Errorf("not restarted exactly once: %v", r.missed)
	}
	if r.cpu <= 0 || r.maxRSS < 1<<20 || r.events < 10 || r.fanout <= 0 || r.fanout > r.wall {
		t.Errorf("worker cpu %v, peak RSS %d bytes, %d history events, fan-out span %v of wall %v", r.cpu, r.maxRSS, r.events, r.fanout, r.wall)
	}
	all := strings.Join(r.breakdown, "\n")
	for _, want := range []string{"ExecuteWorkflow to result", "DiscoverOrca", "RestartOrca", "Subscriptions", "child RepopulateService"} {
		if !strings.Contains(all, want) {
			t.Errorf("breakdown lacks %q:\n%s", want, all)
		}
	}
}
