package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// childFlag is the hidden flag that makes the benchmark binary a tool's
// child process: it reads a childSpec as JSON on stdin. Each tool runs in
// a process of its own so that its CPU and peak RSS are that process's
// wait4 rusage, apart from the fleet, the CSM emulator and the Temporal
// dev server, which stand in for remote systems.
const childFlag = "child"

// childSpec is what a tool's child process runs.
type childSpec struct {
	// Tool is "sshfan" (run the fan-out once, report, exit) or "worker"
	// (serve the Temporal worker until stdin closes).
	Tool           string        `json:"tool"`
	ConfigFile     string        `json:"configFile"`
	KnownHosts     string        `json:"knownHosts"`
	Hosts          []string      `json:"hosts,omitempty"` // sshfan
	Width          int           `json:"width"`
	ConnectTimeout time.Duration `json:"connectTimeout"`
	// The worker's: the dev server, the emulator, the batch size.
	Temporal string `json:"temporal,omitempty"`
	CSMURL   string `json:"csmURL,omitempty"`
	Batch    int    `json:"batch,omitempty"`
}

// childReport is the child's one line of JSON on stdout.
type childReport struct {
	Ready bool          `json:"ready,omitempty"` // the worker serves
	Wall  time.Duration `json:"wall,omitempty"`  // sshfan: New+Run
	// PeakRSS is the child's VmHWM in bytes, read last thing before it
	// exits (see peakRSS).
	PeakRSS int64  `json:"peakRSS,omitempty"`
	Note    string `json:"note,omitempty"`
	Error   string `json:"error,omitempty"`
}

// childMain is the child process's main: spec on stdin, reports on stdout.
func childMain() int {
	dec := json.NewDecoder(os.Stdin)
	var spec childSpec
	if err := dec.Decode(&spec); err != nil {
		fmt.Fprintln(os.Stderr, "bench-fanout child: reading the spec on stdin:", err)
		return 2
	}
	out := json.NewEncoder(os.Stdout)
	fail := func(err error) int {
		_ = out.Encode(childReport{Error: err.Error()})
		return 1
	}
	ctx := context.Background()
	switch spec.Tool {
	case "sshfan":
		start := time.Now()
		note, err := runSSHFan(ctx, spec.ConfigFile, spec.KnownHosts, spec.Hosts, spec.Width, spec.ConnectTimeout)
		wall := time.Since(start)
		if err != nil {
			return fail(err)
		}
		rss, err := peakRSS()
		if err != nil {
			return fail(err)
		}
		_ = out.Encode(childReport{Wall: wall, Note: note, PeakRSS: rss})
		return 0
	case "worker":
		stop, err := startWorker(spec)
		if err != nil {
			return fail(err)
		}
		_ = out.Encode(childReport{Ready: true})
		// The parent closes stdin once the run is over.
		_, _ = io.Copy(io.Discard, dec.Buffered())
		_, _ = io.Copy(io.Discard, os.Stdin)
		stop()
		rss, err := peakRSS()
		if err != nil {
			return fail(err)
		}
		_ = out.Encode(childReport{PeakRSS: rss})
		return 0
	}
	return fail(fmt.Errorf("unknown child tool %q (sshfan or worker)", spec.Tool))
}

// child is a tool's process, started by startChild.
type child struct {
	cmd     *exec.Cmd
	stdin   io.WriteCloser
	reports *bufio.Scanner
	stderr  strings.Builder
}

// childUsage is a tool process's CPU (user+sys, wait4's rusage, with the
// children it reaped) and peak RSS (0: not measured).
type childUsage struct {
	cpu    time.Duration
	maxRSS int64 // bytes
}

// startChild re-executes this binary as a tool's child with spec.
func startChild(spec childSpec) (*child, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	c := &child{cmd: exec.Command(self, "-"+childFlag)}
	c.cmd.Stderr = &limitedBuilder{b: &c.stderr, n: 64 << 10}
	c.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if c.stdin, err = c.cmd.StdinPipe(); err != nil {
		return nil, err
	}
	stdout, err := c.cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	c.reports = bufio.NewScanner(stdout)
	c.reports.Buffer(nil, 16<<20)
	if err := c.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start the %s child: %w", spec.Tool, err)
	}
	if err := json.NewEncoder(c.stdin).Encode(spec); err != nil {
		c.kill()
		return nil, fmt.Errorf("send the %s child its spec: %w", spec.Tool, err)
	}
	return c, nil
}

// report reads the child's next report line.
func (c *child) report() (childReport, error) {
	var r childReport
	if !c.reports.Scan() {
		err := c.reports.Err()
		if err == nil {
			err = io.ErrUnexpectedEOF
		}
		return r, fmt.Errorf("child %d printed no report (%v); its stderr: %s", c.cmd.Process.Pid, err, strings.TrimSpace(c.stderr.String()))
	}
	if err := json.Unmarshal(c.reports.Bytes(), &r); err != nil {
		return r, fmt.Errorf("child report %q: %w", c.reports.Text(), err)
	}
	if r.Error != "" {
		return r, errors.New(r.Error)
	}
	return r, nil
}

// finish closes the child's stdin (a worker stops then), reads its last
// report and waits for it to exit.
func (c *child) finish() (childReport, childUsage, error) {
	_ = c.stdin.Close()
	r, err := c.report()
	if err != nil {
		c.kill()
		return r, childUsage{}, err
	}
	err = c.cmd.Wait()
	u := childUsage{cpu: processCPU(c.cmd.ProcessState), maxRSS: r.PeakRSS}
	if err != nil {
		return r, u, fmt.Errorf("child %v; its stderr: %s", err, strings.TrimSpace(c.stderr.String()))
	}
	return r, u, nil
}

func (c *child) kill() {
	_ = c.cmd.Process.Kill()
	_ = c.cmd.Wait()
}

// processCPU is a finished process's CPU from its wait4 rusage. Its ru_maxrss
// is no measure of the process: Go starts children with vfork
// (CLONE_VM), and Linux's exec carries the shared memory's high-water
// mark, this benchmark's own, into the child's ru_maxrss.
func processCPU(ps *os.ProcessState) time.Duration {
	ru, ok := ps.SysUsage().(*syscall.Rusage)
	if !ok {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// peakRSS is this process's peak resident set (VmHWM of /proc/self/status,
// the high-water mark of its own memory since exec), in bytes.
func peakRSS() (int64, error) {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			if err != nil {
				return 0, fmt.Errorf("/proc/self/status: VmHWM %q: %w", v, err)
			}
			return kb << 10, nil
		}
	}
	return 0, fmt.Errorf("/proc/self/status has no VmHWM line")
}

type limitedBuilder struct {
	b *strings.Builder
	n int
}

func (w *limitedBuilder) Write(p []byte) (int, error) {
	if room := w.n - w.b.Len(); room > 0 {
		w.b.Write(p[:min(len(p), room)])
	}
	return len(p), nil
}
