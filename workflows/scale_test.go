package workflows

import (
	"context"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	commonpb "go.temporal.io/api/common/v1"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/worker"

	"github.com/csmops/etcd-repopulate/activities"
	"github.com/csmops/etcd-repopulate/internal/api"
	"github.com/csmops/etcd-repopulate/procedures/orca"
)

// measuringConverter is the default data converter that remembers the
// largest payload it encoded per Go type: every signal argument, query
// answer, workflow result and activity input and result passes through it.
type measuringConverter struct {
	converter.DataConverter
	mu      sync.Mutex
	largest map[string]int
	encoded map[string]int
}

func newMeasuringConverter() *measuringConverter {
	return &measuringConverter{DataConverter: converter.GetDefaultDataConverter(), largest: map[string]int{}, encoded: map[string]int{}}
}

func (m *measuringConverter) record(v any, p *commonpb.Payload) {
	name := fmt.Sprint(reflect.TypeOf(v))
	m.mu.Lock()
	defer m.mu.Unlock()
	m.largest[name] = max(m.largest[name], len(p.GetData()))
	m.encoded[name]++
}

func (m *measuringConverter) ToPayload(v any) (*commonpb.Payload, error) {
	p, err := m.DataConverter.ToPayload(v)
	if err == nil {
		m.record(v, p)
	}
	return p, err
}

func (m *measuringConverter) ToPayloads(vs ...any) (*commonpb.Payloads, error) {
	ps, err := m.DataConverter.ToPayloads(vs...)
	if err == nil {
		for i, p := range ps.GetPayloads() {
			m.record(vs[i], p)
		}
	}
	return ps, err
}

// biggest is the largest payload seen and its type.
func (m *measuringConverter) biggest(skip ...string) (string, int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	name, size := "", 0
	for n, s := range m.largest {
		if s > size && !slices.Contains(skip, n) {
			name, size = n, s
		}
	}
	return name, size
}

// payloadWarnBytes is 256 KiB: the size Temporal warns about (the hard limit is 2 MiB).
const payloadWarnBytes = 256 << 10

// discoveryAndCheck are the payloads that held one xname per node before
// change orca-nid-ranges (about 1 MB at 50,000 nodes); they are logged.
var discoveryAndCheck = []string{fmt.Sprint(reflect.TypeOf(orca.OrcaTargets{})), fmt.Sprint(reflect.TypeOf(orca.ComputeSubscriptionsRequest{})), fmt.Sprint(reflect.TypeOf(orca.VerifyResult{}))}

// scaleRun runs hmnfd over nodes that all fail and returns the payload
// sizes and the history events it would write.
func scaleRun(t *testing.T, nodes int, allFail bool) (*measuringConverter, int) {
	t.Helper()
	env, _ := newEnv(t, func(f *kubeFake) {
		f.nodes, f.allFail = nodes, allFail
		// A reason as long as RestartOrca keeps one (activities.MaxReasonBytes).
		f.failReason = strings.Repeat("r", activities.MaxReasonBytes)
		f.planHook = func(p *api.ServicePlan) {
			if p.HMNFD != nil {
				p.HMNFD.MaxFailedPercent = 100 // every node fails: the service still ends done, with the report
			}
		}
	})
	dc := newMeasuringConverter()
	env.SetDataConverter(dc)
	// Tens of thousands of nodes under -race on a shared machine: the test
	// environment's wall-clock bounds (3s idle, 1s per workflow task) are
	// for small tests, not for this one's setup and encoding.
	env.SetTestTimeout(2 * time.Minute)
	env.SetWorkerOptions(worker.Options{DeadlockDetectionTimeout: time.Minute})
	var mu sync.Mutex
	activityRuns, timers := 0, 0
	env.SetOnActivityStartedListener(func(*activity.Info, context.Context, converter.EncodedValues) {
		mu.Lock()
		activityRuns++
		mu.Unlock()
	})
	env.SetOnTimerScheduledListener(func(string, time.Duration) { timers++ })
	env.ExecuteWorkflow(api.RepopulateWorkflow, api.Request{Services: []string{"hmnfd"}})
	var report api.Report
	if err := env.GetWorkflowResult(&report); err != nil {
		t.Fatalf("run: %v", err)
	}
	h := serviceState(t, report, api.HMNFD)
	if failed := map[bool]int{true: nodes + 1}[allFail]; h.Nodes == nil || h.Nodes.Unreachable != failed || len(h.NodeProblems) != min(failed, api.NodeProblemsInStatus) {
		t.Fatalf("hmnfd at %d nodes: counts %+v, %d problems in status", nodes, h.Nodes, len(h.NodeProblems))
	}
	// Progress signals: one per status the child encoded (each publish),
	// less the query answers and results, which are not signals: an upper bound.
	signals := dc.encoded[fmt.Sprint(reflect.TypeOf(api.ServiceStatus{}))]
	// History events, estimated from what the server would record: per
	// activity scheduled, started, completed and the workflow task it wakes
	// (3 more); per signal initiated and signaled in the child, signaled in
	// the parent, and a workflow task on each side; per timer started,
	// fired and a workflow task; 20 for starting and ending both workflows.
	events := 6*activityRuns + 11*signals + 5*timers + 20
	return dc, events
}

// TestPayloadsStaySmallWhenEveryNodeFails: at 10,000 nodes that all fail,
// the status (signal argument, query answer, result) and every batch stay
// under 256 KiB; before, one hmnfd status was 3.19 MB.
func TestPayloadsStaySmallWhenEveryNodeFails(t *testing.T) {
	dc, events := scaleRun(t, 10000, true)
	name, size := dc.biggest()
	t.Logf("10,000 nodes all failing: largest payload %s %d bytes; per type %v; ~%d history events", name, size, dc.largest, events)
	if size > payloadWarnBytes {
		t.Errorf("payload %s is %d bytes at 10,000 failing nodes, over 256 KiB", name, size)
	}
}

// TestHistoryAtScale: 10,000 and 50,000 simulated nodes stay within 10
// history events per 100 nodes and every payload under 256 KiB (Temporal's
// server warns from 512 KB); the figures at 1,000, 10,000 and 50,000 are
// logged for the report.
func TestHistoryAtScale(t *testing.T) {
	if testing.Short() {
		t.Skip("50,000 nodes take a few seconds")
	}
	for _, c := range []struct {
		nodes   int
		allFail bool
	}{{1000, true}, {10000, true}, {50000, true}, {10000, false}, {50000, false}} {
		nodes := c.nodes
		dc, events := scaleRun(t, nodes, c.allFail)
		name, size := dc.biggest()
		t.Logf("%d nodes, all failing %v: ~%d history events (%.2f per 100 nodes); largest payload %s %d bytes; discovery result %d, check input %d, check result %d bytes",
			nodes, c.allFail, events, float64(events)*100/float64(nodes), name, size, dc.largest[discoveryAndCheck[0]], dc.largest[discoveryAndCheck[1]], dc.largest[discoveryAndCheck[2]])
		// At 1,000 nodes the run's fixed cost (preflight, steps, status
		// reports) outweighs the per-node one; the bound is for the scale.
		if nodes >= 10000 && events*100 > 10*nodes {
			t.Errorf("%d nodes: ~%d history events, over 10 per 100 nodes", nodes, events)
		}
		if size > payloadWarnBytes {
			t.Errorf("%d nodes: %s is %d bytes, over 256 KiB", nodes, name, size)
		}
	}
}
