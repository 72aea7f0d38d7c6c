package cli

import (
	"bytes"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/csmops/etcd-repopulate/internal/api"
)

var t0 = time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)

// midRun is a run in the middle: one service done, hmnfd fanning out,
// cps waiting at a gate, meds not started.
func midRun() api.RunStatus {
	return api.RunStatus{
		RunID: "r1", State: api.Running, Started: t0,
		Services: []api.ServiceStatus{
			{Service: api.BSS, State: api.Done, Steps: []api.StepStatus{
				{Name: "save-job", State: api.Done, Started: t0, Ended: t0.Add(5 * time.Second)},
				{Name: "wait-complete", State: api.Done, Started: t0.Add(5 * time.Second), Ended: t0.Add(42 * time.Second)},
			}},
			{Service: api.HMNFD, State: api.Running, Nodes: &api.NodeCounts{Total: 100, OK: 40, Failed: 2, Unreachable: 3},
				Steps: []api.StepStatus{
					{Name: "list-nodes", State: api.Done, Started: t0.Add(time.Second), Ended: t0.Add(2 * time.Second)},
					{Name: "restart-orca", State: api.Running, Started: t0.Add(2 * time.Second)},
				}},
			{Service: api.CPS, State: api.WaitingForApproval,
				Steps: []api.StepStatus{{Name: "find-nodes", State: api.Done, Started: t0.Add(10 * time.Second), Ended: t0.Add(11 * time.Second)}},
				Gates: []api.GateStatus{
					{Name: api.GateCPSUnmount, State: api.GateWaiting, Action: "shut down 12 compute nodes",
						ApproveCommand: "repopulate approve r1 cps-unmount", RejectCommand: "repopulate reject r1 cps-unmount --reason TEXT",
						Deadline: t0.Add(90 * time.Second)},
					{Name: api.GateCPSReboot, State: api.GatePending, Action: "boot them again"},
				}},
			{Service: api.MEDS, State: api.Pending, Steps: []api.StepStatus{{Name: "restart-pods", State: api.Pending}}},
		},
	}
}

func TestRenderFrame(t *testing.T) {
	got := renderFrame(midRun(), t0.Add(75*time.Second), 0)
	want := []string{
		"Run r1: running  1m15s",
		"SERVICE  STATE                 STEP              ELAPSED  PROGRESS",
		"bss      done                                    42s",
		"hmnfd    running               restart-orca      1m14s    [#########-----------] 45/100 (2 failed, 3 unreachable)",
		"cps      waiting-for-approval  gate cps-unmount  1m5s",
		"meds     pending",
		"",
		"Waiting for approval:",
		"  cps-unmount (cps): shut down 12 compute nodes — deadline 10:01:30Z (in 15s)",
		"    approve: repopulate approve r1 cps-unmount",
		"    reject:  repopulate reject r1 cps-unmount --reason TEXT",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("frame:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	for _, l := range renderFrame(midRun(), t0.Add(75*time.Second), 40) {
		if n := len([]rune(l)); n >= 40 {
			t.Errorf("line of %d runes on a 40-column terminal would wrap: %q", n, l)
		}
	}
}

func TestRenderFrameWithoutCommandsNamesOurs(t *testing.T) {
	st := midRun()
	st.Services[2].Gates[0].ApproveCommand, st.Services[2].Gates[0].RejectCommand = "", ""
	frame := strings.Join(renderFrame(st, t0, 0), "\n")
	for _, want := range []string{"approve: repopulate approve r1 cps-unmount", "reject:  repopulate reject r1 cps-unmount --reason TEXT"} {
		if !strings.Contains(frame, want) {
			t.Errorf("frame lacks %q:\n%s", want, frame)
		}
	}
}

func TestProgress(t *testing.T) {
	for _, tc := range []struct {
		n    *api.NodeCounts
		want string
	}{
		{nil, ""},
		{&api.NodeCounts{}, ""},
		{&api.NodeCounts{Total: 4}, "[--------------------] 0/4"},
		{&api.NodeCounts{Total: 4, OK: 2}, "[##########----------] 2/4"},
		{&api.NodeCounts{Total: 3, OK: 1, Failed: 1, Unreachable: 1}, "[####################] 3/3 (1 failed, 1 unreachable)"},
		{&api.NodeCounts{Total: 1000, OK: 1}, "[--------------------] 1/1000"},
	} {
		if got := progress(tc.n); got != tc.want {
			t.Errorf("progress(%+v) = %q, want %q", tc.n, got, tc.want)
		}
	}
}

// Plain mode prints one line per change of a service's state, step or gate,
// nothing when nothing changed, and never an escape code.
func TestChangeLines(t *testing.T) {
	prev := map[api.Service]serviceView{}
	first := changeLines(prev, midRun(), t0)
	want := []string{
		"10:00:00  bss          done",
		"10:00:00  hmnfd        running               restart-orca  [#########-----------] 45/100 (2 failed, 3 unreachable)",
		"10:00:00  cps          waiting-for-approval  gate cps-unmount",
		"10:00:00  cps          gate cps-unmount waiting: shut down 12 compute nodes — approve with: repopulate approve r1 cps-unmount",
	}
	if strings.Join(first, "\n") != strings.Join(want, "\n") {
		t.Errorf("first lines:\n%s\nwant:\n%s", strings.Join(first, "\n"), strings.Join(want, "\n"))
	}
	if again := changeLines(prev, midRun(), t0.Add(time.Minute)); len(again) != 0 {
		t.Errorf("no change printed %q", again)
	}
	next := midRun()
	next.Services[1].Nodes.OK = 60 // progress alone is not a change worth a line
	next.Services[2].State = api.Running
	next.Services[2].Gates[0].State, next.Services[2].Gates[0].By, next.Services[2].Gates[0].Note = api.GateApproved, "ops@ncn-m001", "CHG-1"
	next.Services[2].Steps = append(next.Services[2].Steps, api.StepStatus{Name: "shutdown", State: api.Running, Started: t0})
	got := changeLines(prev, next, t0.Add(2*time.Minute))
	want = []string{
		"10:02:00  cps          running               shutdown",
		"10:02:00  cps          gate cps-unmount approved by ops@ncn-m001: CHG-1",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("change lines:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	for _, l := range append(first, got...) {
		if strings.Contains(l, "\x1b") {
			t.Errorf("escape code in plain line %q", l)
		}
	}
}

func TestRedraw(t *testing.T) {
	var b bytes.Buffer
	n := redraw(&b, 0, []string{"a", "b", "c"}, 0)
	if n != 3 || b.String() != "\x1b[Ja\nb\nc\n" {
		t.Fatalf("first draw %d %q", n, b.String())
	}
	b.Reset()
	n = redraw(&b, 3, []string{"x"}, 0)
	if n != 1 || b.String() != "\r\x1b[3A\x1b[Jx\n" {
		t.Fatalf("redraw %d %q", n, b.String())
	}
}

// A decision refused by the run (sent as a Web UI signal, which cannot
// answer) is listed by status with its reason.
func TestStatusListsRefusedDecisions(t *testing.T) {
	at := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)
	st := api.RunStatus{RunID: "r", State: api.WaitingForApproval, RefusedDecisions: []api.RefusedDecision{
		{Gate: "cps-rebot", Decision: api.Approve, Reason: `run r has no gate "cps-rebot"; its gates: cps-unmount (cps, waiting)`, At: at},
		{Gate: "cps-unmount", Decision: "yes", By: "web-ui", Reason: `decision "yes" must be approve or reject`, At: at},
	}}
	var b strings.Builder
	writeText(&b, st)
	for _, want := range []string{"Refused gate decisions (latest last):",
		`2026-11-23T10:00:00Z approve "cps-rebot" by an unnamed sender: run r has no gate "cps-rebot"`,
		`yes "cps-unmount" by web-ui: decision "yes" must be approve or reject`} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("status lacks %q:\n%s", want, b.String())
		}
	}
}

// The report ends with the evidence table: each service, whether its last
// check passed, what it checked and what it found.
func TestReportEndsWithTheEvidence(t *testing.T) {
	st := api.RunStatus{RunID: "r", State: api.Failed, Services: []api.ServiceStatus{
		{Service: api.BSS, State: api.Failed, Message: "failed at step data-check: BSS holds no boot parameters for 3 of the 3 nodes HSM lists",
			FollowUps: []string{"look at BSS"},
			Evidence:  &api.Evidence{Checked: "BSS boot parameters for every node HSM lists", Found: "BSS holds no boot parameters for 3 of the 3 nodes HSM lists (x1,x2,x3)"}},
		{Service: api.MEDS, State: api.Done, Evidence: &api.Evidence{Checked: "replacement pods Ready (services pods app=cray-meds)", Found: "1 pods Ready", OK: true}},
		{Service: api.CPS, State: api.Skipped, Message: "not in this release"},
	}}
	var b strings.Builder
	writeText(&b, st)
	out := b.String()
	i := strings.Index(out, "\nEvidence:\n")
	if i < 0 || i < strings.Index(out, "Follow-ups for people:") {
		t.Fatalf("no evidence table at the end:\n%s", out)
	}
	lines := strings.Split(strings.TrimSpace(out[i:]), "\n")
	if len(lines) != 4 || !strings.HasPrefix(lines[1], "SERVICE") ||
		!regexp.MustCompile(`^bss +FAILED +BSS boot parameters for every node HSM lists +BSS holds no boot parameters for 3 of the 3 nodes HSM lists \(x1,x2,x3\)$`).MatchString(lines[2]) ||
		!regexp.MustCompile(`^meds +passed +replacement pods Ready \(services pods app=cray-meds\) +1 pods Ready$`).MatchString(lines[3]) {
		t.Errorf("evidence table:\n%s", strings.Join(lines, "\n"))
	}
}
