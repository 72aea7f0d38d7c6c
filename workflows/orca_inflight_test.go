package workflows

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/workflow"

	"github.com/csmops/etcd-repopulate/internal/api"
	"github.com/csmops/etcd-repopulate/procedures/orca"
)

// batchWatch records, in real time, which RestartOrca batches run at once.
type batchWatch struct {
	mu        sync.Mutex
	running   int
	peak      int
	started   []int // batch numbers in the order they started
	firstDone bool
	// startedBeforeFirstEnded: batches that started while batch 1 ran.
	startedBeforeFirstEnded []int
}

func (w *batchWatch) start(b int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.running++
	w.peak = max(w.peak, w.running)
	w.started = append(w.started, b)
	if !w.firstDone && b != 1 {
		w.startedBeforeFirstEnded = append(w.startedBeforeFirstEnded, b)
	}
}

func (w *batchWatch) end(b int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.running--
	if b == 1 {
		w.firstDone = true
	}
}

// hold keeps a batch running for d in real time, or until it is canceled.
func (w *batchWatch) hold(ctx context.Context, b int, d time.Duration) error {
	w.start(b)
	select {
	case <-time.After(d):
		w.end(b)
		return nil
	case <-ctx.Done():
		w.end(b)
		return ctx.Err()
	}
}

// inFlightRun runs hmnfd on nodes computes (plus one NCN) in batches of
// size, inFlight at once, each batch held by hold.
// before, if set, prepares the environment.
func inFlightRun(t *testing.T, nodes, size, inFlight int, failing map[string]bool, batch func(context.Context, orca.RestartBatch) error, before func(*testsuite.TestWorkflowEnvironment)) (api.ServiceStatus, *kubeFake) {
	t.Helper()
	env, f := newEnv(t, func(f *kubeFake) {
		f.nodes, f.failingHosts, f.orcaBatch = nodes, failing, batch
		f.planHook = func(p *api.ServicePlan) {
			if p.HMNFD != nil {
				p.HMNFD.BatchSize, p.HMNFD.BatchesInFlight, p.HMNFD.MaxFailedPercent = size, inFlight, 50
			}
		}
	})
	if before != nil {
		before(env)
	}
	env.SetTestTimeout(time.Minute)
	env.ExecuteWorkflow(api.RepopulateWorkflow, api.Request{Services: []string{"hmnfd"}})
	var report api.Report
	if err := env.GetWorkflowResult(&report); err != nil {
		var appErr *temporal.ApplicationError
		if !errors.As(err, &appErr) || appErr.Details(&report) != nil {
			t.Fatal(err)
		}
	}
	f.sortBatches()
	return serviceState(t, report, api.HMNFD), f
}

func stepOf(s api.ServiceStatus, name string) api.StepStatus {
	for _, st := range s.Steps {
		if st.Name == name {
			return st
		}
	}
	return api.StepStatus{}
}

// TestOrcaBatchesOverlap: with the first batch slow, batches 2..K start
// before it ends, never more than K run at once, every host is in exactly
// one batch, and the results fold as if the batches had run in order.
func TestOrcaBatchesOverlap(t *testing.T) {
	const nodes, size, inFlight = 950, 100, 3 // 951 hosts: 10 batches, the last of 51
	watch := &batchWatch{}
	failing := map[string]bool{"nid000007-nmn": true, "nid000512-nmn": true, "nid000950-nmn": true}
	h, f := inFlightRun(t, nodes, size, inFlight, failing, func(ctx context.Context, b orca.RestartBatch) error {
		d := 20 * time.Millisecond
		if b.Batch == 1 {
			d = 600 * time.Millisecond
		}
		return watch.hold(ctx, b.Batch, d)
	}, nil)
	if h.State != api.Done {
		t.Fatalf("hmnfd %s: %s", h.State, h.Message)
	}
	if watch.peak > inFlight || watch.peak < 2 {
		t.Errorf("%d batches ran at once, want 2 to %d", watch.peak, inFlight)
	}
	for b := 2; b <= inFlight; b++ {
		if !slices.Contains(watch.startedBeforeFirstEnded, b) {
			t.Errorf("batch %d did not start before batch 1 ended (started then: %v)", b, watch.startedBeforeFirstEnded)
		}
	}
	// Batch 1 holds one slot for 600ms: the other slots go through the rest.
	if len(watch.startedBeforeFirstEnded) < 5 {
		t.Errorf("only batches %v started while batch 1 ran: the width waited for it", watch.startedBeforeFirstEnded)
	}
	seen := map[string]int{}
	for i, b := range f.batches {
		if b.Batch != i+1 {
			t.Errorf("batch %d numbered %d", i+1, b.Batch)
		}
		for _, host := range b.Hosts {
			seen[host]++
		}
	}
	if len(f.batches) != 10 || len(seen) != nodes+1 {
		t.Errorf("%d batches over %d hosts, want 10 over %d", len(f.batches), len(seen), nodes+1)
	}
	for host, n := range seen {
		if n != 1 {
			t.Errorf("%s in %d batches", host, n)
		}
	}
	if c := h.Nodes; c == nil || c.Total != nodes+1 || c.OK != nodes+1-3 || c.Unreachable != 3 || c.Failed != 0 {
		t.Errorf("counts %+v", h.Nodes)
	}
	var problems []string
	for _, p := range h.NodeProblems {
		problems = append(problems, p.Host)
	}
	if want := []string{"nid000007-nmn", "nid000512-nmn", "nid000950-nmn"}; !slices.Equal(problems, want) {
		t.Errorf("problems %v, want %v in batch order", problems, want)
	}
	if h.OrcaUnitCounts["cray-dvs-orca"] != nodes+1-3 {
		t.Errorf("unit counts %v", h.OrcaUnitCounts)
	}
	if len(f.verified) != nodes-3 || f.verified[0] != "x1000c0s1b0n0" || f.verified[len(f.verified)-1] != "x1000c0s949b0n0" {
		t.Errorf("verified %d xnames (%v..), want the %d computes that restarted, in order", len(f.verified), f.verified[:min(3, len(f.verified))], nodes-3)
	}
	if s := stepOf(h, orca.StepRestartOrca); !strings.Contains(s.Message, fmt.Sprintf("restarted cray-dvs-orca (else cray-orca) on %d of %d nodes", nodes+1-3, nodes+1)) {
		t.Errorf("restart-orca: %q", s.Message)
	}
}

// TestOrcaFailingBatchCancelsTheOthers: a batch that fails fails the step
// with its error; the workflow cancels the batches still running and
// starts no other.
func TestOrcaFailingBatchCancelsTheOthers(t *testing.T) {
	watch := &batchWatch{}
	var mu sync.Mutex
	var cancelRequested []string
	h, f := inFlightRun(t, 800, 100, 3, nil, func(ctx context.Context, b orca.RestartBatch) error {
		if b.Batch == 2 {
			watch.start(b.Batch)
			time.Sleep(50 * time.Millisecond)
			watch.end(b.Batch)
			return temporal.NewNonRetryableApplicationError("ssh runner broke", "SSHBroken", nil)
		}
		return watch.hold(ctx, b.Batch, 3*time.Second)
	}, func(env *testsuite.TestWorkflowEnvironment) {
		env.SetOnActivityCanceledListener(func(info *activity.Info) {
			mu.Lock()
			defer mu.Unlock()
			cancelRequested = append(cancelRequested, info.ActivityType.Name)
		})
	})
	if h.State != api.Failed || !strings.Contains(stepOf(h, orca.StepRestartOrca).Message, "ssh runner broke") {
		t.Fatalf("hmnfd %s, restart-orca %+v: want failed with the batch's error", h.State, stepOf(h, orca.StepRestartOrca))
	}
	mu.Lock()
	if !slices.Equal(cancelRequested, []string{api.ActivityRestartOrca, api.ActivityRestartOrca}) {
		t.Errorf("activities canceled by the workflow: %v, want the two other RestartOrca batches", cancelRequested)
	}
	mu.Unlock()
	// (The test environment does not cancel a mocked activity's context;
	// that the fan-out stops on cancel is sshfan's test.)
	watch.mu.Lock()
	started := slices.Sorted(slices.Values(watch.started))
	watch.mu.Unlock()
	if !slices.Equal(started, []int{1, 2, 3}) {
		t.Errorf("batches started %v, want 1 to 3 only", started)
	}
	if len(f.verified) != 0 {
		t.Error("subscriptions verified after a failed restart")
	}
}

// TestOrcaRunBeforeTheChangeRunsOneBatchAtATime: a run whose history has
// no orca-batches-in-flight marker keeps the sequential path.
func TestOrcaRunBeforeTheChangeRunsOneBatchAtATime(t *testing.T) {
	watch := &batchWatch{}
	var asked []string
	h, f := inFlightRun(t, 500, 100, 4, nil, func(ctx context.Context, b orca.RestartBatch) error {
		return watch.hold(ctx, b.Batch, 20*time.Millisecond)
	}, func(env *testsuite.TestWorkflowEnvironment) {
		env.OnGetVersion(orca.ChangeBatchesInFlight, workflow.DefaultVersion, 1).Return(func(string, workflow.Version, workflow.Version) workflow.Version {
			asked = append(asked, orca.ChangeBatchesInFlight)
			return workflow.DefaultVersion
		})
	})
	if h.State != api.Done || len(f.batches) != 6 {
		t.Fatalf("hmnfd %s: %s; %d batches", h.State, h.Message, len(f.batches))
	}
	if len(asked) == 0 {
		t.Fatal("the restart-orca step never asked for version " + orca.ChangeBatchesInFlight)
	}
	if watch.peak != 1 {
		t.Errorf("%d batches ran at once on the path recorded before %s, want 1", watch.peak, orca.ChangeBatchesInFlight)
	}
	if slices.Compare(watch.started, []int{1, 2, 3, 4, 5, 6}) != 0 {
		t.Errorf("batches started %v, want in order", watch.started)
	}
}
