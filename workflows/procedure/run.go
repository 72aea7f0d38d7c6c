// Package procedure is the frame every procedure's child workflow runs
// in: named steps with their status, approval gates, and the reports to
// the parent workflow. The procedures themselves are in procedures/, one
// folder each; the catalog (internal/catalog) says which service runs
// which on which release.
package procedure

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
)

// Input is a child workflow's request.
type Input struct {
	RunID  string          `json:"runId"`
	Plan   api.ServicePlan `json:"plan"`
	DryRun bool            `json:"dryRun,omitempty"`
	// Snapshot is the part of the run's pre-rebuild snapshot this service uses.
	Snapshot *api.SnapshotInput `json:"snapshot,omitempty"`
}

// Run is one child workflow: it walks a service's procedure step by step,
// answers the status query and reports each change to its parent.
// Procedures read In and write Status, Result and LeftOff.
type Run struct {
	In     Input
	Status api.ServiceStatus
	// Result, when set, is the finished service's message instead of the
	// step count: a procedure that found nothing to do says why.
	Result string
	// LeftOff, when set, names the nodes a failed service left powered off.
	LeftOff string
	// LoaderRunID is the FAS loader run the procedure started, for fas's
	// data check.
	LoaderRunID string

	proc Procedure
	// check, when not nil, runs after the procedure as the last step.
	check  *Check
	parent *workflow.Execution
	gates  *gates
	// lastRefused is the latest gate decision this child refused, for its details.
	lastRefused string
	// waitless: progress reports are not waited for (publish-without-waiting);
	// undelivered holds those still on their way.
	waitless    bool
	undelivered []workflow.Future
}

// Walk runs procedure p as the child workflow of in's service, then its
// data check when the plan names one (check); followUps are what the
// runbook leaves to a person once its steps are done.
func Walk(ctx workflow.Context, in Input, p Procedure, check *Check, followUps []string) (api.ServiceStatus, error) {
	w := &Run{In: in, proc: p, check: check}
	if err := w.setup(ctx); err != nil {
		return api.ServiceStatus{}, err
	}
	return w.run(ctx, followUps)
}

func (w *Run) setup(ctx workflow.Context) error {
	info := workflow.GetInfo(ctx)
	w.parent = info.ParentWorkflowExecution
	w.Status = api.ServiceStatus{Service: w.In.Plan.Service, WorkflowID: info.WorkflowExecution.ID, State: api.Pending}
	for _, name := range w.proc.StepsOf(w.In) {
		w.Status.Steps = append(w.Status.Steps, api.StepStatus{Name: name, State: api.Pending})
	}
	if w.check != nil {
		w.Status.Steps = append(w.Status.Steps, api.StepStatus{Name: w.check.Step, State: api.Pending})
	}
	for _, name := range w.proc.GatesOf(w.In) {
		w.Status.Gates = append(w.Status.Gates, api.GateStatus{Name: name, State: api.GatePending})
	}
	// Waiting for each progress report to reach the parent cost a workflow
	// task round trip before every step and after it.
	w.waitless = workflow.GetVersion(ctx, "publish-without-waiting", workflow.DefaultVersion, 1) == 1
	w.listenForDecisions(ctx)
	return workflow.SetQueryHandlerWithOptions(ctx, api.StatusQuery, func() (api.ServiceStatus, error) { return w.Status, nil },
		workflow.QueryHandlerOptions{Description: api.StatusQueryDescription})
}

func (w *Run) run(ctx workflow.Context, followUps []string) (api.ServiceStatus, error) {
	w.Status.State = api.Running
	var err error
	if w.proc.Run != nil {
		err = w.proc.Run(w, ctx)
	} else {
		err = temporal.NewNonRetryableApplicationError(fmt.Sprintf("service %s has no procedure %q", w.In.Plan.Service, w.In.Plan.Procedure), api.InvalidRequestError, nil)
	}
	switch {
	case err == nil && w.Status.State != api.Skipped:
		err = w.closeWithEvidence(ctx)
	case (err == nil || err == ErrGateSkipped) && w.check != nil:
		// Skipped (absent, a gate's deadline, or a person chose the
		// runbook's way): there is no result to check.
		w.Record(ctx, w.check.Step, api.Skipped, "not checked: the service was skipped", 0)
	case err != nil && err != ErrGateSkipped:
		w.failedProof()
	}
	w.Status.FollowUps = append(w.Status.FollowUps, followUps...)
	if err == ErrGateSkipped {
		err = nil
		w.Status.State = api.Skipped
		w.Status.Message = w.summary()
	}
	switch {
	case err == nil && w.Status.State == api.Skipped:
		// the procedure found the service absent and said why
	case err == nil:
		w.Status.State = api.Done
		w.Status.Message = w.summary()
		if w.Result != "" {
			w.Status.Message = w.Result
		}
	case temporal.IsCanceledError(err):
		w.Status.State = api.Canceled
		w.Status.Message = w.summary()
	default:
		w.Status.State = api.Failed
		w.Status.Message = w.summary()
		if w.LeftOff != "" {
			w.Status.Message += "; " + w.LeftOff
		}
	}
	// The last report goes out on a disconnected context: a canceled child
	// still tells its parent where it stopped.
	dctx, _ := workflow.NewDisconnectedContext(ctx)
	w.Publish(dctx)
	w.awaitDelivered(dctx)
	switch {
	case err == nil:
		return w.Status, nil
	case w.Status.State == api.Canceled:
		return w.Status, temporal.NewCanceledError(w.Status)
	}
	return w.Status, temporal.NewNonRetryableApplicationError(
		fmt.Sprintf("%s: %s", w.In.Plan.Service, w.Status.Message), api.ServiceFailedError, err, w.Status)
}

// closeWithEvidence runs the plan's data check as the last step, or takes
// the evidence from the step the procedure names as its proof.
func (w *Run) closeWithEvidence(ctx workflow.Context) error {
	switch {
	case w.check != nil && w.check.Run == nil:
		// A plan made by a newer worker: fail at the check, not done unchecked.
		msg := fmt.Sprintf("service %s has no data check %q on this worker", w.In.Plan.Service, w.In.Plan.DataCheck)
		w.Finish(ctx, w.check.Step, api.Failed, msg, 0)
		return temporal.NewNonRetryableApplicationError(msg, api.InvalidRequestError, nil)
	case w.check != nil && w.In.DryRun:
		w.Finish(ctx, w.check.Step, api.Skipped, "dry-run: would check "+w.check.Checked(w.In), 0)
		return nil
	case w.check != nil:
		return w.check.Run(w, ctx)
	case w.proc.Proof != nil && !w.In.DryRun:
		step, checked := w.proc.Proof(w.In)
		if s := w.Find(step); s.State == api.Done {
			w.Status.Evidence = &api.Evidence{Checked: checked, Found: s.Message, OK: true}
		} else if w.Result != "" {
			// The procedure found nothing to do and said why.
			w.Status.Evidence = &api.Evidence{Checked: checked, Found: w.Result, OK: true}
		}
	}
	return nil
}

// failedProof keeps, as evidence, the proof step that failed the service.
func (w *Run) failedProof() {
	if w.Status.Evidence != nil || w.proc.Proof == nil || w.In.DryRun {
		return
	}
	step, checked := w.proc.Proof(w.In)
	if s := w.Find(step); s.State == api.Failed {
		w.Status.Evidence = &api.Evidence{Checked: checked, Found: s.Message}
	}
}

// Sample lists up to n items and how many more there are.
func Sample(items []string, n int) string {
	if len(items) <= n {
		return strings.Join(items, ",")
	}
	return fmt.Sprintf("%s and %d more", strings.Join(items[:n], ","), len(items)-n)
}

// Step runs one activity as a named step and keeps its status.
func (w *Run) Step(ctx workflow.Context, name string, opts workflow.ActivityOptions, run func(workflow.Context) (activities.Outcome, error)) error {
	s := w.Find(name)
	s.State = api.Running
	s.Started = workflow.Now(ctx)
	w.Publish(ctx)
	out, err := run(workflow.WithActivityOptions(ctx, opts))
	if err != nil {
		state := api.Failed
		if temporal.IsCanceledError(err) {
			state = api.Canceled
		}
		w.Finish(ctx, name, state, ErrorMessage(err), AttemptsSpent(err, w.In.Plan.Timings))
		return err
	}
	w.Finish(ctx, name, api.Done, out.Message, out.Attempt)
	return nil
}

// Finish ends a step and tells the parent.
func (w *Run) Finish(ctx workflow.Context, name string, state api.State, message string, attempt int32) {
	w.Record(ctx, name, state, message, attempt)
	w.Publish(ctx)
}

// Record ends a step without telling the parent: the next report carries it.
func (w *Run) Record(ctx workflow.Context, name string, state api.State, message string, attempt int32) {
	s := w.Find(name)
	if s.Started.IsZero() {
		s.Started = workflow.Now(ctx)
	}
	s.State, s.Ended, s.Message, s.Attempt = state, workflow.Now(ctx), message, attempt
}

// Find is the step named name; it panics when the procedure's Steps do
// not list it.
func (w *Run) Find(name string) *api.StepStatus {
	for i := range w.Status.Steps {
		if w.Status.Steps[i].Name == name {
			return &w.Status.Steps[i]
		}
	}
	panic("step " + name + " is not in the plan") // a programming error: Steps() and the procedure disagree
}

// Publish sends the status to the parent, if there is one. Before change
// publish-without-waiting it waited until the parent had it; since, the
// child goes on at once, the reports are numbered so that the parent drops
// one overtaken by a later one, and the last report is awaited (with every
// other) before the child returns, so that the parent has them all before
// the child's result.
func (w *Run) Publish(ctx workflow.Context) {
	workflow.SetCurrentDetails(ctx, w.details())
	if w.parent == nil {
		return
	}
	if !w.waitless {
		// A parent that is gone cannot be told; the result still carries the status.
		_ = workflow.SignalExternalWorkflow(ctx, w.parent.ID, "", api.StepProgressSignal, w.Status).Get(ctx, nil)
		return
	}
	w.Status.Report++
	w.undelivered = slices.DeleteFunc(w.undelivered, workflow.Future.IsReady)
	w.undelivered = append(w.undelivered, workflow.SignalExternalWorkflow(ctx, w.parent.ID, "", api.StepProgressSignal, w.Status))
}

// awaitDelivered waits until every report sent is delivered (or refused:
// a parent that is gone cannot be told; the result still carries the status).
func (w *Run) awaitDelivered(ctx workflow.Context) {
	for _, f := range w.undelivered {
		_ = f.Get(ctx, nil)
	}
	w.undelivered = nil
}

// details is the child's current details in the Web UI: where it stands
// and, at a gate, what approval does and the command to give it.
func (w *Run) details() string {
	var b strings.Builder
	b.WriteString(fmt.Sprintf("**%s** %s", w.Status.Service, w.Status.State))
	if now := CurrentStep(w.Status); now != "" {
		b.WriteString(fmt.Sprintf(": %s", now))
	}
	for _, g := range w.Status.Gates {
		if g.State == api.GateWaiting {
			b.WriteString(fmt.Sprintf("\n\nGate **%s** is waiting for approval.\n\nOnce approved: %s\n\n%s\n\n    %s\n    %s\n\n%s", g.Name, g.Action, g.Details, g.ApproveCommand, g.RejectCommand, WebUIInstructions(w.In.RunID, g.Name)))
		}
	}
	if w.lastRefused != "" {
		b.WriteString("\n\nLast refused decision: " + w.lastRefused + "\n")
	}
	return b.String()
}

// summary is the one-line message of a finished service.
func (w *Run) summary() string {
	var done, skipped int
	for _, s := range w.Status.Steps {
		switch s.State {
		case api.Done:
			done++
		case api.Skipped:
			skipped++
		case api.Failed, api.Canceled:
			return fmt.Sprintf("%s at step %s: %s", s.State, s.Name, s.Message)
		}
	}
	if w.In.DryRun {
		return fmt.Sprintf("dry-run: %d steps read the cluster, %d would change it", done, skipped)
	}
	if skipped > 0 {
		return fmt.Sprintf("%d steps done, %d skipped", done, skipped)
	}
	return fmt.Sprintf("%d steps done", done)
}

// ReadOptions bound a short step: one API read or write.
func ReadOptions(t api.Timings) workflow.ActivityOptions {
	return workflow.ActivityOptions{StartToCloseTimeout: time.Minute, RetryPolicy: retryPolicy(t)}
}

// WaitOptions bound a step that polls for up to budget; it heartbeats, so a
// lost worker is noticed within the heartbeat timeout and a retry resumes.
func WaitOptions(t api.Timings, budget time.Duration) workflow.ActivityOptions {
	return workflow.ActivityOptions{
		StartToCloseTimeout: budget + time.Minute,
		HeartbeatTimeout:    t.Heartbeat,
		RetryPolicy:         retryPolicy(t),
	}
}

func retryPolicy(t api.Timings) *temporal.RetryPolicy {
	return &temporal.RetryPolicy{InitialInterval: time.Second, BackoffCoefficient: 2, MaximumInterval: 30 * time.Second, MaximumAttempts: t.Attempts}
}

// ErrorMessage is the innermost message of an activity or child error: the
// wrappers only say where it happened, which the step name already says.
func ErrorMessage(err error) string {
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

// AttemptsSpent is how many tries a failed step used, when the retry policy
// says it ran out of them (0: not known).
func AttemptsSpent(err error, t api.Timings) int32 {
	var actErr *temporal.ActivityError
	if errors.As(err, &actErr) && actErr.RetryState() == enumspb.RETRY_STATE_MAXIMUM_ATTEMPTS_REACHED {
		return t.Attempts
	}
	return 0
}

// CurrentStep is what a service is doing now: the running or waiting step
// (with its message), or, once finished, its final message.
func CurrentStep(s api.ServiceStatus) string {
	if s.State.Finished() {
		return s.Message
	}
	for _, st := range s.Steps {
		if st.State == api.Running || st.State == api.WaitingForApproval {
			if st.Message != "" {
				return st.Name + ": " + st.Message
			}
			return st.Name
		}
	}
	return ""
}
