package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"

	"github.com/csmops/etcd-repopulate/internal/api"
	"github.com/csmops/etcd-repopulate/internal/catalog"
	"github.com/csmops/etcd-repopulate/internal/plan"
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
	// snap is what was loaded from --snapshot (planInputs.snapshotDir).
	snap *api.SnapshotInput
	// planInputs are plan's flags, read with --services auto; --snapshot
	// serves both plan and the run.
	planInputs
	// auto: --services auto, the services are plan's "lost data" ones.
	auto bool
	// planFlagsGiven are plan's flags on the command line, refused without auto.
	planFlagsGiven []string
	// chosen is what plan decided, recorded in the run.
	chosen *api.PlanVerdicts
}

// servicesAuto is the --services value that lets repopulate plan choose.
const servicesAuto = "auto"

// planOnlyFlags are start's flags that only --services auto reads.
var planOnlyFlags = []string{"since", "release", "config", "kubeconfig", "context"}

func newStartCommand(g *globals) *cobra.Command {
	o := &startOptions{globals: g}
	cmd := &cobra.Command{
		Use:   "start [--services LIST|auto] [--dry-run] [--wait] [--id ID]",
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
checksums is refused and nothing starts.

--services auto runs repopulate plan first, here, with the same inputs
(--snapshot, --since, --release, --config, --kubeconfig, --context; see
repopulate plan --help and docs/plan.md) and the same verdicts, and starts
a run of exactly the services whose verdict is "lost data". The verdicts
(service, verdict, reason, and the reference time) are printed, recorded in
the run and shown by status and report under "Chosen by plan". Nothing is
started when plan finds no service that lost data: it says "nothing to do:
every service is intact" (or "nothing to start" and which services it
cannot tell about) and exits 0; when every verdict is "cannot tell" it
exits 1, as plan does. auto takes no service names with it, and plan's
flags other than --snapshot are refused without it.`,
		Example: `  repopulate start --dry-run
  repopulate start --services auto --snapshot /root/etcd-snapshot-2026-11-30 --config /etc/repopulate/config.yaml --wait
  repopulate start --services bss,fas,meds,reds,externaldns,crus --wait
  repopulate start --id rebuild-2026-11-23 -o json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			// An explicitly empty list (--services "", often an unset shell
			// variable) must not fall back to "all" as leaving the flag out does.
			o.servicesGiven = cmd.Flags().Changed("services")
			for _, f := range planOnlyFlags {
				if cmd.Flags().Changed(f) {
					o.planFlagsGiven = append(o.planFlagsGiven, "--"+f)
				}
			}
			if err := o.validate(); err != nil {
				return err
			}
			return o.run(cmd.Context())
		},
	}
	cmd.Flags().StringSliceVar(&o.services, "services", nil, "comma-separated services to repopulate (default all: "+catalog.Names()+"), or auto: those repopulate plan finds lost data")
	_ = cmd.RegisterFlagCompletionFunc("services", completeServiceList)
	cmd.Flags().BoolVar(&o.dryRun, "dry-run", false, "report every action without changing anything")
	cmd.Flags().BoolVar(&o.wait, "wait", false, "follow the run until it ends; exit 1 if a service failed")
	cmd.Flags().StringVar(&o.id, "id", "", "run ID (default repopulate-<UTC time>); must not have been used before")
	cmd.Flags().DurationVar(&o.interval, "poll", 2*time.Second, "with --wait, how often to ask for progress and redraw")
	cmd.Flags().StringVar(&o.snapshotDir, "snapshot", "", "directory written by repopulate snapshot before the rebuild")
	o.addPlanFlags(cmd, "with --services auto, for plan: ")
	_ = cmd.MarkFlagDirname("snapshot")
	return cmd
}

func (o *startOptions) validate() error {
	if err := o.validateOutput(); err != nil {
		return err
	}
	if o.servicesGiven && len(o.services) == 0 {
		return badInput("--services \"\": no service named: give one or more of %s, or leave --services out for all", catalog.Names())
	}
	o.auto = slices.Contains(o.services, servicesAuto)
	switch {
	case o.auto && len(o.services) > 1:
		return badInput("--services %s: auto lets repopulate plan choose the services and takes no names with it: give --services auto alone, or the names without auto", strings.Join(o.services, ","))
	case !o.auto && len(o.planFlagsGiven) > 0:
		return badInput("%s: repopulate plan's inputs, read only with --services auto: add --services auto, or leave them out", strings.Join(o.planFlagsGiven, ", "))
	case !o.auto:
		if _, err := catalog.Parse(o.services); err != nil {
			return badInput("--services: %v", err)
		}
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
	if o.auto {
		services, err := o.chooseByPlan(ctx)
		if err != nil || len(services) == 0 {
			return err
		}
		o.services = services
	}
	c, err := o.dial(ctx)
	if err != nil {
		return err
	}
	defer c.Close()
	req := api.Request{Services: o.services, DryRun: o.dryRun, Snapshot: o.snap, Plan: o.chosen}
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
	if o.chosen != nil {
		summary += " (chosen by plan)"
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
		return writeJSON(o.streams.Out, startedJSON{RunID: run.GetID(), TemporalRunID: run.GetRunID(), WebUI: url, ChosenByPlan: o.chosen})
	}
	if o.output == "text" {
		fmt.Fprintf(o.streams.Out, "started run %s\nWeb UI: %s\nprogress: repopulate status %s\n", run.GetID(), url, run.GetID())
	}
	if !o.wait {
		return nil
	}
	return o.watch(ctx, c, run.GetID(), o.interval, false)
}

// startedJSON is start's -o json without --wait.
type startedJSON struct {
	RunID         string            `json:"runId,omitempty"`
	TemporalRunID string            `json:"temporalRunId,omitempty"`
	WebUI         string            `json:"webUI,omitempty"`
	Started       *bool             `json:"started,omitempty"`
	Message       string            `json:"message,omitempty"`
	ChosenByPlan  *api.PlanVerdicts `json:"chosenByPlan,omitempty"`
}

// chooseByPlan makes repopulate plan's verdicts (the same code as plan),
// records them in o.chosen, prints them, and returns the services that
// lost data. None: it says why and returns no services and a nil error
// when plan decided (nothing to do), or exit 1 when every verdict is
// cannot tell, as plan exits.
func (o *startOptions) chooseByPlan(ctx context.Context) ([]string, error) {
	rep, err := o.makePlan(ctx)
	if err != nil {
		return nil, err
	}
	o.chosen = rep.verdicts()
	var lost []string
	for _, s := range rep.with(plan.LostData) {
		lost = append(lost, string(s))
	}
	if o.output == "text" {
		writeChosenByPlan(o.streams.Out, o.chosen)
		for _, n := range rep.Notes {
			fmt.Fprintln(o.streams.Out, "note:", n)
		}
	}
	if len(lost) > 0 {
		if o.output == "text" {
			fmt.Fprintf(o.streams.Out, "--services auto: %s (the services plan found lost data)\n", strings.Join(lost, ","))
		}
		return lost, nil
	}
	msg := nothingToStart(rep)
	if o.output == "json" {
		if err := writeJSON(o.streams.Out, startedJSON{Started: new(bool), Message: msg, ChosenByPlan: o.chosen}); err != nil {
			return nil, err
		}
	} else {
		fmt.Fprintln(o.streams.Out, msg)
	}
	if rep.noneDecided() {
		return nil, &ExitError{Code: ExitFailed, Err: errors.New("--services auto: no service could be decided: every verdict is cannot tell (the reasons are above; repopulate plan shows the evidence): nothing started")}
	}
	return nil, nil
}

func writeJSON(w interface{ Write([]byte) (int, error) }, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
