package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	historypb "go.temporal.io/api/history/v1"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/csmops/etcd-repopulate/internal/api"
	"github.com/csmops/etcd-repopulate/internal/catalog"
	"github.com/csmops/etcd-repopulate/internal/config"
	"github.com/csmops/etcd-repopulate/internal/sshtest"
	"github.com/csmops/etcd-repopulate/internal/testenv"
	"github.com/csmops/etcd-repopulate/internal/workerconfig"
)

// RecordHistoriesEnv names the directory `make histories` records into.
// Unset, TestRecordHistories does nothing: it is a generator, and the
// check that uses what it records is workflows' replay test.
const RecordHistoriesEnv = "REPOPULATE_RECORD_HISTORIES"

// TestRecordHistories records, on the real Temporal dev server with the
// real worker, the full histories (the run and each child) of the runs an
// upgrade may find in flight: all nine services done; waiting at
// bos-templates, at cps-unmount and at cps-reboot; in the middle of the
// hmnfd batches; a failed service; a canceled run. Each scenario is one
// directory of JSON histories as `temporal workflow show -o json` writes
// them, which workflow.NewWorkflowReplayer reads.
func TestRecordHistories(t *testing.T) {
	out := os.Getenv(RecordHistoriesEnv)
	if out == "" {
		t.Skipf("generator: set %s=DIR (make histories)", RecordHistoriesEnv)
	}
	if !filepath.IsAbs(out) {
		out = filepath.Join(testenv.RepoRoot(), out)
	}
	rec := &recorder{t: t, dir: out}

	t.Run("all-nine-done", rec.allNineDone)
	t.Run("bos-cps-gates", rec.bosAndCPSGates)
	t.Run("hmnfd-mid-batches", rec.hmnfdMidBatches)
	t.Run("failed-service", rec.failedService)
	t.Run("canceled", rec.canceled)
}

type recorder struct {
	t   *testing.T
	dir string
}

// save writes the histories of run and of its children that exist now
// into the scenario's directory, replacing what was there.
func (r *recorder) save(t *testing.T, scenario, run string) {
	t.Helper()
	dir := filepath.Join(r.dir, scenario)
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	ids := []string{run}
	for _, s := range catalog.Services() {
		ids = append(ids, api.ServiceWorkflowID(run, s))
	}
	saved := 0
	for _, id := range ids {
		events, err := fullHistory(id)
		if err != nil {
			if id == run {
				t.Fatalf("history of %s: %v", id, err)
			}
			continue // this child was never started
		}
		data, err := protojson.MarshalOptions{Indent: "  "}.Marshal(&historypb.History{Events: events})
		if err != nil {
			t.Fatal(err)
		}
		// The replayer needs the workflow ID (children's IDs derive from
		// the run's): the file is named after it, "/" written as "@".
		name := strings.ReplaceAll(id, "/", "@") + ".json"
		if err := os.WriteFile(filepath.Join(dir, name), append(data, '\n'), 0o644); err != nil {
			t.Fatal(err)
		}
		saved++
	}
	t.Logf("%s: %d histories in %s", scenario, saved, dir)
}

func fullHistory(workflowID string) ([]*historypb.HistoryEvent, error) {
	iter := tc.GetWorkflowHistory(context.Background(), workflowID, "", false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	var events []*historypb.HistoryEvent
	for iter.HasNext() {
		ev, err := iter.Next()
		if err != nil {
			return nil, err
		}
		events = append(events, ev)
	}
	if len(events) == 0 {
		return nil, fmt.Errorf("no events")
	}
	return events, nil
}

// completedActivities counts the activities of a type that completed in a
// workflow's history so far; 0 while the workflow does not exist yet.
func completedActivities(workflowID, activityType string) int {
	events, err := fullHistory(workflowID)
	if err != nil {
		return 0
	}
	scheduled := map[int64]string{}
	n := 0
	for _, ev := range events {
		if a := ev.GetActivityTaskScheduledEventAttributes(); a != nil {
			scheduled[ev.GetEventId()] = a.GetActivityType().GetName()
		}
		if a := ev.GetActivityTaskCompletedEventAttributes(); a != nil && scheduled[a.GetScheduledEventId()] == activityType {
			n++
		}
	}
	return n
}

// terminate ends a run left waiting, once it is recorded, so that its
// children do not outlive the scenario.
func terminate(t *testing.T, run string) {
	t.Helper()
	if err := tc.TerminateWorkflow(context.Background(), run, "", "recorded"); err != nil && !strings.Contains(err.Error(), "already completed") {
		t.Logf("terminate %s: %v", run, err)
	}
}

func mustRun(t *testing.T, queue string, args ...string) {
	t.Helper()
	out, stderr, code := repopulate(t, queue, args...)
	if code != 0 {
		t.Fatalf("repopulate %s: exit %d\n%s\n%s", strings.Join(args, " "), code, out, stderr)
	}
}

// allNineDone is the demo's story: snapshot, rebuild, all nine services
// from the snapshot, both CPS gates approved.
func (r *recorder) allNineDone(t *testing.T) {
	healthy(t)
	freshHMNFD(t, fleet)
	seedBOSAndCPS(t)
	emu.SubscribeReadyCompute()
	queue := "hist-nine"
	snap := filepath.Join(t.TempDir(), "snapshot")
	mustRun(t, queue, "snapshot", "--out", snap, "--config", writeConfig(t, testConfig), "--kubeconfig", cluster.Kubeconfig)
	emu.ClearSessionTemplates()
	emu.ClearSubscriptions()
	startWorker(t, queue, testConfig, cluster.Kubeconfig)
	const run = "hist-all-nine"
	mustRun(t, queue, "start", "--id", run, "--snapshot", snap)
	waitGate(t, run, api.GateCPSUnmount, api.GateWaiting)
	mustRun(t, queue, "approve", run, api.GateCPSUnmount, "--note", "drained")
	waitGate(t, run, api.GateCPSReboot, api.GateWaiting)
	mustRun(t, queue, "approve", run, api.GateCPSReboot, "--note", "cps healthy")
	if rep := waitRun(t, run); rep.State != api.Done {
		t.Fatalf("run ended %s: %s", rep.State, rep.Message)
	}
	r.save(t, "all-nine-done", run)
}

// bosAndCPSGates records a bos+cps run at each of its three gates: without
// a snapshot bos waits at bos-templates (cps waits for bos); with one, cps
// waits at cps-unmount, then at cps-reboot.
func (r *recorder) bosAndCPSGates(t *testing.T) {
	healthy(t)
	seedBOSAndCPS(t)
	queue := "hist-gates"
	snap := filepath.Join(t.TempDir(), "snapshot")
	mustRun(t, queue, "snapshot", "--out", snap, "--config", writeConfig(t, testConfig), "--kubeconfig", cluster.Kubeconfig)
	startWorker(t, queue, testConfig, cluster.Kubeconfig)

	const noSnapshot = "hist-bos-templates"
	mustRun(t, queue, "start", "--id", noSnapshot, "--services", "bos,cps")
	waitGate(t, noSnapshot, api.GateBOSTemplates, api.GateWaiting)
	r.save(t, "waiting-bos-templates", noSnapshot)
	terminate(t, noSnapshot)

	emu.ClearSessionTemplates()
	const run = "hist-cps-gates"
	mustRun(t, queue, "start", "--id", run, "--services", "bos,cps", "--snapshot", snap)
	waitGate(t, run, api.GateCPSUnmount, api.GateWaiting)
	r.save(t, "waiting-cps-unmount", run)
	mustRun(t, queue, "approve", run, api.GateCPSUnmount, "--note", "drained")
	waitGate(t, run, api.GateCPSReboot, api.GateWaiting)
	r.save(t, "waiting-cps-reboot", run)
	mustRun(t, queue, "approve", run, api.GateCPSReboot)
	if rep := waitRun(t, run); rep.State != api.Done {
		t.Fatalf("run ended %s: %s", rep.State, rep.Message)
	}
}

// hmnfdMidBatches records hmnfd while its orca restarts are under way:
// nodes that take a second each, two per batch, some batches done. HMNFD's
// etcd was wiped under it, so it is not ready until its pods restart: the
// run goes through the readiness steps first.
func (r *recorder) hmnfdMidBatches(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	slow, err := sshtest.Start(ctx, sshtest.Options{Dir: filepath.Join(scratch, "fleet-slow"), Nodes: computeNodes, RestartDelay: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer slow.Stop()
	emu.ClearSubscriptions()
	emu.WipeHMNFD()
	hmnfdProcess(t, emu)
	go orcaResubscribes(ctx, slow)
	queue := "hist-hmnfd"
	startWorker(t, queue, workerConfig(slow, 2), cluster.Kubeconfig)
	const run = "hist-hmnfd-batches"
	mustRun(t, queue, "start", "--id", run, "--services", "hmnfd")
	child := api.ServiceWorkflowID(run, api.HMNFD)
	deadline := time.Now().Add(2 * time.Minute)
	for completedActivities(child, api.ActivityRestartOrca) < 2 {
		if time.Now().After(deadline) {
			t.Fatal("no orca batch finished")
		}
		time.Sleep(100 * time.Millisecond)
	}
	r.save(t, "hmnfd-mid-batches", run)
	if rep := waitRun(t, run); rep.State != api.Done {
		t.Fatalf("run ended %s: %s", rep.State, rep.Message)
	}
}

// failedService records a run whose hmnfd fails: no node may fail, and the
// NCN ranges hold one with a wrong host key and one that is unreachable.
func (r *recorder) failedService(t *testing.T) {
	healthy(t)
	freshHMNFD(t, fleet)
	queue := "hist-failed"
	startWorker(t, queue, testConfigWith(func(c *config.Config) { workerconfig.HMNFD(*c).MaxFailedPercent = 0 }), cluster.Kubeconfig)
	const run = "hist-failed-service"
	mustRun(t, queue, "start", "--id", run, "--services", "hmnfd,meds")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if err := tc.GetWorkflow(ctx, run, "").Get(ctx, nil); err == nil {
		t.Fatal("the run succeeded; want hmnfd failed")
	}
	r.save(t, "failed-service", run)
}

// canceled records a run canceled while bss waits for its Job (the
// controller manager is frozen so the wait cannot end by itself).
func (r *recorder) canceled(t *testing.T) {
	healthy(t)
	queue := "hist-cancel"
	startWorker(t, queue, testConfig, cluster.Kubeconfig)
	if err := cluster.Signal("kube-controller-manager", syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cluster.Signal("kube-controller-manager", syscall.SIGCONT) }()
	const run = "hist-canceled"
	mustRun(t, queue, "start", "--id", run, "--services", "bss,meds")
	waitStep(t, run, api.BSS, "wait-job-complete", api.Running)
	mustRun(t, queue, "cancel", run)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := tc.GetWorkflow(ctx, run, "").Get(ctx, nil); err == nil {
		t.Fatal("the run succeeded; want canceled")
	}
	r.save(t, "canceled", run)
}
