package testenv

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/csmops/etcd-repopulate/internal/config"
	"github.com/csmops/etcd-repopulate/internal/csmemu"
	"github.com/csmops/etcd-repopulate/internal/sshtest"
	"github.com/csmops/etcd-repopulate/internal/workerconfig"
)

// Worker is a running repopulate-worker process.
type Worker struct {
	Log  string
	cmd  *exec.Cmd
	done chan struct{}
}

// WorkerOptions say how to start a worker.
type WorkerOptions struct {
	// BinDir holds repopulate-worker (see BuildCommands).
	BinDir string
	// LogDir receives the worker's config file and, unless LogFile names
	// another file, its log.
	LogDir     string
	LogFile    string
	Address    string
	Queue      string
	Config     config.Config
	Kubeconfig string
}

// LaunchWorker runs a repopulate-worker process on o.Queue that the
// caller kills (see Worker.Kill), e.g. in the middle of a step.
func LaunchWorker(o WorkerOptions) (*Worker, error) {
	stamp := fmt.Sprintf("%s-%d", o.Queue, time.Now().UnixNano())
	cfgPath := filepath.Join(o.LogDir, "worker-"+stamp+".yaml")
	if err := workerconfig.Write(cfgPath, o.Config); err != nil {
		return nil, err
	}
	w := &Worker{Log: o.LogFile, done: make(chan struct{})}
	if w.Log == "" {
		w.Log = filepath.Join(o.LogDir, "worker-"+stamp+".log")
	}
	logFile, err := os.Create(w.Log)
	if err != nil {
		return nil, err
	}
	w.cmd = exec.Command(filepath.Join(o.BinDir, "repopulate-worker"),
		"--address", o.Address, "--task-queue", o.Queue, "--kubeconfig", o.Kubeconfig,
		"--config", cfgPath, "--log-format", "console",
		"--http-address", "127.0.0.1:0") // several run at once: no fixed port
	w.cmd.Stdout, w.cmd.Stderr = logFile, logFile
	w.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := w.cmd.Start(); err != nil {
		logFile.Close()
		return nil, err
	}
	go func() { _ = w.cmd.Wait(); logFile.Close(); close(w.done) }()
	return w, nil
}

// StartWorker is LaunchWorker for the length of test t.
func StartWorker(t testing.TB, o WorkerOptions) *Worker {
	t.Helper()
	w, err := LaunchWorker(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(w.Kill)
	return w
}

// Exited is closed once the process has exited.
func (w *Worker) Exited() <-chan struct{} { return w.done }

// Pid is the worker's process id; Temporal names the worker "<pid>@<host>@".
func (w *Worker) Pid() int { return w.cmd.Process.Pid }

// Stop is SIGTERM, as a rolling restart stops a replica: the worker stops
// polling and lets running activities end. It returns once the process is
// gone (SIGKILL after grace).
func (w *Worker) Stop(grace time.Duration) {
	_ = w.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-w.done:
	case <-time.After(grace):
		w.Kill()
	}
}

// Kill is SIGKILL: no graceful shutdown, as when a node dies. It returns
// once the process is gone; killing a dead worker does nothing.
func (w *Worker) Kill() {
	_ = w.cmd.Process.Kill()
	<-w.done
}

// OrcaResubscribes plays the orca daemon until ctx ends: a compute node
// whose orca was restarted on fleet f subscribes to the emulator's HMNFD
// again (nid N is x1000c0s{N-1}b0n0).
func OrcaResubscribes(ctx context.Context, emu *csmemu.Emulator, f *sshtest.Fleet) {
	for ctx.Err() == nil {
		if restarts, err := f.Restarts(); err == nil {
			have := map[string]bool{}
			for _, sub := range emu.Subscriptions() {
				have[sub.Xname()] = true // HMNFD 1.8.5 (csm-1.0) has no SubscriberComponent
			}
			for host := range restarts {
				var nid int
				if _, err := fmt.Sscanf(host, "nid%06d-nmn", &nid); err == nil && nid <= len(emu.Components()) {
					if x := fmt.Sprintf("x1000c0s%db0n0", nid-1); !have[x] {
						emu.Subscribe(x)
					}
				}
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
}
