package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"
	"golang.org/x/sys/unix"

	"github.com/csmops/etcd-repopulate/internal/api"
	"github.com/csmops/etcd-repopulate/internal/badinput"
)

// progression is a run that goes from running, through a gate and a node
// fan-out, to done (or to failed).
func progression(end api.State) []api.RunStatus {
	start := time.Now().UTC().Truncate(time.Second)
	step := func(name string, st api.State) api.StepStatus {
		s := api.StepStatus{Name: name, State: st, Started: start}
		if st.Finished() {
			s.Ended = start.Add(time.Second)
		}
		return s
	}
	cpsGates := func(unmount api.GateState) []api.GateStatus {
		return []api.GateStatus{{Name: api.GateCPSUnmount, State: unmount, Action: "shut down 2 compute nodes"}}
	}
	s0 := api.RunStatus{State: api.Running, Started: start, Services: []api.ServiceStatus{
		{Service: api.BSS, State: api.Running, Steps: []api.StepStatus{step("wait-complete", api.Running)}},
		{Service: api.HMNFD, State: api.Running, Nodes: &api.NodeCounts{Total: 4}, Steps: []api.StepStatus{step("restart-orca", api.Running)}},
		{Service: api.CPS, State: api.Pending, Steps: []api.StepStatus{step("find-nodes", api.Pending)}, Gates: cpsGates(api.GatePending)},
	}}
	s1 := api.RunStatus{State: api.Running, Started: start, Services: []api.ServiceStatus{
		{Service: api.BSS, State: api.Done, Steps: []api.StepStatus{step("wait-complete", api.Done)}},
		{Service: api.HMNFD, State: api.Running, Nodes: &api.NodeCounts{Total: 4, OK: 2}, Steps: []api.StepStatus{step("restart-orca", api.Running)}},
		{Service: api.CPS, State: api.WaitingForApproval, Steps: []api.StepStatus{step("find-nodes", api.Done)}, Gates: cpsGates(api.GateWaiting)},
	}}
	s2 := api.RunStatus{State: end, Started: start, Ended: start.Add(3 * time.Second), Services: []api.ServiceStatus{
		{Service: api.BSS, State: api.Done, Steps: []api.StepStatus{step("wait-complete", api.Done)}},
		{Service: api.HMNFD, State: end, Nodes: &api.NodeCounts{Total: 4, OK: 4}, Steps: []api.StepStatus{step("restart-orca", end)}},
		{Service: api.CPS, State: api.Done, Steps: []api.StepStatus{step("find-nodes", api.Done)}, Gates: cpsGates(api.GateApproved)},
	}}
	return []api.RunStatus{s0, s1, s2}
}

var cursorUpRE = regexp.MustCompile(`\x1b\[\d+A`)

// openPTY opens a pseudo-terminal pair with the Linux ioctls, so that the
// test needs no pty package.
func openPTY(t *testing.T) (master, tty *os.File) {
	t.Helper()
	m, err := os.OpenFile("/dev/ptmx", os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.IoctlSetPointerInt(int(m.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		t.Fatal(err)
	}
	n, err := unix.IoctlGetUint32(int(m.Fd()), unix.TIOCGPTN)
	if err != nil {
		t.Fatal(err)
	}
	s, err := os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.IoctlSetWinsize(int(s.Fd()), unix.TIOCSWINSZ, &unix.Winsize{Row: 40, Col: 150}); err != nil {
		t.Fatal(err)
	}
	return m, s
}

// The built binary, on a terminal, redraws the table in place while the run
// goes and ends with the report and exit code 0.
func TestWatchRedrawsOnATerminal(t *testing.T) {
	addr := temporalServer(t)
	bin := binary(t)
	startFixture(t, "watch-tty", fixtureInput{Script: progression(api.Done), Every: 1500 * time.Millisecond}, nil)
	master, tty := openPTY(t)
	defer master.Close()
	cmd := exec.Command(bin, "--address", addr, "watch", "watch-tty", "--interval", "300ms")
	var stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = tty, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	tty.Close()
	screen := make(chan []byte)
	go func() {
		b, _ := io.ReadAll(master) // ends with EIO once the child has exited
		screen <- b
	}()
	timer := time.AfterFunc(30*time.Second, func() { _ = cmd.Process.Kill() })
	defer timer.Stop()
	err := cmd.Wait()
	out := string(<-screen)
	if err != nil {
		t.Fatalf("watch: %v\nstderr: %s\nscreen: %q", err, stderr.String(), out)
	}
	if n := len(cursorUpRE.FindAllString(out, -1)); n < 3 {
		t.Errorf("%d cursor-up sequences, want a redraw every 300ms:\n%q", n, out)
	}
	for _, want := range []string{
		"[##########----------] 2/4",
		"gate cps-unmount",
		"approve: repopulate approve watch-tty cps-unmount",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("screen lacks %q:\n%q", want, out)
		}
	}
	last := strings.LastIndex(out, "\x1b[")
	report := strings.Index(out, "Run watch-tty: done")
	if report < last {
		t.Errorf("the report is not printed after the last redraw (report at %d, last escape at %d):\n%q", report, last, out)
	}
}

// Not on a terminal: one plain line per change, no escape codes.
func TestWatchPlainLines(t *testing.T) {
	startFixture(t, "watch-plain", fixtureInput{Script: progression(api.Done), Every: time.Second}, nil)
	out, stderr, code := run(t, "watch", "watch-plain", "--interval", "200ms")
	if code != 0 {
		t.Fatalf("exit %d\n%s\n%s", code, out, stderr)
	}
	if strings.Contains(out, "\x1b") {
		t.Errorf("escape codes in plain output:\n%q", out)
	}
	for want, times := range map[string]int{
		"gate cps-unmount waiting: shut down 2 compute nodes — approve with: repopulate approve watch-plain cps-unmount": 1,
		"bss          running               wait-complete":                                                               1,
		"bss          done":     1,
		"Run watch-plain: done": 1,
	} {
		if n := strings.Count(out, want); n != times {
			t.Errorf("%q printed %d times, want %d:\n%s", want, n, times, out)
		}
	}
}

// -o json streams one RunStatus a line, one per change, the last one final.
func TestWatchJSONLines(t *testing.T) {
	startFixture(t, "watch-json", fixtureInput{Script: progression(api.Done), Every: time.Second}, nil)
	out, stderr, code := run(t, "watch", "watch-json", "--interval", "200ms", "-o", "json")
	if code != 0 {
		t.Fatalf("exit %d\n%s\n%s", code, out, stderr)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	var states []api.State
	for i, l := range lines {
		var st api.RunStatus
		if err := json.Unmarshal([]byte(l), &st); err != nil {
			t.Fatalf("line %d is not a RunStatus: %v\n%s", i, err, l)
		}
		if i > 0 && l == lines[i-1] {
			t.Errorf("line %d repeats the one before", i)
		}
		states = append(states, st.Services[2].State)
	}
	if want := []api.State{api.Pending, api.WaitingForApproval, api.Done}; !slices.Equal(states, want) {
		t.Errorf("cps states over the lines %v, want %v:\n%s", states, want, out)
	}
}

func TestWatchFailedRunExits1(t *testing.T) {
	startFixture(t, "watch-failed", fixtureInput{Script: progression(api.Failed), Every: 300 * time.Millisecond}, nil)
	out, stderr, code := run(t, "watch", "watch-failed", "--interval", "200ms")
	if code != ExitFailed || !strings.Contains(out, "Run watch-failed: failed") {
		t.Fatalf("exit %d, want 1\n%s\n%s", code, out, stderr)
	}
}

func TestList(t *testing.T) {
	done := []api.RunStatus{{State: api.Done}}
	startFixture(t, "list-a", fixtureInput{Script: done}, map[string]any{api.MemoServices: []string{"bss", "hmnfd"}, api.MemoDryRun: true, api.MemoRelease: "csm-1.2"})
	startFixture(t, "list-b", fixtureInput{Script: done, Hold: true}, map[string]any{api.MemoServices: []string{"cps"}})
	ids := func(args ...string) []string {
		out, stderr, code := run(t, append([]string{"list", "-o", "json"}, args...)...)
		if code != 0 {
			t.Fatalf("list %v: exit %d\n%s", args, code, stderr)
		}
		var runs []RunSummary
		if err := json.Unmarshal([]byte(out), &runs); err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
		var got []string
		for _, r := range runs {
			if strings.HasPrefix(r.RunID, "list-") {
				got = append(got, r.RunID)
			}
		}
		return got
	}
	// Visibility is written a moment after the run starts or closes.
	deadline := time.Now().Add(15 * time.Second)
	for !slices.Equal(ids("--status", "completed"), []string{"list-a"}) && time.Now().Before(deadline) {
		time.Sleep(200 * time.Millisecond)
	}
	for _, tc := range []struct {
		args []string
		want []string
	}{
		{nil, []string{"list-b", "list-a"}},
		{[]string{"--service", "cps"}, []string{"list-b"}},
		{[]string{"--service", "HMNFD"}, []string{"list-a"}},
		{[]string{"--service", "meds"}, nil},
		{[]string{"--status", "running"}, []string{"list-b"}},
		{[]string{"--status", "completed"}, []string{"list-a"}},
		{[]string{"--limit", "1"}, []string{"list-b"}},
	} {
		if got := ids(tc.args...); !slices.Equal(got, tc.want) {
			t.Errorf("list %v: %v, want %v", tc.args, got, tc.want)
		}
	}
	out, _, code := run(t, "list", "--service", "bss")
	if code != 0 || !regexp.MustCompile(`(?m)^list-a\s+completed\s+\S+ \S+\s+\S+\s+bss,hmnfd\s+yes\s+csm-1.2$`).MatchString(out) {
		t.Errorf("text list: exit %d\n%s", code, out)
	}
}

func TestApproveAndReject(t *testing.T) {
	gates := []api.GateStatus{
		{Name: api.GateCPSUnmount, State: api.GateWaiting, Action: "shut down"},
		{Name: api.GateCPSReboot, State: api.GateWaiting, Action: "boot"},
		{Name: api.GateBOSTemplates, State: api.GatePending, Action: "rebuild templates"},
	}
	startFixture(t, "gate-run", fixtureInput{Hold: true, Script: []api.RunStatus{{State: api.Running, Services: []api.ServiceStatus{
		{Service: api.CPS, State: api.WaitingForApproval, Gates: gates[:2]},
		{Service: api.BOS, State: api.Running, Gates: gates[2:]},
	}}}}, nil)
	startFixture(t, "gate-closed", fixtureInput{Script: []api.RunStatus{{State: api.Done}}}, nil)
	me := whoAmI()
	for _, tc := range []struct {
		name string
		args []string
		code int
		want string
	}{
		{"status lists waiting gates", []string{"status", "gate-run"}, 0, "approve: repopulate approve gate-run cps-reboot"},
		{"approve", []string{"approve", "gate-run", "cps-unmount", "--note", "CHG-1", "--service", "cps"}, 0,
			fmt.Sprintf("approved gate cps-unmount of run gate-run (by %s, note \"CHG-1\")", me)},
		{"approve again", []string{"approve", "gate-run", "cps-unmount"}, ExitBadInput,
			fmt.Sprintf("gate \"cps-unmount\" is not waiting (state approved, decided by %s at", me)},
		{"unknown gate", []string{"approve", "gate-run", "nope"}, ExitBadInput, `no gate "nope" in run gate-run`},
		{"not reached", []string{"reject", "gate-run", "bos-templates", "--reason", "x"}, ExitBadInput, `gate "bos-templates" is not waiting (state pending`},
		{"wrong service", []string{"approve", "gate-run", "cps-reboot", "--service", "bos"}, ExitBadInput, `service bos of run gate-run has no gate "cps-reboot" (its gates: bos-templates)`},
		{"reject", []string{"reject", "gate-run", "cps-reboot", "--reason", "nodes busy"}, 0,
			fmt.Sprintf("rejected gate cps-reboot of run gate-run (by %s, reason \"nodes busy\")", me)},
		{"closed run", []string{"approve", "gate-closed", "cps-unmount"}, ExitBadInput, "run gate-closed has already finished (completed)"},
		{"no such run", []string{"approve", "gate-none", "cps-unmount"}, ExitBadInput, `no run "gate-none"`},
		{"watch no such run", []string{"watch", "gate-none"}, ExitBadInput, `no run "gate-none"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			id := tc.args[1]
			before := historyLen(t, id)
			out, stderr, code := run(t, tc.args...)
			if code != tc.code || !strings.Contains(out+stderr, tc.want) {
				t.Errorf("exit %d, want %d with %q\nstdout: %s\nstderr: %s", code, tc.code, tc.want, out, stderr)
			}
			// "run X refused: ..." carries the fixture's validator text, not
			// the product's: e2e records the real workflow's refusals.
			if tc.code != ExitBadInput || strings.Contains(stderr, " refused: ") {
				return
			}
			// A refused decision must leave no trace in the run.
			unchanged := "validator refused: no event added to the run's history"
			switch after := historyLen(t, id); {
			case before < 0 && after < 0:
				unchanged = "no run of that ID exists afterwards either"
			case after != before:
				t.Errorf("history of %s: %d events before, %d after", id, before, after)
			case id == "gate-closed":
				unchanged = "refused by the CLI: no event added to the finished run's history"
			}
			badinput.Record(t, badinput.Case{Area: badinput.Request, Input: strings.Join(tc.args, " "), Message: badinput.Line(out+stderr, tc.want),
				Exit: fmt.Sprint(code), Unchanged: unchanged})
		})
	}
	// The decisions are in the run, with who made them.
	out, stderr, code := run(t, "status", "gate-run", "-o", "json")
	var st api.RunStatus
	if err := json.Unmarshal([]byte(out), &st); code != 0 || err != nil {
		t.Fatalf("status: exit %d %v\n%s", code, err, stderr)
	}
	got := st.Services[0].Gates
	if got[0].State != api.GateApproved || got[0].By != me || got[0].Note != "CHG-1" || got[1].State != api.GateRejected || got[1].Note != "nodes busy" || st.Services[1].Gates[0].State != api.GatePending {
		t.Errorf("gates after the decisions: %+v %+v", got, st.Services[1].Gates)
	}
}

// Bad flags and arguments are refused before anything is asked of Temporal.
func TestBadInput(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"watch"}, "takes exactly one RUN_ID"},
		{[]string{"watch", "r", "--interval", "0s"}, "--interval 0s: must be positive"},
		{[]string{"watch", "r", "--interval", "soon"}, `invalid argument "soon" for "--interval"`},
		{[]string{"watch", "r", "-o", "yaml"}, `--output "yaml": want text or json`},
		{[]string{"list", "--status", "paused"}, `--status "paused": want running, completed, failed or canceled`},
		{[]string{"list", "--limit", "0"}, "--limit 0: must be at least 1"},
		{[]string{"list", "--service", "dns"}, `--service "dns": give one of bos,`},
		{[]string{"list", "extra"}, `unknown command "extra"`},
		{[]string{"approve", "r"}, "takes RUN_ID and GATE"},
		{[]string{"reject", "r", "cps-unmount"}, "reject needs --reason TEXT"},
		{[]string{"approve", "r", "cps-unmount", "--service", "dns"}, `--service "dns": give one of`},
		// An unset shell variable ($SERVICES) gives an empty list: that must not mean all nine.
		{[]string{"start", "--services", ""}, `--services "": no service named`},
		{[]string{"start", "--services", ","}, "--services: no service named"},
		{[]string{"start", "--services="}, `--services "": no service named`},
		// --services auto lets plan choose: no names with it, plan's inputs only with it.
		{[]string{"start", "--services", "auto,bss"}, "--services auto,bss: auto lets repopulate plan choose the services and takes no names with it"},
		{[]string{"start", "--services", "bss", "--since", "6h", "--config", "c.yaml"}, "--since, --config: repopulate plan's inputs, read only with --services auto"},
		{[]string{"start", "--services", "auto", "--since", "yesterday"}, `--since "yesterday": want an RFC 3339 time`},
		{[]string{"start", "--services", "auto", "--release", "csm-9"}, "--release: "},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			var out, errb bytes.Buffer
			// An address nobody listens on: a bad input must fail before dialing.
			code := Execute(t.Context(), append([]string{"--address", "127.0.0.1:1", "--dial-timeout", "1s"}, tc.args...), Streams{Out: &out, Err: &errb})
			if code != ExitBadInput || !strings.Contains(errb.String(), tc.want) {
				t.Errorf("exit %d, want 2 with %q\nstderr: %s", code, tc.want, errb.String())
			}
			badinput.Record(t, badinput.Case{Area: badinput.CLI, Input: strings.Join(tc.args, " "), Message: badinput.Line(errb.String(), tc.want),
				Exit: fmt.Sprint(code), Unchanged: "refused before dialing Temporal (--address 127.0.0.1:1: a dial would have exited 1)"})
		})
	}
}

func TestCompletion(t *testing.T) {
	startFixture(t, "complete-run", fixtureInput{Hold: true, Script: []api.RunStatus{{State: api.Running, Services: []api.ServiceStatus{
		{Service: api.CPS, State: api.WaitingForApproval, Gates: []api.GateStatus{
			{Name: api.GateCPSUnmount, State: api.GateWaiting, Action: "shut down"},
			{Name: api.GateCPSReboot, State: api.GatePending},
		}},
	}}}}, nil)
	complete := func(args ...string) []string {
		out, stderr, code := run(t, append([]string{"__complete"}, args...)...)
		if code != 0 {
			t.Fatalf("__complete %v: exit %d %s", args, code, stderr)
		}
		var got []string
		for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
			if !strings.HasPrefix(l, ":") { // the last line is the directive
				got = append(got, strings.SplitN(l, "\t", 2)[0])
			}
		}
		return got
	}
	deadline := time.Now().Add(15 * time.Second)
	for !slices.Contains(complete("status", ""), "complete-run") {
		if time.Now().After(deadline) {
			t.Fatalf("run IDs offered: %v", complete("status", ""))
		}
		time.Sleep(200 * time.Millisecond)
	}
	if got := complete("approve", "complete-run", ""); !slices.Equal(got, []string{"cps-unmount"}) {
		t.Errorf("gates offered %v, want the waiting one", got)
	}
	if got := complete("start", "--services", "bss,c"); !slices.Equal(got, []string{"bss,bos", "bss,cps", "bss,crus", "bss,externaldns", "bss,fas", "bss,hmnfd", "bss,meds", "bss,reds"}) {
		t.Errorf("--services offered %v", got)
	}
	for _, shell := range []string{"bash", "zsh", "fish"} {
		if out, _, code := run(t, "completion", shell); code != 0 || !strings.Contains(out, "repopulate") {
			t.Errorf("completion %s: exit %d", shell, code)
		}
	}
}

// A run whose worker is away cannot answer the status query; watch says so
// once and keeps asking, and Ctrl-C leaves the run alone.
func TestWatchWithoutWorkerKeepsAsking(t *testing.T) {
	addr := temporalServer(t)
	id := "watch-no-worker"
	if _, err := tc.ExecuteWorkflow(t.Context(), client.StartWorkflowOptions{ID: id, TaskQueue: "nobody-polls"}, api.RepopulateWorkflow, fixtureInput{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tc.TerminateWorkflow(context.Background(), id, "", "test over") })
	// Long enough for one status query to time out (statusTimeout), not two.
	ctx, cancel := context.WithTimeout(t.Context(), statusTimeout+2*time.Second)
	defer cancel()
	var out, errb bytes.Buffer
	code := Execute(ctx, []string{"--address", addr, "watch", id, "--interval", "200ms"}, Streams{Out: &out, Err: &errb})
	notes := regexp.MustCompile(`(?m)^repopulate: status unavailable, asking again every 200ms: query run watch-no-worker: .*\(is a repopulate-worker running on task queue "nobody-polls"\?\)$`).FindAllString(errb.String(), -1)
	if code != ExitFailed || len(notes) == 0 || strings.Count(errb.String(), "status unavailable") != len(notes) ||
		!strings.Contains(errb.String(), "stopped watching run watch-no-worker; the run goes on") {
		t.Errorf("exit %d\nstdout: %s\nstderr: %s", code, out.String(), errb.String())
	}
	if desc, err := tc.DescribeWorkflowExecution(t.Context(), id, ""); err != nil || desc.GetWorkflowExecutionInfo().GetStatus() != enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING {
		t.Errorf("the run did not go on: %v %v", desc.GetWorkflowExecutionInfo().GetStatus(), err)
	}
}

// historyLen counts the events of run id, or is -1 when there is no such run.
func historyLen(t *testing.T, id string) int {
	t.Helper()
	if _, err := tc.DescribeWorkflowExecution(context.Background(), id, ""); err != nil {
		var notFound *serviceerror.NotFound
		if errors.As(err, &notFound) {
			return -1
		}
		t.Fatal(err)
	}
	iter := tc.GetWorkflowHistory(context.Background(), id, "", false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	n := 0
	for iter.HasNext() {
		if _, err := iter.Next(); err != nil {
			t.Fatal(err)
		}
		n++
	}
	return n
}

// The report carries the first problems only; --nodes lists every node
// that did not restart, read from the hmnfd child's batch results.
func TestReportNodesListsEveryProblem(t *testing.T) {
	var batches []nodeBatch
	for b := range 3 {
		var nb nodeBatch
		for i := range 30 {
			nb.Problems = append(nb.Problems, api.NodeProblem{Host: fmt.Sprintf("nid%06d-nmn", b*30+i+1), Status: "unreachable", Reason: "connection refused"})
		}
		batches = append(batches, nb)
	}
	final := api.RunStatus{State: api.Failed, Message: "1 of 1 services failed: hmnfd", Services: []api.ServiceStatus{{
		Service: api.HMNFD, WorkflowID: "nodes-run/hmnfd", State: api.Failed, Nodes: &api.NodeCounts{Total: 100, OK: 10, Unreachable: 90},
		NodeProblems: batches[0].Problems[:api.NodeProblemsInStatus],
	}}}
	startFixture(t, "nodes-run", fixtureInput{Script: []api.RunStatus{final}, NodeBatches: batches}, nil)
	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, _, code := run(t, "report", "nodes-run"); code == ExitFailed {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("fixture run never finished")
		}
		time.Sleep(100 * time.Millisecond)
	}
	out, stderr, code := run(t, "report", "nodes-run", "--nodes", "-o", "json")
	var st api.RunStatus
	if err := json.Unmarshal([]byte(out), &st); code != ExitFailed || err != nil {
		t.Fatalf("report --nodes -o json: exit %d %v\n%s", code, err, stderr)
	}
	if got := st.Services[0].NodeProblems; len(got) != 90 || got[0].Host != "nid000001-nmn" || got[89].Host != "nid000090-nmn" {
		t.Errorf("report --nodes lists %d problems, want all 90 in batch order", len(got))
	}
	out, _, _ = run(t, "report", "nodes-run", "--nodes")
	if !strings.Contains(out, "Nodes that did not restart (hmnfd): 90") || !regexp.MustCompile(`nid000090-nmn\s+unreachable\s+connection refused`).MatchString(out) {
		t.Errorf("report --nodes text:\n%s", out)
	}
	out, _, _ = run(t, "report", "nodes-run", "-o", "json")
	if err := json.Unmarshal([]byte(out), &st); err != nil || len(st.Services[0].NodeProblems) != api.NodeProblemsInStatus {
		t.Errorf("report without --nodes: %d problems, want the status's %d", len(st.Services[0].NodeProblems), api.NodeProblemsInStatus)
	}
}
