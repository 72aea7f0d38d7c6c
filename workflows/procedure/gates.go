package procedure

import (
	"fmt"
	"regexp"
	"slices"
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

// ErrGateSkipped ends a service as skipped: its gate's deadline passed and
// the configuration says skip.
var ErrGateSkipped = temporal.NewNonRetryableApplicationError("gate deadline passed", "GateSkipped", nil)

// gates is a child's view of its approval gates. Decisions arrive as
// signals at any time; only a decision for the gate that is waiting right
// now counts, so that nobody can approve a step before it is shown to them.
type gates struct {
	decision map[string]api.GateDecision
}

// listenForDecisions starts receiving gate decisions for the child's whole
// life and, from ChangeGateDecisionAck on, tells the parent whether each
// was taken, so that whoever decided learns the truth.
func (w *Run) listenForDecisions(ctx workflow.Context) {
	w.gates = &gates{decision: map[string]api.GateDecision{}}
	ch := workflow.GetSignalChannelWithOptions(ctx, api.GateDecisionSignal, workflow.SignalChannelOptions{Description: api.GateDecisionSignalDescription})
	workflow.Go(ctx, func(ctx workflow.Context) {
		for {
			var d api.GateDecision
			if !ch.Receive(ctx, &d) {
				return
			}
			reason := w.refuse(d)
			if reason == "" {
				w.gates.decision[d.Gate] = d
			} else {
				workflow.GetLogger(ctx).Warn("gate decision refused", "gate", d.Gate, "decision", d.Decision, "reason", reason)
				w.lastRefused = fmt.Sprintf("%s %s by %s refused: %s", d.Decision, d.Gate, OrSomeone(d.By), reason)
				workflow.SetCurrentDetails(ctx, w.details())
			}
			if w.parent == nil || workflow.GetVersion(ctx, ChangeGateDecisionAck, workflow.DefaultVersion, 1) != 1 {
				continue
			}
			ack := api.GateDecisionAck{RequestID: d.RequestID, Gate: d.Gate, Decision: d.Decision, By: d.By, Accepted: reason == "", Reason: reason}
			// A parent that is gone cannot be told; the decision stands as taken or not.
			_ = workflow.SignalExternalWorkflow(ctx, w.parent.ID, "", api.GateDecisionAckSignal, ack).Get(ctx, nil)
		}
	})
}

// refuse says why the child does not take a decision; "" takes it.
func (w *Run) refuse(d api.GateDecision) string {
	g := w.FindGate(d.Gate)
	switch {
	case d.Decision != api.Approve && d.Decision != api.Reject:
		return fmt.Sprintf("decision %q must be %s or %s", d.Decision, api.Approve, api.Reject)
	case g == nil:
		return fmt.Sprintf("service %s has no gate %q", w.Status.Service, d.Gate)
	case g.State == api.GateApproved || g.State == api.GateRejected:
		return fmt.Sprintf("gate %s was already %s by %s at %s", d.Gate, g.State, OrSomeone(g.By), g.Decided.UTC().Format(time.RFC3339))
	case g.State == api.GateExpired:
		return fmt.Sprintf("gate %s expired at %s, before the decision arrived", d.Gate, g.Decided.UTC().Format(time.RFC3339))
	case g.State != api.GateWaiting:
		return fmt.Sprintf("gate %s is %s, not waiting", d.Gate, g.State)
	}
	if prev, dup := w.gates.decision[d.Gate]; dup {
		return fmt.Sprintf("gate %s was already %sd by %s", d.Gate, prev.Decision, OrSomeone(prev.By))
	}
	return ""
}

// ChangeGateDecisionAck: the child acknowledges each gate decision to the
// parent, whose Update waits for that answer.
const ChangeGateDecisionAck = "gate-decision-ack"

// Gate waits at a named gate until a person approves or rejects it, or its
// deadline passes. Approved: nil. Rejected, or expired with onDeadline
// fail: a non-retryable error that ends the service as failed. Expired
// with onDeadline skip: ErrGateSkipped.
//
// A gate that guards undoing a destructive step (the procedure's
// RestoringGates) is never skipped: skipping would leave the damage and call the
// service skipped, so its deadline fails the service whatever onDeadline says.
func (w *Run) Gate(ctx workflow.Context, name, action, details string) error {
	g := w.FindGate(name)
	step := w.Find(name)
	now := workflow.Now(ctx)
	g.State, g.Action, g.Details, g.Opened = api.GateWaiting, action, details, now
	g.ApproveCommand = fmt.Sprintf("repopulate approve %s %s --note 'TEXT'", ShellWord(w.In.RunID), name)
	g.RejectCommand = fmt.Sprintf("repopulate reject %s %s --reason 'TEXT'", ShellWord(w.In.RunID), name)
	policy := w.In.Plan.Gates
	if policy.Deadline > 0 {
		g.Deadline = now.Add(policy.Deadline)
	}
	if w.restores(name) && policy.OnDeadline == api.OnDeadlineSkip {
		policy.OnDeadline = api.OnDeadlineFail
	}
	step.State, step.Started, step.Message = api.WaitingForApproval, now, "waiting for approval: "+action
	w.Status.State = api.WaitingForApproval
	w.Publish(ctx)

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
	w.Status.State = api.Running
	if d.Decision == api.Approve {
		g.State = api.GateApproved
		step.State, step.Ended, step.Message = api.Done, g.Decided, fmt.Sprintf("approved by %s%s", OrSomeone(d.By), NoteSuffix(d.Note))
		w.Publish(ctx)
		return nil
	}
	g.State = api.GateRejected
	msg := fmt.Sprintf("rejected by %s%s", OrSomeone(d.By), NoteSuffix(d.Note))
	return w.closeGate(ctx, name, api.GateRejected, msg, temporal.NewNonRetryableApplicationError(fmt.Sprintf("gate %s %s", name, msg), ErrGateRejected, nil))
}

// restores reports whether approving gate name undoes what an earlier
// step destroyed: its deadline cannot skip it.
func (w *Run) restores(name string) bool { return slices.Contains(w.proc.RestoringGates, name) }

// expire ends a gate whose deadline passed, as the policy says.
func (w *Run) expire(ctx workflow.Context, name string, policy api.GatePolicy) error {
	msg := fmt.Sprintf("nobody approved or rejected it within gates.deadline (%s)", policy.Deadline)
	if w.restores(name) && w.In.Plan.Gates.OnDeadline == api.OnDeadlineSkip {
		msg += "; gates.onDeadline skip does not apply here: this gate undoes a step already done"
	}
	if policy.OnDeadline == api.OnDeadlineSkip {
		return w.closeGate(ctx, name, api.GateExpired, msg+"; skipped as gates.onDeadline says", ErrGateSkipped)
	}
	return w.closeGate(ctx, name, api.GateExpired, msg, temporal.NewNonRetryableApplicationError(fmt.Sprintf("gate %s expired: %s", name, msg), ErrGateExpired, nil))
}

// closeGate records how a gate ended without approval and returns err.
func (w *Run) closeGate(ctx workflow.Context, name string, state api.GateState, msg string, err error) error {
	g := w.FindGate(name)
	g.State = state
	if g.Decided.IsZero() {
		g.Decided = workflow.Now(ctx)
	}
	stepState := api.Failed
	switch {
	case err == ErrGateSkipped:
		stepState = api.Skipped
	case temporal.IsCanceledError(err):
		stepState = api.Canceled
	}
	w.Status.State = api.Running
	w.Finish(ctx, name, stepState, msg, 0)
	return err
}

// SkipGate marks a gate that will not be reached (dry-run, nothing to do).
func (w *Run) SkipGate(ctx workflow.Context, name, why string) {
	w.FindGate(name).State = api.GateSkipped
	w.Finish(ctx, name, api.Skipped, why, 0)
}

// FindGate is the service's gate named name; nil when it has none.
func (w *Run) FindGate(name string) *api.GateStatus {
	for i := range w.Status.Gates {
		if w.Status.Gates[i].Name == name {
			return &w.Status.Gates[i]
		}
	}
	return nil
}

// OrSomeone names who decided, or says that nobody gave a name.
func OrSomeone(by string) string {
	if by == "" {
		return "an unnamed operator"
	}
	return by
}

// NoteSuffix is ": note", or nothing without one.
func NoteSuffix(note string) string {
	if note == "" {
		return ""
	}
	return ": " + note
}

var plainWord = regexp.MustCompile(`^[A-Za-z0-9_./:@%+=,-]+$`)

// ShellWord quotes s for a POSIX shell when it needs it, so that the
// commands shown can be pasted as they are.
func ShellWord(s string) string {
	if plainWord.MatchString(s) {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// SignalInput is the JSON to paste into the Web UI's Send Signal dialog.
func SignalInput(gate string, d api.Decision) string {
	note := "TEXT"
	if d == api.Reject {
		note = "REASON"
	}
	// Built by hand: encoding/json is not allowed in workflow code
	// (workflowcheck); gate names are plain words, so %q is valid JSON.
	return fmt.Sprintf(`{"gate":%q,"decision":%q,"by":"YOUR NAME","note":%q}`, gate, d, note)
}

// WebUIInstructions say how to decide a gate from the Web UI.
func WebUIInstructions(runID, gate string) string {
	return fmt.Sprintf("From the Web UI: open run %s (the parent workflow), Send Signal, signal name `%s`, input\n\n    %s\n\nor, to reject,\n\n    %s\n",
		runID, api.GateDecisionSignal, SignalInput(gate, api.Approve), SignalInput(gate, api.Reject))
}
