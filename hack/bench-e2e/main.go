// Command bench-e2e runs all nine services on the demo's system (the parts
// `make demo` starts: a Temporal dev server, the simulated CSM control plane
// of hack/simcluster, the CSM API emulator of hack/csmemu seeded like a
// running system, real sshd nodes of hack/sshnodes and a repopulate-worker
// process) with fixed simulated latencies, approves each gate as soon as it
// opens, and reads the run's histories back from the server: the wall time
// against the critical path, and what the orchestration adds per step.
//
//	go build -o bin/ ./starter ./worker ./hack/simcluster ./hack/csmemu ./hack/sshnodes ./hack/bench-e2e
//	bin/bench-e2e            (make bench-e2e does both)
//
// Definitions (docs/benchmarks.md has them with how to read the output):
//   - wall: the parent workflow's start → its close;
//   - a service's span: the sum of its activities' executions (started →
//     closed, the last attempt) plus the time its gates waited for a
//     person (here: the bench, which approves at once);
//   - critical path: the parent's own activities (release detection,
//     preflight, access check), then the longest chain of spans through the
//     catalog's orderings (internal/catalog: cps after bos and hmnfd);
//   - ratio: wall / critical path.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	historypb "go.temporal.io/api/history/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/log"

	"github.com/csmops/etcd-repopulate/internal/api"
	"github.com/csmops/etcd-repopulate/internal/catalog"
	"github.com/csmops/etcd-repopulate/internal/devserver"
	"github.com/csmops/etcd-repopulate/internal/pgtemporal"
	"github.com/csmops/etcd-repopulate/internal/temporalconn"
	"github.com/csmops/etcd-repopulate/internal/testenv"
	"github.com/csmops/etcd-repopulate/internal/workerconfig"
)

// The demo's system (hack/demo.sh): computes nid000001..16, the first four
// booting from CPS, NCNs for HMNFD.
const (
	computes    = 16
	cpsNodes    = 4
	cpsTemplate = "cos-2.0.30-cps"
)

var ncnRanges = []string{"ncn-w00[1-3]", "ncn-s00[1-3]"}

// latencies are the simulated parts' fixed times.
type latencies struct {
	podReady, jobRun, fasLoader, etcdReady, bosStep, orcaRestart, crusStep time.Duration
}

func main() {
	var l latencies
	flag.DurationVar(&l.podReady, "pod-ready", 3*time.Second, "a new pod is Ready after this (kwok)")
	flag.DurationVar(&l.jobRun, "job", 5*time.Second, "a Job's pod completes this long after it is Ready (cray-reds-init, which bss re-runs)")
	flag.DurationVar(&l.fasLoader, "fas-loader", 10*time.Second, "the FAS loader Job's pod completes this long after it is Ready")
	flag.DurationVar(&l.etcdReady, "etcd", 8*time.Second, "a new EtcdCluster is Running after this (the stand-in etcd-operator)")
	flag.DurationVar(&l.bosStep, "bos-step", 2*time.Second, "BOS session pacing: pending one step, node states one step apart (shutdown: 2 steps, boot: 3)")
	flag.DurationVar(&l.orcaRestart, "orca", 2*time.Second, "systemctl restart cray-dvs-orca takes this on each node")
	flag.DurationVar(&l.crusStep, "crus-step", 2*time.Second, "the CRUS session's remaining 5 steps come this far apart")
	bin := flag.String("bin", "bin", "directory with the tools (make tools) and the built commands")
	dir := flag.String("dir", "", "state and logs (default: a new temporary directory, removed after a successful run)")
	timeout := flag.Duration("timeout", 10*time.Minute, "give up after this long in all")
	analyseRun := flag.String("analyse", "", "only analyse the finished run with this ID on the Temporal server at -address (starts nothing)")
	address := flag.String("address", "127.0.0.1:7233", "with -analyse, the Temporal frontend")
	server := flag.String("temporal", "dev", "the Temporal server: dev (temporal server start-dev on a SQLite file, as make demo runs it) or postgres (temporal-server on PostgreSQL, as deploy/ runs it; make tools builds both)")
	flag.Parse()
	if *server != "dev" && *server != "postgres" {
		fmt.Fprintf(os.Stderr, "bench-e2e: -temporal %q: want dev or postgres\n", *server)
		os.Exit(2)
	}

	if err := l.validate(); err != nil {
		fmt.Fprintln(os.Stderr, "bench-e2e:", err)
		os.Exit(2)
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	if *analyseRun != "" {
		if err := analyseOnly(ctx, *address, *analyseRun); err != nil {
			fatal(err)
		}
		return
	}
	state, keep := *dir, *dir != ""
	if state == "" {
		var err error
		if state, err = os.MkdirTemp("", "bench-e2e-"); err != nil {
			fatal(err)
		}
	}
	b := &bench{bin: *bin, dir: state, lat: l, server: *server}
	err := b.run(ctx)
	b.stop()
	if err != nil {
		fmt.Fprintf(os.Stderr, "bench-e2e: %v\nbench-e2e: logs kept in %s\n", err, state)
		os.Exit(1)
	}
	if !keep {
		os.RemoveAll(state)
	}
}

// validate refuses a negative latency, naming its flag.
func (l latencies) validate() error {
	for _, f := range []struct {
		name string
		d    time.Duration
	}{{"-pod-ready", l.podReady}, {"-job", l.jobRun}, {"-fas-loader", l.fasLoader}, {"-etcd", l.etcdReady}, {"-bos-step", l.bosStep}, {"-orca", l.orcaRestart}, {"-crus-step", l.crusStep}} {
		if f.d < 0 {
			return fmt.Errorf("%s %s is negative: give a time the simulated part takes, 0 or more (e.g. %s 2s)", f.name, f.d, f.name)
		}
	}
	return nil
}

func fatal(err error) {
	fmt.Fprintln(os.Stderr, "bench-e2e:", err)
	os.Exit(1)
}

type bench struct {
	bin, dir string
	lat      latencies
	// server is dev or postgres; temporal is its frontend, stopTemporal
	// stops it.
	server       string
	temporal     string
	stopTemporal func()
	procs        []*proc
	worker       *testenv.Worker
	tc           client.Client
}

func (b *bench) run(ctx context.Context) error {
	abs, err := filepath.Abs(b.dir)
	if err != nil {
		return err
	}
	b.dir = abs
	if b.bin, err = filepath.Abs(b.bin); err != nil {
		return err
	}
	for _, name := range []string{"temporal", "repopulate", "repopulate-worker", "simcluster", "csmemu", "sshnodes"} {
		if _, err := os.Stat(filepath.Join(b.bin, name)); err != nil {
			return fmt.Errorf("%s missing in %s: run make bench-e2e (it builds them; make tools for the tools)", name, b.bin)
		}
	}
	b.printLatencies()

	fmt.Printf("starting the demo's system (Temporal %s, simulated control plane, CSM emulator, sshd nodes, worker)\n", map[string]string{"dev": "dev server on a SQLite file", "postgres": "server on PostgreSQL"}[b.server])
	if err := b.startTemporal(ctx); err != nil {
		return err
	}
	l := b.lat
	kubeconfigOut := filepath.Join(b.dir, "kubeconfig-path")
	sim, err := b.launch("simcluster", nil, "-bin", b.bin, "-dir", filepath.Join(b.dir, "cluster"), "-kubeconfig-out", kubeconfigOut,
		"-operator-delay", l.etcdReady.String(), "-pod-ready-delay", l.podReady.String(), "-job-delay", l.jobRun.String(),
		"-job-delay-for", "cray-fas-loader="+l.fasLoader.String())
	if err != nil {
		return err
	}
	secret := fmt.Sprintf("bench-%d", time.Now().UnixNano())
	secretFile := filepath.Join(b.dir, "client-secret")
	if err := os.WriteFile(secretFile, []byte(secret+"\n"), 0o600); err != nil {
		return err
	}
	urlFile := filepath.Join(b.dir, "csm-url")
	emu, err := b.launch("csmemu", []string{"CSMEMU_CLIENT_SECRET=" + secret}, "-release", "csm-1.0", "-nodes", fmt.Sprint(computes), "-seed",
		"-cps-nodes", fmt.Sprint(cpsNodes), "-bos-step", l.bosStep.String(), "-crus-step", l.crusStep.String(),
		"-tls", "-ca-dir", b.dir, "-url-file", urlFile)
	if err != nil {
		return err
	}
	csmURL, err := waitFile(ctx, emu, urlFile, 30*time.Second)
	if err != nil {
		return err
	}
	ca := filepath.Join(b.dir, "csmemu-ca.pem")
	readyFile := filepath.Join(b.dir, "nodes-ready")
	nodesDir := filepath.Join(b.dir, "nodes")
	nodes, err := b.launch("sshnodes", nil, append([]string{"-dir", nodesDir, "-computes", fmt.Sprint(computes), "-csm", csmURL,
		"-csm-ca", ca, "-restart-delay", l.orcaRestart.String(), "-ready-file", readyFile}, ncnRanges...)...)
	if err != nil {
		return err
	}
	if _, err := waitFile(ctx, nodes, readyFile, 60*time.Second); err != nil {
		return err
	}
	kubeconfig, err := waitFile(ctx, sim, kubeconfigOut, 180*time.Second)
	if err != nil {
		return err
	}

	var cps []string
	for i := 0; i < cpsNodes; i++ {
		cps = append(cps, fmt.Sprintf("x1000c0s%db0n0", i))
	}
	cfg := workerconfig.Demo(workerconfig.System{Release: api.CSM10, CSMURL: csmURL, CABundle: ca, SecretFile: secretFile,
		SSHConfig: filepath.Join(nodesDir, "ssh_config"), KnownHosts: filepath.Join(nodesDir, "known_hosts"), Identity: filepath.Join(nodesDir, "id_ed25519")},
		ncnRanges, cps, cpsTemplate)
	cfgPath := filepath.Join(b.dir, "worker.yaml")
	if err := workerconfig.Write(cfgPath, cfg); err != nil {
		return err
	}
	if b.worker, err = testenv.LaunchWorker(testenv.WorkerOptions{BinDir: b.bin, LogDir: b.dir, LogFile: filepath.Join(b.dir, "worker.log"),
		Address: b.temporal, Queue: api.TaskQueue, Config: cfg, Kubeconfig: kubeconfig}); err != nil {
		return err
	}
	if b.tc, err = dial(b.temporal); err != nil {
		return err
	}

	// The runbook's story, as the demo plays it: a snapshot of the healthy
	// system, the rebuild wipes BOS templates and HMNFD subscriptions, then
	// a run of all nine services from the snapshot. The snapshot read the
	// CRUS session, which started its paced script: its clock starts again
	// when the run first reads it.
	snap := filepath.Join(b.dir, "snapshot")
	if out, err := b.cli(ctx, "snapshot", "--out", snap, "--config", cfgPath, "--kubeconfig", kubeconfig); err != nil {
		return fmt.Errorf("repopulate snapshot: %w\n%s", err, out)
	}
	if out, err := exec.CommandContext(ctx, filepath.Join(b.bin, "csmemu"), "control", "-url-file", urlFile, "-ca", ca, "clear-templates", "clear-subscriptions",
		"crus-restart-clock").CombinedOutput(); err != nil {
		return fmt.Errorf("csmemu control: %w\n%s", err, out)
	}
	run := "bench-e2e-" + time.Now().UTC().Format("20060102-150405")
	fmt.Printf("run %s: all nine services from the snapshot; each gate approved as soon as it opens\n", run)
	if out, err := b.cli(ctx, "start", "--snapshot", snap, "--id", run); err != nil {
		return fmt.Errorf("repopulate start: %w\n%s", err, out)
	}
	report, err := b.follow(ctx, run)
	if err != nil {
		return err
	}
	var notDone []string
	for _, s := range report.Services {
		if s.State != api.Done {
			notDone = append(notDone, fmt.Sprintf("%s %s (%s)", s.Service, s.State, s.Message))
		}
	}
	if report.State != api.Done || len(report.Services) != len(catalog.Services()) || len(notDone) > 0 {
		return fmt.Errorf("run %s ended %s with %d services: %s; nothing measured (worker log: %s)", run, report.State, len(report.Services), strings.Join(notDone, "; "), b.worker.Log)
	}
	return b.analyse(ctx, run, report)
}

// analyseOnly reads a finished run from a server: no latencies known.
func analyseOnly(ctx context.Context, address, run string) error {
	tc, err := dial(address)
	if err != nil {
		return err
	}
	defer tc.Close()
	b := &bench{tc: tc}
	var report api.Report
	if err := tc.GetWorkflow(ctx, run, "").Get(ctx, &report); err != nil {
		return fmt.Errorf("run %s: %w", run, err)
	}
	return b.analyse(ctx, run, report)
}

func dial(address string) (client.Client, error) {
	return client.Dial(client.Options{HostPort: address, Logger: log.NewStructuredLogger(slog.New(slog.NewTextHandler(io.Discard, nil)))})
}

func (b *bench) printLatencies() {
	l := b.lat
	fmt.Println("simulated latencies:")
	for _, row := range [][2]string{
		{"pod Ready (kwok), every new pod", l.podReady.String()},
		{"Job cray-reds-init (bss): Ready + run", fmt.Sprintf("%s + %s", l.podReady, l.jobRun)},
		{"Job cray-fas-loader (fas): Ready + run", fmt.Sprintf("%s + %s", l.podReady, l.fasLoader)},
		{"EtcdCluster Running (externaldns)", l.etcdReady.String()},
		{"BOS session step (cps: shutdown 2 steps, boot 3)", l.bosStep.String()},
		{"orca restart per node (hmnfd; 22 nodes, batches of 8)", l.orcaRestart.String()},
		{"CRUS session step (5 steps left, from the run's first read)", l.crusStep.String()},
	} {
		fmt.Printf("  %-62s %s\n", row[0], row[1])
	}
}

// follow approves each gate once it opens (the Update repopulate approve
// sends) and returns the run's report.
func (b *bench) follow(ctx context.Context, run string) (api.Report, error) {
	done := make(chan error, 1)
	var report api.Report
	go func() { done <- b.tc.GetWorkflow(ctx, run, "").Get(ctx, &report) }()
	approved := map[string]bool{}
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case err := <-done:
			return report, err
		case <-b.worker.Exited():
			return report, fmt.Errorf("repopulate-worker exited during the run: see %s", b.worker.Log)
		case <-tick.C:
		}
		qctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		v, err := b.tc.QueryWorkflow(qctx, run, "", api.StatusQuery)
		cancel()
		var st api.RunStatus
		if err != nil || v.Get(&st) != nil {
			continue // a busy worker: ask again
		}
		for _, s := range st.Services {
			for _, g := range s.Gates {
				if g.State != api.GateWaiting || approved[g.Name] {
					continue
				}
				uctx, cancel := context.WithTimeout(ctx, 30*time.Second)
				h, err := b.tc.UpdateWorkflow(uctx, client.UpdateWorkflowOptions{WorkflowID: run, UpdateName: api.DecideGateUpdate,
					Args:         []any{api.GateDecision{Gate: g.Name, Decision: api.Approve, By: "bench-e2e", Note: "approved by bench-e2e as soon as it opened"}},
					WaitForStage: client.WorkflowUpdateStageCompleted})
				var gs api.GateStatus
				if err == nil {
					err = h.Get(uctx, &gs)
				}
				cancel()
				if err != nil {
					return report, fmt.Errorf("approve gate %s: %w", g.Name, err)
				}
				approved[g.Name] = true
				fmt.Printf("  gate %s (%s) approved\n", g.Name, s.Service)
			}
		}
	}
}

// history reads one execution's events.
func (b *bench) history(ctx context.Context, id string) ([]*historypb.HistoryEvent, error) {
	return temporalconn.History(ctx, b.tc, id)
}

func (b *bench) analyse(ctx context.Context, run string, report api.Report) error {
	events, err := b.history(ctx, run)
	if err != nil {
		return err
	}
	parent, err := parseHistory(events)
	if err != nil {
		return fmt.Errorf("%s: %w", run, err)
	}
	children := map[api.Service]execution{}
	spans := map[api.Service]time.Duration{}
	var order []api.Service
	for _, s := range report.Services {
		id := api.ServiceWorkflowID(run, s.Service)
		events, err := b.history(ctx, id)
		if err != nil {
			return err
		}
		x, err := parseHistory(events)
		if err != nil {
			return fmt.Errorf("%s: %w", id, err)
		}
		x.Service = s.Service
		for _, g := range s.Gates {
			if g.Opened.IsZero() || g.Decided.IsZero() {
				return fmt.Errorf("gate %s of %s has no opened or decided time in the report", g.Name, s.Service)
			}
			x.Gates = append(x.Gates, interval{g.Opened, g.Decided})
		}
		children[s.Service] = x
		spans[s.Service] = x.span()
		order = append(order, s.Service)
	}
	after := map[api.Service][]api.Service{}
	for s, ps := range catalog.Prerequisites(func(string) bool { return true }) {
		for _, p := range ps {
			after[s] = append(after[s], p.Service)
		}
	}
	prefix := parent.span()
	cp, chain, err := criticalPath(prefix, spans, after, order)
	if err != nil {
		return err
	}
	ends, err := chainEnds(prefix, spans, after, order)
	if err != nil {
		return err
	}
	wall := parent.Ended.Sub(parent.Started)
	// A service could start once the parent's own steps and its
	// prerequisites were over; the start lag is what passed from then.
	startLag := map[api.Service]time.Duration{}
	// serverStart is the part of it from the parent's start command to the
	// child's first event: the server's, not the workflow's.
	serverStart := map[api.Service]time.Duration{}
	for _, s := range order {
		if at, ok := parent.ChildInitiated[api.ServiceWorkflowID(run, s)]; ok {
			serverStart[s] = children[s].Started.Sub(at)
		}
		ready := parent.lastClosed()
		for _, p := range after[s] {
			if x, ok := children[p]; ok && x.Ended.After(ready) {
				ready = x.Ended
			}
		}
		startLag[s] = children[s].Started.Sub(ready)
	}
	sec := func(d time.Duration) string { return fmt.Sprintf("%.2f s", d.Seconds()) }
	rel := func(t time.Time) string { return fmt.Sprintf("%.2f s", t.Sub(parent.Started).Seconds()) }

	fmt.Printf("\nper service (times from the run's start; span = activities started → closed + gate waits):\n\n")
	fmt.Println("| service | after | started | closed | activities | span | of which gates | chain ending here | start lag (of which server) | sched → started, sum | gaps between steps, sum | before first + after last step | signals to the parent: n, initiated → delivered, sum |")
	fmt.Println("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
	pb, _ := parent.edges()
	fmt.Printf("| (run: release, preflight, access) | | %s | %s | %d | %s | | %s | | %s | %s | %s | |\n", rel(parent.Started), rel(parent.Ended), len(parent.Activities), sec(prefix), sec(prefix),
		sec(summarize(parent.queueLatencies()).Sum), sec(summarize(parent.gaps()).Sum), sec(pb))
	q := parent.queueLatencies()
	var allGaps, lags, serverLags, signals []time.Duration
	for _, s := range order {
		x := children[s]
		var deps []string
		for _, p := range after[s] {
			if _, ok := spans[p]; ok {
				deps = append(deps, string(p))
			}
		}
		q = append(q, x.queueLatencies()...)
		allGaps = append(allGaps, x.gaps()...)
		lags = append(lags, startLag[s])
		serverLags = append(serverLags, serverStart[s])
		signals = append(signals, lengths(x.Signals)...)
		before, afterLast := x.edges()
		fmt.Printf("| %s | %s | %s | %s | %d | %s | %s | %s | %s | %s | %s | %s | %d, %s |\n", s, strings.Join(deps, ", "), rel(x.Started), rel(x.Ended), len(x.Activities),
			sec(spans[s]), sec(x.gateWait()), sec(ends[s]), fmt.Sprintf("%s (%s)", sec(startLag[s]), sec(serverStart[s])), sec(summarize(x.queueLatencies()).Sum), sec(summarize(x.gaps()).Sum),
			sec(before+afterLast), len(x.Signals), sec(summarize(lengths(x.Signals)).Sum))
	}
	names := []string{"run"}
	var gates time.Duration
	for _, s := range chain {
		names = append(names, string(s))
		gates += children[s].gateWait()
	}
	fmt.Printf("\n| wall | critical path | ratio | chain | gate waits on the chain | ratio without gate waits |\n|---|---|---|---|---|---|\n")
	fmt.Printf("| %s | %s | %.3f | %s | %s | %.3f |\n", sec(wall), sec(cp), wall.Seconds()/cp.Seconds(), strings.Join(names, " → "), sec(gates),
		(wall-gates).Seconds()/(cp-gates).Seconds())

	// Where the wall goes beyond the critical path, along the chain.
	fmt.Printf("\nwall beyond the critical path, along the chain (%s):\n\n| part | time |\n|---|---|\n", sec(wall-cp))
	var lag, queue, gaps, edges time.Duration
	queue, gaps, edges = summarize(parent.queueLatencies()).Sum, summarize(parent.gaps()).Sum, pb
	for _, s := range chain {
		x := children[s]
		b, a := x.edges()
		lag += startLag[s]
		queue += summarize(x.queueLatencies()).Sum
		gaps += summarize(x.gaps()).Sum
		edges += b + a
	}
	tail := parent.Ended.Sub(parent.lastClosed())
	if len(chain) > 0 {
		tail = parent.Ended.Sub(children[chain[len(chain)-1]].Ended)
	}
	rest := wall - cp - lag - queue - gaps - edges - tail
	for _, row := range []struct {
		name string
		d    time.Duration
	}{
		{"services' start lag (parent: prerequisite over → child started)", lag},
		{"activities scheduled → started", queue},
		{"gaps between consecutive activities (workflow tasks, status signals)", gaps},
		{"child started → first activity scheduled, last activity closed → child closed; the run's start → its first activity", edges},
		{"last service closed → run closed", tail},
		{"rest (other services ended after the chain, or steps overlapped)", rest},
	} {
		fmt.Printf("| %s | %s |\n", row.name, sec(row.d))
	}

	retried := 0
	for _, x := range append(slices.Collect(maps.Values(children)), parent) {
		for _, a := range x.Activities {
			if a.Attempt > 1 {
				retried++
			}
		}
	}
	fmt.Printf("\norchestration overhead, all services:\n\n| | n | min | median | p95 | max | sum |\n|---|---|---|---|---|---|---|\n")
	for _, row := range []struct {
		name string
		st   stats
	}{
		{"activity scheduled → started", summarize(q)},
		{"gap between a service's consecutive activities", summarize(allGaps)},
		{"service start lag", summarize(lags)},
		{"of which start command → child started (server)", summarize(serverLags)},
		{"a child's signal to the parent (status, gate ack), initiated → delivered", summarize(signals)},
	} {
		fmt.Printf("| %s | %d | %s | %s | %s | %s | %s |\n", row.name, row.st.N, ms(row.st.Min), ms(row.st.Median), ms(row.st.P95), ms(row.st.Max), sec(row.st.Sum))
	}
	if retried > 0 {
		fmt.Printf("\n%d activities needed more than one attempt: their scheduled → started includes the earlier attempts\n", retried)
	}
	return nil
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d.Microseconds())/1000) }

// cli runs the repopulate CLI against the bench's server.
func (b *bench) cli(ctx context.Context, args ...string) (string, error) {
	full := append([]string{"--address", b.temporal}, args...)
	out, err := exec.CommandContext(ctx, filepath.Join(b.bin, "repopulate"), full...).CombinedOutput()
	return string(out), err
}

// proc is one of the demo's processes, in its own process group.
type proc struct {
	name string
	log  string
	cmd  *exec.Cmd
	done chan struct{}
}

func (b *bench) launch(name string, env []string, args ...string) (*proc, error) {
	p := &proc{name: name, log: filepath.Join(b.dir, name+".log"), done: make(chan struct{})}
	logFile, err := os.Create(p.log)
	if err != nil {
		return nil, err
	}
	p.cmd = exec.Command(filepath.Join(b.bin, name), args...)
	p.cmd.Env = append(os.Environ(), env...)
	p.cmd.Stdout, p.cmd.Stderr = logFile, logFile
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := p.cmd.Start(); err != nil {
		logFile.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	go func() { _ = p.cmd.Wait(); logFile.Close(); close(p.done) }()
	b.procs = append(b.procs, p)
	return p, nil
}

// stop ends p's process group: SIGTERM, SIGKILL after 15 s.
func (p *proc) stop() {
	pgid := p.cmd.Process.Pid
	_ = syscall.Kill(-pgid, syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(15 * time.Second):
	}
	_ = syscall.Kill(-pgid, syscall.SIGKILL)
}

// waitFile waits until p has written path and returns its first line.
func waitFile(ctx context.Context, p *proc, path string, timeout time.Duration) (string, error) {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if data, err := os.ReadFile(path); err == nil && len(data) > 0 {
			return strings.TrimSpace(strings.SplitN(string(data), "\n", 2)[0]), nil
		}
		select {
		case <-p.done:
			return "", fmt.Errorf("%s exited while starting: see %s", p.name, p.log)
		case <-ctx.Done():
			return "", ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
	return "", fmt.Errorf("%s was not ready after %s: see %s", p.name, timeout, p.log)
}

func (b *bench) stop() {
	if b.tc != nil {
		b.tc.Close()
	}
	if b.worker != nil {
		b.worker.Stop(10 * time.Second)
	}
	for i := len(b.procs) - 1; i >= 0; i-- {
		b.procs[i].stop()
	}
	if b.stopTemporal != nil {
		b.stopTemporal()
	}
}

// startTemporal starts the Temporal server the bench runs on.
func (b *bench) startTemporal(ctx context.Context) error {
	if b.server == "postgres" {
		srv, err := pgtemporal.Start(ctx, pgtemporal.Options{BinDir: b.bin, SetupScript: filepath.Join(testenv.RepoRoot(), "hack", "temporal-setup.sh")})
		if err != nil {
			return err
		}
		b.temporal, b.stopTemporal = srv.Address, srv.Stop
		return nil
	}
	srv, err := devserver.Start(ctx, filepath.Join(b.bin, "temporal"), filepath.Join(b.dir, "temporal.db"), 0, 0)
	if err != nil {
		return err
	}
	b.temporal, b.stopTemporal = srv.Address, srv.Stop
	return nil
}
