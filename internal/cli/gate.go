package cli

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/user"
	"strings"
	"time"

	"github.com/spf13/cobra"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"

	"github.com/csmops/etcd-repopulate/internal/api"
	"github.com/csmops/etcd-repopulate/internal/catalog"
)

// decideTimeout bounds waiting for the run to take a decision: a run whose
// worker is down accepts no Update, and a person should hear so.
const decideTimeout = 30 * time.Second

type gateOptions struct {
	*globals
	decision api.Decision
	note     string
	service  string
}

func newApproveCommand(g *globals) *cobra.Command {
	o := &gateOptions{globals: g, decision: api.Approve}
	cmd := &cobra.Command{
		Use:   "approve RUN_ID GATE [--note TEXT] [--service SVC]",
		Short: "Approve a gate a run is waiting at",
		Long: `Approve a gate: the run goes on with the action the gate guards (for
cps-unmount: shutting down the compute nodes that boot from CPS). repopulate
status and watch list the gates waiting and print this command for each.

The run refuses a gate that does not exist or is not waiting (already
decided, expired, not reached yet) and changes nothing: the reason is
printed and the exit code is 2. Your user@host is recorded with the
decision, with --note if given.

Gates: ` + api.GateCPSUnmount + `, ` + api.GateCPSReboot + `, ` + api.GateBOSTemplates + `. Gate names are unique within a
run today; --service checks that the gate belongs to that service.`,
		Example: `  repopulate approve repopulate-20261123-101500 cps-unmount --note "users warned, CHG-1234"
  repopulate approve RUN_ID bos-templates --service bos -o json`,
		Args:              gateArgs,
		ValidArgsFunction: g.completeRunAndGate,
		RunE:              o.runE,
	}
	cmd.Flags().StringVar(&o.note, "note", "", "a note kept with the approval (change ticket, who was told)")
	o.addServiceFlag(cmd)
	return cmd
}

func newRejectCommand(g *globals) *cobra.Command {
	o := &gateOptions{globals: g, decision: api.Reject}
	cmd := &cobra.Command{
		Use:   "reject RUN_ID GATE --reason TEXT [--service SVC]",
		Short: "Reject a gate a run is waiting at; its service stops there",
		Long: `Reject a gate: the service that waits at it stops without doing what the
gate guards, and the report says why. --reason is required and is recorded
with your user@host.

The run refuses a gate that does not exist or is not waiting and changes
nothing: the reason is printed and the exit code is 2.`,
		Example:           `  repopulate reject repopulate-20261123-101500 cps-reboot --reason "nodes still draining jobs"`,
		Args:              gateArgs,
		ValidArgsFunction: g.completeRunAndGate,
		RunE:              o.runE,
	}
	cmd.Flags().StringVar(&o.note, "reason", "", "why the gate is rejected (required)")
	o.addServiceFlag(cmd)
	return cmd
}

func (o *gateOptions) addServiceFlag(cmd *cobra.Command) {
	cmd.Flags().StringVar(&o.service, "service", "", "the service the gate belongs to (optional: gate names are unique)")
	_ = cmd.RegisterFlagCompletionFunc("service", completeService)
}

func gateArgs(cmd *cobra.Command, args []string) error {
	if len(args) != 2 || strings.TrimSpace(args[0]) == "" || strings.TrimSpace(args[1]) == "" {
		return badInput("%s takes RUN_ID and GATE (repopulate status RUN_ID lists the gates waiting), got %d arguments", cmd.CommandPath(), len(args))
	}
	return nil
}

func (o *gateOptions) runE(cmd *cobra.Command, args []string) error {
	if err := o.validateOutput(); err != nil {
		return err
	}
	if o.decision == api.Reject && strings.TrimSpace(o.note) == "" {
		return badInput("reject needs --reason TEXT: it is recorded with the decision and shown in the report")
	}
	var svc api.Service
	if o.service != "" {
		svcs, err := catalog.Parse([]string{o.service})
		if err != nil || len(svcs) != 1 {
			return badInput("--service %q: give one of %s", o.service, catalog.Names())
		}
		svc = svcs[0]
	}
	c, err := o.dial(cmd.Context())
	if err != nil {
		return err
	}
	defer c.Close()
	id, gate := args[0], args[1]
	d := api.GateDecision{Gate: gate, Decision: o.decision, By: whoAmI(), Note: o.note}
	gs, err := decideGate(cmd.Context(), c, o.conn.Namespace, id, svc, d)
	if err != nil {
		return err
	}
	if o.output == "json" {
		return writeJSON(o.streams.Out, gs)
	}
	verb, noteName := "approved", "note"
	if o.decision == api.Reject {
		verb, noteName = "rejected", "reason"
	}
	if gs.State != "" && gs.State != api.GateApproved && gs.State != api.GateRejected {
		verb = string(gs.State)
	}
	by, note := gs.By, gs.Note
	if by == "" {
		by, note = d.By, d.Note
	}
	fmt.Fprintf(o.streams.Out, "%s gate %s of run %s (by %s", verb, gate, id, by)
	if note != "" {
		fmt.Fprintf(o.streams.Out, ", %s %q", noteName, note)
	}
	fmt.Fprintln(o.streams.Out, ")")
	return nil
}

// decideGate sends the decision as the parent's Update and returns the gate
// after it. The parent's validator refuses a gate that is unknown or not
// waiting before anything is written to history; that refusal, like every
// other reason the run gives, is bad input (exit 2) because nothing changed.
func decideGate(ctx context.Context, c client.Client, namespace, id string, svc api.Service, d api.GateDecision) (api.GateStatus, error) {
	info, err := describeRun(ctx, c, id, namespace)
	if err != nil {
		return api.GateStatus{}, err
	}
	if info.GetStatus() != enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING {
		return api.GateStatus{}, badInput("run %s has already finished (%s): its gates can no longer be decided; see repopulate report %s", id, statusName(info.GetStatus()), id)
	}
	if svc != "" {
		if err := checkGateService(ctx, c, namespace, id, svc, d.Gate); err != nil {
			return api.GateStatus{}, err
		}
	}
	ctx, cancel := context.WithTimeout(ctx, decideTimeout)
	defer cancel()
	var gs api.GateStatus
	h, err := c.UpdateWorkflow(ctx, client.UpdateWorkflowOptions{
		WorkflowID:   id,
		UpdateName:   api.DecideGateUpdate,
		Args:         []any{d},
		WaitForStage: client.WorkflowUpdateStageCompleted,
	})
	if err == nil {
		err = h.Get(ctx, &gs)
	}
	if err == nil {
		return gs, nil
	}
	var appErr *temporal.ApplicationError
	var nf *serviceerror.NotFound
	switch {
	case errors.As(err, &appErr):
		return api.GateStatus{}, badInput("run %s refused: %s", id, appErr.Message())
	case errors.As(err, &nf):
		return api.GateStatus{}, badInput("run %s has finished or does not exist: its gates can no longer be decided (%v)", id, err)
	case errors.Is(err, context.DeadlineExceeded):
		return api.GateStatus{}, &ExitError{Code: ExitFailed, Err: fmt.Errorf("run %s did not answer within %s: is a repopulate-worker running on task queue %q? Nothing was decided", id, decideTimeout, info.GetTaskQueue())}
	}
	return api.GateStatus{}, fmt.Errorf("decide gate %s of run %s: %w", d.Gate, id, err)
}

// checkGateService makes --service mean something while gate names are
// unique: the named service must own the gate.
func checkGateService(ctx context.Context, c client.Client, namespace, id string, svc api.Service, gate string) error {
	st, _, err := fetch(ctx, c, id, namespace)
	if err != nil {
		return err
	}
	for _, s := range st.Services {
		if s.Service != svc {
			continue
		}
		var names []string
		for _, gt := range s.Gates {
			if gt.Name == gate {
				return nil
			}
			names = append(names, gt.Name)
		}
		return badInput("service %s of run %s has no gate %q (its gates: %s)", svc, id, gate, strings.Join(names, ", "))
	}
	return badInput("run %s does not include service %s", id, svc)
}

// whoAmI is user@host, recorded with a decision.
func whoAmI() string {
	name := os.Getenv("USER")
	if u, err := user.Current(); err == nil && u.Username != "" {
		name = u.Username
	}
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "unknown-host"
	}
	return name + "@" + host
}
