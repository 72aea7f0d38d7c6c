package orca

import (
	"fmt"
	"time"

	"go.temporal.io/sdk/workflow"

	"github.com/csmops/etcd-repopulate/internal/api"
	"github.com/csmops/etcd-repopulate/workflows/procedure"
)

// ChangeBatchesInFlight is the workflow.GetVersion change that runs several
// RestartOrca batches at once; runs recorded before it run them one after
// another.
const ChangeBatchesInFlight = "orca-batches-in-flight"

// restartInFlight runs the batches with up to inFlight of them at once,
// starting the next as soon as one ends, so that a batch's slowest nodes
// no longer leave the worker's SSH width idle until the next batch starts
// (the batches share the width: sshfan.Runner). Results are folded in the
// order the batches end, which the history fixes. The first batch that
// fails cancels the others and its error is returned.
func restartInFlight(ctx workflow.Context, batches, inFlight int, batch func(int) RestartBatch, tally *restartTally) error {
	ctx, cancel := workflow.WithCancel(ctx)
	defer cancel()
	type ended struct {
		i   int
		res BatchResult
		err error
	}
	sel := workflow.NewSelector(ctx)
	var last ended
	running, next := 0, 0
	start := func() {
		i := next
		next++
		running++
		sel.AddFuture(workflow.ExecuteActivity(ctx, api.ActivityRestartOrca, batch(i)), func(f workflow.Future) {
			last = ended{i: i}
			last.err = f.Get(ctx, &last.res)
		})
	}
	var failed error
	for running > 0 || (failed == nil && next < batches) {
		for failed == nil && next < batches && running < inFlight {
			start()
		}
		sel.Select(ctx)
		running--
		switch {
		case last.err != nil && failed == nil:
			failed = last.err
			cancel() // the batches still running end canceled; wait for them below
		case last.err == nil:
			tally.fold(ctx, last.i, len(batch(last.i).Hosts), last.res)
		}
	}
	return failed
}

// restartTally folds batch results into the step's status: counts, the
// first problems, "x/N nodes done", and a report to the parent at most
// every progressInterval. Lists are kept per batch and read in batch
// order, so the result does not depend on the order batches ended in.
type restartTally struct {
	w          *procedure.Run
	units      []string
	counts     api.NodeCounts
	done       int            // nodes of the batches folded
	results    []*BatchResult // by batch; nil until folded
	lastReport time.Time
}

func newRestartTally(w *procedure.Run, now time.Time, total, batches int, units []string) *restartTally {
	return &restartTally{w: w, units: units, counts: api.NodeCounts{Total: total}, results: make([]*BatchResult, batches), lastReport: now}
}

// fold adds batch i (of size nodes) to the tally.
func (t *restartTally) fold(ctx workflow.Context, i, size int, res BatchResult) {
	t.results[i] = &res
	t.done += size
	t.counts.OK += len(res.OK)
	for _, p := range res.Problems {
		if p.Status == "unreachable" {
			t.counts.Unreachable++
		} else {
			t.counts.Failed++
		}
	}
	// Status crosses Temporal as signal, query answer and result: counts
	// and the first problems only, whatever the node count. Every problem
	// is in this child's RestartOrca results, which repopulate report
	// --nodes reads from history.
	counts := t.counts
	t.w.Status.Nodes, t.w.Status.NodeProblems = &counts, t.firstProblems(api.NodeProblemsInStatus)
	s := t.w.Find(StepRestartOrca)
	s.Message = fmt.Sprintf("%d/%d nodes done (%d ok, %d failed, %d unreachable)", t.done, t.counts.Total, t.counts.OK, t.counts.Failed, t.counts.Unreachable)
	// Tell the parent at most every progressInterval: each report costs
	// history events, and thousands of nodes make many batches.
	if now := workflow.Now(ctx); now.Sub(t.lastReport) >= progressInterval {
		t.lastReport = now
		t.w.Publish(ctx)
	}
}

// folded lists the folded batches' results in batch order.
func (t *restartTally) folded() []*BatchResult {
	var out []*BatchResult
	for _, r := range t.results {
		if r != nil {
			out = append(out, r)
		}
	}
	return out
}

func (t *restartTally) firstProblems(n int) []api.NodeProblem {
	var out []api.NodeProblem
	for _, r := range t.folded() {
		if len(out) >= n {
			break
		}
		out = append(out, r.Problems[:min(len(r.Problems), n-len(out))]...)
	}
	return out
}

func (t *restartTally) problems() []api.NodeProblem {
	var out []api.NodeProblem
	for _, r := range t.folded() {
		out = append(out, r.Problems...)
	}
	return out
}

func (t *restartTally) ok() []string {
	var out []string
	for _, r := range t.folded() {
		out = append(out, r.OK...)
	}
	return out
}

// restarted lists, per unit, the hosts that unit was restarted on.
func (t *restartTally) restarted() map[string][]string {
	out := map[string][]string{}
	for _, r := range t.folded() {
		for _, u := range t.units {
			if hs := r.Restarted[u]; len(hs) > 0 {
				out[u] = append(out[u], hs...)
			}
		}
	}
	return out
}
