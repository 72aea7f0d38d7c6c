package workflows

import (
	"fmt"
	"strings"
	"time"

	"github.com/csmops/etcd-repopulate/internal/api"
	"github.com/csmops/etcd-repopulate/workflows/procedure"
	"go.temporal.io/sdk/workflow"
)

// ackTimeout bounds how long the parent's Update waits for the child's
// answer; below the CLI's own wait for the Update (30s).
const ackTimeout = 20 * time.Second

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
		return fmt.Errorf("gate %s of service %s is not waiting: it was %s by %s at %s", d.Gate, svc, prev.State, procedure.OrSomeone(prev.By), prev.Decided.UTC().Format(time.RFC3339))
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
		return fmt.Errorf("gate %s of service %s is not waiting: it was %s by %s at %s", d.Gate, svc, g.State, procedure.OrSomeone(g.By), g.Decided.UTC().Format(time.RFC3339))
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
	acked := workflow.GetVersion(ctx, procedure.ChangeGateDecisionAck, workflow.DefaultVersion, 1) == 1
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
			return api.GateStatus{}, fmt.Errorf("the decision was not taken: service %s ended before it arrived (%s), so gate %s was decided or closed first; `repopulate status %s` shows how", svc, procedure.ErrorMessage(err), d.Gate, r.run.status.RunID)
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
