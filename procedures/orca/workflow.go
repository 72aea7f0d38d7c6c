// Package orca is the runbook's HMNFD section: restart the orca daemon on
// the compute nodes and NCNs so that they subscribe to HMNFD again, after
// restarting HMNFD's own pods (through restartpods) when it is not ready.
//
// The fan-out is split into batches (services.hmnfd.batchSize nodes), one
// durable RestartOrca activity each, whose heartbeats carry the nodes done
// so a retried batch skips them. Up to services.hmnfd.batchesInFlight
// batches run at once and the next starts as soon as one ends; on a worker
// they share one sshfan.Runner, whose ssh.concurrency connections go to
// the batches in the order they started. So the width stays busy across
// batch boundaries: a batch's slowest node holds one connection, not the
// start of the next batch, and a node taking 10 s costs about 10 s once
// rather than once per batch.
package orca

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/csmops/etcd-repopulate/activities"
	"github.com/csmops/etcd-repopulate/internal/api"
	"github.com/csmops/etcd-repopulate/procedures/restartpods"
	"github.com/csmops/etcd-repopulate/workflows/procedure"
)

// Steps of restart-orca.
const (
	StepDiscoverNodes = "discover-nodes"
	StepCheckHMNFD    = "check-hmnfd-ready"
	StepRestartHMNFD  = "restart-hmnfd-pods"
	StepWaitHMNFD     = "wait-hmnfd-ready"
	StepRestartOrca   = "restart-orca"
	StepVerifySubs    = "verify-subscriptions"
	StepCompareSubs   = "compare-saved-subscriptions"
)

// Procedure restarts orca and checks the subscriptions.
var Procedure = procedure.Procedure{
	Defaults: defaults,
	Name:     api.RestartOrca,
	Steps:    steps,
	Run:      Run,
	Needs: procedure.Needs{Kube: procedure.HMNFDPods, CSMAPI: true, SSH: true,
		Note: func(v api.APIVersions) string { return fmt.Sprintf("HMNFD %s", v.HMNFDVersion()) }},
	Activities: named,
	Proof: func(in procedure.Input) (string, string) {
		if slices.Contains(steps(in), StepCompareSubs) {
			return StepCompareSubs, "HMNFD subscriptions listed again, against the snapshot's subscribed xnames"
		}
		return StepVerifySubs, "HMNFD subscriptions listed again for every restarted compute node"
	},
}

// steps: HMNFD's readiness is checked on plans that name its pods, and the
// subscriptions are compared with a snapshot that lists some.
func steps(in procedure.Input) []string {
	list := []string{StepDiscoverNodes}
	if checksHMNFDReadiness(in.Plan) {
		list = append(list, StepCheckHMNFD, StepRestartHMNFD, StepWaitHMNFD)
	}
	list = append(list, StepRestartOrca, StepVerifySubs)
	if in.Snapshot != nil && len(in.Snapshot.SubscribedXnames) > 0 {
		list = append(list, StepCompareSubs)
	}
	return list
}

// checksHMNFDReadiness: plans made since HMNFD's readiness was checked
// name its pods; recorded plans do not, and their runs go on without it.
func checksHMNFDReadiness(plan api.ServicePlan) bool {
	return plan.HMNFD != nil && plan.HMNFD.Pods.Selector != ""
}

// Run restarts the orca daemon on every Ready compute node and the NCNs, in
// batches of durable activities, then checks that HMNFD lists the compute
// nodes' subscriptions again.
func Run(w *procedure.Run, ctx workflow.Context) error {
	plan := w.In.Plan
	h := plan.HMNFD
	// Since orca-nid-ranges, neither discovery's result nor the
	// subscription check's input and result hold one xname per node.
	byNIDs := workflow.GetVersion(ctx, "orca-nid-ranges", workflow.DefaultVersion, 1) == 1
	discover := api.ActivityDiscoverOrcaTargets
	if byNIDs {
		discover = api.ActivityDiscoverOrcaNodes
	}
	var targets OrcaTargets
	err := w.Step(ctx, StepDiscoverNodes, procedure.ReadOptions(plan.Timings), func(ctx workflow.Context) (activities.Outcome, error) {
		err := workflow.ExecuteActivity(ctx, discover, OrcaTargetsRequest{NCNGroups: h.NCNGroups}).Get(ctx, &targets)
		return targets.Outcome, err
	})
	if err != nil {
		return err
	}
	var hosts []string
	computes := 0
	var isCompute func(string) bool
	var xnames map[string]string // before orca-nid-ranges
	var nids map[string]int
	if byNIDs {
		hosts, nids = targets.Hosts()
		computes = targets.Computes
		isCompute = func(h string) bool { _, ok := nids[h]; return ok }
	} else {
		all := targets.All()
		hosts = make([]string, len(all))
		xnames = map[string]string{}
		for i, n := range all {
			hosts[i] = n.Host
			if n.Xname != "" {
				xnames[n.Host] = n.Xname
			}
		}
		computes = len(xnames)
		isCompute = func(h string) bool { _, ok := xnames[h]; return ok }
	}
	if err := ensureHMNFDReady(w, ctx); err != nil {
		return err
	}
	units := h.OrcaUnits()
	unitText := strings.Join(units, " (else ") + strings.Repeat(")", len(units)-1)
	if w.In.DryRun {
		w.Finish(ctx, StepRestartOrca, api.Skipped, fmt.Sprintf("dry-run: would run systemctl restart %s on %d nodes (%s) in batches of %d", unitText, len(hosts), procedure.Sample(hosts, 5), h.BatchSize), 0)
		w.Finish(ctx, StepVerifySubs, api.Skipped, fmt.Sprintf("dry-run: would wait up to %s for HMNFD subscriptions of %d compute nodes", h.VerifyTimeout, computes), 0)
		return nil
	}

	batchOpts := procedure.WaitOptions(plan.Timings, h.BatchTimeout)
	batches := (len(hosts) + h.BatchSize - 1) / h.BatchSize
	tally := newRestartTally(w, workflow.Now(ctx), len(hosts), batches, units)
	batch := func(i int) RestartBatch {
		start, end := i*h.BatchSize, min((i+1)*h.BatchSize, len(hosts))
		if len(h.Units) == 0 {
			return RestartBatch{Batch: i + 1, Hosts: hosts[start:end], Unit: h.Unit} // as recorded
		}
		return RestartBatch{Batch: i + 1, Hosts: hosts[start:end], Units: units}
	}
	err = w.Step(ctx, StepRestartOrca, batchOpts, func(ctx workflow.Context) (activities.Outcome, error) {
		if workflow.GetVersion(ctx, ChangeBatchesInFlight, workflow.DefaultVersion, 1) == workflow.DefaultVersion {
			for i := range batches { // one batch after another, as recorded
				var res BatchResult
				if err := workflow.ExecuteActivity(ctx, api.ActivityRestartOrca, batch(i)).Get(ctx, &res); err != nil {
					return activities.Outcome{}, err
				}
				tally.fold(ctx, i, len(batch(i).Hosts), res)
			}
		} else if err := restartInFlight(ctx, batches, h.BatchesInFlight, batch, tally); err != nil {
			return activities.Outcome{}, err
		}
		counts, problems, restarted := tally.counts, tally.problems(), tally.restarted()
		msg := fmt.Sprintf("restarted %s on %d of %d nodes", unitText, counts.OK, counts.Total)
		if len(units) > 1 {
			var per []string
			for _, u := range units {
				per = append(per, fmt.Sprintf("%s on %d", u, len(restarted[u])))
			}
			msg += " (" + strings.Join(per, ", ") + ")"
		}
		bad := counts.Failed + counts.Unreachable
		if bad == 0 {
			return activities.Outcome{Message: msg}, nil
		}
		msg += fmt.Sprintf("; %d failed, %d unreachable: %s", counts.Failed, counts.Unreachable, problemHosts(problems, 20))
		unit := units[len(units)-1]
		if len(problems) <= maxHostsInFollowUp {
			w.Status.FollowUps = append(w.Status.FollowUps, fmt.Sprintf("restart orca by hand on the nodes that failed (the report's nodeProblems lists each with its reason): pdsh -w %s 'systemctl restart %s'", problemHosts(problems, 0), unit))
		} else {
			w.Status.FollowUps = append(w.Status.FollowUps, fmt.Sprintf("restart orca by hand on the %d nodes that failed: repopulate report %s --nodes lists each with its reason (-o json for all of them), then pdsh -w HOSTS 'systemctl restart %s'; the first %d: %s",
				len(problems), procedure.ShellWord(w.In.RunID), unit, maxHostsInFollowUp, problemHosts(problems[:maxHostsInFollowUp], 0)))
		}
		if float64(bad)*100 > h.MaxFailedPercent*float64(counts.Total) {
			return activities.Outcome{}, temporal.NewNonRetryableApplicationError(
				fmt.Sprintf("%s — more than services.hmnfd.maxFailedPercent (%g%%)", msg, h.MaxFailedPercent), ErrTooManyFailed, nil)
		}
		return activities.Outcome{Message: msg + fmt.Sprintf(" (within the %g%% allowed)", h.MaxFailedPercent)}, nil
	})
	if restarted := tally.restarted(); len(restarted) > 0 {
		// Which unit each node took, small whatever the node count.
		w.Status.OrcaUnits, w.Status.OrcaUnitCounts = map[string][]string{}, map[string]int{}
		for _, u := range units {
			if hs := restarted[u]; len(hs) > 0 {
				w.Status.OrcaUnits[u] = slices.Clone(hs[:min(len(hs), api.NodeProblemsInStatus)])
				w.Status.OrcaUnitCounts[u] = len(hs)
			}
		}
	}
	if err != nil {
		return err
	}

	var verifyNIDs []int
	var verify []string
	for _, host := range tally.ok() {
		switch {
		case !isCompute(host):
		case byNIDs:
			verifyNIDs = append(verifyNIDs, nids[host])
		default:
			verify = append(verify, xnames[host])
		}
	}
	var res VerifyResult
	err = w.Step(ctx, StepVerifySubs, procedure.WaitOptions(plan.Timings, h.VerifyTimeout), func(ctx workflow.Context) (activities.Outcome, error) {
		var err error
		if byNIDs {
			err = workflow.ExecuteActivity(ctx, api.ActivityVerifyComputeSubscriptions, ComputeSubscriptionsRequest{NIDs: NIDRanges(verifyNIDs), Budget: h.VerifyTimeout, Poll: plan.Timings.Poll, APIs: plan.APIs}).Get(ctx, &res)
		} else {
			err = workflow.ExecuteActivity(ctx, api.ActivityVerifySubscriptions, VerifyRequest{Xnames: verify, Budget: h.VerifyTimeout, Poll: plan.Timings.Poll, APIs: plan.APIs}).Get(ctx, &res)
		}
		return res.Outcome, err
	})
	if err == nil && len(res.Missing) > 0 {
		w.Status.FollowUps = append(w.Status.FollowUps, fmt.Sprintf("HMNFD has no subscription for %d restarted compute nodes: %s; check orca on them (systemctl status %s)", res.missing(), sampleMissing(res), units[len(units)-1]))
	}
	if err != nil || w.In.Snapshot == nil || len(w.In.Snapshot.SubscribedXnames) == 0 {
		return err
	}
	return compareSavedSubscriptions(w, ctx, byNIDs)
}

// ensureHMNFDReady checks, before orca is restarted, that HMNFD is ready:
// after an etcd wipe it stays not-ready, without its own HSM subscription,
// until its process restarts, so orca's subscriptions would be lost. A
// not-ready HMNFD gets its pods restarted, and the run waits until it says
// it is ready. The runbook leaves this step out.
func ensureHMNFDReady(w *procedure.Run, ctx workflow.Context) error {
	plan := w.In.Plan
	if !checksHMNFDReadiness(plan) {
		return nil
	}
	if workflow.GetVersion(ctx, "hmnfd-readiness", workflow.DefaultVersion, 1) == workflow.DefaultVersion {
		for _, name := range []string{StepCheckHMNFD, StepRestartHMNFD, StepWaitHMNFD} {
			w.Finish(ctx, name, api.Skipped, "not checked: this run started before HMNFD readiness was checked", 0)
		}
		return nil
	}
	h := plan.HMNFD
	// The check reports to the parent only when HMNFD is not ready: a
	// ready HMNFD costs the history no progress signals (restart-orca's
	// first report carries these steps).
	var check HMNFDReadiness
	w.Find(StepCheckHMNFD).Started = workflow.Now(ctx)
	err := workflow.ExecuteActivity(workflow.WithActivityOptions(ctx, procedure.ReadOptions(plan.Timings)), api.ActivityCheckHMNFDReady, HMNFDReadyRequest{}).Get(ctx, &check)
	if err != nil {
		state := api.Failed
		if temporal.IsCanceledError(err) {
			state = api.Canceled
		}
		w.Finish(ctx, StepCheckHMNFD, state, procedure.ErrorMessage(err), procedure.AttemptsSpent(err, plan.Timings))
		return err
	}
	w.Record(ctx, StepCheckHMNFD, api.Done, check.Message, check.Attempt)
	if check.Ready {
		w.Record(ctx, StepRestartHMNFD, api.Skipped, "HMNFD is ready: its pods are left alone", 0)
		w.Record(ctx, StepWaitHMNFD, api.Skipped, "HMNFD is ready", 0)
		return nil
	}
	if w.In.DryRun {
		w.Finish(ctx, StepRestartHMNFD, api.Skipped, fmt.Sprintf("dry-run: HMNFD is not ready; would restart its pods (%s)", h.Pods), 0)
		w.Finish(ctx, StepWaitHMNFD, api.Skipped, fmt.Sprintf("dry-run: would wait up to %s for HMNFD to report ready", h.PodsReadyTimeout), 0)
		return nil
	}
	var snap restartpods.PodSnapshot
	err = w.Step(ctx, StepRestartHMNFD, procedure.WaitOptions(plan.Timings, plan.Timings.Delete), func(ctx workflow.Context) (activities.Outcome, error) {
		if err := workflow.ExecuteActivity(workflow.WithActivityOptions(ctx, procedure.ReadOptions(plan.Timings)), api.ActivitySnapshotPods, h.Pods).Get(ctx, &snap); err != nil {
			return activities.Outcome{}, err
		}
		var out activities.Outcome
		err := workflow.ExecuteActivity(ctx, api.ActivityDeletePods, restartpods.DeletePodsRequest{Namespace: h.Pods.Namespace, Pods: snap.Pods}).Get(ctx, &out)
		out.Message = "HMNFD was not ready: " + out.Message
		return out, err
	})
	if err != nil {
		return err
	}
	return w.Step(ctx, StepWaitHMNFD, procedure.WaitOptions(plan.Timings, h.PodsReadyTimeout), func(ctx workflow.Context) (activities.Outcome, error) {
		timings := plan.Timings
		timings.Wait = h.PodsReadyTimeout
		var out activities.Outcome
		if err := workflow.ExecuteActivity(ctx, api.ActivityWaitPodsReplaced, restartpods.WaitPodsRequest{Pods: h.Pods, Snapshot: snap, Timings: timings}).Get(ctx, &out); err != nil {
			return out, err
		}
		var ready HMNFDReadiness
		err := workflow.ExecuteActivity(ctx, api.ActivityCheckHMNFDReady, HMNFDReadyRequest{Budget: h.PodsReadyTimeout, Poll: plan.Timings.Poll}).Get(ctx, &ready)
		ready.Message = out.Message + "; " + ready.Message
		return ready.Outcome, err
	})
}

// compareSavedSubscriptions looks once at HMNFD for every xname that had a
// subscription when the snapshot was taken; nodes that were not restarted
// (down now, not Ready) are expected to be missing and are listed for a person.
func compareSavedSubscriptions(w *procedure.Run, ctx workflow.Context, bounded bool) error {
	saved := w.In.Snapshot.SubscribedXnames
	var res VerifyResult
	err := w.Step(ctx, StepCompareSubs, procedure.ReadOptions(w.In.Plan.Timings), func(ctx workflow.Context) (activities.Outcome, error) {
		var err error
		if bounded { // a result that does not grow with the node count
			err = workflow.ExecuteActivity(ctx, api.ActivityVerifyComputeSubscriptions, ComputeSubscriptionsRequest{Xnames: saved, Budget: 0, Poll: w.In.Plan.Timings.Poll, APIs: w.In.Plan.APIs}).Get(ctx, &res)
		} else {
			err = workflow.ExecuteActivity(ctx, api.ActivityVerifySubscriptions, VerifyRequest{Xnames: saved, Budget: 0, Poll: w.In.Plan.Timings.Poll, APIs: w.In.Plan.APIs}).Get(ctx, &res)
		}
		if err == nil && len(res.Missing) == 0 {
			res.Message = fmt.Sprintf("all %d nodes subscribed in the snapshot (%s) are subscribed again", len(saved), w.In.Snapshot.Dir)
		} else if err == nil {
			res.Message = fmt.Sprintf("%d of %d nodes subscribed in the snapshot have no subscription now", res.missing(), len(saved))
		}
		return res.Outcome, err
	})
	if err == nil && len(res.Missing) > 0 {
		w.Status.FollowUps = append(w.Status.FollowUps, fmt.Sprintf("%d nodes had an HMNFD subscription in the snapshot (%s) and have none now: %s; once they are up, restart %s on them", res.missing(), w.In.Snapshot.Dir, sampleMissing(res), strings.Join(w.In.Plan.HMNFD.OrcaUnits(), " or ")))
	}
	return err
}

// missing counts the nodes without a subscription, also when Missing
// lists only the first of them.
func (r VerifyResult) missing() int { return max(r.MissingCount, len(r.Missing)) }

// sampleMissing lists up to 50 of the missing xnames and says how many more.
func sampleMissing(r VerifyResult) string {
	shown := r.Missing[:min(len(r.Missing), 50)]
	s := strings.Join(shown, ",")
	if more := r.missing() - len(shown); more > 0 {
		s += fmt.Sprintf(" and %d more", more)
	}
	return s
}

// maxHostsInFollowUp bounds the hosts a follow-up lists; beyond it the
// follow-up points to repopulate report --nodes.
const maxHostsInFollowUp = 50

// progressInterval is the least time between two progress reports of a
// fan-out to the parent; the child's own status query is always current.
const progressInterval = 10 * time.Second

// problemHosts lists the hosts of problems; n <= 0 lists all.
func problemHosts(problems []api.NodeProblem, n int) string {
	hosts := make([]string, len(problems))
	for i, p := range problems {
		hosts[i] = p.Host
	}
	if n <= 0 {
		return strings.Join(hosts, ",")
	}
	return procedure.Sample(hosts, n)
}

// Defaults of fields an older run's plan may lack.
const (
	defaultBatchSize     = 1000
	defaultBatchTimeout  = 30 * time.Minute
	defaultVerifyTimeout = 5 * time.Minute
)

// defaults fills an older plan's zero batch size, batches in flight and
// timeouts. An older plan's BatchTimeout was computed for one batch at a
// time with the whole SSH width, so its batches still run one at a time.
func defaults(p *api.ServicePlan) {
	if p.HMNFD == nil {
		return
	}
	h := *p.HMNFD
	if h.BatchSize <= 0 {
		h.BatchSize = defaultBatchSize
	}
	if h.BatchesInFlight <= 0 {
		h.BatchesInFlight = 1
	}
	procedure.OrDefault(&h.BatchTimeout, defaultBatchTimeout)
	procedure.OrDefault(&h.VerifyTimeout, defaultVerifyTimeout)
	p.HMNFD = &h
}
