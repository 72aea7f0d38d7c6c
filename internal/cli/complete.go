package cli

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"go.temporal.io/sdk/client"

	"github.com/csmops/etcd-repopulate/internal/api"
	"github.com/csmops/etcd-repopulate/internal/catalog"
	"github.com/csmops/etcd-repopulate/internal/logging"
)

// completionTimeout bounds a completion's talk with Temporal: a shell that
// hangs on TAB is worse than one that offers nothing.
const completionTimeout = 2 * time.Second

// completionClient dials quietly with a short timeout; nil when Temporal
// does not answer.
func (g *globals) completionClient(ctx context.Context) (client.Client, context.Context, context.CancelFunc) {
	ctx, cancel := context.WithTimeout(ctx, completionTimeout)
	z, err := logging.New(io.Discard, "error", "console")
	if err != nil {
		cancel()
		return nil, nil, nil
	}
	opts := g.conn
	opts.DialTimeout = min(opts.DialTimeout, completionTimeout)
	c, err := opts.Dial(ctx, logging.NewTemporal(z))
	if err != nil {
		cancel()
		return nil, nil, nil
	}
	return c, ctx, cancel
}

// completeRunID offers recent runs, newest first, with their status.
func (g *globals) completeRunID(cmd *cobra.Command, args []string, _ string) ([]cobra.Completion, cobra.ShellCompDirective) {
	if len(args) > 0 {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	return g.recentRuns(cmd.Context()), cobra.ShellCompDirectiveNoFileComp | cobra.ShellCompDirectiveKeepOrder
}

func (g *globals) recentRuns(ctx context.Context) []cobra.Completion {
	c, ctx, cancel := g.completionClient(ctx)
	if c == nil {
		return nil
	}
	defer cancel()
	defer c.Close()
	runs, err := listRuns(ctx, c, g.conn.Namespace, 30, "", "")
	if err != nil {
		return nil
	}
	var out []cobra.Completion
	for _, r := range runs {
		out = append(out, cobra.CompletionWithDesc(r.RunID, fmt.Sprintf("%s, started %s", r.Status, r.Started.Format("2006-01-02 15:04Z"))))
	}
	return out
}

// completeRunAndGate offers running runs, then the gates the chosen run
// waits at.
func (g *globals) completeRunAndGate(cmd *cobra.Command, args []string, _ string) ([]cobra.Completion, cobra.ShellCompDirective) {
	switch len(args) {
	case 0:
		return g.recentRuns(cmd.Context()), cobra.ShellCompDirectiveNoFileComp | cobra.ShellCompDirectiveKeepOrder
	case 1:
		return g.waitingGates(cmd.Context(), args[0]), cobra.ShellCompDirectiveNoFileComp
	}
	return nil, cobra.ShellCompDirectiveNoFileComp
}

func (g *globals) waitingGates(ctx context.Context, id string) []cobra.Completion {
	c, ctx, cancel := g.completionClient(ctx)
	if c == nil {
		return nil
	}
	defer cancel()
	defer c.Close()
	st, closed, err := fetch(ctx, c, id, g.conn.Namespace)
	if err != nil || closed {
		return nil
	}
	var out []cobra.Completion
	for _, s := range st.Services {
		for _, gt := range s.Gates {
			if gt.State == api.GateWaiting {
				out = append(out, cobra.CompletionWithDesc(gt.Name, string(s.Service)+": "+oneLine(gt.Action)))
			}
		}
	}
	return out
}

// completeServiceList completes start's comma-separated --services list:
// after a comma it offers the names not given yet, keeping what was typed
// before; first, also auto (it stands alone).
func completeServiceList(_ *cobra.Command, _ []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
	done := toComplete[:strings.LastIndex(toComplete, ",")+1]
	given := map[string]bool{}
	for _, s := range strings.Split(done, ",") {
		given[s] = true
	}
	var out []cobra.Completion
	if done == "" {
		out = append(out, cobra.CompletionWithDesc(servicesAuto, "the services repopulate plan finds lost data"))
	}
	for _, s := range catalog.Services() {
		if !given[string(s)] {
			out = append(out, done+string(s))
		}
	}
	return out, cobra.ShellCompDirectiveNoFileComp | cobra.ShellCompDirectiveNoSpace
}

// completeService completes a single service name.
func completeService(_ *cobra.Command, _ []string, _ string) ([]cobra.Completion, cobra.ShellCompDirective) {
	var out []cobra.Completion
	for _, s := range catalog.Services() {
		out = append(out, string(s))
	}
	return out, cobra.ShellCompDirectiveNoFileComp
}
