package workflows

import (
	"errors"
	"fmt"
	"strings"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/csmops/etcd-repopulate/activities"
	"github.com/csmops/etcd-repopulate/internal/api"
)

// ServiceInput is a child workflow's request.
type ServiceInput struct {
	RunID  string          `json:"runId"`
	Plan   api.ServicePlan `json:"plan"`
	DryRun bool            `json:"dryRun,omitempty"`
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
)

// Steps lists the steps of a plan in order, so that status shows what is
// still to come before it starts.
func Steps(plan api.ServicePlan) []string {
	steps := append([]string(nil), plan.PreSteps...)
	switch plan.Procedure {
	case api.RerunJob:
		steps = append(steps, StepSaveJob, StepDeleteJob, StepCreateJob, StepWaitJob)
	case api.RestartPods:
		steps = append(steps, StepSnapshotPods, StepDeletePods, StepWaitPods)
	case api.RecreateEtcdCluster:
		steps = append(steps, StepSaveCluster, StepDeleteCluster, StepCreateCluster, StepWaitClusterActive)
	}
	return steps
}

// serviceRun is one child workflow: it walks a service's plan step by step,
// answers the status query and reports each change to its parent.
type serviceRun struct {
	in     ServiceInput
	status api.ServiceStatus
	parent *workflow.Execution
}

// RepopulateService repopulates one service's data.
func RepopulateService(ctx workflow.Context, in ServiceInput) (api.ServiceStatus, error) {
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
	for _, name := range Steps(w.in.Plan) {
		w.status.Steps = append(w.status.Steps, api.StepStatus{Name: name, State: api.Pending})
	}
	return workflow.SetQueryHandler(ctx, api.StatusQuery, func() (api.ServiceStatus, error) { return w.status, nil })
}

func (w *serviceRun) run(ctx workflow.Context) (api.ServiceStatus, error) {
	w.status.State = api.Running
	for _, name := range w.in.Plan.PreSteps {
		w.finish(ctx, name, api.Skipped, preStepReasons[name], 0)
	}
	var err error
	switch w.in.Plan.Procedure {
	case api.RerunJob:
		err = w.recreate(ctx, activities.JobKind, StepSaveJob, StepDeleteJob, StepCreateJob, StepWaitJob)
	case api.RecreateEtcdCluster:
		err = w.recreate(ctx, activities.EtcdClusterKind, StepSaveCluster, StepDeleteCluster, StepCreateCluster, StepWaitClusterActive)
	case api.RestartPods:
		err = w.restartPods(ctx)
	default:
		err = temporal.NewNonRetryableApplicationError(fmt.Sprintf("service %s has no procedure %q", w.in.Plan.Service, w.in.Plan.Procedure), api.InvalidRequestError, nil)
	}
	w.status.FollowUps = append(w.status.FollowUps, followUps(w.in.Plan, w.in.DryRun)...)
	switch {
	case err == nil:
		w.status.State = api.Done
		w.status.Message = w.summary()
	case temporal.IsCanceledError(err):
		w.status.State = api.Canceled
		w.status.Message = w.summary()
	default:
		w.status.State = api.Failed
		w.status.Message = w.summary()
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
	var k *activities.Kube
	plan := w.in.Plan
	var saved activities.SavedObject
	err := w.step(ctx, saveStep, readOptions(plan.Timings), func(ctx workflow.Context) (activities.Outcome, error) {
		err := workflow.ExecuteActivity(ctx, k.SaveObject, activities.ObjectRequest{Kind: kind, Ref: plan.Object}).Get(ctx, &saved)
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
		err := workflow.ExecuteActivity(ctx, k.DeleteObject, activities.DeleteRequest{Saved: saved, Timings: plan.Timings}).Get(ctx, &out)
		return out, err
	})
	if err != nil {
		w.keepSavedCopy(saved, "the delete may have happened")
		return err
	}
	var created activities.Created
	err = w.step(restoreCtx, createStep, readOptions(plan.Timings), func(ctx workflow.Context) (activities.Outcome, error) {
		err := workflow.ExecuteActivity(ctx, k.CreateObject, activities.CreateRequest{Saved: saved, RunID: w.in.RunID}).Get(ctx, &created)
		return created.Outcome, err
	})
	if err != nil {
		w.keepSavedCopy(saved, "it was deleted and could not be created again")
		return err
	}

	wait := k.WaitJobComplete
	if kind == activities.EtcdClusterKind {
		wait = k.WaitEtcdClusterRunning
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
	var k *activities.Kube
	plan := w.in.Plan
	var snap activities.PodSnapshot
	err := w.step(ctx, StepSnapshotPods, readOptions(plan.Timings), func(ctx workflow.Context) (activities.Outcome, error) {
		err := workflow.ExecuteActivity(ctx, k.SnapshotPods, plan.Pods).Get(ctx, &snap)
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
		err := workflow.ExecuteActivity(ctx, k.DeletePods, activities.DeletePodsRequest{Namespace: plan.Pods.Namespace, Pods: snap.Pods}).Get(ctx, &out)
		return out, err
	})
	if err != nil {
		return err
	}
	return w.step(ctx, StepWaitPods, waitOptions(plan.Timings, plan.Timings.Wait), func(ctx workflow.Context) (activities.Outcome, error) {
		var out activities.Outcome
		err := workflow.ExecuteActivity(ctx, k.WaitPodsReplaced, activities.WaitPodsRequest{Pods: plan.Pods, Snapshot: snap, Timings: plan.Timings}).Get(ctx, &out)
		return out, err
	})
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
	s := w.find(name)
	if s.Started.IsZero() {
		s.Started = workflow.Now(ctx)
	}
	s.State, s.Ended, s.Message, s.Attempt = state, workflow.Now(ctx), message, attempt
	w.publish(ctx)
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
	if w.parent == nil {
		return
	}
	// A parent that is gone cannot be told; the result still carries the status.
	_ = workflow.SignalExternalWorkflow(ctx, w.parent.ID, "", api.StepProgressSignal, w.status).Get(ctx, nil)
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

// preStepReasons explain steps this version does not run yet.
var preStepReasons = map[string]string{
	"check-crus-sessions": "not implemented yet: CRUS sessions were not checked",
}

// followUps are what the runbook leaves to a person once the steps are done.
func followUps(plan api.ServicePlan, dryRun bool) []string {
	if dryRun {
		return nil
	}
	switch plan.Service {
	case api.FAS:
		return []string{"FAS lost its history of firmware actions and snapshots: recreate any action that was running when etcd failed (cray fas actions create)"}
	case api.CRUS:
		return []string{"check CRUS sessions by hand: cray crus session list, then cray crus session describe UPGRADE_ID for each one not completed; a failed or stuck one must be recreated"}
	}
	return nil
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
