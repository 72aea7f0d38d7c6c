package workflows

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/csmops/etcd-repopulate/activities"
	"github.com/csmops/etcd-repopulate/internal/api"
	"github.com/csmops/etcd-repopulate/internal/catalog"
)

// ServiceInput is a child workflow's request.
type ServiceInput struct {
	RunID  string          `json:"runId"`
	Plan   api.ServicePlan `json:"plan"`
	DryRun bool            `json:"dryRun,omitempty"`
	// Snapshot is the part of the run's pre-rebuild snapshot this service uses.
	Snapshot *api.SnapshotInput `json:"snapshot,omitempty"`
}

// Step names, as shown in status and reports.
const (
	StepSaveJob           = "save-job"
	StepDeleteJob         = "delete-job"
	StepCreateJob         = "create-job"
	StepWaitJob           = "wait-job-complete"
	StepSnapshotPods      = "snapshot-pods"
	StepDeletePods        = "delete-pods"
	StepWaitPods          = "wait-pods-ready"
	StepSaveCluster       = "save-etcdcluster"
	StepDeleteCluster     = "delete-etcdcluster"
	StepCreateCluster     = "create-etcdcluster"
	StepWaitClusterActive = "wait-etcdcluster-running"
	StepCheckCRUS         = "check-crus-sessions"
	StepConfirmCRUS       = "confirm-crus-sessions"
	StepDiscoverNodes     = "discover-nodes"
	StepRestartOrca       = "restart-orca"
	StepVerifySubs        = "verify-subscriptions"
	StepStartFASLoader    = "start-fas-loader"
	StepWaitFASLoader     = "wait-fas-loader"
	StepCompareSubs       = "compare-saved-subscriptions"
	StepFindCPSNodes      = "find-cps-nodes"
	StepShutdownCPSNodes  = "shutdown-cps-nodes"
	StepWaitCPSNodesOff   = "wait-cps-nodes-off"
	StepBootCPSNodes      = "boot-cps-nodes"
	StepWaitCPSNodesReady = "wait-cps-nodes-ready"
	StepRestoreTemplates  = "restore-bos-templates"
	StepCheckTemplates    = "check-bos-templates"
	StepCheckHMNFD        = "check-hmnfd-ready"
	StepRestartHMNFD      = "restart-hmnfd-pods"
	StepWaitHMNFD         = "wait-hmnfd-ready"
)

// Steps lists the steps of a service in order, gates included, so that
// status shows what is still to come before it starts.
func Steps(in ServiceInput) []string {
	plan := in.Plan
	var steps []string
	switch plan.Procedure {
	case api.RerunJob:
		steps = append(steps, StepSaveJob, StepDeleteJob, StepCreateJob, StepWaitJob)
	case api.RestartPods:
		steps = append(steps, StepSnapshotPods, StepDeletePods, StepWaitPods)
	case api.RecreateEtcdCluster:
		steps = append(steps, StepSaveCluster, StepDeleteCluster, StepCreateCluster, StepWaitClusterActive)
	case api.RestartCRUS:
		steps = append(steps, StepCheckCRUS, StepSnapshotPods, StepDeletePods, StepWaitPods, StepConfirmCRUS)
	case api.RestartOrca:
		steps = append(steps, StepDiscoverNodes)
		if checksHMNFDReadiness(plan) {
			steps = append(steps, StepCheckHMNFD, StepRestartHMNFD, StepWaitHMNFD)
		}
		steps = append(steps, StepRestartOrca, StepVerifySubs)
		if in.Snapshot != nil && len(in.Snapshot.SubscribedXnames) > 0 {
			steps = append(steps, StepCompareSubs)
		}
	case api.RunFASLoaderAPI:
		steps = append(steps, StepStartFASLoader, StepWaitFASLoader)
	case api.RemountCPS:
		steps = append(steps, StepFindCPSNodes, api.GateCPSUnmount, StepShutdownCPSNodes, StepWaitCPSNodesOff, api.GateCPSReboot, StepBootCPSNodes, StepWaitCPSNodesReady)
	case api.RestoreBOSTemplates:
		if hasTemplates(in) {
			steps = append(steps, StepRestoreTemplates)
		} else {
			steps = append(steps, api.GateBOSTemplates, StepCheckTemplates)
		}
	case api.CheckBOSTemplates:
		steps = append(steps, StepCheckTemplates)
	}
	return steps
}

// checksHMNFDReadiness: plans made since HMNFD's readiness was checked
// name its pods; recorded plans do not, and their runs go on without it.
func checksHMNFDReadiness(plan api.ServicePlan) bool {
	return plan.HMNFD != nil && plan.HMNFD.Pods.Selector != ""
}

// Gates lists the approval gates of a service, in the order they are reached.
func Gates(in ServiceInput) []string {
	switch in.Plan.Procedure {
	case api.RemountCPS:
		return []string{api.GateCPSUnmount, api.GateCPSReboot}
	case api.RestoreBOSTemplates:
		if !hasTemplates(in) {
			return []string{api.GateBOSTemplates}
		}
	}
	return nil
}

func hasTemplates(in ServiceInput) bool {
	return in.Snapshot != nil && len(in.Snapshot.SessionTemplates) > 0
}

// serviceRun is one child workflow: it walks a service's plan step by step,
// answers the status query and reports each change to its parent.
type serviceRun struct {
	in     ServiceInput
	status api.ServiceStatus
	parent *workflow.Execution
	gates  *gates
	// result, when set, is the finished service's message instead of the
	// step count: a procedure that found nothing to do says why.
	result string
	// leftOff, when set, names the nodes a failed service left powered off.
	leftOff string
	// lastRefused is the latest gate decision this child refused, for its details.
	lastRefused string
}

// RepopulateService repopulates one service's data.
func RepopulateService(ctx workflow.Context, in ServiceInput) (api.ServiceStatus, error) {
	in.Plan = withDefaults(in.Plan)
	w := &serviceRun{in: in}
	if err := w.setup(ctx); err != nil {
		return api.ServiceStatus{}, err
	}
	return w.run(ctx)
}

func (w *serviceRun) setup(ctx workflow.Context) error {
	info := workflow.GetInfo(ctx)
	w.parent = info.ParentWorkflowExecution
	w.status = api.ServiceStatus{Service: w.in.Plan.Service, WorkflowID: info.WorkflowExecution.ID, State: api.Pending}
	for _, name := range Steps(w.in) {
		w.status.Steps = append(w.status.Steps, api.StepStatus{Name: name, State: api.Pending})
	}
	for _, name := range Gates(w.in) {
		w.status.Gates = append(w.status.Gates, api.GateStatus{Name: name, State: api.GatePending})
	}
	w.listenForDecisions(ctx)
	return workflow.SetQueryHandlerWithOptions(ctx, api.StatusQuery, func() (api.ServiceStatus, error) { return w.status, nil },
		workflow.QueryHandlerOptions{Description: api.StatusQueryDescription})
}

func (w *serviceRun) run(ctx workflow.Context) (api.ServiceStatus, error) {
	w.status.State = api.Running
	var err error
	switch w.in.Plan.Procedure {
	case api.RerunJob:
		err = w.recreate(ctx, activities.JobKind, StepSaveJob, StepDeleteJob, StepCreateJob, StepWaitJob)
	case api.RecreateEtcdCluster:
		err = w.recreate(ctx, activities.EtcdClusterKind, StepSaveCluster, StepDeleteCluster, StepCreateCluster, StepWaitClusterActive)
	case api.RestartPods:
		err = w.restartPods(ctx)
	case api.RestartCRUS:
		err = w.restartCRUS(ctx)
	case api.RestartOrca:
		err = w.restartOrca(ctx)
	case api.RunFASLoaderAPI:
		err = w.runFASLoader(ctx)
	case api.RemountCPS:
		err = w.remountCPS(ctx)
	case api.RestoreBOSTemplates:
		err = w.restoreBOS(ctx)
	case api.CheckBOSTemplates:
		err = w.checkBOS(ctx)
	default:
		err = temporal.NewNonRetryableApplicationError(fmt.Sprintf("service %s has no procedure %q", w.in.Plan.Service, w.in.Plan.Procedure), api.InvalidRequestError, nil)
	}
	w.status.FollowUps = append(w.status.FollowUps, followUps(w.in)...)
	if err == errGateSkipped {
		err = nil
		w.status.State = api.Skipped
		w.status.Message = w.summary()
	}
	switch {
	case err == nil && w.status.State == api.Skipped:
		// the procedure found the service absent and said why
	case err == nil:
		w.status.State = api.Done
		w.status.Message = w.summary()
		if w.result != "" {
			w.status.Message = w.result
		}
	case temporal.IsCanceledError(err):
		w.status.State = api.Canceled
		w.status.Message = w.summary()
	default:
		w.status.State = api.Failed
		w.status.Message = w.summary()
		if w.leftOff != "" {
			w.status.Message += "; " + w.leftOff
		}
	}
	// The last report goes out on a disconnected context: a canceled child
	// still tells its parent where it stopped.
	dctx, _ := workflow.NewDisconnectedContext(ctx)
	w.publish(dctx)
	switch {
	case err == nil:
		return w.status, nil
	case w.status.State == api.Canceled:
		return w.status, temporal.NewCanceledError(w.status)
	}
	return w.status, temporal.NewNonRetryableApplicationError(
		fmt.Sprintf("%s: %s", w.in.Plan.Service, w.status.Message), api.ServiceFailedError, err, w.status)
}

// recreate is the runbook's save → delete → create → wait for a Job or an
// EtcdCluster. The saved object is an activity result, so it is in history
// before the delete runs. Once the delete has started, delete and create run
// on a disconnected context: canceling the run never leaves the object deleted.
func (w *serviceRun) recreate(ctx workflow.Context, kind activities.Kind, saveStep, deleteStep, createStep, waitStep string) error {
	plan := w.in.Plan
	var saved activities.SavedObject
	err := w.step(ctx, saveStep, readOptions(plan.Timings), func(ctx workflow.Context) (activities.Outcome, error) {
		err := workflow.ExecuteActivity(ctx, api.ActivitySaveObject, activities.ObjectRequest{Kind: kind, Ref: plan.Object}).Get(ctx, &saved)
		return saved.Outcome, err
	})
	if err != nil {
		return err
	}
	if w.in.DryRun {
		w.finish(ctx, deleteStep, api.Skipped, fmt.Sprintf("dry-run: would delete %s %s (uid %s) with background propagation and wait up to %s until it is gone", kind, plan.Object, saved.UID, plan.Timings.Delete), 0)
		w.finish(ctx, createStep, api.Skipped, fmt.Sprintf("dry-run: would create %s %s from the saved copy without %s", kind, plan.Object, strings.Join(saved.Stripped, ", ")), 0)
		w.finish(ctx, waitStep, api.Skipped, fmt.Sprintf("dry-run: would wait up to %s for it to be %s", plan.Timings.Wait, healthyWord(kind)), 0)
		return nil
	}
	if err := ctx.Err(); err != nil {
		return err
	}

	restoreCtx, _ := workflow.NewDisconnectedContext(ctx)
	err = w.step(restoreCtx, deleteStep, waitOptions(plan.Timings, plan.Timings.Delete), func(ctx workflow.Context) (activities.Outcome, error) {
		var out activities.Outcome
		err := workflow.ExecuteActivity(ctx, api.ActivityDeleteObject, activities.DeleteRequest{Saved: saved, Timings: plan.Timings}).Get(ctx, &out)
		return out, err
	})
	if err != nil {
		w.keepSavedCopy(saved, "the delete may have happened")
		return err
	}
	var created activities.Created
	err = w.step(restoreCtx, createStep, readOptions(plan.Timings), func(ctx workflow.Context) (activities.Outcome, error) {
		err := workflow.ExecuteActivity(ctx, api.ActivityCreateObject, activities.CreateRequest{Saved: saved, RunID: w.in.RunID}).Get(ctx, &created)
		return created.Outcome, err
	})
	if err != nil {
		w.keepSavedCopy(saved, "it was deleted and could not be created again")
		return err
	}

	wait := api.ActivityWaitJobComplete
	if kind == activities.EtcdClusterKind {
		wait = api.ActivityWaitEtcdClusterRunning
	}
	return w.step(ctx, waitStep, waitOptions(plan.Timings, plan.Timings.Wait), func(ctx workflow.Context) (activities.Outcome, error) {
		var out activities.Outcome
		err := workflow.ExecuteActivity(ctx, wait, activities.WaitRequest{Kind: kind, Ref: plan.Object, UID: created.UID, Timings: plan.Timings}).Get(ctx, &out)
		return out, err
	})
}

// keepSavedCopy puts the saved manifest into the report when the object may
// be gone, so that a person can restore it with kubectl create -f.
func (w *serviceRun) keepSavedCopy(saved activities.SavedObject, why string) {
	w.status.SavedManifest = saved.Manifest
	w.status.FollowUps = append(w.status.FollowUps, fmt.Sprintf(
		"%s %s: %s; its saved copy (uid %s) is in this report's JSON (savedManifest): strip %s and kubectl create -f it if it is still missing",
		saved.Kind, saved.Ref, why, saved.UID, strings.Join(saved.Stripped, ", ")))
}

// restartPods deletes the service's pods and waits for Ready replacements.
func (w *serviceRun) restartPods(ctx workflow.Context) error {
	plan := w.in.Plan
	var snap activities.PodSnapshot
	err := w.step(ctx, StepSnapshotPods, readOptions(plan.Timings), func(ctx workflow.Context) (activities.Outcome, error) {
		err := workflow.ExecuteActivity(ctx, api.ActivitySnapshotPods, plan.Pods).Get(ctx, &snap)
		return snap.Outcome, err
	})
	if err != nil {
		return err
	}
	if w.in.DryRun {
		var pods []string
		for _, p := range snap.Pods {
			pods = append(pods, fmt.Sprintf("%s (uid %s)", p.Name, p.UID))
		}
		w.finish(ctx, StepDeletePods, api.Skipped, fmt.Sprintf("dry-run: would delete pods %s in %s", strings.Join(pods, ", "), plan.Pods.Namespace), 0)
		w.finish(ctx, StepWaitPods, api.Skipped, fmt.Sprintf("dry-run: would wait up to %s for %d Ready replacements", plan.Timings.Wait, snap.Ready), 0)
		return nil
	}
	err = w.step(ctx, StepDeletePods, waitOptions(plan.Timings, plan.Timings.Delete), func(ctx workflow.Context) (activities.Outcome, error) {
		var out activities.Outcome
		err := workflow.ExecuteActivity(ctx, api.ActivityDeletePods, activities.DeletePodsRequest{Namespace: plan.Pods.Namespace, Pods: snap.Pods}).Get(ctx, &out)
		return out, err
	})
	if err != nil {
		return err
	}
	return w.step(ctx, StepWaitPods, waitOptions(plan.Timings, plan.Timings.Wait), func(ctx workflow.Context) (activities.Outcome, error) {
		var out activities.Outcome
		err := workflow.ExecuteActivity(ctx, api.ActivityWaitPodsReplaced, activities.WaitPodsRequest{Pods: plan.Pods, Snapshot: snap, Timings: plan.Timings}).Get(ctx, &out)
		return out, err
	})
}

// restartCRUS is the runbook's CRUS section: look at the sessions (follow
// unfinished ones until they complete or are stuck), restart the cray-crus
// pod so it rediscovers what etcd holds again, and confirm it lists the
// sessions again. CRUS not installed skips the service.
func (w *serviceRun) restartCRUS(ctx workflow.Context) error {
	plan := w.in.Plan
	budget := plan.CRUS.StuckAfter + plan.CRUS.Poll*2
	if w.in.DryRun {
		budget = 0 // list once; do not wait in a dry-run
	}
	var check activities.CRUSCheck
	err := w.step(ctx, StepCheckCRUS, waitOptions(plan.Timings, budget), func(ctx workflow.Context) (activities.Outcome, error) {
		err := workflow.ExecuteActivity(ctx, api.ActivityCheckCRUSSessions, activities.CRUSCheckRequest{Plan: *plan.CRUS, Budget: budget}).Get(ctx, &check)
		return check.Outcome, err
	})
	if err != nil {
		return err
	}
	if check.NotInstalled {
		for _, name := range Steps(w.in)[1:] {
			w.finish(ctx, name, api.Skipped, "CRUS is not installed", 0)
		}
		w.status.State, w.status.Message = api.Skipped, "CRUS is not installed on this system (its API answered 404)"
		return nil
	}
	var ids []string
	for _, s := range check.Sessions {
		ids = append(ids, s.UpgradeID)
		if s.Stuck {
			w.status.FollowUps = append(w.status.FollowUps, fmt.Sprintf("CRUS session %s is stuck in %s (last: %s): describe it (cray crus session describe %s) and recreate it if it failed", s.UpgradeID, s.State, strings.Join(s.LastMessage, " / "), s.UpgradeID))
		}
	}
	if err := w.restartPods(ctx); err != nil {
		return err
	}
	if w.in.DryRun {
		w.finish(ctx, StepConfirmCRUS, api.Skipped, fmt.Sprintf("dry-run: would check that CRUS lists its %d sessions again", len(ids)), 0)
		return nil
	}
	return w.step(ctx, StepConfirmCRUS, waitOptions(plan.Timings, plan.Timings.Wait), func(ctx workflow.Context) (activities.Outcome, error) {
		var out activities.Outcome
		err := workflow.ExecuteActivity(ctx, api.ActivityConfirmCRUSSessions, activities.CRUSConfirmRequest{UpgradeIDs: ids, Budget: plan.Timings.Wait, Poll: plan.Timings.Poll}).Get(ctx, &out)
		return out, err
	})
}

// restartOrca is the runbook's HMNFD section: restart the orca daemon on
// every Ready compute node and the NCNs, in batches of durable activities,
// then check that HMNFD lists the compute nodes' subscriptions again.
func (w *serviceRun) restartOrca(ctx workflow.Context) error {
	plan := w.in.Plan
	h := plan.HMNFD
	var targets activities.OrcaTargets
	err := w.step(ctx, StepDiscoverNodes, readOptions(plan.Timings), func(ctx workflow.Context) (activities.Outcome, error) {
		err := workflow.ExecuteActivity(ctx, api.ActivityDiscoverOrcaTargets, activities.OrcaTargetsRequest{NCNGroups: h.NCNGroups}).Get(ctx, &targets)
		return targets.Outcome, err
	})
	if err != nil {
		return err
	}
	all := targets.All()
	hosts := make([]string, len(all))
	xnames := map[string]string{}
	for i, n := range all {
		hosts[i] = n.Host
		if n.Xname != "" {
			xnames[n.Host] = n.Xname
		}
	}
	if err := w.ensureHMNFDReady(ctx); err != nil {
		return err
	}
	units := h.OrcaUnits()
	unitText := strings.Join(units, " (else ") + strings.Repeat(")", len(units)-1)
	if w.in.DryRun {
		w.finish(ctx, StepRestartOrca, api.Skipped, fmt.Sprintf("dry-run: would run systemctl restart %s on %d nodes (%s) in batches of %d", unitText, len(hosts), sample(hosts, 5), h.BatchSize), 0)
		w.finish(ctx, StepVerifySubs, api.Skipped, fmt.Sprintf("dry-run: would wait up to %s for HMNFD subscriptions of %d compute nodes", h.VerifyTimeout, len(xnames)), 0)
		return nil
	}

	counts := api.NodeCounts{Total: len(hosts)}
	restarted := map[string][]string{}
	var ok []string
	var problems []api.NodeProblem
	batchOpts := waitOptions(plan.Timings, h.BatchTimeout)
	lastReport := workflow.Now(ctx)
	err = w.step(ctx, StepRestartOrca, batchOpts, func(ctx workflow.Context) (activities.Outcome, error) {
		for start, batch := 0, 1; start < len(hosts); start, batch = start+h.BatchSize, batch+1 {
			end := min(start+h.BatchSize, len(hosts))
			var res activities.BatchResult
			req := activities.RestartBatch{Batch: batch, Hosts: hosts[start:end], Units: units}
			if len(h.Units) == 0 {
				req = activities.RestartBatch{Batch: batch, Hosts: hosts[start:end], Unit: h.Unit} // as recorded
			}
			if err := workflow.ExecuteActivity(ctx, api.ActivityRestartOrca, req).Get(ctx, &res); err != nil {
				return activities.Outcome{}, err
			}
			ok = append(ok, res.OK...)
			for _, u := range units {
				if hs := res.Restarted[u]; len(hs) > 0 {
					restarted[u] = append(restarted[u], hs...)
				}
			}
			problems = append(problems, res.Problems...)
			counts.OK = len(ok)
			for _, p := range res.Problems {
				if p.Status == "unreachable" {
					counts.Unreachable++
				} else {
					counts.Failed++
				}
			}
			// Status crosses Temporal as signal, query answer and result:
			// counts and the first problems only, whatever the node count.
			// Every problem is in this child's RestartOrca results, which
			// repopulate report --nodes reads from history.
			w.status.Nodes, w.status.NodeProblems = &counts, slices.Clone(problems[:min(len(problems), api.NodeProblemsInStatus)])
			s := w.find(StepRestartOrca)
			s.Message = fmt.Sprintf("%d/%d nodes done (%d ok, %d failed, %d unreachable)", end, len(hosts), counts.OK, counts.Failed, counts.Unreachable)
			// Tell the parent at most every progressInterval: each report
			// costs history events, and thousands of nodes make many batches.
			if now := workflow.Now(ctx); now.Sub(lastReport) >= progressInterval {
				lastReport = now
				w.publish(ctx)
			}
		}
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
			w.status.FollowUps = append(w.status.FollowUps, fmt.Sprintf("restart orca by hand on the nodes that failed (the report's nodeProblems lists each with its reason): pdsh -w %s 'systemctl restart %s'", problemHosts(problems, 0), unit))
		} else {
			w.status.FollowUps = append(w.status.FollowUps, fmt.Sprintf("restart orca by hand on the %d nodes that failed: repopulate report %s --nodes lists each with its reason (-o json for all of them), then pdsh -w HOSTS 'systemctl restart %s'; the first %d: %s",
				len(problems), shellWord(w.in.RunID), unit, maxHostsInFollowUp, problemHosts(problems[:maxHostsInFollowUp], 0)))
		}
		if float64(bad)*100 > h.MaxFailedPercent*float64(counts.Total) {
			return activities.Outcome{}, temporal.NewNonRetryableApplicationError(
				fmt.Sprintf("%s — more than services.hmnfd.maxFailedPercent (%g%%)", msg, h.MaxFailedPercent), activities.ErrTooManyFailed, nil)
		}
		return activities.Outcome{Message: msg + fmt.Sprintf(" (within the %g%% allowed)", h.MaxFailedPercent)}, nil
	})
	if len(restarted) > 0 {
		// Which unit each node took, small whatever the node count.
		w.status.OrcaUnits, w.status.OrcaUnitCounts = map[string][]string{}, map[string]int{}
		for _, u := range units {
			if hs := restarted[u]; len(hs) > 0 {
				w.status.OrcaUnits[u] = slices.Clone(hs[:min(len(hs), api.NodeProblemsInStatus)])
				w.status.OrcaUnitCounts[u] = len(hs)
			}
		}
	}
	if err != nil {
		return err
	}

	var verify []string
	for _, host := range ok {
		if x, isCompute := xnames[host]; isCompute {
			verify = append(verify, x)
		}
	}
	var res activities.VerifyResult
	err = w.step(ctx, StepVerifySubs, waitOptions(plan.Timings, h.VerifyTimeout), func(ctx workflow.Context) (activities.Outcome, error) {
		err := workflow.ExecuteActivity(ctx, api.ActivityVerifySubscriptions, activities.VerifyRequest{Xnames: verify, Budget: h.VerifyTimeout, Poll: plan.Timings.Poll, APIs: plan.APIs}).Get(ctx, &res)
		return res.Outcome, err
	})
	if err == nil && len(res.Missing) > 0 {
		w.status.FollowUps = append(w.status.FollowUps, fmt.Sprintf("HMNFD has no subscription for %d restarted compute nodes: %s; check orca on them (systemctl status %s)", len(res.Missing), sample(res.Missing, 50), units[len(units)-1]))
	}
	if err != nil || w.in.Snapshot == nil || len(w.in.Snapshot.SubscribedXnames) == 0 {
		return err
	}
	return w.compareSavedSubscriptions(ctx)
}

// ensureHMNFDReady checks, before orca is restarted, that HMNFD is ready:
// after an etcd wipe it stays not-ready, without its own HSM subscription,
// until its process restarts, so orca's subscriptions would be lost. A
// not-ready HMNFD gets its pods restarted, and the run waits until it says
// it is ready. The runbook leaves this step out.
func (w *serviceRun) ensureHMNFDReady(ctx workflow.Context) error {
	plan := w.in.Plan
	if !checksHMNFDReadiness(plan) {
		return nil
	}
	if workflow.GetVersion(ctx, "hmnfd-readiness", workflow.DefaultVersion, 1) == workflow.DefaultVersion {
		for _, name := range []string{StepCheckHMNFD, StepRestartHMNFD, StepWaitHMNFD} {
			w.finish(ctx, name, api.Skipped, "not checked: this run started before HMNFD readiness was checked", 0)
		}
		return nil
	}
	h := plan.HMNFD
	// The check reports to the parent only when HMNFD is not ready: a
	// ready HMNFD costs the history no progress signals (restart-orca's
	// first report carries these steps).
	var check activities.HMNFDReadiness
	w.find(StepCheckHMNFD).Started = workflow.Now(ctx)
	err := workflow.ExecuteActivity(workflow.WithActivityOptions(ctx, readOptions(plan.Timings)), api.ActivityCheckHMNFDReady, activities.HMNFDReadyRequest{}).Get(ctx, &check)
	if err != nil {
		state := api.Failed
		if temporal.IsCanceledError(err) {
			state = api.Canceled
		}
		w.finish(ctx, StepCheckHMNFD, state, errorMessage(err), attemptsSpent(err, plan.Timings))
		return err
	}
	w.record(ctx, StepCheckHMNFD, api.Done, check.Message, check.Attempt)
	if check.Ready {
		w.record(ctx, StepRestartHMNFD, api.Skipped, "HMNFD is ready: its pods are left alone", 0)
		w.record(ctx, StepWaitHMNFD, api.Skipped, "HMNFD is ready", 0)
		return nil
	}
	if w.in.DryRun {
		w.finish(ctx, StepRestartHMNFD, api.Skipped, fmt.Sprintf("dry-run: HMNFD is not ready; would restart its pods (%s)", h.Pods), 0)
		w.finish(ctx, StepWaitHMNFD, api.Skipped, fmt.Sprintf("dry-run: would wait up to %s for HMNFD to report ready", h.PodsReadyTimeout), 0)
		return nil
	}
	var snap activities.PodSnapshot
	err = w.step(ctx, StepRestartHMNFD, waitOptions(plan.Timings, plan.Timings.Delete), func(ctx workflow.Context) (activities.Outcome, error) {
		if err := workflow.ExecuteActivity(workflow.WithActivityOptions(ctx, readOptions(plan.Timings)), api.ActivitySnapshotPods, h.Pods).Get(ctx, &snap); err != nil {
			return activities.Outcome{}, err
		}
		var out activities.Outcome
		err := workflow.ExecuteActivity(ctx, api.ActivityDeletePods, activities.DeletePodsRequest{Namespace: h.Pods.Namespace, Pods: snap.Pods}).Get(ctx, &out)
		out.Message = "HMNFD was not ready: " + out.Message
		return out, err
	})
	if err != nil {
		return err
	}
	return w.step(ctx, StepWaitHMNFD, waitOptions(plan.Timings, h.PodsReadyTimeout), func(ctx workflow.Context) (activities.Outcome, error) {
		timings := plan.Timings
		timings.Wait = h.PodsReadyTimeout
		var out activities.Outcome
		if err := workflow.ExecuteActivity(ctx, api.ActivityWaitPodsReplaced, activities.WaitPodsRequest{Pods: h.Pods, Snapshot: snap, Timings: timings}).Get(ctx, &out); err != nil {
			return out, err
		}
		var ready activities.HMNFDReadiness
		err := workflow.ExecuteActivity(ctx, api.ActivityCheckHMNFDReady, activities.HMNFDReadyRequest{Budget: h.PodsReadyTimeout, Poll: plan.Timings.Poll}).Get(ctx, &ready)
		ready.Message = out.Message + "; " + ready.Message
		return ready.Outcome, err
	})
}

// compareSavedSubscriptions looks once at HMNFD for every xname that had a
// subscription when the snapshot was taken; nodes that were not restarted
// (down now, not Ready) are expected to be missing and are listed for a person.
func (w *serviceRun) compareSavedSubscriptions(ctx workflow.Context) error {
	saved := w.in.Snapshot.SubscribedXnames
	var res activities.VerifyResult
	err := w.step(ctx, StepCompareSubs, readOptions(w.in.Plan.Timings), func(ctx workflow.Context) (activities.Outcome, error) {
		err := workflow.ExecuteActivity(ctx, api.ActivityVerifySubscriptions, activities.VerifyRequest{Xnames: saved, Budget: 0, Poll: w.in.Plan.Timings.Poll, APIs: w.in.Plan.APIs}).Get(ctx, &res)
		if err == nil && len(res.Missing) == 0 {
			res.Message = fmt.Sprintf("all %d nodes subscribed in the snapshot (%s) are subscribed again", len(saved), w.in.Snapshot.Dir)
		} else if err == nil {
			res.Message = fmt.Sprintf("%d of %d nodes subscribed in the snapshot have no subscription now", len(res.Missing), len(saved))
		}
		return res.Outcome, err
	})
	if err == nil && len(res.Missing) > 0 {
		w.status.FollowUps = append(w.status.FollowUps, fmt.Sprintf("%d nodes had an HMNFD subscription in the snapshot (%s) and have none now: %s; once they are up, restart %s on them", len(res.Missing), w.in.Snapshot.Dir, sample(res.Missing, 50), strings.Join(w.in.Plan.HMNFD.OrcaUnits(), " or ")))
	}
	return err
}

// runFASLoader runs the FAS loader through the API (CSM 1.2 and later).
func (w *serviceRun) runFASLoader(ctx workflow.Context) error {
	plan := w.in.Plan
	req := activities.FASLoaderRequest{Budget: plan.Timings.Wait, Poll: plan.Timings.Poll}
	if w.in.DryRun {
		w.finish(ctx, StepStartFASLoader, api.Skipped, "dry-run: would POST /apis/fas/v1/loader/nexus (waiting while FAS answers 429)", 0)
		w.finish(ctx, StepWaitFASLoader, api.Skipped, fmt.Sprintf("dry-run: would wait up to %s for the loader to finish", plan.Timings.Wait), 0)
		return nil
	}
	var started activities.FASLoaderStarted
	err := w.step(ctx, StepStartFASLoader, waitOptions(plan.Timings, plan.Timings.Wait), func(ctx workflow.Context) (activities.Outcome, error) {
		err := workflow.ExecuteActivity(ctx, api.ActivityStartFASLoader, req).Get(ctx, &started)
		return started.Outcome, err
	})
	if err != nil {
		return err
	}
	return w.step(ctx, StepWaitFASLoader, waitOptions(plan.Timings, plan.Timings.Wait), func(ctx workflow.Context) (activities.Outcome, error) {
		var out activities.Outcome
		wait := req
		wait.LoaderRunID = started.LoaderRunID
		err := workflow.ExecuteActivity(ctx, api.ActivityWaitFASLoader, wait).Get(ctx, &out)
		return out, err
	})
}

// maxHostsInFollowUp bounds the hosts a follow-up lists; beyond it the
// follow-up points to repopulate report --nodes.
const maxHostsInFollowUp = 50

// progressInterval is the least time between two progress reports of a
// fan-out to the parent; the child's own status query is always current.
const progressInterval = 10 * time.Second

// sample lists up to n items and how many more there are.
func sample(items []string, n int) string {
	if len(items) <= n {
		return strings.Join(items, ",")
	}
	return fmt.Sprintf("%s and %d more", strings.Join(items[:n], ","), len(items)-n)
}

// problemHosts lists the hosts of problems; n <= 0 lists all.
func problemHosts(problems []api.NodeProblem, n int) string {
	hosts := make([]string, len(problems))
	for i, p := range problems {
		hosts[i] = p.Host
	}
	if n <= 0 {
		return strings.Join(hosts, ",")
	}
	return sample(hosts, n)
}

// step runs one activity as a named step and keeps its status.
func (w *serviceRun) step(ctx workflow.Context, name string, opts workflow.ActivityOptions, run func(workflow.Context) (activities.Outcome, error)) error {
	s := w.find(name)
	s.State = api.Running
	s.Started = workflow.Now(ctx)
	w.publish(ctx)
	out, err := run(workflow.WithActivityOptions(ctx, opts))
	if err != nil {
		state := api.Failed
		if temporal.IsCanceledError(err) {
			state = api.Canceled
		}
		w.finish(ctx, name, state, errorMessage(err), attemptsSpent(err, w.in.Plan.Timings))
		return err
	}
	w.finish(ctx, name, api.Done, out.Message, out.Attempt)
	return nil
}

func (w *serviceRun) finish(ctx workflow.Context, name string, state api.State, message string, attempt int32) {
	w.record(ctx, name, state, message, attempt)
	w.publish(ctx)
}

// record ends a step without telling the parent: the next report carries it.
func (w *serviceRun) record(ctx workflow.Context, name string, state api.State, message string, attempt int32) {
	s := w.find(name)
	if s.Started.IsZero() {
		s.Started = workflow.Now(ctx)
	}
	s.State, s.Ended, s.Message, s.Attempt = state, workflow.Now(ctx), message, attempt
}

func (w *serviceRun) find(name string) *api.StepStatus {
	for i := range w.status.Steps {
		if w.status.Steps[i].Name == name {
			return &w.status.Steps[i]
		}
	}
	panic("step " + name + " is not in the plan") // a programming error: Steps() and the procedure disagree
}

// publish sends the status to the parent, if there is one, and waits until
// it is delivered so that the parent has it before this child's result.
func (w *serviceRun) publish(ctx workflow.Context) {
	workflow.SetCurrentDetails(ctx, w.details())
	if w.parent == nil {
		return
	}
	// A parent that is gone cannot be told; the result still carries the status.
	_ = workflow.SignalExternalWorkflow(ctx, w.parent.ID, "", api.StepProgressSignal, w.status).Get(ctx, nil)
}

// details is the child's current details in the Web UI: where it stands
// and, at a gate, what approval does and the command to give it.
func (w *serviceRun) details() string {
	var b strings.Builder
	b.WriteString(fmt.Sprintf("**%s** %s", w.status.Service, w.status.State))
	if now := currentStep(w.status); now != "" {
		b.WriteString(fmt.Sprintf(": %s", now))
	}
	for _, g := range w.status.Gates {
		if g.State == api.GateWaiting {
			b.WriteString(fmt.Sprintf("\n\nGate **%s** is waiting for approval.\n\nOnce approved: %s\n\n%s\n\n    %s\n    %s\n\n%s", g.Name, g.Action, g.Details, g.ApproveCommand, g.RejectCommand, webUIInstructions(w.in.RunID, g.Name)))
		}
	}
	if w.lastRefused != "" {
		b.WriteString("\n\nLast refused decision: " + w.lastRefused + "\n")
	}
	return b.String()
}

// summary is the one-line message of a finished service.
func (w *serviceRun) summary() string {
	var done, skipped int
	for _, s := range w.status.Steps {
		switch s.State {
		case api.Done:
			done++
		case api.Skipped:
			skipped++
		case api.Failed, api.Canceled:
			return fmt.Sprintf("%s at step %s: %s", s.State, s.Name, s.Message)
		}
	}
	if w.in.DryRun {
		return fmt.Sprintf("dry-run: %d steps read the cluster, %d would change it", done, skipped)
	}
	if skipped > 0 {
		return fmt.Sprintf("%d steps done, %d skipped", done, skipped)
	}
	return fmt.Sprintf("%d steps done", done)
}

// followUps are what the runbook leaves to a person once the steps are done.
func followUps(in ServiceInput) []string {
	e, _ := catalog.Lookup(in.Plan.Service)
	if in.DryRun || e.FollowUps == nil {
		return nil
	}
	return e.FollowUps(in.Snapshot)
}

func healthyWord(kind activities.Kind) string {
	if kind == activities.JobKind {
		return "Complete"
	}
	return "Running with every member ready"
}

// readOptions bound a short step: one API read or write.
func readOptions(t api.Timings) workflow.ActivityOptions {
	return workflow.ActivityOptions{StartToCloseTimeout: time.Minute, RetryPolicy: retryPolicy(t)}
}

// waitOptions bound a step that polls for up to budget; it heartbeats, so a
// lost worker is noticed within the heartbeat timeout and a retry resumes.
func waitOptions(t api.Timings, budget time.Duration) workflow.ActivityOptions {
	return workflow.ActivityOptions{
		StartToCloseTimeout: budget + time.Minute,
		HeartbeatTimeout:    t.Heartbeat,
		RetryPolicy:         retryPolicy(t),
	}
}

func retryPolicy(t api.Timings) *temporal.RetryPolicy {
	return &temporal.RetryPolicy{InitialInterval: time.Second, BackoffCoefficient: 2, MaximumInterval: 30 * time.Second, MaximumAttempts: t.Attempts}
}

// errorMessage is the innermost message of an activity or child error: the
// wrappers only say where it happened, which the step name already says.
func errorMessage(err error) string {
	var appErr *temporal.ApplicationError
	if errors.As(err, &appErr) {
		return appErr.Message()
	}
	for {
		next := errors.Unwrap(err)
		if next == nil {
			return err.Error()
		}
		err = next
	}
}

// attemptsSpent is how many tries a failed step used, when the retry policy
// says it ran out of them (0: not known).
func attemptsSpent(err error, t api.Timings) int32 {
	var actErr *temporal.ActivityError
	if errors.As(err, &actErr) && actErr.RetryState() == enumspb.RETRY_STATE_MAXIMUM_ATTEMPTS_REACHED {
		return t.Attempts
	}
	return 0
}
