package sshfleet

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Ready is the line the fleet process prints on stdout once it serves:
// its client files and the address of its control API.
type Ready struct {
	Files
	Control string `json:"control"` // host:port of the control HTTP API
	Port    int    `json:"port"`
}

// ControlHandler is the control API the fleet process serves on loopback:
// GET /restarts (the ledger, JSON name -> count), POST /reset (zero it),
// GET /stats (Stats as JSON).
func (f *Fleet) ControlHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /restarts", func(w http.ResponseWriter, _ *http.Request) {
		_ = json.NewEncoder(w).Encode(f.Restarts())
	})
	mux.HandleFunc("POST /reset", func(w http.ResponseWriter, _ *http.Request) {
		f.ResetRestarts()
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("GET /stats", func(w http.ResponseWriter, _ *http.Request) {
		_ = json.NewEncoder(w).Encode(f.Stats())
	})
	return mux
}

// Args are the command-line flags of the fleet process for opts.
func (o Options) Args() []string {
	return []string{
		"-dir", o.Dir,
		"-nodes", strconv.Itoa(o.Nodes),
		"-delay", o.RestartDelay.String(),
		"-stragglers", strconv.FormatFloat(o.Stragglers, 'g', -1, 64),
		"-straggler-delay", o.StragglerDelay.String(),
		"-failures", strconv.FormatFloat(o.Failures, 'g', -1, 64),
		"-unreachable", strconv.FormatFloat(o.Unreachable, 'g', -1, 64),
		"-seed", strconv.FormatUint(o.Seed, 10),
	}
}

// Process is a fleet running as its own process (hack/sshfleet).
type Process struct {
	Ready
	cmd    *exec.Cmd
	done   chan struct{}
	err    error
	stderr strings.Builder
	http   *http.Client
}

// StartProcess runs the fleet binary (built from hack/sshfleet) with opts at
// nice 10, like internal/sshtest's sshd processes, and waits for its Ready
// line. The process dies with this one.
func StartProcess(ctx context.Context, binary string, opts Options) (*Process, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	if _, err := os.Stat(binary); err != nil {
		return nil, fmt.Errorf("sshfleet: fleet binary %s: %w; build it with `go build -o %s ./hack/sshfleet` (make bench-fanout-remote does)", binary, err, binary)
	}
	p := &Process{done: make(chan struct{}), http: &http.Client{Timeout: time.Minute}}
	p.cmd = exec.Command(binary, opts.Args()...)
	p.cmd.Stderr = &limitedWriter{b: &p.stderr, n: 64 << 10}
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	out, err := p.cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := p.cmd.Start(); err != nil {
		return nil, fmt.Errorf("sshfleet: start %s: %w", binary, err)
	}
	_ = syscall.Setpriority(syscall.PRIO_PROCESS, p.cmd.Process.Pid, 10)
	lines := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		sc.Buffer(nil, 64<<20)
		if sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
		_, _ = io.Copy(io.Discard, out)
	}()
	go func() { p.err = p.cmd.Wait(); close(p.done) }()
	select {
	case line, ok := <-lines:
		if !ok {
			<-p.done
			return nil, fmt.Errorf("sshfleet: %s exited (%v) before it was ready: %s", binary, p.err, strings.TrimSpace(p.stderr.String()))
		}
		if err := json.Unmarshal([]byte(line), &p.Ready); err != nil {
			p.Stop()
			return nil, fmt.Errorf("sshfleet: %s printed no ready line: %q: %w", binary, line, err)
		}
	case <-ctx.Done():
		p.Stop()
		return nil, ctx.Err()
	}
	return p, nil
}

type limitedWriter struct {
	b *strings.Builder
	n int
}

func (w *limitedWriter) Write(p []byte) (int, error) {
	if room := w.n - w.b.Len(); room > 0 {
		w.b.Write(p[:min(len(p), room)])
	}
	return len(p), nil
}

func (p *Process) call(method, path string, into any) error {
	req, err := http.NewRequest(method, "http://"+p.Control+path, nil)
	if err != nil {
		return err
	}
	resp, err := p.http.Do(req)
	if err != nil {
		return fmt.Errorf("sshfleet: control API: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
		return fmt.Errorf("sshfleet: control API %s %s: %s: %s", method, path, resp.Status, b)
	}
	if into == nil {
		return nil
	}
	return json.NewDecoder(resp.Body).Decode(into)
}

// Restarts returns the ledger: restarts per node, every node listed.
func (p *Process) Restarts() (map[string]int, error) {
	var m map[string]int
	return m, p.call("GET", "/restarts", &m)
}

// ResetRestarts zeroes the ledger.
func (p *Process) ResetRestarts() error { return p.call("POST", "/reset", nil) }

// Stats returns the fleet's counters.
func (p *Process) Stats() (Stats, error) {
	var s Stats
	return s, p.call("GET", "/stats", &s)
}

// ServerCPU is the CPU time (user+sys) the fleet process has used so far,
// from /proc/PID/stat (utime+stime, in clock ticks of 10 ms). Take the
// difference of two readings for one run's server cost.
func (p *Process) ServerCPU() (time.Duration, error) {
	pid := p.cmd.Process.Pid
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, fmt.Errorf("sshfleet: %w", err)
	}
	s := string(data)
	// utime and stime are fields 14 and 15 of the line, 12 and 13 after
	// the parenthesised command name.
	fields := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(fields) < 13 {
		return 0, fmt.Errorf("sshfleet: unexpected /proc/%d/stat: %q", pid, s)
	}
	var ticks int64
	for _, fld := range fields[11:13] {
		v, err := strconv.ParseInt(fld, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("sshfleet: /proc/%d/stat: %w", pid, err)
		}
		ticks += v
	}
	return time.Duration(ticks) * 10 * time.Millisecond, nil
}

// Stop ends the fleet process and waits for it. Stop is idempotent.
func (p *Process) Stop() {
	if p.cmd.Process == nil {
		return
	}
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(5 * time.Second):
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		<-p.done
	}
}

// PdshCommand returns `pdsh -f fanout -w host,... command` reaching the
// fleet through its client config (pdsh's ssh module, BatchMode), with
// extraSSHArgs appended to ssh's arguments (no whitespace in them).
func (fl Files) PdshCommand(ctx context.Context, fanout int, hosts []string, command string, extraSSHArgs ...string) *exec.Cmd {
	args := append([]string{"-F", fl.ConfigFile, "-o", "BatchMode=yes"}, extraSSHArgs...)
	cmd := exec.CommandContext(ctx, "pdsh", "-f", strconv.Itoa(fanout), "-w", strings.Join(hosts, ","), command)
	cmd.Env = append(os.Environ(), "PDSH_RCMD_TYPE=ssh", "PDSH_SSH_ARGS_APPEND="+strings.Join(args, " "))
	return cmd
}
