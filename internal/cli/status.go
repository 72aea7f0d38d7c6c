package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	workflowpb "go.temporal.io/api/workflow/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/temporal"

	"github.com/csmops/etcd-repopulate/internal/api"
)

func newStatusCommand(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "status RUN_ID",
		Short: "Show where a run stands, per service and step",
		Long: `Show the state of every service and step of a run: pending, running, done,
failed, skipped or waiting-for-approval, with times, attempt and a one-line
message. Gates waiting for a person are listed under the table with the
approve and reject commands. Works on running and finished runs; to follow
a run as it goes use repopulate watch.`,
		Example: `  repopulate status repopulate-20261123-101500
  repopulate status RUN_ID -o json | jq '.services[] | select(.state == "failed")'`,
		Args:              runIDArg,
		ValidArgsFunction: g.completeRunID,
		RunE: func(cmd *cobra.Command, args []string) error {
			st, _, err := g.load(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			return g.print(st)
		},
	}
}

func newReportCommand(g *globals) *cobra.Command {
	var nodes bool
	cmd := &cobra.Command{
		Use:   "report RUN_ID [--nodes]",
		Short: "Print a finished run's report and the follow-ups left to people",
		Long: `Print the report of a finished run: per service what was done, what failed
and why, and what a person must still do. Exits 1 when a service failed and 3
when the run has not finished yet (see repopulate status).

The report carries node counts and the first ` + fmt.Sprint(api.NodeProblemsInStatus) + ` nodes that did not restart
orca, so that it stays small at any node count. --nodes lists every one with
its reason, read from the hmnfd service's batch results in the run's history.`,
		Example: `  repopulate report repopulate-20261123-101500
  repopulate report RUN_ID -o json > report.json
  repopulate report RUN_ID --nodes -o json | jq -r '.services[].nodeProblems[]?.host'`,
		Args:              runIDArg,
		ValidArgsFunction: g.completeRunID,
		RunE: func(cmd *cobra.Command, args []string) error {
			st, closed, err := g.load(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			if nodes {
				if err := g.allNodeProblems(cmd.Context(), &st); err != nil {
					return err
				}
			}
			if err := g.print(st); err != nil {
				return err
			}
			if nodes && g.output == "text" {
				writeNodeProblems(g.streams.Out, st)
			}
			if !closed {
				return &ExitError{Code: ExitRunning, Err: fmt.Errorf("run %s has not finished: follow it with repopulate status %s", args[0], args[0])}
			}
			return outcomeError(st)
		},
	}
	cmd.Flags().BoolVar(&nodes, "nodes", false, "list every node that did not restart, with its reason (read from the run's history)")
	return cmd
}

// nodeBatch is the part of a node batch's activity result (RestartOrca's
// BatchResult) the report reads.
type nodeBatch struct {
	Problems []api.NodeProblem `json:"problems"`
}

// allNodeProblems replaces each fan-out service's first problems with all
// of them, from its child's RestartOrca results in history: no worker needed.
func (g *globals) allNodeProblems(ctx context.Context, st *api.RunStatus) error {
	c, err := g.dial(ctx)
	if err != nil {
		return err
	}
	defer c.Close()
	for i := range st.Services {
		s := &st.Services[i]
		if s.Nodes == nil {
			continue
		}
		id := s.WorkflowID
		if id == "" {
			id = api.ServiceWorkflowID(st.RunID, s.Service)
		}
		all, err := nodeProblemsFromHistory(ctx, c, id)
		if err != nil {
			return err
		}
		s.NodeProblems = all
	}
	return nil
}

func nodeProblemsFromHistory(ctx context.Context, c client.Client, workflowID string) ([]api.NodeProblem, error) {
	it := c.GetWorkflowHistory(ctx, workflowID, "", false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	scheduled := map[int64]string{}
	out := []api.NodeProblem{}
	for it.HasNext() {
		ev, err := it.Next()
		if err != nil {
			return nil, fmt.Errorf("read the history of %s for its node results: %w", workflowID, err)
		}
		if a := ev.GetActivityTaskScheduledEventAttributes(); a != nil {
			scheduled[ev.GetEventId()] = a.GetActivityType().GetName()
		}
		if a := ev.GetActivityTaskCompletedEventAttributes(); a != nil && scheduled[a.GetScheduledEventId()] == api.ActivityRestartOrca {
			var b nodeBatch
			if err := converter.GetDefaultDataConverter().FromPayloads(a.GetResult(), &b); err != nil {
				return nil, fmt.Errorf("decode a node batch result in the history of %s: %w", workflowID, err)
			}
			out = append(out, b.Problems...)
		}
	}
	return out, nil
}

// writeNodeProblems lists every node that did not restart, per service.
func writeNodeProblems(w io.Writer, st api.RunStatus) {
	for _, s := range st.Services {
		if s.Nodes == nil {
			continue
		}
		fmt.Fprintf(w, "\nNodes that did not restart (%s): %d\n", s.Service, len(s.NodeProblems))
		if len(s.NodeProblems) == 0 {
			continue
		}
		tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "  HOST\tSTATUS\tREASON")
		for _, p := range s.NodeProblems {
			fmt.Fprintf(tw, "  %s\t%s\t%s\n", p.Host, p.Status, oneLine(p.Reason))
		}
		_ = tw.Flush()
	}
}

func newCancelCommand(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "cancel RUN_ID",
		Short: "Cancel a run; objects already deleted are still re-created",
		Long: `Ask a run to stop. Steps not started are skipped. A service that has
already deleted its Job or EtcdCluster still creates it again from the saved
copy before it stops, so canceling never leaves an object missing.`,
		Example:           `  repopulate cancel repopulate-20261123-101500 && repopulate watch repopulate-20261123-101500`,
		Args:              runIDArg,
		ValidArgsFunction: g.completeRunID,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.dial(cmd.Context())
			if err != nil {
				return err
			}
			defer c.Close()
			if _, _, err := fetch(cmd.Context(), c, args[0], g.conn.Namespace); err != nil {
				return err
			}
			if err := c.CancelWorkflow(cmd.Context(), args[0], ""); err != nil {
				return fmt.Errorf("cancel run %s: %w", args[0], err)
			}
			fmt.Fprintf(g.streams.Out, "cancel requested for run %s; follow it with repopulate status %s\n", args[0], args[0])
			return nil
		},
	}
}

// load checks -o, connects and fetches one run.
func (g *globals) load(ctx context.Context, id string) (api.RunStatus, bool, error) {
	if err := g.validateOutput(); err != nil {
		return api.RunStatus{}, false, err
	}
	c, err := g.dial(ctx)
	if err != nil {
		return api.RunStatus{}, false, err
	}
	defer c.Close()
	return fetch(ctx, c, id, g.conn.Namespace)
}

// fetch returns a run's status and whether it has finished. A running run
// answers the status query; a finished one its result, or the report carried
// in its failure.
func fetch(ctx context.Context, c client.Client, id, namespace string) (api.RunStatus, bool, error) {
	info, err := describeRun(ctx, c, id, namespace)
	if err != nil {
		return api.RunStatus{}, false, err
	}
	if info.GetStatus() == enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING {
		v, err := c.QueryWorkflow(ctx, id, "", api.StatusQuery)
		if err != nil {
			return api.RunStatus{}, false, fmt.Errorf("query run %s: %w (is a repopulate-worker running on task queue %q?)", id, err, info.GetTaskQueue())
		}
		var st api.RunStatus
		if err := v.Get(&st); err != nil {
			return api.RunStatus{}, false, fmt.Errorf("decode status of run %s: %w", id, err)
		}
		return st, false, nil
	}
	var st api.RunStatus
	err = c.GetWorkflow(ctx, id, "").Get(ctx, &st)
	if err == nil {
		return st, true, nil
	}
	var appErr *temporal.ApplicationError
	var canceled *temporal.CanceledError
	switch {
	case errors.As(err, &appErr) && appErr.HasDetails() && appErr.Details(&st) == nil && st.RunID != "":
	case errors.As(err, &canceled) && canceled.HasDetails() && canceled.Details(&st) == nil && st.RunID != "":
	default:
		// Failed before it had a report (bad request), or terminated.
		st = api.RunStatus{RunID: id, State: api.Failed, Message: rootMessage(err), Started: info.GetStartTime().AsTime()}
		if info.GetStatus() == enumspb.WORKFLOW_EXECUTION_STATUS_CANCELED {
			st.State = api.Canceled
		}
	}
	if st.State == "" || !st.State.Finished() {
		st.State = api.Failed
	}
	return st, true, nil
}

// describeRun finds a run, with an error that says what to check when there
// is none or the ID names another kind of workflow.
func describeRun(ctx context.Context, c client.Client, id, namespace string) (*workflowpb.WorkflowExecutionInfo, error) {
	desc, err := c.DescribeWorkflowExecution(ctx, id, "")
	if err != nil {
		var nf *serviceerror.NotFound
		if errors.As(err, &nf) {
			return nil, badInput("no run %q in Temporal namespace %q: check the ID that repopulate start printed (repopulate list shows recent runs), and --namespace", id, namespace)
		}
		return nil, fmt.Errorf("describe run %s: %w", id, err)
	}
	info := desc.GetWorkflowExecutionInfo()
	if info.GetType().GetName() != api.RepopulateWorkflow {
		return nil, badInput("%q is a %s workflow, not a repopulate run", id, info.GetType().GetName())
	}
	return info, nil
}

func rootMessage(err error) string {
	var appErr *temporal.ApplicationError
	if errors.As(err, &appErr) {
		return appErr.Message()
	}
	return err.Error()
}

// outcomeError turns a finished run that did not succeed into exit code 1.
func outcomeError(st api.RunStatus) error {
	if st.State == api.Done {
		return nil
	}
	return &ExitError{Code: ExitFailed, Err: fmt.Errorf("run %s %s: %s", st.RunID, st.State, st.Message)}
}

func (g *globals) print(st api.RunStatus) error {
	if g.output == "json" {
		return writeJSON(g.streams.Out, st)
	}
	writeText(g.streams.Out, st)
	return nil
}

// writeText prints a run as a table of services and their steps, then the
// follow-ups.
func writeText(w io.Writer, st api.RunStatus) {
	mode := ""
	if st.DryRun {
		mode = " (dry-run)"
	}
	fmt.Fprintf(w, "Run %s%s: %s", st.RunID, mode, st.State)
	if st.Message != "" {
		fmt.Fprintf(w, " — %s", st.Message)
	}
	fmt.Fprintln(w)
	switch {
	case st.Detection != nil:
		fmt.Fprintf(w, "CSM release %s: %s\n", st.Detection.Release, st.Detection.How)
	case st.Release != "":
		fmt.Fprintf(w, "CSM release %s\n", st.Release)
	case st.Profile != "": // a run from before releases were detected
		fmt.Fprintf(w, "profile %s\n", st.Profile)
	}
	for _, n := range st.Notes {
		fmt.Fprintln(w, n)
	}
	if st.Snapshot != "" {
		fmt.Fprintf(w, "snapshot %s\n", st.Snapshot)
	}
	if st.ChosenByPlan != nil {
		writeChosenByPlan(w, st.ChosenByPlan)
	}
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SERVICE\tSTEP\tSTATE\tATTEMPT\tTIME\tMESSAGE")
	for _, s := range st.Services {
		fmt.Fprintf(tw, "%s\t\t%s\t\t\t%s\n", s.Service, s.State, oneLine(s.Message))
		for _, step := range s.Steps {
			attempt := ""
			if step.Attempt > 0 {
				attempt = fmt.Sprint(step.Attempt)
			}
			fmt.Fprintf(tw, "\t%s\t%s\t%s\t%s\t%s\n", step.Name, step.State, attempt, duration(step.Started, step.Ended), oneLine(step.Message))
		}
	}
	_ = tw.Flush()
	var waiting []string
	for _, s := range st.Services {
		for _, gt := range s.Gates {
			if gt.State == api.GateWaiting {
				waiting = append(waiting, gateLines(st.RunID, s.Service, gt, time.Now())...)
			}
		}
	}
	if len(waiting) > 0 {
		fmt.Fprintf(w, "\nWaiting for approval:\n%s\n", strings.Join(waiting, "\n"))
	}
	writeGateDecisions(w, st)
	if len(st.RefusedDecisions) > 0 {
		fmt.Fprintln(w, "\nRefused gate decisions (latest last):")
		for _, r := range st.RefusedDecisions {
			fmt.Fprintf(w, "  %s %s %q by %s: %s\n", r.At.UTC().Format(time.RFC3339), r.Decision, r.Gate, orUnnamed(r.By), oneLine(r.Reason))
		}
	}
	writeOrcaUnits(w, st)
	var follow []string
	for _, s := range st.Services {
		for _, f := range s.FollowUps {
			follow = append(follow, fmt.Sprintf("  %s: %s", s.Service, f))
		}
	}
	if len(follow) > 0 {
		fmt.Fprintf(w, "\nFollow-ups for people:\n%s\n", strings.Join(follow, "\n"))
	}
	writeEvidence(w, st)
}

// writeEvidence ends the report with what each service's last check
// looked at and found: the evidence that its data is back, or is not.
func writeEvidence(w io.Writer, st api.RunStatus) {
	var rows []string
	for _, s := range st.Services {
		if e := s.Evidence; e != nil {
			result := "passed"
			if !e.OK {
				result = "FAILED"
			}
			rows = append(rows, fmt.Sprintf("%s\t%s\t%s\t%s", s.Service, result, oneLine(e.Checked), oneLine(e.Found)))
		}
	}
	if len(rows) == 0 {
		return
	}
	fmt.Fprintln(w, "\nEvidence:")
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SERVICE\tCHECK\tCHECKED\tFOUND")
	for _, r := range rows {
		fmt.Fprintln(tw, r)
	}
	_ = tw.Flush()
}

// writeChosenByPlan lists repopulate plan's verdicts a run was started
// from (--services auto): the services that lost data are the run's.
func writeChosenByPlan(w io.Writer, p *api.PlanVerdicts) {
	ref := "none"
	if p.ReferenceFrom != "" {
		ref = p.ReferenceFrom
		if !p.Reference.IsZero() {
			ref += ", " + p.Reference.UTC().Format(time.RFC3339)
		}
	}
	fmt.Fprintf(w, "Chosen by plan (--services auto; release %s, reference: %s):\n", p.Release, ref)
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	for _, v := range p.Services {
		fmt.Fprintf(tw, "  %s\t%s\t%s\n", v.Service, v.Verdict, oneLine(v.Reason))
	}
	_ = tw.Flush()
}

// writeOrcaUnits says which orca unit each node restarted.
func writeOrcaUnits(w io.Writer, st api.RunStatus) {
	for _, s := range st.Services {
		if len(s.OrcaUnits) == 0 {
			continue
		}
		fmt.Fprintf(w, "\nOrca units restarted (%s):\n", s.Service)
		units := make([]string, 0, len(s.OrcaUnits))
		for u := range s.OrcaUnits {
			units = append(units, u)
		}
		sort.Strings(units)
		for _, u := range units {
			hosts, n := s.OrcaUnits[u], s.OrcaUnitCounts[u]
			if n < len(hosts) { // a status from before the counts
				n = len(hosts)
			}
			more := ""
			if n > len(hosts) {
				more = fmt.Sprintf(" and %d more (repopulate report %s --nodes)", n-len(hosts), st.RunID)
			}
			fmt.Fprintf(w, "  %s on %d nodes: %s%s\n", u, n, strings.Join(hosts, ","), more)
		}
	}
}

// writeGateDecisions lists who decided each gate, when and with what
// note, or that its deadline passed: the record the report keeps.
func writeGateDecisions(w io.Writer, st api.RunStatus) {
	var lines []string
	for _, s := range st.Services {
		for _, g := range s.Gates {
			switch g.State {
			case api.GateApproved, api.GateRejected:
				line := fmt.Sprintf("  %s (%s) %s by %s at %s", g.Name, s.Service, g.State, g.By, g.Decided.UTC().Format(time.RFC3339))
				if g.Note != "" {
					line += ": " + g.Note
				}
				lines = append(lines, line)
			case api.GateExpired:
				lines = append(lines, fmt.Sprintf("  %s (%s) expired at %s: nobody decided within gates.deadline", g.Name, s.Service, g.Decided.UTC().Format(time.RFC3339)))
			}
		}
	}
	if len(lines) > 0 {
		fmt.Fprintf(w, "\nGate decisions:\n%s\n", strings.Join(lines, "\n"))
	}
}

func orUnnamed(by string) string {
	if by == "" {
		return "an unnamed sender"
	}
	return by
}

func duration(start, end time.Time) string {
	switch {
	case start.IsZero():
		return ""
	case end.IsZero():
		return time.Since(start).Truncate(time.Second).String() + "…"
	}
	return end.Sub(start).Round(10 * time.Millisecond).String()
}

func oneLine(s string) string { return strings.ReplaceAll(s, "\n", " ") }
