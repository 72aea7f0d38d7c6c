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

// listenForDecisions starts receiving gate decisions for the child's whole
// life and, from changeGateDecisionAck on, tells the parent whether each
// was taken, so that whoever decided learns the truth.
func (w *serviceRun) listenForDecisions(ctx workflow.Context) {
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
				w.lastRefused = fmt.Sprintf("%s %s by %s refused: %s", d.Decision, d.Gate, orSomeone(d.By), reason)
				workflow.SetCurrentDetails(ctx, w.details())
			}
			if w.parent == nil || workflow.GetVersion(ctx, changeGateDecisionAck, workflow.DefaultVersion, 1) != 1 {
				continue
			}
			ack := api.GateDecisionAck{RequestID: d.RequestID, Gate: d.Gate, Decision: d.Decision, By: d.By, Accepted: reason == "", Reason: reason}
			// A parent that is gone cannot be told; the decision stands as taken or not.
			_ = workflow.SignalExternalWorkflow(ctx, w.parent.ID, "", api.GateDecisionAckSignal, ack).Get(ctx, nil)
		}
	})
}

// refuse says why the child does not take a decision; "" takes it.
func (w *serviceRun) refuse(d api.GateDecision) string {
	g := w.findGate(d.Gate)
	switch {
	case d.Decision != api.Approve && d.Decision != api.Reject:
		return fmt.Sprintf("decision %q must be %s or %s", d.Decision, api.Approve, api.Reject)
	case g == nil:
		return fmt.Sprintf("service %s has no gate %q", w.status.Service, d.Gate)
	case g.State == api.GateApproved || g.State == api.GateRejected:
		return fmt.Sprintf("gate %s was already %s by %s at %s", d.Gate, g.State, orSomeone(g.By), g.Decided.UTC().Format(time.RFC3339))
	case g.State == api.GateExpired:
		return fmt.Sprintf("gate %s expired at %s, before the decision arrived", d.Gate, g.Decided.UTC().Format(time.RFC3339))
	case g.State != api.GateWaiting:
		return fmt.Sprintf("gate %s is %s, not waiting", d.Gate, g.State)
	}
	if prev, dup := w.gates.decision[d.Gate]; dup {
		return fmt.Sprintf("gate %s was already %sd by %s", d.Gate, prev.Decision, orSomeone(prev.By))
	}
	return ""
}

// changeGateDecisionAck: the child acknowledges each gate decision to the
// parent, whose Update waits for that answer.
const changeGateDecisionAck = "gate-decision-ack"

// ackTimeout bounds how long the parent's Update waits for the child's
// answer; below the CLI's own wait for the Update (30s).
const ackTimeout = 20 * time.Second

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
// against what the children reported, delivers it to the child that owns
// the gate and waits for the child's answer.
type gateRouter struct {
	run *repopulate
	// decided remembers decisions already delivered, so a second approval
	// is refused even before the child has reported the first one back.
	decided map[string]api.GateStatus
	// acks are the children's answers by request, and seq numbers requests.
	acks map[string]api.GateDecisionAck
	seq  int
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
		if st := r.run.service(svc); st.State == api.Pending {
			return fmt.Errorf("gate %s of service %s is not open yet: %s has not started (%s); the gate opens once it has, and `repopulate status` shows it waiting with what approving it does — decide then", d.Gate, svc, svc, orDefault(st.Message, "it waits for another service"))
		}
		return fmt.Errorf("gate %s of service %s is not waiting yet: the service has not reached it (try again when `repopulate status` shows it waiting)", d.Gate, svc)
	case api.GateApproved, api.GateRejected:
		return fmt.Errorf("gate %s of service %s is not waiting: it was %s by %s at %s", d.Gate, svc, g.State, orSomeone(g.By), g.Decided.UTC().Format(time.RFC3339))
	}
	return fmt.Errorf("gate %s of service %s is not waiting: it is %s", d.Gate, svc, g.State)
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// deliver sends an accepted decision to the child and returns the gate as
// the child decided it; a decision the child refuses (its gate expired
// meanwhile) is an error that says so.
func (r *gateRouter) deliver(ctx workflow.Context, d api.GateDecision) (api.GateStatus, error) {
	svc, g := r.lookup(d.Gate)
	out := *g
	out.State, out.Decided, out.By, out.Note = api.GateApproved, workflow.Now(ctx), d.By, d.Note
	if d.Decision == api.Reject {
		out.State = api.GateRejected
	}
	r.decided[d.Gate] = out
	acked := workflow.GetVersion(ctx, changeGateDecisionAck, workflow.DefaultVersion, 1) == 1
	if acked {
		r.seq++
		d.RequestID = fmt.Sprintf("%s-%d", d.Gate, r.seq)
	}
	child := api.ServiceWorkflowID(r.run.status.RunID, svc)
	if err := workflow.SignalExternalWorkflow(ctx, child, "", api.GateDecisionSignal, d).Get(ctx, nil); err != nil {
		delete(r.decided, d.Gate)
		if acked {
			// The child ended between the check and the delivery: its gate
			// was decided, or expired, first.
			return api.GateStatus{}, fmt.Errorf("the decision was not taken: service %s ended before it arrived (%s), so gate %s was decided or closed first; `repopulate status %s` shows how", svc, errorMessage(err), d.Gate, r.run.status.RunID)
		}
		return api.GateStatus{}, fmt.Errorf("deliver the decision to %s: %w", child, err)
	}
	if !acked {
		return out, nil
	}
	answered, err := workflow.AwaitWithTimeout(ctx, ackTimeout, func() bool { _, ok := r.acks[d.RequestID]; return ok })
	if err != nil {
		delete(r.decided, d.Gate)
		return api.GateStatus{}, err
	}
	ack := r.acks[d.RequestID]
	delete(r.acks, d.RequestID)
	switch {
	case !answered:
		delete(r.decided, d.Gate)
		return api.GateStatus{}, fmt.Errorf("the decision was sent to %s, which did not confirm it within %s: `repopulate status %s` shows whether gate %s took it", child, ackTimeout, r.run.status.RunID, d.Gate)
	case !ack.Accepted:
		delete(r.decided, d.Gate)
		return api.GateStatus{}, fmt.Errorf("service %s refused the decision: %s", svc, ack.Reason)
	}
	return out, nil
}

// listenForAcks keeps the children's answers for the deliveries waiting on
// them; an answer nobody waits for (a decision signalled to the child
// directly) that refuses is recorded like any refused decision.
func (r *gateRouter) listenForAcks(ctx workflow.Context) {
	ch := workflow.GetSignalChannelWithOptions(ctx, api.GateDecisionAckSignal, workflow.SignalChannelOptions{Description: api.GateDecisionAckDescription})
	workflow.Go(ctx, func(ctx workflow.Context) {
		for {
			var ack api.GateDecisionAck
			if !ch.Receive(ctx, &ack) {
				return
			}
			if ack.RequestID != "" {
				r.acks[ack.RequestID] = ack
				continue
			}
			if !ack.Accepted {
				r.run.refused(ctx, api.GateDecision{Gate: ack.Gate, Decision: ack.Decision, By: ack.By}, ack.Reason)
			}
		}
	})
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
	w.gates = &gateRouter{run: w, decided: map[string]api.GateStatus{}, acks: map[string]api.GateDecisionAck{}}
	w.gates.listenForAcks(ctx)
	return workflow.SetUpdateHandlerWithOptions(ctx, api.DecideGateUpdate,
		func(ctx workflow.Context, d api.GateDecision) (api.GateStatus, error) {
			// Validated again: state may have changed since the validator ran.
			if err := w.gates.validate(d); err != nil {
				return api.GateStatus{}, err
			}
			return w.gates.deliver(ctx, d)
		},
		workflow.UpdateHandlerOptions{
			Validator:   func(ctx workflow.Context, d api.GateDecision) error { return w.gates.validate(d) },
			Description: api.DecideGateUpdateDescription,
		},
	)
}

// routeSignal handles a decision sent as a signal (Web UI, temporal CLI):
// the same checks as the Update; a signal cannot answer, so a refused one
// is kept in status and shown in the run's details with its reason.
func (w *repopulate) routeSignal(ctx workflow.Context, d api.GateDecision) {
	if err := w.gates.validate(d); err != nil {
		w.refused(ctx, d, err.Error())
		return
	}
	workflow.Go(ctx, func(ctx workflow.Context) {
		if _, err := w.gates.deliver(ctx, d); err != nil {
			w.refused(ctx, d, err.Error())
		}
	})
}

// refused records a decision the run did not take, newest last.
func (w *repopulate) refused(ctx workflow.Context, d api.GateDecision, reason string) {
	workflow.GetLogger(ctx).Warn("gate decision refused", "gate", d.Gate, "decision", d.Decision, "reason", reason)
	r := append(w.status.RefusedDecisions, api.RefusedDecision{Gate: d.Gate, Decision: d.Decision, By: d.By, Reason: reason, At: workflow.Now(ctx)})
	w.status.RefusedDecisions = r[max(0, len(r)-api.RefusedDecisionsKept):]
	w.showDetails(ctx)
}

// signalInput is the JSON to paste into the Web UI's Send Signal dialog.
func signalInput(gate string, d api.Decision) string {
	note := "TEXT"
	if d == api.Reject {
		note = "REASON"
	}
	// Built by hand: encoding/json is not allowed in workflow code
	// (workflowcheck); gate names are plain words, so %q is valid JSON.
	return fmt.Sprintf(`{"gate":%q,"decision":%q,"by":"YOUR NAME","note":%q}`, gate, d, note)
}

// webUIInstructions say how to decide a gate from the Web UI.
func webUIInstructions(runID, gate string) string {
	return fmt.Sprintf("From the Web UI: open run %s (the parent workflow), Send Signal, signal name `%s`, input\n\n    %s\n\nor, to reject,\n\n    %s\n",
		runID, api.GateDecisionSignal, signalInput(gate, api.Approve), signalInput(gate, api.Reject))
}
