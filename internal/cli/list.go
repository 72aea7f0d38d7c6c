package cli

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	commonpb "go.temporal.io/api/common/v1"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/converter"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/csmops/etcd-repopulate/internal/api"
	"github.com/csmops/etcd-repopulate/internal/catalog"
)

// RunSummary is one row of repopulate list.
type RunSummary struct {
	RunID    string    `json:"runId"`
	Status   string    `json:"status"`
	Started  time.Time `json:"started"`
	Closed   time.Time `json:"closed,omitzero"`
	Services []string  `json:"services,omitempty"`
	DryRun   bool      `json:"dryRun"`
	// Release is the release the run acts for (profile in older runs).
	Release string `json:"release,omitempty"`
}

// listStatuses are the --status values and the visibility query's names.
var listStatuses = map[string]string{
	"running":   "Running",
	"completed": "Completed",
	"failed":    "Failed",
	"canceled":  "Canceled",
}

type listOptions struct {
	*globals
	limit   int
	service string
	status  string
}

func newListCommand(g *globals) *cobra.Command {
	o := &listOptions{globals: g}
	cmd := &cobra.Command{
		Use:   "list [--limit 20] [--service SVC] [--status running|completed|failed|canceled]",
		Short: "List recent runs, newest first",
		Long: `List recent runs from Temporal's visibility store, newest first: run ID,
status, start time, duration, services and whether it was a dry run.

--service keeps the runs that included that service (read from the run's
memo; runs without one are left out). --status keeps the runs in that state:
running, completed, failed or canceled.`,
		Example: `  repopulate list
  repopulate list --status running
  repopulate list --service hmnfd --limit 5 -o json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := o.validate(); err != nil {
				return err
			}
			c, err := g.dial(cmd.Context())
			if err != nil {
				return err
			}
			defer c.Close()
			runs, err := listRuns(cmd.Context(), c, g.conn.Namespace, o.limit, o.service, o.status)
			if err != nil {
				return err
			}
			if g.output == "json" {
				return writeJSON(g.streams.Out, runs)
			}
			writeRuns(g.streams.Out, runs, time.Now())
			return nil
		},
	}
	cmd.Flags().IntVar(&o.limit, "limit", 20, "show at most this many runs")
	cmd.Flags().StringVar(&o.service, "service", "", "only runs that included this service ("+catalog.Names()+")")
	cmd.Flags().StringVar(&o.status, "status", "", "only runs in this state: running, completed, failed or canceled")
	_ = cmd.RegisterFlagCompletionFunc("service", completeService)
	_ = cmd.RegisterFlagCompletionFunc("status", cobra.FixedCompletions(slices.Sorted(maps.Keys(listStatuses)), cobra.ShellCompDirectiveNoFileComp))
	return cmd
}

func (o *listOptions) validate() error {
	if err := o.validateOutput(); err != nil {
		return err
	}
	if o.limit <= 0 {
		return badInput("--limit %d: must be at least 1", o.limit)
	}
	if o.service != "" {
		svcs, err := catalog.Parse([]string{o.service})
		if err != nil || len(svcs) != 1 {
			return badInput("--service %q: give one of %s", o.service, catalog.Names())
		}
		o.service = string(svcs[0])
	}
	if _, ok := listStatuses[o.status]; o.status != "" && !ok {
		return badInput("--status %q: want running, completed, failed or canceled", o.status)
	}
	return nil
}

// maxScanned bounds how many runs a --service filter reads from the
// visibility store: the memo is not searchable, so the filter is ours.
const maxScanned = 1000

// listRuns returns the newest runs, at most limit, that included service
// (any, if empty) and are in status (any, if empty).
func listRuns(ctx context.Context, c client.Client, namespace string, limit int, service, status string) ([]RunSummary, error) {
	query := fmt.Sprintf("WorkflowType = %q", api.RepopulateWorkflow)
	if status != "" {
		query += fmt.Sprintf(" AND ExecutionStatus = %q", listStatuses[status])
	}
	pageSize := min(limit, 100)
	if service != "" {
		pageSize = 100
	}
	var runs []RunSummary
	var token []byte
	for scanned := 0; scanned < maxScanned; {
		resp, err := c.ListWorkflow(ctx, &workflowservice.ListWorkflowExecutionsRequest{
			Namespace: namespace, PageSize: int32(pageSize), NextPageToken: token, Query: query,
		})
		if err != nil {
			return nil, fmt.Errorf("list runs: %w", err)
		}
		for _, info := range resp.GetExecutions() {
			scanned++
			r := summarize(info.GetExecution().GetWorkflowId(), info.GetStatus(), info.GetStartTime().AsTime(), info.GetCloseTime(), info.GetMemo())
			if service == "" || slices.Contains(r.Services, service) {
				runs = append(runs, r)
			}
		}
		token = resp.GetNextPageToken()
		if len(token) == 0 || (service == "" && len(runs) >= limit) {
			break
		}
	}
	// The store orders running runs first, then by close time; a person
	// looking for "the run from this morning" thinks in start times.
	slices.SortStableFunc(runs, func(a, b RunSummary) int { return b.Started.Compare(a.Started) })
	if len(runs) > limit {
		runs = runs[:limit]
	}
	return runs, nil
}

func summarize(id string, status enumspb.WorkflowExecutionStatus, started time.Time, closed *timestamppb.Timestamp, memo *commonpb.Memo) RunSummary {
	r := RunSummary{RunID: id, Status: statusName(status), Started: started.UTC()}
	if closed != nil && status != enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING {
		r.Closed = closed.AsTime().UTC()
	}
	dc := converter.GetDefaultDataConverter()
	if p := memo.GetFields()[api.MemoServices]; p != nil {
		// A list of names, or one comma-separated string: accept either so
		// that the CLI does not depend on how the workflow writes its memo.
		var list []string
		var joined string
		if dc.FromPayload(p, &list) == nil {
			r.Services = list
		} else if dc.FromPayload(p, &joined) == nil && joined != "" {
			r.Services = strings.Split(joined, ",")
		}
	}
	if p := memo.GetFields()[api.MemoDryRun]; p != nil {
		_ = dc.FromPayload(p, &r.DryRun)
	}
	for _, key := range []string{api.MemoRelease, api.MemoProfile} {
		if p := memo.GetFields()[key]; p != nil && r.Release == "" {
			_ = dc.FromPayload(p, &r.Release)
		}
	}
	return r
}

// statusName is the lower-case name of a workflow status, as --status takes it.
func statusName(s enumspb.WorkflowExecutionStatus) string {
	switch s {
	case enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING:
		return "running"
	case enumspb.WORKFLOW_EXECUTION_STATUS_COMPLETED:
		return "completed"
	case enumspb.WORKFLOW_EXECUTION_STATUS_FAILED:
		return "failed"
	case enumspb.WORKFLOW_EXECUTION_STATUS_CANCELED:
		return "canceled"
	case enumspb.WORKFLOW_EXECUTION_STATUS_TERMINATED:
		return "terminated"
	case enumspb.WORKFLOW_EXECUTION_STATUS_TIMED_OUT:
		return "timed-out"
	case enumspb.WORKFLOW_EXECUTION_STATUS_CONTINUED_AS_NEW:
		return "continued-as-new"
	}
	return strings.ToLower(s.String())
}

func writeRuns(w interface{ Write([]byte) (int, error) }, runs []RunSummary, now time.Time) {
	if len(runs) == 0 {
		fmt.Fprintln(w, "no runs found")
		return
	}
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "RUN ID\tSTATUS\tSTARTED\tDURATION\tSERVICES\tDRY-RUN\tRELEASE")
	for _, r := range runs {
		d := ""
		if r.Closed.IsZero() {
			d = now.Sub(r.Started).Truncate(time.Second).String() + " so far"
		} else {
			d = r.Closed.Sub(r.Started).Round(time.Second).String()
		}
		services := strings.Join(r.Services, ",")
		if services == "" {
			services = "-"
		}
		dry := "no"
		if r.DryRun {
			dry = "yes"
		}
		release := r.Release
		if release == "" {
			release = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.RunID, r.Status, r.Started.Format("2006-01-02 15:04:05Z"), d, services, dry, release)
	}
	_ = tw.Flush()
}
