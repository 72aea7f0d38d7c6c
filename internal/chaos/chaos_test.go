package chaos

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"text/tabwriter"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/csmops/etcd-repopulate/internal/api"
	"github.com/csmops/etcd-repopulate/internal/catalog"
	"github.com/csmops/etcd-repopulate/internal/ledger"
	"github.com/csmops/etcd-repopulate/internal/simcluster"
	"github.com/csmops/etcd-repopulate/internal/testenv"
	"github.com/csmops/etcd-repopulate/internal/workerconfig"
)

// edge is where in a step a fault is injected.
type edge string

const (
	// started: as soon as the step is running (or its gate waiting).
	started edge = "started"
	// done: once the step is done and before the next one is.
	done edge = "done"
	// mid: in the middle of a long step (see point.ready).
	mid edge = "mid"
)

// point is one place to inject a fault: SIGKILL the worker (and start a new
// one), or restart the Temporal dev server.
type point struct {
	svc     api.Service
	step    string
	edge    edge
	restart bool // restart Temporal instead of killing the worker
	// ready decides when a mid point is in the middle; nil: the step has
	// been running for midAfter since it started or since the last fault.
	ready func(*driver) bool
	// frozen: the step lasts because kube-controller-manager is stopped;
	// it runs again once every frozen point has had its fault.
	frozen bool

	hit, missed bool
	at          api.Service // where a point of any service was hit
}

// key names the point: service (empty: any), step and edge.
func (p *point) key() string { return fmt.Sprintf("%s/%s %s", p.svc, p.step, p.edge) }

func (p *point) String() string {
	s := p.key()
	if p.svc == "" {
		at := "any"
		if p.at != "" {
			at = string(p.at)
		}
		s = fmt.Sprintf("%s/%s %s", at, p.step, p.edge)
	}
	if p.restart {
		s += " (Temporal restart)"
	}
	return s
}

const midAfter = 2 * time.Second

// scenario is one run of the tool under faults.
type scenario struct {
	name     string
	services []api.Service
	// boundaries: for every step of these services, a kill at each edge.
	boundaries map[api.Service][]edge
	// points are the mid-step faults.
	points []*point
	// freezeKCM stops kube-controller-manager from the run's start until
	// every frozen point has had its fault: Jobs get no pod and Deployments
	// no replacement, so their wait steps last until then.
	freezeKCM bool
	bosStep   time.Duration
	// anyService: a boundary point per step name, hit in whichever
	// service reaches it first.
	anyService bool
	// only, when set, keeps the points with these keys: a retry of the
	// points an earlier run of the scenario missed.
	only map[string]bool
}

// maxRounds bounds the runs of a scenario: points missed in one run (a
// step passed while the run recovered from another fault) are tried again
// in the next. The reduced suite allows one retry, to stay within CI time.
func maxRounds() int {
	if mode == "reduced" {
		return 2
	}
	return 3
}

// tally is what the whole suite saw.
type tally struct {
	kills, restarts, runs, completed int
	hit, missed                      int
	lost, duplicates                 int
	nodesOK, nodeDups, nodeDupsLimit int
	bosOK, bosBad                    int
	rows                             []string
}

func TestChaos(t *testing.T) {
	start := time.Now()
	var all tally
	for _, sc := range scenarios() {
		for round := 1; ; round++ {
			name := sc.name
			if round > 1 {
				name = fmt.Sprintf("%s-retry%d", sc.name, round-1)
			}
			var missed []*point
			t.Run(name, func(t *testing.T) { missed = runScenario(t, sc, &all) })
			if len(missed) == 0 || round == maxRounds() || t.Failed() {
				all.missed += len(missed)
				break
			}
			sc.only = map[string]bool{}
			for _, p := range missed {
				sc.only[p.key()] = true
			}
		}
	}
	table := all.table(time.Since(start))
	t.Log("\n" + table)
	if mode == "full" {
		fmt.Println(table)
	}
	if all.lost > 0 || all.duplicates > 0 {
		t.Errorf("%d objects lost, %d duplicate destructive steps: both must be 0", all.lost, all.duplicates)
	}
}

func (a *tally) table(wall time.Duration) string {
	var b strings.Builder
	fmt.Fprintf(&b, "chaos (%s), wall time %s\n", mode, wall.Round(time.Second))
	w := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	fmt.Fprintln(w, "scenario\tkills\tTemporal restarts\tpoints hit/missed\tcompleted\tlost\tduplicate deletes\tnode restarts ok/dup (limit)\tBOS sessions ok/bad\twall")
	for _, r := range a.rows {
		fmt.Fprintln(w, r)
	}
	fmt.Fprintf(w, "TOTAL\t%d\t%d\t%d/%d\t%d/%d\t%d\t%d\t%d/%d (%d)\t%d/%d\t%s\n", a.kills, a.restarts, a.hit, a.missed, a.completed, a.runs,
		a.lost, a.duplicates, a.nodesOK, a.nodeDups, a.nodeDupsLimit, a.bosOK, a.bosBad, wall.Round(time.Second))
	w.Flush()
	return b.String()
}

var kubeServices = []api.Service{api.BSS, api.FAS, api.MEDS, api.REDS, api.ExternalDNS, api.CRUS}

func scenarios() []scenario {
	if mode == "reduced" {
		every := map[api.Service][]edge{}
		for _, s := range kubeServices {
			every[s] = []edge{done}
		}
		return []scenario{
			{name: "kubernetes", services: kubeServices, boundaries: every, anyService: true, freezeKCM: true,
				points: []*point{
					{svc: api.FAS, step: "wait-job-complete", edge: mid, restart: true, frozen: true},
					{svc: api.BSS, step: "wait-job-complete", edge: mid, frozen: true},
				}},
			{name: "csm", services: []api.Service{api.HMNFD, api.CPS, api.BOS}, bosStep: 6 * time.Second,
				boundaries: map[api.Service][]edge{api.HMNFD: {done}, api.CPS: {done}, api.BOS: {done}},
				points: []*point{
					{svc: api.HMNFD, step: "restart-orca", edge: mid, ready: secondBatchRunning},
					{svc: api.CPS, step: api.GateCPSUnmount, edge: mid},
					{svc: api.CPS, step: "wait-cps-nodes-off", edge: mid},
					{svc: api.CPS, step: "wait-cps-nodes-ready", edge: mid, restart: true},
				}},
		}
	}
	both := []edge{started, done}
	var out []scenario
	for _, s := range catalog.Services() {
		sc := scenario{name: string(s), services: []api.Service{s}, boundaries: map[api.Service][]edge{s: both}, bosStep: 10 * time.Second}
		switch s {
		case api.BSS, api.FAS:
			sc.freezeKCM = true
			sc.points = []*point{{svc: s, step: "wait-job-complete", edge: mid, restart: s == api.FAS, frozen: true}}
		case api.MEDS, api.REDS, api.CRUS:
			sc.freezeKCM = true
			sc.points = []*point{{svc: s, step: "wait-pods-ready", edge: mid, frozen: true}}
		case api.HMNFD:
			sc.points = []*point{{svc: s, step: "restart-orca", edge: mid, ready: secondBatchRunning}}
		case api.CPS:
			for _, step := range []string{api.GateCPSUnmount, "wait-cps-nodes-off", api.GateCPSReboot, "wait-cps-nodes-ready"} {
				sc.points = append(sc.points, &point{svc: s, step: step, edge: mid, restart: step == api.GateCPSReboot})
			}
		case api.BOS:
			sc.points = []*point{{svc: s, step: api.GateBOSTemplates, edge: mid}}
		}
		out = append(out, sc)
	}
	return out
}

func thawKCM() { _ = cluster.Signal("kube-controller-manager", syscall.SIGCONT) }

// secondBatchRunning: the first orca batch is done, a later one has
// started (the stand-in logs each restart as it begins, then sleeps), and
// the worker alive now has restarted nodes since the last fault.
func secondBatchRunning(d *driver) bool {
	r, _ := fleet.Restarts()
	return len(r) > orcaBatch && total(r) > d.restartsAtFault
}

func total(restarts map[string]int) int {
	n := 0
	for _, c := range restarts {
		n += c
	}
	return n
}

// driver runs one scenario: it polls the run's status query every 150 ms
// and injects a fault as soon as a point is reached.
type driver struct {
	t        *testing.T
	sc       scenario
	run      string
	queue    string
	worker   *testenv.Worker
	points   []*point
	expanded map[api.Service]bool
	running  map[string]time.Time // svc/step -> when seen running, or last fault
	finished map[string]time.Time // svc/step -> when first seen done
	approved map[string]chan error
	// orcaFaults counts faults while restart-orca was running: each may
	// repeat up to the batches in flight.
	orcaFaults int
	// restartsAtFault is how many orca restarts the fleet had logged at
	// the last fault.
	restartsAtFault int
	lastFault       time.Time // of the last kill
	kills, restart  int
	log             []string
	began           time.Time
}

func runScenario(t *testing.T, sc scenario, all *tally) (missed []*point) {
	began := time.Now()
	if err := cluster.WaitSeeded(context.Background(), 2*time.Minute); err != nil {
		t.Fatal(err)
	}
	d := &driver{t: t, sc: sc, run: fmt.Sprintf("chaos-%s-%d", sc.name, time.Now().UnixNano()), queue: "chaos-" + sc.name,
		expanded: map[api.Service]bool{}, running: map[string]time.Time{}, finished: map[string]time.Time{}, approved: map[string]chan error{}, began: began}
	for _, p := range sc.points {
		if sc.only == nil || sc.only[p.key()] {
			c := *p
			d.points = append(d.points, &c)
		}
	}
	// Freeze only for a frozen point: nothing else would thaw it.
	sc.freezeKCM = sc.freezeKCM && slices.ContainsFunc(d.points, func(p *point) bool { return p.frozen })
	d.sc.freezeKCM = sc.freezeKCM
	if err := fleet.ResetRestarts(); err != nil {
		t.Fatal(err)
	}
	if sc.bosStep > 0 {
		emu.SetBOSTiming(sc.bosStep)
	}
	sessionsBefore := map[string]bool{}
	for _, s := range emu.BOSSessions() {
		sessionsBefore[s.Name] = true
	}
	led := ledger.Start(t, cluster, sc.services)
	if sc.freezeKCM {
		if err := cluster.Signal("kube-controller-manager", syscall.SIGSTOP); err != nil {
			t.Fatal(err)
		}
		defer thawKCM()
	}
	d.startWorker()
	defer func() { d.worker.Kill() }()
	var names []string
	for _, s := range sc.services {
		names = append(names, string(s))
	}
	cmd := exec.Command(filepath.Join(binDir, "repopulate"), "--address", temporal.Address, "--task-queue", d.queue,
		"start", "--services", strings.Join(names, ","), "--id", d.run)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("repopulate start: %v\n%s", err, out)
	}
	report, runErr := d.drive()
	thawKCM()
	time.Sleep(time.Second) // let the watches deliver the last events
	duplicates := led.Stop()
	lost := led.Lost(context.Background(), d.run)

	row := struct {
		ok                    bool
		nodesOK, dups, limit  int
		bosOK, bosBad, missed int
	}{ok: runErr == nil && report.State == api.Done}
	if !row.ok {
		t.Errorf("run %s did not complete: %v; report %s: %s", d.run, runErr, report.State, report.Message)
		for _, s := range report.Services {
			t.Logf("  %s %s: %s", s.Service, s.State, s.Message)
		}
	}
	for _, dup := range duplicates {
		t.Errorf("duplicate destructive step: %s", dup)
	}
	for _, l := range lost {
		t.Errorf("object lost or not restored: %s", l)
	}
	if slices.Contains(sc.services, api.HMNFD) {
		row.nodesOK, row.dups, row.limit = d.checkNodes()
	}
	if slices.Contains(sc.services, api.CPS) {
		row.bosOK, row.bosBad = d.checkBOS(sessionsBefore)
	}
	hit := 0
	for _, p := range d.points {
		if p.hit {
			hit++
		} else {
			row.missed++
			missed = append(missed, p)
			t.Logf("point passed while the run recovered from another fault (none injected there): %s", p)
		}
	}
	for _, l := range d.log {
		t.Log(l)
	}
	all.kills += d.kills
	all.restarts += d.restart
	all.runs++
	if row.ok {
		all.completed++
	}
	all.hit += hit
	all.lost += len(lost)
	all.duplicates += len(duplicates)
	all.nodesOK += row.nodesOK
	all.nodeDups += row.dups
	all.nodeDupsLimit += row.limit
	all.bosOK += row.bosOK
	all.bosBad += row.bosBad
	nodes, bos := "-", "-"
	if slices.Contains(sc.services, api.HMNFD) {
		nodes = fmt.Sprintf("%d/%d (%d)", row.nodesOK, row.dups, row.limit)
	}
	if slices.Contains(sc.services, api.CPS) {
		bos = fmt.Sprintf("%d/%d", row.bosOK, row.bosBad)
	}
	done := 0
	if row.ok {
		done = 1
	}
	name := t.Name()[strings.LastIndex(t.Name(), "/")+1:]
	all.rows = append(all.rows, fmt.Sprintf("%s\t%d\t%d\t%d/%d\t%d/1\t%d\t%d\t%s\t%s\t%s", name, d.kills, d.restart, hit, row.missed, done,
		len(lost), len(duplicates), nodes, bos, time.Since(began).Round(time.Second)))
	return missed
}

func (d *driver) startWorker() {
	w, err := testenv.LaunchWorker(testenv.WorkerOptions{BinDir: binDir, LogDir: scratch, Address: temporal.Address, Queue: d.queue, Config: workerConfig, Kubeconfig: kubeconfig})
	if err != nil {
		d.t.Fatal(err)
	}
	d.worker = w
}

// drive injects faults until the run ends and returns its report. It
// learns where the run stands from the parent's status query every 150 ms
// and, as soon as a child's history gets an activity scheduled or
// completed, from that child's own status query: a step that is one API
// call is over in a few hundred milliseconds.
func (d *driver) drive() (api.Report, error) {
	type result struct {
		report api.Report
		err    error
	}
	finished := make(chan result, 1)
	go func() {
		r, err := waitRun(d.run)
		finished <- result{r, err}
	}()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pokes := make(chan api.Service, 64)
	for _, s := range d.sc.services {
		go watchHistory(ctx, api.ServiceWorkflowID(d.run, s), s, pokes)
	}
	tick := time.NewTicker(150 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(15 * time.Minute)
	var st api.RunStatus
	for {
		select {
		case r := <-finished:
			return r.report, r.err
		case <-deadline:
			return api.Report{}, errors.New("run still going after 15 minutes")
		case svc := <-pokes:
			ss, ok := childStatus(d.run, svc)
			if !ok {
				continue
			}
			mergeService(&st, ss)
		case <-tick.C:
			ps, ok := d.status()
			if !ok {
				continue
			}
			st.State = ps.State
			for _, ss := range ps.Services {
				mergeService(&st, ss)
			}
		}
		d.expand(st)
		var due []*point
		for _, p := range d.points {
			if p.hit || p.missed {
				continue
			}
			switch d.reached(st, p) {
			case 1:
				due = append(due, p)
			case -1:
				p.missed = true
			}
		}
		if len(due) > 0 {
			d.inject(st, due)
		}
		if d.sc.freezeKCM && !slices.ContainsFunc(d.points, func(p *point) bool { return p.frozen && !p.hit && !p.missed }) {
			thawKCM()
			d.sc.freezeKCM = false
		}
		if len(due) > 0 {
			continue
		}
		d.approveGates(st)
	}
}

// watchHistory long-polls a child's history and pokes when an activity is
// scheduled or completes. It returns once the child has closed.
func watchHistory(ctx context.Context, id string, svc api.Service, pokes chan<- api.Service) {
	for ctx.Err() == nil {
		it := tc.GetWorkflowHistory(ctx, id, "", true, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
		failed := false
		for it.HasNext() {
			ev, err := it.Next()
			if err != nil {
				failed = true // not started yet, or Temporal restarting
				break
			}
			if ev.GetActivityTaskScheduledEventAttributes() != nil || ev.GetActivityTaskCompletedEventAttributes() != nil {
				select {
				case pokes <- svc:
				default:
				}
			}
		}
		if !failed {
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func childStatus(run string, svc api.Service) (api.ServiceStatus, bool) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	v, err := tc.QueryWorkflow(ctx, api.ServiceWorkflowID(run, svc), "", api.StatusQuery)
	var ss api.ServiceStatus
	if err != nil || v.Get(&ss) != nil {
		return ss, false
	}
	return ss, true
}

// mergeService folds a service's status into st, step by step and gate by
// gate, never moving one back: the parent hears of a child's progress a
// little after the child's own query shows it.
func mergeService(st *api.RunStatus, ss api.ServiceStatus) {
	i := slices.IndexFunc(st.Services, func(s api.ServiceStatus) bool { return s.Service == ss.Service })
	if i < 0 {
		st.Services = append(st.Services, ss)
		return
	}
	cur := &st.Services[i]
	if rank(ss.State) >= rank(cur.State) {
		cur.State = ss.State
	}
	if len(cur.Steps) == 0 {
		cur.Steps = ss.Steps
	}
	for _, s := range ss.Steps {
		if j := slices.IndexFunc(cur.Steps, func(c api.StepStatus) bool { return c.Name == s.Name }); j >= 0 && rank(s.State) >= rank(cur.Steps[j].State) {
			cur.Steps[j] = s
		}
	}
	if len(cur.Gates) == 0 {
		cur.Gates = ss.Gates
	}
	for _, g := range ss.Gates {
		if j := slices.IndexFunc(cur.Gates, func(c api.GateStatus) bool { return c.Name == g.Name }); j >= 0 && gateRank(g.State) >= gateRank(cur.Gates[j].State) {
			cur.Gates[j] = g
		}
	}
}

func rank(s api.State) int {
	switch {
	case s == "" || s == api.Pending:
		return 0
	case s.Finished():
		return 2
	}
	return 1
}

func gateRank(s api.GateState) int {
	switch s {
	case api.GatePending:
		return 0
	case api.GateWaiting:
		return 1
	}
	return 2
}

func (d *driver) status() (api.RunStatus, bool) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	v, err := tc.QueryWorkflow(ctx, d.run, "", api.StatusQuery)
	var st api.RunStatus
	if err != nil || v.Get(&st) != nil {
		return st, false
	}
	return st, true
}

// expand adds the boundary points of a service once its steps are known:
// one per step of each service, or one per step name for anyService.
func (d *driver) expand(st api.RunStatus) {
	for _, s := range st.Services {
		edges := d.sc.boundaries[s.Service]
		if d.expanded[s.Service] || len(edges) == 0 || len(s.Steps) == 0 {
			continue
		}
		d.expanded[s.Service] = true
		for _, step := range s.Steps {
			for _, e := range edges {
				p := &point{svc: s.Service, step: step.Name, edge: e}
				if d.sc.anyService {
					p.svc = ""
				}
				if (d.sc.only == nil || d.sc.only[p.key()]) && !slices.ContainsFunc(d.points, func(q *point) bool { return q.key() == p.key() }) {
					d.points = append(d.points, p)
				}
			}
		}
	}
}

// reached says whether p is due now (1), not yet (0) or was passed without
// being caught (-1). A point of any service is due when it is due in one.
func (d *driver) reached(st api.RunStatus, p *point) int {
	if p.svc != "" {
		return d.reachedIn(st, p.svc, p)
	}
	res, found := -1, false
	for _, ss := range st.Services {
		if !slices.ContainsFunc(ss.Steps, func(s api.StepStatus) bool { return s.Name == p.step }) {
			continue
		}
		found = true
		switch d.reachedIn(st, ss.Service, p) {
		case 1:
			p.at = ss.Service
			return 1
		case 0:
			res = 0
		}
	}
	if !found {
		return 0
	}
	return res
}

func (d *driver) reachedIn(st api.RunStatus, svc api.Service, p *point) int {
	steps := stepsOf(st, svc)
	i := slices.IndexFunc(steps, func(s api.StepStatus) bool { return s.Name == p.step })
	if i < 0 {
		return 0
	}
	s := steps[i]
	active := s.State == api.Running || s.State == api.WaitingForApproval
	key := string(svc) + "/" + p.step
	if active && d.running[key].IsZero() {
		d.running[key] = time.Now()
	}
	if s.State == api.Done && d.finished[key].IsZero() {
		d.finished[key] = time.Now()
	}
	switch p.edge {
	case started:
		if active {
			return 1
		}
	case mid:
		if active {
			switch {
			case p.ready != nil:
				if p.ready(d) {
					return 1
				}
			case time.Since(d.running[key]) < midAfter:
			case s.State == api.WaitingForApproval || d.activityRunning(svc):
				return 1
			}
			return 0
		}
	case done:
		if s.State == api.Done {
			next := i+1 < len(steps) && !steps[i+1].State.Finished()
			// After the last step the boundary is the child ending and the
			// parent taking its result: a while after, it is over.
			last := i+1 == len(steps) && st.State != api.Done && time.Since(d.finished[key]) < 3*time.Second
			if next || last {
				return 1
			}
			return -1
		}
		if !s.State.Finished() {
			return 0
		}
	}
	if s.State.Finished() {
		return -1
	}
	return 0
}

// activityRunning: the child has an activity that the worker alive now
// picked up at least midAfter ago, so a kill lands inside it rather than
// in the gap before a retry.
func (d *driver) activityRunning(svc api.Service) bool {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	desc, err := tc.DescribeWorkflowExecution(ctx, api.ServiceWorkflowID(d.run, svc), "")
	if err != nil {
		return false
	}
	for _, a := range desc.GetPendingActivities() {
		started := a.GetLastStartedTime().AsTime()
		if a.GetState() == enumspb.PENDING_ACTIVITY_STATE_STARTED && started.After(d.lastFault) && time.Since(started) >= midAfter {
			return true
		}
	}
	return false
}

func stepsOf(st api.RunStatus, svc api.Service) []api.StepStatus {
	for _, s := range st.Services {
		if s.Service == svc {
			return s.Steps
		}
	}
	return nil
}

// inject kills the worker and starts a new one, or restarts Temporal, for
// every point that is due.
func (d *driver) inject(st api.RunStatus, due []*point) {
	// A Temporal restart and a kill due together are injected one after
	// the other, so that each is credited to what it was.
	restart := slices.ContainsFunc(due, func(p *point) bool { return p.restart })
	if restart {
		due = slices.DeleteFunc(due, func(p *point) bool { return !p.restart })
	}
	for _, s := range stepsOf(st, api.HMNFD) {
		if s.Name == "restart-orca" && s.State == api.Running {
			d.orcaFaults++
		}
	}
	what := "SIGKILL worker"
	if restart {
		what = "restart Temporal"
		if err := temporal.Restart(context.Background()); err != nil {
			d.t.Fatalf("restart Temporal: %v", err)
		}
		d.restart++
	} else {
		d.worker.Kill()
		d.kills++
		d.startWorker()
	}
	var names []string
	for _, p := range due {
		p.hit = true
		names = append(names, p.String())
	}
	if r, err := fleet.Restarts(); err == nil {
		d.restartsAtFault = total(r)
	}
	now := time.Now()
	if !restart {
		d.lastFault = now // activities outlive a Temporal restart, not a kill
	}
	for k := range d.running {
		d.running[k] = now // a mid point counts from the latest fault
	}
	d.log = append(d.log, fmt.Sprintf("%6.1fs %s at %s", time.Since(d.began).Seconds(), what, strings.Join(names, ", ")))
}

// approveGates approves every waiting gate once no fault is still to be
// injected while it waits. (cps waits for hmnfd by itself, so the nodes cps
// shuts down never count against it.)
func (d *driver) approveGates(st api.RunStatus) {
	for _, s := range st.Services {
		for _, g := range s.Gates {
			if g.State != api.GateWaiting {
				continue
			}
			key := string(s.Service) + "/" + g.Name
			if ch, sent := d.approved[key]; sent {
				select {
				case err := <-ch:
					if err != nil {
						delete(d.approved, key) // try again
					} else {
						d.approved[key] = nil
					}
				default:
				}
				continue
			}
			if slices.ContainsFunc(d.points, func(p *point) bool {
				return p.svc == s.Service && p.step == g.Name && p.edge != done && !p.hit && !p.missed
			}) {
				continue
			}
			ch := make(chan error, 1)
			d.approved[key] = ch
			go func(gate string) {
				ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
				defer cancel()
				h, err := tc.UpdateWorkflow(ctx, client.UpdateWorkflowOptions{WorkflowID: d.run, UpdateName: api.DecideGateUpdate,
					Args:         []any{api.GateDecision{Gate: gate, Decision: api.Approve, By: "chaos"}},
					WaitForStage: client.WorkflowUpdateStageCompleted})
				if err == nil {
					err = h.Get(ctx, nil)
				}
				ch <- err
			}(g.Name)
		}
	}
}

// waitRun waits for the run's result, across Temporal restarts.
func waitRun(run string) (api.Report, error) {
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		var report api.Report
		err := tc.GetWorkflow(ctx, run, "").Get(ctx, &report)
		cancel()
		if err == nil {
			return report, nil
		}
		desc, derr := tc.DescribeWorkflowExecution(context.Background(), run, "")
		if derr == nil && desc.GetWorkflowExecutionInfo().GetStatus() != enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING {
			return report, err
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// checkNodes counts orca restarts from the sshd fleet's own log: every node
// at least once, and no more repeats per fault injected while the restarts
// ran than the batches in flight hold (a batch without a result redoes at
// most its nodes not yet in its heartbeats).
func (d *driver) checkNodes() (ok, dups, limit int) {
	restarts, err := fleet.Restarts()
	if err != nil {
		d.t.Fatal(err)
	}
	inFlight := orcaBatch * workerconfig.HMNFD(workerConfig).BatchesInFlight
	limit = inFlight * d.orcaFaults
	for i := 1; i <= computeNodes; i++ {
		n := restarts[fmt.Sprintf("nid%06d-nmn", i)]
		if n == 0 {
			d.t.Errorf("nid%06d-nmn: orca never restarted", i)
			continue
		}
		ok++
		dups += n - 1
	}
	if dups > limit {
		d.t.Errorf("%d repeated orca restarts, more than the batches in flight (%d nodes) per fault during the restarts (%d faults)", dups, inFlight, d.orcaFaults)
	}
	return ok, dups, limit
}

// checkBOS counts the run's BOS sessions in the emulator: exactly one
// shutdown and one boot for the one CPS template group, and the CPS nodes
// Ready again.
func (d *driver) checkBOS(before map[string]bool) (ok, bad int) {
	count := map[string]int{}
	for _, s := range emu.BOSSessions() {
		if !before[s.Name] {
			count[s.Operation+" "+s.TemplateName]++
		}
	}
	for _, op := range []string{"shutdown cos", "boot cos"} {
		if count[op] == 1 {
			ok++
		} else {
			bad++
			d.t.Errorf("BOS %s sessions: %d, want exactly 1 (all new sessions: %v)", op, count[op], count)
		}
		delete(count, op)
	}
	for op, n := range count {
		bad += n
		d.t.Errorf("unexpected BOS session %s (%d)", op, n)
	}
	for _, c := range emu.Components() {
		var nid int
		if _, err := fmt.Sscanf(c.ID, "x1000c0s%db0n0", &nid); err == nil && nid < cpsNodes && c.State != "Ready" {
			d.t.Errorf("CPS node %s is %s after the run, want Ready", c.ID, c.State)
		}
	}
	return ok, bad
}

// TestLedgerCountsAnExtraDelete shows the ledger can fail: a pod of a
// target is deleted once (allowed), then its replacement is deleted too,
// which must count as one duplicate destructive step.
func TestLedgerCountsAnExtraDelete(t *testing.T) {
	ctx := context.Background()
	if err := cluster.WaitSeeded(ctx, 2*time.Minute); err != nil {
		t.Fatal(err)
	}
	led := ledger.Start(t, cluster, []api.Service{api.REDS})
	pods := cluster.Core.CoreV1().Pods(simcluster.Namespace)
	sel := metav1.ListOptions{LabelSelector: simcluster.NameLabel + "=cray-reds"}
	list, err := pods.List(ctx, sel)
	if err != nil || len(list.Items) != 1 {
		t.Fatalf("cray-reds pods: %v %v", list, err)
	}
	old := list.Items[0]
	if err := pods.Delete(ctx, old.Name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(time.Minute)
	var replacement string
	for replacement == "" {
		if time.Now().After(deadline) {
			t.Fatal("no replacement pod")
		}
		time.Sleep(100 * time.Millisecond)
		list, _ = pods.List(ctx, sel)
		for _, p := range list.Items {
			if p.UID != old.UID && simcluster.ReadyPods([]corev1.Pod{p}) == 1 {
				replacement = p.Name
			}
		}
	}
	if err := pods.Delete(ctx, replacement, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	for time.Now().Before(deadline) {
		if led.DuplicatesSoFar() > 0 {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	dups := led.Stop()
	if len(dups) != 1 || !strings.Contains(dups[0], replacement) {
		t.Fatalf("duplicates %v, want exactly the deletion of the replacement %s", dups, replacement)
	}
	if n := led.Deletes(old.UID); n != 1 {
		t.Fatalf("the target pod's delete counted %d times, want 1", n)
	}
	t.Logf("ledger caught the extra delete: %s", dups[0])
	if err := cluster.WaitSeeded(ctx, 2*time.Minute); err != nil {
		t.Fatal(err)
	}
}
