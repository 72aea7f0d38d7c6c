package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
	"unicode/utf8"

	"github.com/spf13/cobra"
	"go.temporal.io/sdk/client"
	"golang.org/x/term"

	"github.com/csmops/etcd-repopulate/internal/api"
)

func newWatchCommand(g *globals) *cobra.Command {
	var interval time.Duration
	cmd := &cobra.Command{
		Use:   "watch RUN_ID [--interval 2s]",
		Short: "Follow a run live until it ends, then print its report",
		Long: `Follow a run until it ends. On a terminal the table of services is redrawn
in place every --interval: state, current step (or the gate it waits at),
elapsed time and, for hmnfd, a progress bar of nodes done. Gates waiting
for a person are listed under the table with the command that approves them.

When stdout is not a terminal (a pipe, a log file, CI) it prints one plain
line per change of a service's state, step or gate, without escape codes.
With -o json it prints one RunStatus per change, one JSON object a line.

When the run ends it prints the report and exits like start --wait:
0 when the run is done, 1 when it failed or was canceled. Interrupting
watch (Ctrl-C) stops watching only; the run goes on.`,
		Example: `  repopulate watch repopulate-20261123-101500
  repopulate watch RUN_ID --interval 5s > run.log      # plain lines, one per change
  repopulate watch RUN_ID -o json | jq -c '[.state, (.services[] | [.service, .state])]'`,
		Args:              runIDArg,
		ValidArgsFunction: g.completeRunID,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := g.validateOutput(); err != nil {
				return err
			}
			if interval <= 0 {
				return badInput("--interval %s: must be positive, e.g. 2s", interval)
			}
			c, err := g.dial(cmd.Context())
			if err != nil {
				return err
			}
			defer c.Close()
			return g.watch(cmd.Context(), c, args[0], interval, g.output == "json")
		},
	}
	cmd.Flags().DurationVar(&interval, "interval", 2*time.Second, "how often to ask the run for its status and redraw")
	return cmd
}

// watch follows a run until it ends and returns its outcome. jsonLines
// streams every changed RunStatus; otherwise -o json prints only the final
// report, which is what start --wait -o json promises.
func (g *globals) watch(ctx context.Context, c client.Client, id string, every time.Duration, jsonLines bool) error {
	fd, tty := terminalFD(g.streams.Out)
	w := &watcher{out: g.streams.Out, errOut: g.streams.Err, every: every, fd: fd,
		live: tty && g.output == "text", json: g.output == "json", jsonLines: jsonLines,
		prev: map[api.Service]serviceView{}}
	for {
		fctx, cancel := context.WithTimeout(ctx, max(statusTimeout, every))
		st, closed, err := fetch(fctx, c, id, g.conn.Namespace)
		cancel()
		var exit *ExitError
		switch {
		case ctx.Err() != nil:
			// The last frame stays on the screen: it is what the person
			// was looking at.
			return &ExitError{Code: ExitFailed, Err: fmt.Errorf("stopped watching run %s; the run goes on: repopulate watch %s", id, id)}
		case errors.As(err, &exit):
			return err
		case err != nil:
			w.unavailable(err)
		case closed:
			return w.final(st)
		default:
			if err := w.progress(st, time.Now()); err != nil {
				return err
			}
		}
		select {
		case <-ctx.Done():
		case <-time.After(every):
		}
	}
}

// statusTimeout bounds one status query: without a worker the query waits,
// and watch should say so rather than hang.
const statusTimeout = 5 * time.Second

// watcher is what watch shows, and what it showed last.
type watcher struct {
	out, errOut     io.Writer
	every           time.Duration
	fd              int
	live            bool // redraw a table in place
	json, jsonLines bool
	prev            map[api.Service]serviceView
	lastJSON        []byte
	frame           []string
	drawn           int
	note            string
}

// unavailable says that the status could not be had. The status query needs
// a worker: while one restarts the run is still going, so watch says so and
// keeps asking instead of giving up.
func (w *watcher) unavailable(err error) {
	note := fmt.Sprintf("status unavailable, asking again every %s: %v", w.every, err)
	if w.live {
		w.drawn = redraw(w.out, w.drawn, append(slices.Clone(w.frame), "", note), termWidth(w.fd))
	} else if note != w.note {
		fmt.Fprintln(w.errOut, "repopulate:", note)
	}
	w.note = note
}

func (w *watcher) progress(st api.RunStatus, now time.Time) error {
	if w.note != "" && !w.live {
		fmt.Fprintln(w.errOut, "repopulate: status of run", st.RunID, "available again")
	}
	w.note = ""
	switch {
	case w.json:
		if !w.jsonLines {
			return nil
		}
		b, err := json.Marshal(st)
		if err != nil {
			return err
		}
		if !bytes.Equal(b, w.lastJSON) {
			fmt.Fprintf(w.out, "%s\n", b)
			w.lastJSON = b
		}
	case w.live:
		w.frame = renderFrame(st, now, termWidth(w.fd))
		w.drawn = redraw(w.out, w.drawn, w.frame, termWidth(w.fd))
	default:
		for _, line := range changeLines(w.prev, st, now) {
			fmt.Fprintln(w.out, line)
		}
	}
	return nil
}

// final replaces the live table with the report, or prints the last changes
// and the report, and returns the run's outcome.
func (w *watcher) final(st api.RunStatus) error {
	switch {
	case w.json && w.jsonLines:
		b, err := json.Marshal(st)
		if err != nil {
			return err
		}
		if !bytes.Equal(b, w.lastJSON) {
			fmt.Fprintf(w.out, "%s\n", b)
		}
	case w.json:
		if err := writeJSON(w.out, st); err != nil {
			return err
		}
	case w.live:
		redraw(w.out, w.drawn, nil, 0)
		writeText(w.out, st)
	default:
		for _, line := range changeLines(w.prev, st, time.Now()) {
			fmt.Fprintln(w.out, line)
		}
		fmt.Fprintln(w.out)
		writeText(w.out, st)
	}
	return outcomeError(st)
}

// terminalFD says whether w is a terminal, and its descriptor.
func terminalFD(w io.Writer) (int, bool) {
	f, ok := w.(*os.File)
	if !ok {
		return -1, false
	}
	fd := int(f.Fd())
	return fd, term.IsTerminal(fd)
}

func termWidth(fd int) int {
	w, _, err := term.GetSize(fd)
	if err != nil {
		return 0
	}
	return w
}

// ANSI sequences: cursor up n lines, and erase from the cursor to the end of
// the screen. Nothing else is needed to redraw a table in place.
const eraseBelow = "\x1b[J"

func cursorUp(n int) string { return fmt.Sprintf("\x1b[%dA", n) }

// redraw replaces the drawn lines of the last frame with lines and returns
// how many lines it drew. Lines are cut to the terminal width so that none
// wraps: a wrapped line would throw the cursor-up count off.
func redraw(w io.Writer, drawn int, lines []string, width int) int {
	var b strings.Builder
	if drawn > 0 {
		b.WriteString("\r" + cursorUp(drawn))
	}
	b.WriteString(eraseBelow)
	for _, l := range lines {
		b.WriteString(cut(l, width))
		b.WriteString("\n")
	}
	_, _ = io.WriteString(w, b.String())
	return len(lines)
}

func cut(s string, width int) string {
	if width <= 0 || utf8.RuneCountInString(s) < width {
		return s
	}
	r := []rune(s)
	return string(r[:width-2]) + "…"
}

// renderFrame is the live view of a run: a header, one row per service, and
// the commands for the gates that wait for a person. It is a pure function of
// the status, the time and the terminal width (0: no limit).
func renderFrame(st api.RunStatus, now time.Time, width int) []string {
	mode := ""
	if st.DryRun {
		mode = " (dry-run)"
	}
	header := fmt.Sprintf("Run %s%s: %s", st.RunID, mode, st.State)
	if !st.Started.IsZero() {
		header += "  " + elapsed(st.Started, st.Ended, now)
	}
	if st.Message != "" {
		header += " — " + oneLine(st.Message)
	}
	lines := []string{header}
	var buf bytes.Buffer
	tw := tabwriter.NewWriter(&buf, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SERVICE\tSTATE\tSTEP\tELAPSED\tPROGRESS")
	var waiting []string
	for _, s := range st.Services {
		start, end := serviceSpan(s)
		el := ""
		if !start.IsZero() {
			el = elapsed(start, end, now)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", s.Service, s.State, currentStep(s), el, progress(s.Nodes))
		for _, gt := range s.Gates {
			if gt.State == api.GateWaiting {
				waiting = append(waiting, gateLines(st.RunID, s.Service, gt, now)...)
			}
		}
	}
	_ = tw.Flush()
	for _, row := range strings.Split(strings.TrimRight(buf.String(), "\n"), "\n") {
		lines = append(lines, strings.TrimRight(row, " "))
	}
	if len(waiting) > 0 {
		lines = append(lines, "", "Waiting for approval:")
		lines = append(lines, waiting...)
	}
	if width > 0 {
		for i := range lines {
			lines[i] = cut(lines[i], width)
		}
	}
	return lines
}

// gateLines tell a person what a waiting gate will do and how to decide it.
func gateLines(runID string, svc api.Service, gt api.GateStatus, now time.Time) []string {
	head := fmt.Sprintf("  %s (%s): %s", gt.Name, svc, oneLine(gt.Action))
	if !gt.Deadline.IsZero() {
		head += fmt.Sprintf(" — deadline %s (in %s)", gt.Deadline.UTC().Format("15:04:05Z"), gt.Deadline.Sub(now).Truncate(time.Second))
	}
	approve, reject := gt.ApproveCommand, gt.RejectCommand
	if approve == "" {
		approve = fmt.Sprintf("repopulate approve %s %s", runID, gt.Name)
	}
	if reject == "" {
		reject = fmt.Sprintf("repopulate reject %s %s --reason TEXT", runID, gt.Name)
	}
	return []string{head, "    approve: " + approve, "    reject:  " + reject}
}

// currentStep is what a service is doing now: the gate it waits at, the
// running step, or the step that failed.
func currentStep(s api.ServiceStatus) string {
	for _, gt := range s.Gates {
		if gt.State == api.GateWaiting {
			return "gate " + gt.Name
		}
	}
	for _, step := range s.Steps {
		if step.State == api.Running {
			return step.Name
		}
	}
	for _, step := range s.Steps {
		if step.State == api.Failed {
			return step.Name
		}
	}
	return ""
}

// serviceSpan is from its first step's start to its last step's end; the end
// is zero while the service has not finished.
func serviceSpan(s api.ServiceStatus) (start, end time.Time) {
	for _, step := range s.Steps {
		if !step.Started.IsZero() && (start.IsZero() || step.Started.Before(start)) {
			start = step.Started
		}
		if step.Ended.After(end) {
			end = step.Ended
		}
	}
	if !s.State.Finished() {
		end = time.Time{}
	}
	return start, end
}

func elapsed(start, end, now time.Time) string {
	if end.IsZero() {
		end = now
	}
	return end.Sub(start).Truncate(time.Second).String()
}

const barWidth = 20

// progress is a bar of the nodes a fan-out has finished with, whatever the
// outcome, and the counts of the ones that did not go well.
func progress(n *api.NodeCounts) string {
	if n == nil || n.Total <= 0 {
		return ""
	}
	done := min(n.OK+n.Failed+n.Unreachable, n.Total)
	filled := done * barWidth / n.Total
	s := fmt.Sprintf("[%s%s] %d/%d", strings.Repeat("#", filled), strings.Repeat("-", barWidth-filled), done, n.Total)
	var bad []string
	if n.Failed > 0 {
		bad = append(bad, fmt.Sprintf("%d failed", n.Failed))
	}
	if n.Unreachable > 0 {
		bad = append(bad, fmt.Sprintf("%d unreachable", n.Unreachable))
	}
	if len(bad) > 0 {
		s += " (" + strings.Join(bad, ", ") + ")"
	}
	return s
}

// serviceView is what plain output compares between two snapshots.
type serviceView struct {
	state api.State
	step  string
	gates map[string]api.GateState
}

// changeLines returns one plain line per service whose state or step changed
// since prev, and one per gate whose state changed, and records the new view
// in prev. Services still pending print nothing.
func changeLines(prev map[api.Service]serviceView, st api.RunStatus, now time.Time) []string {
	ts := now.Format("15:04:05")
	var lines []string
	for _, s := range st.Services {
		old, seen := prev[s.Service]
		cur := serviceView{state: s.State, step: currentStep(s), gates: map[string]api.GateState{}}
		if (!seen && s.State != api.Pending) || (seen && (old.state != cur.state || old.step != cur.step)) {
			line := fmt.Sprintf("%s  %-12s %-21s %s", ts, s.Service, s.State, cur.step)
			if p := progress(s.Nodes); p != "" {
				line += "  " + p
			}
			if s.State.Finished() && s.Message != "" {
				line += "  " + oneLine(s.Message)
			}
			lines = append(lines, strings.TrimRight(line, " "))
		}
		for _, gt := range s.Gates {
			cur.gates[gt.Name] = gt.State
			if old.gates[gt.Name] == gt.State || (old.gates[gt.Name] == "" && gt.State == api.GatePending) {
				continue
			}
			line := fmt.Sprintf("%s  %-12s gate %s %s", ts, s.Service, gt.Name, gt.State)
			switch gt.State {
			case api.GateWaiting:
				approve := gt.ApproveCommand
				if approve == "" {
					approve = fmt.Sprintf("repopulate approve %s %s", st.RunID, gt.Name)
				}
				line += ": " + oneLine(gt.Action) + " — approve with: " + approve
			case api.GateApproved, api.GateRejected:
				line += " by " + gt.By
				if gt.Note != "" {
					line += ": " + oneLine(gt.Note)
				}
			}
			lines = append(lines, line)
		}
		prev[s.Service] = cur
	}
	return lines
}
