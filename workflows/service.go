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
	if p, ok := procedures[w.in.Plan.Procedure]; ok {
		err = p.run(w, ctx)
	} else {
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

// sample lists up to n items and how many more there are.
func sample(items []string, n int) string {
	if len(items) <= n {
		return strings.Join(items, ",")
	}
	return fmt.Sprintf("%s and %d more", strings.Join(items[:n], ","), len(items)-n)
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
