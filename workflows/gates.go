package workflows

import (
	"fmt"
	"regexp"
	"strings"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/csmops/etcd-repopulate/internal/api"
)

// Error types of a gate that stopped its service.
const (
	ErrGateRejected = "GateRejected"
	ErrGateExpired  = "GateExpired"
)

// errGateSkipped ends a service as skipped: its gate's deadline passed and
// the configuration says skip.
var errGateSkipped = temporal.NewNonRetryableApplicationError("gate deadline passed", "GateSkipped", nil)

// gates is a child's view of its approval gates. Decisions arrive as
// signals at any time; only a decision for the gate that is waiting right
// now counts, so that nobody can approve a step before it is shown to them.
type gates struct {
	decision map[string]api.GateDecision
}

// listenForDecisions starts receiving gate decisions for the child's whole life.
func (w *serviceRun) listenForDecisions(ctx workflow.Context) {
	w.gates = &gates{decision: map[string]api.GateDecision{}}
	ch := workflow.GetSignalChannel(ctx, api.GateDecisionSignal)
	workflow.Go(ctx, func(ctx workflow.Context) {
		for {
			var d api.GateDecision
			if !ch.Receive(ctx, &d) {
				return
			}
			g := w.findGate(d.Gate)
			if g == nil || g.State != api.GateWaiting || (d.Decision != api.Approve && d.Decision != api.Reject) {
				workflow.GetLogger(ctx).Warn("gate decision ignored: gate unknown, not waiting, or decision not approve/reject", "gate", d.Gate, "decision", d.Decision)
				continue
			}
			if _, dup := w.gates.decision[d.Gate]; !dup {
				w.gates.decision[d.Gate] = d
			}
		}
	})
}

// gate waits at a named gate until a person approves or rejects it, or its
// deadline passes. Approved: nil. Rejected, or expired with onDeadline
// fail: a non-retryable error that ends the service as failed. Expired
// with onDeadline skip: errGateSkipped.
//
// A gate that guards undoing a destructive step (cps-reboot: the nodes are
// Off) is never skipped: skipping would leave the damage and call the
// service skipped, so its deadline fails the service whatever onDeadline says.
func (w *serviceRun) gate(ctx workflow.Context, name, action, details string) error {
	g := w.findGate(name)
	step := w.find(name)
	now := workflow.Now(ctx)
	g.State, g.Action, g.Details, g.Opened = api.GateWaiting, action, details, now
	g.ApproveCommand = fmt.Sprintf("repopulate approve %s %s --note 'TEXT'", shellWord(w.in.RunID), name)
	g.RejectCommand = fmt.Sprintf("repopulate reject %s %s --reason 'TEXT'", shellWord(w.in.RunID), name)
	policy := w.in.Plan.Gates
	if policy.Deadline > 0 {
		g.Deadline = now.Add(policy.Deadline)
	}
	if undoesDestructiveStep[name] && policy.OnDeadline == api.OnDeadlineSkip {
		policy.OnDeadline = api.OnDeadlineFail
	}
	step.State, step.Started, step.Message = api.WaitingForApproval, now, "waiting for approval: "+action
	w.status.State = api.WaitingForApproval
	w.publish(ctx)

	decided := func() bool { _, ok := w.gates.decision[name]; return ok }
	if policy.Deadline > 0 {
		ok, err := workflow.AwaitWithTimeout(ctx, policy.Deadline, decided)
		if err != nil {
			return w.closeGate(ctx, name, api.GateSkipped, "canceled while waiting for approval", err)
		}
		if !ok {
			return w.expire(ctx, name, policy)
		}
	} else if err := workflow.Await(ctx, decided); err != nil {
		return w.closeGate(ctx, name, api.GateSkipped, "canceled while waiting for approval", err)
	}

	d := w.gates.decision[name]
	g.Decided, g.By, g.Note = workflow.Now(ctx), d.By, d.Note
	w.status.State = api.Running
	if d.Decision == api.Approve {
		g.State = api.GateApproved
		step.State, step.Ended, step.Message = api.Done, g.Decided, fmt.Sprintf("approved by %s%s", orSomeone(d.By), noteSuffix(d.Note))
		w.publish(ctx)
		return nil
	}
	g.State = api.GateRejected
	msg := fmt.Sprintf("rejected by %s%s", orSomeone(d.By), noteSuffix(d.Note))
	return w.closeGate(ctx, name, api.GateRejected, msg, temporal.NewNonRetryableApplicationError(fmt.Sprintf("gate %s %s", name, msg), ErrGateRejected, nil))
}

// undoesDestructiveStep are the gates whose approval undoes what an
// earlier step destroyed: their deadline cannot skip them.
var undoesDestructiveStep = map[string]bool{api.GateCPSReboot: true}

// expire ends a gate whose deadline passed, as the policy says.
func (w *serviceRun) expire(ctx workflow.Context, name string, policy api.GatePolicy) error {
	msg := fmt.Sprintf("nobody approved or rejected it within gates.deadline (%s)", policy.Deadline)
	if undoesDestructiveStep[name] && w.in.Plan.Gates.OnDeadline == api.OnDeadlineSkip {
		msg += "; gates.onDeadline skip does not apply here: this gate undoes a step already done"
	}
	if policy.OnDeadline == api.OnDeadlineSkip {
		return w.closeGate(ctx, name, api.GateExpired, msg+"; skipped as gates.onDeadline says", errGateSkipped)
	}
	return w.closeGate(ctx, name, api.GateExpired, msg, temporal.NewNonRetryableApplicationError(fmt.Sprintf("gate %s expired: %s", name, msg), ErrGateExpired, nil))
}

// closeGate records how a gate ended without approval and returns err.
func (w *serviceRun) closeGate(ctx workflow.Context, name string, state api.GateState, msg string, err error) error {
	g := w.findGate(name)
	g.State = state
	if g.Decided.IsZero() {
		g.Decided = workflow.Now(ctx)
	}
	stepState := api.Failed
	switch {
	case err == errGateSkipped:
		stepState = api.Skipped
	case temporal.IsCanceledError(err):
		stepState = api.Canceled
	}
	w.status.State = api.Running
	w.finish(ctx, name, stepState, msg, 0)
	return err
}

// skipGate marks a gate that will not be reached (dry-run, nothing to do).
func (w *serviceRun) skipGate(ctx workflow.Context, name, why string) {
	w.findGate(name).State = api.GateSkipped
	w.finish(ctx, name, api.Skipped, why, 0)
}

func (w *serviceRun) findGate(name string) *api.GateStatus {
	for i := range w.status.Gates {
		if w.status.Gates[i].Name == name {
			return &w.status.Gates[i]
		}
	}
	return nil
}

func orSomeone(by string) string {
	if by == "" {
		return "an unnamed operator"
	}
	return by
}

func noteSuffix(note string) string {
	if note == "" {
		return ""
	}
	return ": " + note
}

var plainWord = regexp.MustCompile(`^[A-Za-z0-9_./:@%+=,-]+$`)

// shellWord quotes s for a POSIX shell when it needs it, so that the
// commands shown can be pasted as they are.
func shellWord(s string) string {
	if plainWord.MatchString(s) {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// ---- parent side ----

// gateRouter is the parent's side of the gates: it checks a decision
// against what the children reported and delivers it to the child that
// owns the gate.
type gateRouter struct {
	run *repopulate
	// decided remembers decisions already delivered, so a second approval
	// is refused even before the child has reported the first one back.
	decided map[string]api.GateStatus
}

// validate refuses a decision that would change nothing: unknown gate,
// gate not waiting, decided already, or a rejection without a reason.
func (r *gateRouter) validate(d api.GateDecision) error {
	if d.Decision != api.Approve && d.Decision != api.Reject {
		return fmt.Errorf("decision %q must be %s or %s", d.Decision, api.Approve, api.Reject)
	}
	if d.Decision == api.Reject && strings.TrimSpace(d.Note) == "" {
		return fmt.Errorf("rejecting gate %s needs a reason (--reason TEXT): it goes into the report", d.Gate)
	}
	svc, g := r.lookup(d.Gate)
	if g == nil {
		return fmt.Errorf("run %s has no gate %q; its gates: %s", r.run.status.RunID, d.Gate, r.gateList())
	}
	if prev, ok := r.decided[d.Gate]; ok {
		return fmt.Errorf("gate %s of service %s is not waiting: it was %s by %s at %s", d.Gate, svc, prev.State, orSomeone(prev.By), prev.Decided.UTC().Format(time.RFC3339))
	}
	switch g.State {
	case api.GateWaiting:
		return nil
	case api.GatePending:
		return fmt.Errorf("gate %s of service %s is not waiting yet: the service has not reached it (try again when `repopulate status` shows it waiting)", d.Gate, svc)
	case api.GateApproved, api.GateRejected:
		return fmt.Errorf("gate %s of service %s is not waiting: it was %s by %s at %s", d.Gate, svc, g.State, orSomeone(g.By), g.Decided.UTC().Format(time.RFC3339))
	}
	return fmt.Errorf("gate %s of service %s is not waiting: it is %s", d.Gate, svc, g.State)
}

// deliver sends an accepted decision to the child and returns the gate as decided.
func (r *gateRouter) deliver(ctx workflow.Context, d api.GateDecision) (api.GateStatus, error) {
	svc, g := r.lookup(d.Gate)
	out := *g
	out.State, out.Decided, out.By, out.Note = api.GateApproved, workflow.Now(ctx), d.By, d.Note
	if d.Decision == api.Reject {
		out.State = api.GateRejected
	}
	r.decided[d.Gate] = out
	child := api.ServiceWorkflowID(r.run.status.RunID, svc)
	if err := workflow.SignalExternalWorkflow(ctx, child, "", api.GateDecisionSignal, d).Get(ctx, nil); err != nil {
		delete(r.decided, d.Gate)
		return api.GateStatus{}, fmt.Errorf("deliver the decision to %s: %w", child, err)
	}
	return out, nil
}

func (r *gateRouter) lookup(name string) (api.Service, *api.GateStatus) {
	for i := range r.run.status.Services {
		s := &r.run.status.Services[i]
		for j := range s.Gates {
			if s.Gates[j].Name == name {
				return s.Service, &s.Gates[j]
			}
		}
	}
	return "", nil
}

func (r *gateRouter) gateList() string {
	var names []string
	for _, s := range r.run.status.Services {
		for _, g := range s.Gates {
			names = append(names, fmt.Sprintf("%s (%s, %s)", g.Name, s.Service, g.State))
		}
	}
	if len(names) == 0 {
		return "none (only the cps and bos services have gates)"
	}
	return strings.Join(names, ", ")
}

// setupGates installs the Update with its validator and the signal route.
func (w *repopulate) setupGates(ctx workflow.Context) error {
	w.gates = &gateRouter{run: w, decided: map[string]api.GateStatus{}}
	return workflow.SetUpdateHandlerWithOptions(ctx, api.DecideGateUpdate,
		func(ctx workflow.Context, d api.GateDecision) (api.GateStatus, error) {
			// Validated again: state may have changed since the validator ran.
			if err := w.gates.validate(d); err != nil {
				return api.GateStatus{}, err
			}
			return w.gates.deliver(ctx, d)
		},
		workflow.UpdateHandlerOptions{Validator: func(ctx workflow.Context, d api.GateDecision) error { return w.gates.validate(d) }},
	)
}

// routeSignal handles a decision sent as a signal (Web UI, temporal CLI):
// the same checks as the Update, but a signal cannot answer, so a refused
// one is logged and dropped.
func (w *repopulate) routeSignal(ctx workflow.Context, d api.GateDecision) {
	if err := w.gates.validate(d); err != nil {
		workflow.GetLogger(ctx).Warn("gate decision signal refused", "gate", d.Gate, "decision", d.Decision, "reason", err.Error())
		return
	}
	workflow.Go(ctx, func(ctx workflow.Context) {
		if _, err := w.gates.deliver(ctx, d); err != nil {
			workflow.GetLogger(ctx).Warn("gate decision not delivered", "gate", d.Gate, "error", err.Error())
		}
	})
}
