package procedure

import (
	"encoding/json"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/csmops/etcd-repopulate/internal/api"
)

// The Web UI instructions carry the signal name and JSON that decodes into
// the decision for that gate.
func TestWebUIInstructionsCarryTheSignalAndItsJSON(t *testing.T) {
	text := WebUIInstructions("run-1", api.GateCPSReboot)
	if !strings.Contains(text, "signal name `gate-decision`") || !strings.Contains(text, "run run-1") {
		t.Fatalf("instructions: %s", text)
	}
	lines := regexp.MustCompile(`(?m)^    (\{.*\})$`).FindAllStringSubmatch(text, -1)
	if len(lines) != 2 {
		t.Fatalf("want an approve and a reject JSON line: %s", text)
	}
	for i, want := range []api.Decision{api.Approve, api.Reject} {
		var d api.GateDecision
		if err := json.Unmarshal([]byte(lines[i][1]), &d); err != nil || d.Gate != api.GateCPSReboot || d.Decision != want || d.Note == "" {
			t.Errorf("line %s: %+v %v", lines[i][1], d, err)
		}
	}
}

// What the child answers a decision that arrives after its gate closed,
// e.g. an approval racing the deadline: the reason names what happened.
func TestChildRefusalReasons(t *testing.T) {
	expired := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	w := &Run{gates: &gates{decision: map[string]api.GateDecision{}}, Status: api.ServiceStatus{Service: api.CPS, Gates: []api.GateStatus{
		{Name: api.GateCPSUnmount, State: api.GateApproved, By: "ops", Decided: expired},
		{Name: api.GateCPSReboot, State: api.GateExpired, Decided: expired},
	}}}
	for _, c := range []struct {
		d    api.GateDecision
		want string
	}{
		{api.GateDecision{Gate: api.GateCPSReboot, Decision: api.Approve}, "gate cps-reboot expired at 2026-11-23T12:00:00Z, before the decision arrived"},
		{api.GateDecision{Gate: api.GateCPSUnmount, Decision: api.Reject}, "gate cps-unmount was already approved by ops at 2026-11-23T12:00:00Z"},
		{api.GateDecision{Gate: "cps-rebot", Decision: api.Approve}, `service cps has no gate "cps-rebot"`},
		{api.GateDecision{Gate: api.GateCPSReboot, Decision: "yes"}, `decision "yes" must be approve or reject`},
	} {
		if got := w.refuse(c.d); got != c.want {
			t.Errorf("%+v: %q, want %q", c.d, got, c.want)
		}
	}
}
