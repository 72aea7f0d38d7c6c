// Package production runs the tool in its production shape: the Temporal
// server on PostgreSQL (internal/pgtemporal, set up by the script the
// compose stack runs) and two repopulate-worker processes polling one task
// queue, against the simulated CSM system. One worker is SIGKILLed in the
// middle of a long step and the other finishes the run; both are restarted
// one at a time while a run waits at a gate. internal/ledger checks,
// against the API server, that nothing was lost and no destructive step
// repeated. See docs/testing.md.
package production

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/taskqueue/v1"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"

	"github.com/csmops/etcd-repopulate/internal/api"
	"github.com/csmops/etcd-repopulate/internal/catalog"
	"github.com/csmops/etcd-repopulate/internal/config"
	"github.com/csmops/etcd-repopulate/internal/csm"
	"github.com/csmops/etcd-repopulate/internal/ledger"
	"github.com/csmops/etcd-repopulate/internal/pgtemporal"
	"github.com/csmops/etcd-repopulate/internal/simcluster"
	"github.com/csmops/etcd-repopulate/internal/testenv"
	"github.com/csmops/etcd-repopulate/internal/workerconfig"
)

// The simulated system: computeNodes behind real sshds whose stand-in orca
// restart takes restartDelay, restarted in batches of orcaBatch, so that
// restart-orca is a long step (three batches); the first cpsNodes boot
// from CPS, so that the run waits at CPS's two gates.
const (
	computeNodes = 24
	orcaBatch    = 8
	restartDelay = 6 * time.Second
	cpsNodes     = 4
	clientSecret = "production-client-secret-81d0"
)

var (
	scratch, binDir string
	temporal        *pgtemporal.Server
	cluster         *simcluster.Cluster
	tc              client.Client
	csmSys          *testenv.CSM
	workerConfig    config.Config
)

func TestMain(m *testing.M) {
	ctx, cancel := context.WithCancel(context.Background())
	scratch = testenv.KeepDir("production-")
	binDir = filepath.Join(scratch, "bin")
	if _, _, err := testenv.BuildCommands(binDir); err != nil {
		testenv.Fatalf("%v", err)
	}
	var err error
	began := time.Now()
	if temporal, err = testenv.TemporalOnPostgres(ctx); err != nil {
		testenv.Fatalf("Temporal on PostgreSQL: %v", err)
	}
	fmt.Fprintf(os.Stderr, "production: PostgreSQL and the Temporal server ready in %s\n", time.Since(began).Round(100*time.Millisecond))
	if cluster, err = testenv.Cluster(ctx, filepath.Join(scratch, "cluster"), true); err != nil {
		testenv.Fatalf("start the real control plane: %v", err)
	}
	if tc, err = client.Dial(client.Options{HostPort: temporal.Address}); err != nil {
		testenv.Fatalf("dial temporal: %v", err)
	}
	if csmSys, err = testenv.StartCSM(ctx, scratch, testenv.CSMOptions{Release: api.CSM10, ClientSecret: clientSecret, Computes: computeNodes, RestartDelay: restartDelay}); err != nil {
		testenv.Fatalf("%v", err)
	}
	go testenv.OrcaResubscribes(ctx, csmSys.Emu, csmSys.Fleet)
	if err := seedCPS(); err != nil {
		testenv.Fatalf("%v", err)
	}
	workerConfig = productionConfig(csmSys.System)
	code := m.Run()
	csmSys.Stop()
	tc.Close()
	cancel()
	cluster.Stop()
	if code == 0 {
		temporal.Remove()
		os.RemoveAll(scratch)
	} else {
		temporal.Stop()
		fmt.Fprintf(os.Stderr, "production: logs kept in %s and %s\n", scratch, temporal.Dir)
	}
	os.Exit(code)
}

// seedCPS gives the first cpsNodes a CPS-booted session template.
func seedCPS() error {
	emu := csmSys.Emu
	emu.SetCPSContents([]csm.CPSContent{{S3Path: "s3://boot-images/k/rootfs", Etag: "e1"}})
	emu.SetCPSTransports([]csm.CPSTransport{{ReadyForMount: true}})
	var nodes []string
	for i := range cpsNodes {
		nodes = append(nodes, fmt.Sprintf("x1000c0s%db0n0", i))
	}
	return emu.SetSessionTemplate(csm.SessionTemplate{Name: "cos", BootSets: map[string]csm.BootSet{
		"compute": {Path: "s3://boot-images/k/manifest.json", Type: "s3", RootfsProvider: "cpss3", NodeList: nodes},
	}})
}

// productionConfig: CSM 1.0 (all nine services), timeouts short enough that
// a lost worker is noticed in seconds, attempts enough for a kill on top of
// a transient error.
func productionConfig(s workerconfig.System) config.Config {
	s.Release = api.CSM10
	c := workerconfig.Short(s, 5*time.Minute)
	c.ActivityAttempts = 6
	h := workerconfig.HMNFD(c)
	h.NCNGroups, h.MaxFailedPercent, h.BatchSize = []string{}, 0, orcaBatch
	cps := workerconfig.CPS(c)
	cps.ShutdownTimeout, cps.BootTimeout = config.Duration(3*time.Minute), config.Duration(3*time.Minute)
	return c
}

func startWorker(t *testing.T, queue string) *testenv.Worker {
	t.Helper()
	return testenv.StartWorker(t, testenv.WorkerOptions{BinDir: binDir, LogDir: scratch, Address: temporal.Address,
		Queue: queue, Config: workerConfig, Kubeconfig: cluster.Kubeconfig})
}

// identity is the name Temporal knows worker w by ("<pid>@<host>@").
func identity(w *testenv.Worker) string { return strconv.Itoa(w.Pid()) + "@" }

// repopulate runs the CLI and fails t unless it exits 0.
func repopulate(t *testing.T, queue string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(binDir, "repopulate"), append([]string{"--address", temporal.Address, "--task-queue", queue}, args...)...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		t.Fatalf("repopulate %s: %v\n%s", strings.Join(args, " "), err, out.String())
	}
	return out.String()
}

// waitFor polls the run's status until cond holds (or limit passes).
func waitFor(t *testing.T, run, what string, limit time.Duration, cond func(api.RunStatus) bool) api.RunStatus {
	t.Helper()
	var st api.RunStatus
	for deadline := time.Now().Add(limit); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		v, err := tc.QueryWorkflow(ctx, run, "", api.StatusQuery)
		cancel()
		if err == nil && v.Get(&st) == nil && cond(st) {
			return st
		}
	}
	t.Fatalf("timed out after %s waiting for %s; last status: %+v", limit, what, st)
	return st
}

func gateWaiting(name string) func(api.RunStatus) bool {
	return func(st api.RunStatus) bool {
		for _, s := range st.Services {
			for _, g := range s.Gates {
				if g.Name == name && g.State == api.GateWaiting {
					return true
				}
			}
		}
		return false
	}
}

// approveGates approves gates as they come, in order.
func approveGates(t *testing.T, queue, run string, gates ...string) {
	t.Helper()
	for _, g := range gates {
		waitFor(t, run, "gate "+g+" waiting", 4*time.Minute, gateWaiting(g))
		repopulate(t, queue, "approve", run, g, "--note", "production test")
	}
}

func waitRun(t *testing.T, run string, limit time.Duration) api.Report {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	var report api.Report
	if err := tc.GetWorkflow(ctx, run, "").Get(ctx, &report); err != nil {
		t.Fatalf("run %s: %v", run, err)
	}
	return report
}

func checkDone(t *testing.T, report api.Report, services int) {
	t.Helper()
	if report.State != api.Done || len(report.Services) != services {
		t.Errorf("run %s (%s) with %d services, want done with %d", report.State, report.Message, len(report.Services), services)
	}
	for _, s := range report.Services {
		if s.State != api.Done {
			t.Errorf("%s: %s %s", s.Service, s.State, s.Message)
		}
	}
}

// midActivity waits until workflow id has an attempt of an activity of
// type activityType that has been running for at least after, and returns
// the activity's id and the identity of the worker running it.
func midActivity(t *testing.T, id, activityType string, after, limit time.Duration) (activityID, worker string) {
	t.Helper()
	for deadline := time.Now().Add(limit); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		d, err := tc.DescribeWorkflowExecution(context.Background(), id, "")
		if err != nil {
			continue
		}
		for _, a := range d.PendingActivities {
			if a.ActivityType.GetName() == activityType && a.State == enumspb.PENDING_ACTIVITY_STATE_STARTED &&
				a.LastWorkerIdentity != "" && time.Since(a.LastStartedTime.AsTime()) >= after {
				return a.ActivityId, a.LastWorkerIdentity
			}
		}
	}
	t.Fatalf("%s never ran an activity %s for %s within %s", id, activityType, after, limit)
	return "", ""
}

// completedBy is the identity of the worker whose attempt completed
// activity activityID of workflow id.
func completedBy(t *testing.T, id, activityID string) string {
	t.Helper()
	scheduled := map[int64]string{}
	iter := tc.GetWorkflowHistory(context.Background(), id, "", false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	for iter.HasNext() {
		ev, err := iter.Next()
		if err != nil {
			t.Fatal(err)
		}
		if a := ev.GetActivityTaskScheduledEventAttributes(); a != nil {
			scheduled[ev.EventId] = a.ActivityId
		}
		if a := ev.GetActivityTaskCompletedEventAttributes(); a != nil && scheduled[a.ScheduledEventId] == activityID {
			return a.Identity
		}
	}
	t.Fatalf("%s: activity %s never completed", id, activityID)
	return ""
}

// TestTwoWorkersOneKilledMidStep: two workers poll the queue of a
// nine-service run; the one running HMNFD's orca restarts is SIGKILLed in
// the middle of that step. The other worker finishes the step and the run,
// gates included, with no new process started; the ledger finds nothing
// lost and no destructive step repeated.
func TestTwoWorkersOneKilledMidStep(t *testing.T) {
	began := time.Now()
	if err := cluster.WaitSeeded(context.Background(), 2*time.Minute); err != nil {
		t.Fatal(err)
	}
	const queue = "production-kill"
	workers := []*testenv.Worker{startWorker(t, queue), startWorker(t, queue)}
	services := catalog.Services()
	led := ledger.Start(t, cluster, services)
	run := fmt.Sprintf("production-kill-%d", time.Now().UnixNano())
	var names []string
	for _, s := range services {
		names = append(names, string(s))
	}
	repopulate(t, queue, "start", "--services", strings.Join(names, ","), "--id", run)

	hmnfd := api.ServiceWorkflowID(run, api.HMNFD)
	// Half-way through a batch of orca restarts: in the middle of the
	// activity, not between two.
	activityID, holder := midActivity(t, hmnfd, api.ActivityRestartOrca, restartDelay/2, 3*time.Minute)
	var killed, survivor *testenv.Worker
	for i, w := range workers {
		if strings.HasPrefix(holder, identity(w)) {
			killed, survivor = w, workers[1-i]
		}
	}
	if killed == nil {
		t.Fatalf("restart-orca runs on %q, neither worker (%s, %s)", holder, identity(workers[0]), identity(workers[1]))
	}
	killed.Kill()
	t.Logf("SIGKILLed worker %s in the middle of hmnfd/restart-orca's activity %s (%s after start)", holder, activityID, time.Since(began).Round(time.Second))

	// No snapshot: BOS waits for its templates to be checked by hand; CPS
	// waits for BOS.
	approveGates(t, queue, run, api.GateBOSTemplates, api.GateCPSUnmount, api.GateCPSReboot)
	report := waitRun(t, run, 5*time.Minute)
	checkDone(t, report, len(services))
	select {
	case <-survivor.Exited():
		t.Fatal("the surviving worker exited")
	default:
	}
	if by := completedBy(t, hmnfd, activityID); !strings.HasPrefix(by, identity(survivor)) {
		t.Errorf("restart-orca's activity %s completed by %q, want the survivor %s", activityID, by, identity(survivor))
	}
	time.Sleep(time.Second) // let the watches deliver the last events
	dups := led.Stop()
	for _, dup := range dups {
		t.Errorf("duplicate destructive step: %s", dup)
	}
	lost := led.Lost(context.Background(), run)
	for _, l := range lost {
		t.Errorf("object lost or not restored: %s", l)
	}
	t.Logf("run %s done on the survivor in %s; ledger: %d lost, %d repeated", run, time.Since(began).Round(time.Second), len(lost), len(dups))
}

// pollers is the identities polling queue's workflow tasks.
func pollers(t *testing.T, queue string) []string {
	t.Helper()
	d, err := tc.WorkflowService().DescribeTaskQueue(context.Background(), &workflowservice.DescribeTaskQueueRequest{
		Namespace: temporal.Namespace, TaskQueue: &taskqueue.TaskQueue{Name: queue}, TaskQueueType: enumspb.TASK_QUEUE_TYPE_WORKFLOW})
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, p := range d.Pollers {
		ids = append(ids, p.Identity)
	}
	return ids
}

// waitPolling waits until worker w polls queue.
func waitPolling(t *testing.T, queue string, w *testenv.Worker) {
	t.Helper()
	for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		for _, id := range pollers(t, queue) {
			if strings.HasPrefix(id, identity(w)) {
				return
			}
		}
	}
	t.Fatalf("worker %s does not poll %s after a minute", identity(w), queue)
}

// TestRollingRestartAtAGate: a CPS run waits at its first gate while both
// workers are restarted one at a time (SIGTERM, a new process, polling,
// then the next), as a Deployment's rolling update does; approved
// afterwards, the run completes on the new workers.
func TestRollingRestartAtAGate(t *testing.T) {
	began := time.Now()
	const queue = "production-rolling"
	workers := []*testenv.Worker{startWorker(t, queue), startWorker(t, queue)}
	run := fmt.Sprintf("production-rolling-%d", time.Now().UnixNano())
	repopulate(t, queue, "start", "--services", string(api.CPS), "--id", run)
	waitFor(t, run, "gate cps-unmount waiting", 3*time.Minute, gateWaiting(api.GateCPSUnmount))
	for i, old := range workers {
		old.Stop(30 * time.Second)
		workers[i] = startWorker(t, queue)
		waitPolling(t, queue, workers[i])
		t.Logf("worker %d replaced: %s -> %s", i+1, identity(old), identity(workers[i]))
	}
	approveGates(t, queue, run, api.GateCPSUnmount, api.GateCPSReboot)
	checkDone(t, waitRun(t, run, 5*time.Minute), 1)
	t.Logf("run %s done after a rolling restart at its gate, in %s", run, time.Since(began).Round(time.Second))
}
