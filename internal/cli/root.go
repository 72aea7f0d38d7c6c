// Package cli is the repopulate command: cobra commands that only parse and
// print, over small functions that talk to Temporal.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"strings"

	"github.com/spf13/cobra"
	"go.temporal.io/sdk/client"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/csmops/etcd-repopulate/internal/catalog"
	"github.com/csmops/etcd-repopulate/internal/logging"
	"github.com/csmops/etcd-repopulate/internal/temporalconn"
)

// Streams are where the commands read and write.
type Streams struct {
	Out, Err io.Writer
}

// ExitError carries the process exit code a command wants.
type ExitError struct {
	Code int
	Err  error
}

func (e *ExitError) Error() string { return e.Err.Error() }
func (e *ExitError) Unwrap() error { return e.Err }

// Exit codes.
const (
	ExitFailed   = 1 // the run failed, or Temporal could not be reached
	ExitBadInput = 2 // flags or arguments are wrong; nothing was started
	ExitRunning  = 3 // report asked for a run that has not finished
)

func badInput(format string, args ...any) error {
	return &ExitError{Code: ExitBadInput, Err: fmt.Errorf(format, args...)}
}

// globals are the flags every subcommand shares.
type globals struct {
	conn    temporalconn.Options
	uiURL   string
	output  string
	streams Streams
}

// NewRoot builds the repopulate command tree.
func NewRoot(streams Streams) *cobra.Command {
	g := &globals{streams: streams}
	root := &cobra.Command{
		Use:   "repopulate",
		Short: "Repopulate CSM services' data after an etcd cluster rebuild, durably",
		Long: `repopulate drives the runbook "Repopulate Data in etcd Clusters When
Rebuilding Them" as a Temporal workflow: one child workflow per service
(` + strings.ReplaceAll(catalog.Names(), ",", ", ") + `), every step retried
and resumed after crashes. A repopulate-worker must be running against the
same Temporal server and task queue.

  repopulate snapshot --out DIR       # before the rebuild: save what it wipes
  repopulate plan --snapshot DIR      # after it: which services lost data; changes nothing
  repopulate start --dry-run          # print every action, change nothing
  repopulate start --wait             # run all services, wait for the report
  repopulate start --services auto    # only the services plan finds lost data
  repopulate watch RUN_ID             # live table until the run ends
  repopulate status RUN_ID            # where a run stands, per service and step
  repopulate approve RUN_ID GATE      # let a run past a gate (reject: stop there)
  repopulate report RUN_ID            # the final report and follow-ups
  repopulate list                     # recent runs, newest first
  repopulate cancel RUN_ID            # stop; deleted objects are still re-created

Shell completion (run IDs, gates, services):
  source <(repopulate completion bash)    # also zsh, fish; see completion --help

Exit codes: 0 success, 1 a service failed or Temporal unreachable,
2 bad flags or arguments, or a gate decision refused (nothing changed),
3 report of an unfinished run.`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return badInput("%v (see --help)", err) })
	root.SetOut(streams.Out)
	root.SetErr(streams.Err)
	g.conn.AddFlags(root.PersistentFlags())
	root.PersistentFlags().StringVar(&g.uiURL, "ui-url", envOr("TEMPORAL_UI_URL", "http://127.0.0.1:8233"), "Temporal Web UI base URL, for links (env TEMPORAL_UI_URL)")
	root.PersistentFlags().StringVarP(&g.output, "output", "o", "text", "output format: text or json")
	_ = root.RegisterFlagCompletionFunc("output", cobra.FixedCompletions([]cobra.Completion{"text", "json"}, cobra.ShellCompDirectiveNoFileComp))
	root.AddCommand(newStartCommand(g), newStatusCommand(g), newWatchCommand(g), newReportCommand(g), newListCommand(g),
		newApproveCommand(g), newRejectCommand(g), newCancelCommand(g), newSnapshotCommand(g), newPlanCommand(g))
	return root
}

// Execute runs the command line and returns the process exit code.
func Execute(ctx context.Context, args []string, streams Streams) int {
	root := NewRoot(streams)
	root.SetArgs(args)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return 0
	}
	fmt.Fprintln(streams.Err, "repopulate:", err)
	var exit *ExitError
	if errors.As(err, &exit) {
		return exit.Code
	}
	if strings.HasPrefix(err.Error(), "unknown command") {
		return ExitBadInput
	}
	return ExitFailed
}

// runID takes the one RUN_ID argument.
func runIDArg(cmd *cobra.Command, args []string) error {
	if len(args) != 1 || strings.TrimSpace(args[0]) == "" {
		return badInput("%s takes exactly one RUN_ID (the ID printed by repopulate start), got %d arguments", cmd.CommandPath(), len(args))
	}
	return nil
}

func (g *globals) validateOutput() error {
	if g.output != "text" && g.output != "json" {
		return badInput("--output %q: want text or json", g.output)
	}
	return nil
}

func (g *globals) dial(ctx context.Context) (client.Client, error) {
	// The SDK's own logs are noise on a terminal; keep its warnings.
	z, err := logging.New(g.streams.Err, "warn", "console")
	if err != nil {
		return nil, err
	}
	c, err := g.conn.Dial(ctx, logging.NewTemporal(z.WithOptions(zap.IncreaseLevel(zapcore.WarnLevel))))
	if temporalconn.IsFlagError(err) {
		return nil, &ExitError{Code: ExitBadInput, Err: err}
	}
	if err != nil {
		return nil, &ExitError{Code: ExitFailed, Err: err}
	}
	return c, nil
}

// workflowURL is the Web UI page of a workflow.
func (g *globals) workflowURL(id string) string {
	return fmt.Sprintf("%s/namespaces/%s/workflows/%s", strings.TrimRight(g.uiURL, "/"), url.PathEscape(g.conn.Namespace), url.PathEscape(id))
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}
