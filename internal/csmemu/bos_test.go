package csmemu_test

import (
	"errors"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/csmops/etcd-repopulate/internal/csm"
	"github.com/csmops/etcd-repopulate/internal/csmemu"
)

// hsmStates maps xname to HSM State as the API reports it.
func hsmStates(t *testing.T, c *csm.Client) map[string]string {
	t.Helper()
	comps, err := c.Components(bg(t), csm.ComponentQuery{})
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, comp := range comps {
		out[comp.ID] = comp.State
	}
	return out
}

// follow polls the session until it is complete and returns the statuses
// seen, each once, and whether want was ever the State of xname on the way.
func follow(t *testing.T, c *csm.Client, name, xname, want string) (statuses []string, sawState bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		s, err := c.BOSSession(bg(t), name)
		if err != nil {
			t.Fatal(err)
		}
		if len(statuses) == 0 || statuses[len(statuses)-1] != s.Status.Status {
			statuses = append(statuses, s.Status.Status)
		}
		if hsmStates(t, c)[xname] == want {
			sawState = true
		}
		if s.Status.Status == "complete" {
			return statuses, sawState
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("session %s not complete after 15s; statuses seen %v", name, statuses)
	return nil, false
}

func cpsTemplate(t *testing.T, e *csmemu.Emulator) {
	t.Helper()
	err := e.SetSessionTemplate(csm.SessionTemplate{Name: "cos", BootSets: map[string]csm.BootSet{
		"compute": {Path: "s3://boot-images/k/manifest.json", Type: "s3", RootfsProvider: "cpss3", NodeRolesGroups: []string{"Compute"}},
	}})
	if err != nil {
		t.Fatal(err)
	}
}

func TestBOSShutdownThenBootProgressOverTime(t *testing.T) {
	const step = 300 * time.Millisecond
	e, c, _ := start(t, csmemu.Options{Components: csmemu.ComputeNodes(3), BOSStepDelay: step})
	cpsTemplate(t, e)
	n0, n1, n2 := "x1000c0s0b0n0", "x1000c0s1b0n0", "x1000c0s2b0n0"

	s, err := c.CreateBOSSession(bg(t), csm.BOSSessionRequest{Name: "cps-shutdown", TemplateName: "cos", Operation: "shutdown", Limit: n0 + "," + n1})
	if err != nil {
		t.Fatal(err)
	}
	if s.Name != "cps-shutdown" || s.Status.Status != "pending" || s.Components != n0+","+n1 {
		t.Errorf("created %+v, want name cps-shutdown, pending, components %s,%s", s, n0, n1)
	}
	if st := hsmStates(t, c); st[n0] != "Ready" {
		t.Errorf("%s is %s right after the POST, want Ready until 2 steps passed", n0, st[n0])
	}
	statuses, _ := follow(t, c, "cps-shutdown", n0, "Off")
	if !slices.Equal(statuses, []string{"pending", "running", "complete"}) && !slices.Equal(statuses, []string{"running", "complete"}) {
		t.Errorf("statuses %v, want pending, running, complete", statuses)
	}
	if st := hsmStates(t, c); st[n0] != "Off" || st[n1] != "Off" || st[n2] != "Ready" {
		t.Errorf("after shutdown: %v, want %s and %s Off, %s (not in limit) Ready", st, n0, n1, n2)
	}

	// Same name again: 409 as BOS answers, and no second session.
	_, err = c.CreateBOSSession(bg(t), csm.BOSSessionRequest{Name: "cps-shutdown", TemplateName: "cos", Operation: "shutdown", Limit: n0})
	if e := wantKindErr(t, err, csm.BadRequest); e.Status != http.StatusConflict {
		t.Errorf("duplicate name: HTTP %d, want 409", e.Status)
	}
	if n := len(e.BOSSessions()); n != 1 {
		t.Errorf("%d sessions after a duplicate POST, want 1", n)
	}
	_, err = c.BOSSession(bg(t), "nope")
	wantKindErr(t, err, csm.NotFound)

	// No limit: the template's nodes (node_roles_groups Compute), On then Ready.
	if _, err := c.CreateBOSSession(bg(t), csm.BOSSessionRequest{Name: "cps-boot", TemplateName: "cos", Operation: "boot"}); err != nil {
		t.Fatal(err)
	}
	_, sawOn := follow(t, c, "cps-boot", n0, "On")
	if !sawOn {
		t.Errorf("%s never On between Off and Ready", n0)
	}
	for x, st := range hsmStates(t, c) {
		if st != "Ready" {
			t.Errorf("after boot %s is %s, want Ready", x, st)
		}
	}
}

func TestBOSStuckNodeKeepsSessionRunning(t *testing.T) {
	e, c, base := start(t, csmemu.Options{Components: csmemu.ComputeNodes(2), ControlAPI: true})
	cpsTemplate(t, e)
	for _, p := range []string{"/_csmemu/bos-stuck?xname=x1000c0s1b0n0&stuck=true", "/_csmemu/bos-timing?step=0s"} {
		resp, err := http.Post(base+p, "", nil)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusNoContent {
			t.Fatalf("%s: HTTP %d", p, resp.StatusCode)
		}
	}
	if _, err := c.CreateBOSSession(bg(t), csm.BOSSessionRequest{Name: "s", TemplateName: "cos", Operation: "shutdown"}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(10 * time.Millisecond)
	st := hsmStates(t, c)
	if st["x1000c0s0b0n0"] != "Off" || st["x1000c0s1b0n0"] != "Ready" {
		t.Errorf("states %v, want x1000c0s0b0n0 Off and the stuck x1000c0s1b0n0 still Ready", st)
	}
	if s, err := c.BOSSession(bg(t), "s"); err != nil || s.Status.Status != "running" {
		t.Errorf("session with a stuck node = %+v, %v; want running", s.Status, err)
	}
}

func wantKindErr(t *testing.T, err error, k csm.Kind) *csm.Error {
	t.Helper()
	var e *csm.Error
	if err == nil || !errors.As(err, &e) || e.Kind != k {
		t.Fatalf("got %v, want a %s error", err, k)
	}
	return e
}
