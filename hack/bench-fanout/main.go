// Command bench-fanout compares the HMNFD step's fan-out tools on a test
// fleet on loopback: pdsh -f 32 (pdsh's default), pdsh -f W, the sshfan
// library at width W and a whole hmnfd workflow run. Two fleets (-fleet):
//
//   - openssh (default): real sshd processes (internal/sshtest), a process
//     tree per connection on the client's cores, the realism check;
//   - remote: one x/crypto/ssh server process for every node
//     (internal/sshfleet, bin/sshfleet), whose per-connection CPU is small
//     enough that the client's cost and the restarts bound the result, as
//     on a real system where each node's sshd runs on that node. It can
//     make stragglers, failing and unreachable nodes.
//
// Each tool runs in a process of its own, and its CPU time (user+sys) is
// that process's wait4 rusage: pdsh with the ssh processes it forks, or
// this binary re-run as a child (-child) for sshfan and for the workflow's
// Temporal worker, whose peak RSS (VmHWM) the child reports. The Temporal
// dev server and the CSM emulator stand in for remote services and stay
// outside (their CPU is printed apart). The servers' CPU is shown apart
// too (and per connection for the remote fleet, which counts them): it
// is the same work whichever client connects. The workflow's wall is
// broken down from its histories: the RestartOrca span (the fan-out
// inside the workflow) and the orchestration around it.
//
// OpenSSH 9.2's ssh negotiates the post-quantum hybrid key exchange
// sntrup761x25519-sha512 with sshd; x/crypto/ssh does not implement it and
// uses curve25519-sha256. So that the comparison also shows the cost of
// forking an ssh per host alone, an extra run (pdsh-W-curve25519 in
// -tools, on by default) makes pdsh -f W with ssh forced to
// curve25519-sha256 too.
//
// Every run must restart every node exactly once (an unreachable node
// never); the command exits 1 if any node was missed or restarted twice.
// All traffic stays on 127.0.0.0/8.
//
//	go run ./hack/bench-fanout -nodes 1000 -delay 1s -width 256
//	go build -o bin/sshfleet ./hack/sshfleet && go run ./hack/bench-fanout -fleet remote -stragglers 0.01 -straggler-delay 10s
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/csmops/etcd-repopulate/internal/sshfan"
)

const command = "systemctl restart cray-dvs-orca"

type result struct {
	name      string
	width     int
	wall, cpu time.Duration
	maxRSS    int64 // bytes, wait4's ru_maxrss of the tool's process
	server    time.Duration
	conns     int64 // connections the fleet accepted
	// connsFromLedger: the fleet does not count connections; conns is the
	// number of restarts, one connection each.
	connsFromLedger bool
	missed          []string // nodes not restarted exactly once
	note            string
	breakdown       []string // the workflow's: where its wall went
	// fanout is the workflow's RestartOrca span from its history (0 for
	// other tools): the fan-out's wall inside the workflow.
	fanout time.Duration
	events int // the hmnfd child's history events (workflow)
}

// toolRun is what one tool's run reports to measure.
type toolRun struct {
	wall      time.Duration // 0: measure's own clock around the run
	usage     childUsage    // the tool's process, from wait4
	note      string
	events    int // the hmnfd child's history events (workflow)
	breakdown []string
	fanout    time.Duration
}

func main() {
	if len(os.Args) == 2 && os.Args[1] == "-"+childFlag {
		os.Exit(childMain())
	}
	nodes := flag.Int("nodes", 1000, "number of nodes (nid000001-nmn ...)")
	delay := flag.Duration("delay", time.Second, "how long the stand-in restart takes on each node")
	width := flag.Int("width", 256, "fan-out width W for pdsh -f W and sshfan")
	connectTimeout := flag.Duration("connect-timeout", sshfan.DefaultConnectTimeout, "sshfan connect timeout (pdsh's is 10s)")
	timeout := flag.Duration("timeout", 0, "give up after this long in all (default 20m per 1,000 nodes, at least 20m)")
	dir := flag.String("dir", "", "directory for the fleet's files (default: a new temporary directory, removed at exit)")
	tools := flag.String("tools", "pdsh-32,pdsh-W,pdsh-W-curve25519,sshfan,workflow",
		"which runs to make, in order (pdsh-W-curve25519: pdsh -f W with ssh -o KexAlgorithms=curve25519-sha256, the key exchange sshfan negotiates)")
	flag.IntVar(&workflowBatch, "batch", 1000, "with the workflow tool, nodes per durable batch (services.hmnfd.batchSize)")
	var fo fleetOptions
	flag.StringVar(&fo.kind, "fleet", "openssh", "the test fleet: openssh (sshd processes, internal/sshtest) or remote (one x/crypto/ssh server process, internal/sshfleet)")
	flag.StringVar(&fo.binary, "fleet-bin", "bin/sshfleet", "with -fleet remote, the fleet binary (go build -o bin/sshfleet ./hack/sshfleet)")
	flag.Float64Var(&fo.stragglers, "stragglers", 0, "with -fleet remote, share of nodes (0..1) whose restart takes -straggler-delay")
	flag.DurationVar(&fo.stragglerDelay, "straggler-delay", 10*time.Second, "with -fleet remote, the stragglers' restart time")
	flag.Float64Var(&fo.failures, "failures", 0, "with -fleet remote, share of nodes whose restart exits 1")
	flag.Float64Var(&fo.unreachable, "unreachable", 0, "with -fleet remote, share of nodes nothing listens for")
	flag.Uint64Var(&fo.seed, "seed", 1, "with -fleet remote, chooses which nodes straggle, fail or are unreachable")
	flag.Parse()
	if err := fo.check(); err != nil {
		fmt.Fprintln(os.Stderr, "bench-fanout:", err)
		os.Exit(2)
	}
	toolsSet := false
	flag.Visit(func(f *flag.Flag) { toolsSet = toolsSet || f.Name == "tools" })
	if fo.kind == "remote" && !toolsSet {
		// x/crypto/ssh's server offers no sntrup761x25519: OpenSSH's ssh
		// negotiates curve25519-sha256 with it anyway, so the run forcing
		// it would repeat pdsh-W.
		*tools = "pdsh-32,pdsh-W,sshfan,workflow"
	}
	if *timeout == 0 {
		*timeout = defaultTimeout(*nodes)
	}
	os.Exit(run(fo, *nodes, *delay, *width, *connectTimeout, *timeout, *dir, strings.Split(*tools, ",")))
}

// workflowBatch is the HMNFD batch size of the workflow tool.
var workflowBatch int

// defaultTimeout bounds a whole invocation: pdsh -f 32 alone takes about
// N/32 restarts plus ~33 ms of CPU per host on two cores (10 min at
// 10,000 nodes), so 20 minutes per 1,000 nodes, at least 20.
func defaultTimeout(nodes int) time.Duration {
	return time.Duration(max(1, (nodes+999)/1000)) * 20 * time.Minute
}

func run(fo fleetOptions, nodes int, delay time.Duration, width int, connectTimeout, timeout time.Duration, dir string, tools []string) int {
	for _, t := range tools {
		switch t {
		case "pdsh-32", "pdsh-W", "pdsh-W-curve25519", "sshfan", "workflow":
		default:
			fmt.Fprintf(os.Stderr, "bench-fanout: unknown tool %q in -tools (known: pdsh-32 pdsh-W pdsh-W-curve25519 sshfan workflow)\n", t)
			return 2
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if err := raiseNofile(); err != nil {
		fmt.Fprintln(os.Stderr, "bench-fanout:", err)
		return 2
	}
	if dir == "" {
		d, err := os.MkdirTemp("", "bench-fanout-")
		if err != nil {
			fmt.Fprintln(os.Stderr, "bench-fanout:", err)
			return 2
		}
		defer os.RemoveAll(d)
		dir = d
	}
	started := time.Now()
	f, desc, err := startFleet(ctx, fo, dir, nodes, delay)
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench-fanout:", err)
		return 2
	}
	defer f.stop()
	fmt.Println(desc)

	// Warm caches (binaries, keys) with a few hosts, unmeasured.
	warm := f.nodeNames()[:min(4, len(f.nodeNames()))]
	warmPdsh, err := pdshCommand(ctx, f, dir, 4, warm)
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench-fanout:", err)
		return 2
	}
	if out, err := warmPdsh.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "bench-fanout: warm-up pdsh: %v\n%s", err, out)
		return 2
	}
	if _, err := runSSHFan(ctx, f.configFile(), f.knownHosts(), warm, 4, connectTimeout); err != nil {
		fmt.Fprintln(os.Stderr, "bench-fanout: warm-up sshfan:", err)
		return 2
	}

	var results []result
	for _, tool := range tools {
		var r result
		var err error
		switch tool {
		case "pdsh-32":
			r, err = measure(f, "pdsh -f 32", 32, func() (toolRun, error) { return runPdsh(ctx, f, dir, 32) })
		case "pdsh-W":
			r, err = measure(f, fmt.Sprintf("pdsh -f %d", width), width, func() (toolRun, error) { return runPdsh(ctx, f, dir, width) })
		case "pdsh-W-curve25519":
			r, err = measure(f, fmt.Sprintf("pdsh -f %d curve25519", width), width, func() (toolRun, error) {
				return runPdsh(ctx, f, dir, width, "-o", "KexAlgorithms=curve25519-sha256")
			})
		case "sshfan":
			r, err = measure(f, "sshfan", width, func() (toolRun, error) {
				return runSSHFanChild(f, width, connectTimeout)
			})
		case "workflow":
			var wb *workflowBench
			if wb, err = startWorkflowBench(ctx, dir, f, nodes, width, workflowBatch, connectTimeout); err == nil {
				r, err = measure(f, "workflow (hmnfd run)", width, func() (toolRun, error) {
					return wb.run(ctx, fmt.Sprintf("bench-%d", time.Now().UnixNano()))
				})
			}
			if wb != nil {
				wb.stop()
			}
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "bench-fanout:", err)
			return 2
		}
		results = append(results, r)
	}

	printTable(results, nodes, delay, ideal(fo, nodes, width, delay), fo.kind == "openssh", width)
	bad := false
	for _, r := range results {
		if len(r.missed) > 0 {
			bad = true
			fmt.Printf("FAIL: %s: %d node(s) not restarted exactly once: %s\n", r.name, len(r.missed), head(r.missed, 10))
		}
	}
	if bad {
		return 1
	}
	fmt.Printf("every node restarted exactly once per tool run (unreachable ones never); total %v\n", time.Since(started).Round(time.Second))
	return 0
}

// measure runs fn once between empty logs and checks every node ran the
// command exactly once. The tool's CPU and peak RSS are the wait4 rusage
// of its process (pdsh with its ssh children, or this binary's child).
func measure(f fleet, name string, width int, fn func() (toolRun, error)) (result, error) {
	r := result{name: name, width: width}
	if err := f.resetRestarts(); err != nil {
		return r, err
	}
	srv0, err := f.serverCPU()
	if err != nil {
		return r, err
	}
	conns0, err := f.connections()
	if err != nil {
		return r, err
	}
	start := time.Now()
	tr, err := fn()
	r.wall = time.Since(start)
	if err != nil {
		return r, fmt.Errorf("%s: %w", name, err)
	}
	if tr.wall > 0 {
		r.wall = tr.wall
	}
	r.cpu, r.maxRSS, r.note, r.breakdown, r.fanout, r.events = tr.usage.cpu, tr.usage.maxRSS, tr.note, tr.breakdown, tr.fanout, tr.events
	// The last sessions' sshd processes may still be exiting.
	time.Sleep(300 * time.Millisecond)
	srv1, err := f.serverCPU()
	if err != nil {
		return r, err
	}
	r.server = srv1 - srv0
	conns1, err := f.connections()
	if err != nil {
		return r, err
	}
	counts, err := f.restarts()
	if err != nil {
		return r, err
	}
	r.conns = conns1 - conns0
	if conns0 < 0 {
		// The OpenSSH fleet does not count connections; every tool opens
		// one per restart.
		r.conns, r.connsFromLedger = 0, true
		for _, c := range counts {
			r.conns += int64(c)
		}
	}
	for _, n := range f.nodeNames() {
		if counts[n] != f.wantRestarts(n) {
			r.missed = append(r.missed, fmt.Sprintf("%s=%d", n, counts[n]))
		}
	}
	fmt.Printf("  %-22s wall %8.2fs  cpu %8.2fs  peak RSS %9s  %s\n", name, r.wall.Seconds(), r.cpu.Seconds(), rssText(r.maxRSS), r.note)
	return r, nil
}

// pdshCommand is pdsh reaching hosts through the fleet's client config.
// The host list goes in a file (-w ^FILE): at 10,000 nodes a -w argument
// would be ~140 KB, past Linux's 128 KiB limit on one argument (E2BIG).
func pdshCommand(ctx context.Context, f fleet, dir string, fanout int, hosts []string, sshArgs ...string) (*exec.Cmd, error) {
	file := filepath.Join(dir, "pdsh-hosts")
	if err := os.WriteFile(file, []byte(strings.Join(hosts, "\n")+"\n"), 0o644); err != nil {
		return nil, fmt.Errorf("pdsh host list: %w", err)
	}
	return f.pdshCommand(ctx, fanout, []string{"^" + file}, command, sshArgs...), nil
}

func runPdsh(ctx context.Context, f fleet, dir string, fanout int, sshArgs ...string) (toolRun, error) {
	cmd, err := pdshCommand(ctx, f, dir, fanout, f.nodeNames(), sshArgs...)
	if err != nil {
		return toolRun{}, err
	}
	out, err := cmd.CombinedOutput()
	lines := strings.Count(string(out), "\n")
	if err != nil {
		return toolRun{}, fmt.Errorf("%v; %d lines of output, first: %s", err, lines, head(strings.Split(string(out), "\n"), 5))
	}
	// pdsh and the ssh processes it reaped.
	return toolRun{usage: childUsage{cpu: processCPU(cmd.ProcessState)}, note: fmt.Sprintf("(pdsh exit 0, %d output lines)", lines)}, nil
}

// runSSHFanChild runs the fan-out code in a child process; the wall is
// the child's New+Run, its CPU and RSS the child's whole life.
func runSSHFanChild(f fleet, width int, connectTimeout time.Duration) (toolRun, error) {
	c, err := startChild(childSpec{Tool: "sshfan", ConfigFile: f.configFile(), KnownHosts: f.knownHosts(), Hosts: f.nodeNames(), Width: width, ConnectTimeout: connectTimeout})
	if err != nil {
		return toolRun{}, err
	}
	rep, u, err := c.finish()
	return toolRun{wall: rep.Wall, usage: u, note: rep.Note}, err
}

func runSSHFan(ctx context.Context, configFile, knownHosts string, hosts []string, width int, connectTimeout time.Duration) (string, error) {
	r, err := sshfan.New(sshfan.Options{
		ConfigFile:     configFile,
		KnownHosts:     []string{knownHosts},
		Concurrency:    width,
		ConnectTimeout: connectTimeout,
		CommandTimeout: 5 * time.Minute,
	})
	if err != nil {
		return "", err
	}
	defer r.Close()
	counts := map[sshfan.Status]int{}
	var firstBad []string
	err = r.Run(ctx, hosts, command, func(res sshfan.Result) {
		counts[res.Status]++
		if res.Status != sshfan.StatusOK && len(firstBad) < 5 {
			firstBad = append(firstBad, res.Host+": "+res.Reason)
		}
	})
	if err != nil {
		return "", err
	}
	note := fmt.Sprintf("(%d ok, %d failed, %d unreachable)", counts[sshfan.StatusOK], counts[sshfan.StatusFailed], counts[sshfan.StatusUnreachable])
	if len(firstBad) > 0 {
		note += " first problems: " + strings.Join(firstBad, "; ")
	}
	return note, nil
}

// ideal is issue 14's reference wall for the remote fleet at width W:
// ⌈N/W⌉ × the restart delay, plus the stragglers' delay once when there
// are stragglers. 0 for the OpenSSH fleet, whose bound is its CPU.
func ideal(fo fleetOptions, nodes, width int, delay time.Duration) time.Duration {
	if fo.kind != "remote" {
		return 0
	}
	d := restartRounds(nodes, width, delay)
	if fo.stragglers > 0 {
		d += fo.stragglerDelay
	}
	return d
}

// restartRounds is ⌈N/W⌉ × delay: the least wall of W restarts at a time.
func restartRounds(nodes, width int, delay time.Duration) time.Duration {
	return time.Duration((nodes+width-1)/width) * delay
}

// boxLimit is the OpenSSH fleet's least wall on this box for one run: the
// servers' CPU of that run spread over every core, or the restarts at
// width W, whichever is longer. The client's own CPU is not in it.
func boxLimit(serverCPU time.Duration, cores, nodes, width int, delay time.Duration) time.Duration {
	return max(serverCPU/time.Duration(cores), restartRounds(nodes, width, delay))
}

// rssText is a peak RSS in MiB, "-" when not measured (pdsh).
func rssText(b int64) string {
	if b <= 0 {
		return "-"
	}
	return fmt.Sprintf("%.1fMiB", float64(b)/(1<<20))
}

func printTable(results []result, nodes int, delay, idealWall time.Duration, openssh bool, width int) {
	var base32, baseW *result
	for i, r := range results {
		if r.name == "pdsh -f 32" {
			base32 = &results[i]
		}
		if strings.HasPrefix(r.name, "pdsh -f ") && !strings.HasSuffix(r.name, "curve25519") && r.width == width {
			baseW = &results[i]
		}
	}
	cores := runtime.NumCPU()
	fmt.Printf("\n%d nodes, restart delay %v, %d CPUs\n", nodes, delay, cores)
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "tool\twidth\twall\tCPU user+sys\tRSS\twall vs pdsh-32\tCPU vs pdsh-32\twall vs pdsh-W\tCPU vs pdsh-W\twall vs ideal\tbox limit\twall vs limit\tserver CPU\tconns\tserver CPU/conn\thistory events\trestarted as due\t")
	for _, r := range results {
		vsIdeal, limit, vsLimit, conns, perConn, events := "-", "-", "-", fmt.Sprint(r.conns), "-", "-"
		if r.events > 0 {
			events = fmt.Sprintf("%d (%.1f/100 nodes)", r.events, float64(r.events)*100/float64(nodes))
		}
		if idealWall > 0 {
			vsIdeal = fmt.Sprintf("%.3fx", float64(r.wall)/float64(idealWall))
		}
		if openssh {
			l := boxLimit(r.server, cores, nodes, width, delay)
			limit = fmt.Sprintf("%.2fs", l.Seconds())
			if l > 0 {
				vsLimit = fmt.Sprintf("%.3fx", float64(r.wall)/float64(l))
			}
		}
		if r.connsFromLedger {
			conns += "*"
		}
		if r.conns > 0 {
			perConn = fmt.Sprintf("%.2fms", float64(r.server)/float64(r.conns)/1e6)
		}
		fmt.Fprintf(tw, "%s\t%d\t%.2fs\t%.2fs\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%.2fs\t%s\t%s\t%s\t%d/%d\t\n",
			r.name, r.width, r.wall.Seconds(), r.cpu.Seconds(), rssText(r.maxRSS),
			ratio(r.wall, base32, wallOf), ratio(r.cpu, base32, cpuOf), ratio(r.wall, baseW, wallOf), ratio(r.cpu, baseW, cpuOf),
			vsIdeal, limit, vsLimit, r.server.Seconds(), conns, perConn, events, nodes-len(r.missed), nodes)
	}
	tw.Flush()
	if idealWall > 0 {
		fmt.Printf("(ideal, every row against width W: ⌈N/W⌉ × restart delay, plus the stragglers' delay once = %v)\n", idealWall)
	}
	if openssh {
		fmt.Printf("(box limit, per row: max(that run's server CPU ÷ %d cores, ⌈N/W⌉ × restart delay = %v) with W = %d for every row)\n", cores, restartRounds(nodes, width, delay), width)
	}
	fmt.Println("(ratios: this tool / pdsh with OpenSSH's default key exchange; below 1 is better. CPU of the fan-out code: wait4 rusage of its process — pdsh with its ssh children, or this binary re-run as a child for sshfan and for the workflow's worker; RSS: that child's peak resident set (VmHWM), not measured for pdsh. The Temporal dev server, the CSM emulator and the fleet are outside them. server CPU is the fleet's share, paid whichever client connects (sshd processes and their sessions, or the one sshfleet process); conns: TCP connections the remote fleet accepted, or *: restarts on the OpenSSH fleet, one connection each. \"curve25519\": ssh -o KexAlgorithms=curve25519-sha256, the key exchange sshfan negotiates)")
	for _, r := range results {
		if len(r.breakdown) > 0 {
			fmt.Printf("\n%s, where the wall went (history timestamps from the dev server):\n", r.name)
			if idealWall > 0 {
				fmt.Printf("  fan-out span %.2fs = %.3fx ideal (compared with the fan-out targets; the wall above adds the run's orchestration)\n", r.fanout.Seconds(), float64(r.fanout)/float64(idealWall))
			}
			for _, l := range r.breakdown {
				fmt.Println("  " + l)
			}
		}
	}
}

func wallOf(r *result) time.Duration { return r.wall }
func cpuOf(r *result) time.Duration  { return r.cpu }

// ratio is a / base's value, or "-" without a base run.
func ratio(a time.Duration, base *result, of func(*result) time.Duration) string {
	if base == nil || of(base) == 0 {
		return "-"
	}
	return fmt.Sprintf("%.3fx", float64(a)/float64(of(base)))
}

func rusage(who int) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(who, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// raiseNofile lifts the soft open-file limit to the hard limit: W
// connections at once plus the fleet's files.
func raiseNofile() error {
	var l syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l); err != nil {
		return err
	}
	if l.Cur < l.Max {
		l.Cur = l.Max
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &l); err != nil {
			return fmt.Errorf("raising RLIMIT_NOFILE to %d: %w", l.Max, err)
		}
	}
	return nil
}

func head(s []string, n int) string {
	if len(s) > n {
		return strings.Join(s[:n], ", ") + ", ..."
	}
	return strings.Join(s, ", ")
}

// procCPU is a running process's CPU so far (utime+stime of
// /proc/PID/stat, in 10 ms clock ticks).
func procCPU(pid int) (time.Duration, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	s := string(data)
	// utime and stime are fields 14 and 15, 12 and 13 after the
	// parenthesised command name.
	fields := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(fields) < 13 {
		return 0, fmt.Errorf("unexpected /proc/%d/stat: %q", pid, s)
	}
	var ticks int64
	for _, f := range fields[11:13] {
		v, err := strconv.ParseInt(f, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("/proc/%d/stat: %w", pid, err)
		}
		ticks += v
	}
	return time.Duration(ticks) * 10 * time.Millisecond, nil
}
