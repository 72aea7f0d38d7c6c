package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"

	"github.com/csmops/etcd-repopulate/internal/api"
	"github.com/csmops/etcd-repopulate/internal/catalog"
)

type startOptions struct {
	*globals
	services []string
	// servicesGiven: --services was on the command line, even empty.
	servicesGiven bool
	dryRun        bool
	wait          bool
	id            string
	interval      time.Duration
	// snapshotDir is --snapshot; snap is what was loaded from it.
	snapshotDir string
	snap        *api.SnapshotInput
}

func newStartCommand(g *globals) *cobra.Command {
	o := &startOptions{globals: g}
	cmd := &cobra.Command{
		Use:   "start [--services LIST] [--dry-run] [--wait] [--id ID]",
		Short: "Start a run; print its ID and Web UI link",
		Long: `Start a run of the runbook for the named services (default: all of
` + catalog.Names() + `).

` + catalog.ServicesHelp() + `

Before any service changes anything, the run checks that every Job, pod set
and EtcdCluster it needs exists and is readable; a missing one fails the run
with nothing changed. The worker first finds the CSM release (release: auto
reads the product catalog and probes the APIs; docs/csm-releases.md);
services that release does not have are reported as skipped, with the reason.

Approval gates (cps-unmount, cps-reboot, bos-templates when no snapshot is
given, bss-restore on CSM 1.5+ with a snapshot) wait for a person; status, watch and the Web UI show the exact
approve command.

--dry-run reads every target and reports each action it would take (object
names and UIDs, what would be stripped before re-creating) and changes nothing.
--wait follows the run like repopulate watch (a live table on a terminal,
one line per change otherwise; with -o json only the final report) until
it ends, and exits 1 if any service failed or the run was canceled.

--snapshot DIR gives the run what repopulate snapshot saved before the
rebuild (BOS session templates to restore, HMNFD subscriptions and FAS actions
to check against, and from CSM 1.5 the BSS boot parameters that bss offers to
restore behind gate bss-restore). A snapshot whose files do not match their
checksums is refused and nothing starts.`,
		Example: `  repopulate start --dry-run
  repopulate start --services bss,fas,meds,reds,externaldns,crus --wait
  repopulate start --id rebuild-2026-11-23 -o json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			// An explicitly empty list (--services "", often an unset shell
			// variable) must not fall back to "all" as leaving the flag out does.
			o.servicesGiven = cmd.Flags().Changed("services")
			if err := o.validate(); err != nil {
				return err
			}
			return o.run(cmd.Context())
		},
	}
	cmd.Flags().StringSliceVar(&o.services, "services", nil, "comma-separated services to repopulate (default all: "+catalog.Names()+")")
	_ = cmd.RegisterFlagCompletionFunc("services", completeServiceList)
	cmd.Flags().BoolVar(&o.dryRun, "dry-run", false, "report every action without changing anything")
	cmd.Flags().BoolVar(&o.wait, "wait", false, "follow the run until it ends; exit 1 if a service failed")
	cmd.Flags().StringVar(&o.id, "id", "", "run ID (default repopulate-<UTC time>); must not have been used before")
	cmd.Flags().DurationVar(&o.interval, "poll", 2*time.Second, "with --wait, how often to ask for progress and redraw")
	cmd.Flags().StringVar(&o.snapshotDir, "snapshot", "", "directory written by repopulate snapshot before the rebuild")
	return cmd
}

func (o *startOptions) validate() error {
	if err := o.validateOutput(); err != nil {
		return err
	}
	if o.servicesGiven && len(o.services) == 0 {
		return badInput("--services \"\": no service named: give one or more of %s, or leave --services out for all", catalog.Names())
	}
	if _, err := catalog.Parse(o.services); err != nil {
		return badInput("--services: %v", err)
	}
	if o.id == "" {
		o.id = "repopulate-" + time.Now().UTC().Format("20060102-150405")
	}
	if strings.ContainsAny(o.id, "/ \t\n") {
		return badInput("--id %q: must not contain '/' or spaces (child workflows are named ID/service)", o.id)
	}
	if o.interval <= 0 {
		return badInput("--poll %s: must be positive", o.interval)
	}
	if o.snapshotDir != "" {
		snap, err := loadSnapshot(o.snapshotDir)
		if err != nil {
			return err
		}
		services, _ := catalog.Parse(o.services) // validated above
		if err := addBootParameters(snap, services); err != nil {
			return err
		}
		o.snap = snap
	}
	return nil
}

func (o *startOptions) run(ctx context.Context) error {
	if o.snap != nil && o.output == "text" {
		fmt.Fprintln(o.streams.Out, describeSnapshot(o.snap))
	}
	c, err := o.dial(ctx)
	if err != nil {
		return err
	}
	defer c.Close()
	req := api.Request{Services: o.services, DryRun: o.dryRun, Snapshot: o.snap}
	services, _ := catalog.Parse(o.services) // validated above
	names := make([]string, len(services))
	for i, s := range services {
		names[i] = string(s)
	}
	summary := "repopulate " + strings.Join(names, ",")
	if o.dryRun {
		summary += " (dry-run)"
	}
	if o.snap != nil {
		summary += " from snapshot " + o.snap.Dir
	}
	run, err := c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{
		ID:        o.id,
		TaskQueue: o.conn.TaskQueue,
		// The Web UI shows the summary on the run's page and the memo in its
		// details; `repopulate list --service` filters on the memo.
		StaticSummary: summary,
		Memo:          map[string]any{api.MemoServices: names, api.MemoDryRun: o.dryRun},
		// A run ID names one run for good: reports and child IDs hang off it.
		WorkflowIDReusePolicy:                    enumspb.WORKFLOW_ID_REUSE_POLICY_REJECT_DUPLICATE,
		WorkflowExecutionErrorWhenAlreadyStarted: true,
	}, api.RepopulateWorkflow, req)
	if err != nil {
		var started *serviceerror.WorkflowExecutionAlreadyStarted
		if errors.As(err, &started) {
			return badInput("run ID %q is already used (a run with that ID exists or existed): pick another --id, or omit it", o.id)
		}
		return fmt.Errorf("start run %s: %w", o.id, err)
	}
	url := o.workflowURL(run.GetID())
	if o.output == "json" && !o.wait {
		return writeJSON(o.streams.Out, map[string]string{"runId": run.GetID(), "temporalRunId": run.GetRunID(), "webUI": url})
	}
	if o.output == "text" {
		fmt.Fprintf(o.streams.Out, "started run %s\nWeb UI: %s\nprogress: repopulate status %s\n", run.GetID(), url, run.GetID())
	}
	if !o.wait {
		return nil
	}
	return o.watch(ctx, c, run.GetID(), o.interval, false)
}

func writeJSON(w interface{ Write([]byte) (int, error) }, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
