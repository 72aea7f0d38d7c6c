package cps_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/csmops/etcd-repopulate/activities"
	"github.com/csmops/etcd-repopulate/internal/activitytest"
	"github.com/csmops/etcd-repopulate/internal/api"
	"github.com/csmops/etcd-repopulate/internal/csm"
	"github.com/csmops/etcd-repopulate/internal/csmemu"
	"github.com/csmops/etcd-repopulate/procedures/cps"
)

const (
	n0 = "x1000c0s0b0n0"
	n1 = "x1000c0s1b0n0"
	n2 = "x1000c0s2b0n0"
	n3 = "x1000c0s3b0n0"
)

// csmEmu serves an emulator with comps in HSM and returns the CPS
// activities talking to it over HTTP.
func csmEmu(t *testing.T, comps []csm.Component) (*csmemu.Emulator, *cps.Activities) {
	t.Helper()
	return csmEmuRelease(t, "", comps)
}

func usesCPS(e *csmemu.Emulator) {
	e.SetCPSContents([]csm.CPSContent{{S3Path: "s3://boot-images/k/rootfs", Etag: "e1"}})
	e.SetCPSTransports([]csm.CPSTransport{{ReadyForMount: true}})
}

func setTemplate(t *testing.T, e *csmemu.Emulator, name string, bs csm.BootSet) {
	t.Helper()
	bs.Path, bs.Type = "s3://boot-images/"+name+"/manifest.json", "s3"
	if err := e.SetSessionTemplate(csm.SessionTemplate{Name: name, BootSets: map[string]csm.BootSet{"compute": bs}}); err != nil {
		t.Fatal(err)
	}
}

func TestFindCPSNodesUnused(t *testing.T) {
	e, a := csmEmu(t, csmemu.ComputeNodes(2))
	setTemplate(t, e, "cos", csm.BootSet{RootfsProvider: "cpss3", NodeList: []string{n0}})
	got, _, err := activitytest.Run[cps.CPSNodes](t, a, a.FindCPSNodes, cps.CPSNodesRequest{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got.InUse || got.Reason != "no client uses CPS: /apis/v2/cps/contents is empty, so nothing is projected" || len(got.Groups) != 0 {
		t.Errorf("FindCPSNodes = %+v, want not in use", got)
	}
}

func TestFindCPSNodesDerived(t *testing.T) {
	comps := csmemu.ComputeNodes(4)
	comps[2].State = "Off" // down: nothing mounted, must not be booted
	comps = append(comps, csm.Component{ID: "x3000c0s19b0n0", Type: "Node", State: "On", Enabled: true, Role: "Application", SubRole: "UAN"})
	e, a := csmEmu(t, comps)
	usesCPS(e)

	// No cpss3 template yet: in use, nothing to do, and why.
	setTemplate(t, e, "ncn", csm.BootSet{RootfsProvider: "", NodeList: []string{n3}})
	got, _, err := activitytest.Run[cps.CPSNodes](t, a, a.FindCPSNodes, cps.CPSNodesRequest{}, nil)
	if err != nil || !got.InUse || len(got.Groups) != 0 || !strings.Contains(got.Reason, "cpss3") {
		t.Fatalf("no cpss3 template: %+v, %v; want in use, no groups, a reason naming cpss3", got, err)
	}

	setTemplate(t, e, "cos", csm.BootSet{RootfsProvider: "cpss3", NodeList: []string{n2, n1, n0}})
	setTemplate(t, e, "uan", csm.BootSet{RootfsProvider: "CPSS3", NodeRolesGroups: []string{"Application"}})
	got, _, err = activitytest.Run[cps.CPSNodes](t, a, a.FindCPSNodes, cps.CPSNodesRequest{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := []cps.CPSNodeGroup{{Template: "cos", Xnames: []string{n0, n1}}, {Template: "uan", Xnames: []string{"x3000c0s19b0n0"}}}
	if !got.InUse || got.Reason != "" || !equalJSON(got.Groups, want) {
		t.Errorf("FindCPSNodes = %+v, want groups %+v", got, want)
	}

	// A node two CPS templates boot: which to boot it with is unknown.
	setTemplate(t, e, "cos-old", csm.BootSet{RootfsProvider: "cpss3", NodeRolesGroups: []string{"Compute"}})
	_, _, err = activitytest.Run[cps.CPSNodes](t, a, a.FindCPSNodes, cps.CPSNodesRequest{}, nil)
	activitytest.NonRetryable(t, err, cps.ErrCPSAmbiguous, n0+" (cos, cos-old)", "services.cps.nodes")
	e.ClearSessionTemplates()

	// HSM groups are not resolved: say so rather than miss nodes.
	setTemplate(t, e, "grp", csm.BootSet{RootfsProvider: "cpss3", NodeGroups: []string{"cps-computes"}})
	_, _, err = activitytest.Run[cps.CPSNodes](t, a, a.FindCPSNodes, cps.CPSNodesRequest{}, nil)
	activitytest.NonRetryable(t, err, cps.ErrCPSConfig, "cps-computes", "services.cps.template")

	// CPS in use, templates found, but none of their nodes is up.
	e.ClearSessionTemplates()
	setTemplate(t, e, "cos", csm.BootSet{RootfsProvider: "cpss3", NodeList: []string{n2}})
	got, _, err = activitytest.Run[cps.CPSNodes](t, a, a.FindCPSNodes, cps.CPSNodesRequest{}, nil)
	if err != nil || !got.InUse || len(got.Groups) != 0 || !strings.Contains(got.Reason, "cos") {
		t.Errorf("no up node: %+v, %v; want in use, no groups, a reason naming cos", got, err)
	}
}

func TestFindCPSNodesConfigured(t *testing.T) {
	comps := csmemu.ComputeNodes(3)
	comps[1].State = "Off"
	e, a := csmEmu(t, comps)
	usesCPS(e)
	_, _, err := activitytest.Run[cps.CPSNodes](t, a, a.FindCPSNodes, cps.CPSNodesRequest{Nodes: []string{n0}}, nil)
	activitytest.NonRetryable(t, err, cps.ErrCPSConfig, "services.cps.template")

	_, _, err = activitytest.Run[cps.CPSNodes](t, a, a.FindCPSNodes, cps.CPSNodesRequest{Nodes: []string{n0, "x9c0s0b0n0"}, Template: "cos"}, nil)
	activitytest.NonRetryable(t, err, cps.ErrCPSConfig, "x9c0s0b0n0", "services.cps.nodes")

	got, _, err := activitytest.Run[cps.CPSNodes](t, a, a.FindCPSNodes, cps.CPSNodesRequest{Nodes: []string{n2, n1, n0}, Template: "cos"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if want := []cps.CPSNodeGroup{{Template: "cos", Xnames: []string{n0, n2}}}; !got.InUse || !equalJSON(got.Groups, want) || !strings.Contains(got.Message, n1+" (Off)") {
		t.Errorf("FindCPSNodes = %+v, want groups %+v and %s (Off) named as left out", got, want, n1)
	}
}

func TestStartBOSSessionIdempotent(t *testing.T) {
	e, a := csmEmu(t, csmemu.ComputeNodes(2))
	setTemplate(t, e, "cos", csm.BootSet{RootfsProvider: "cpss3", NodeList: []string{n0, n1}})
	req := cps.BOSSessionRequest{Name: "run1-cps-shutdown", Template: "cos", Operation: "shutdown", Xnames: []string{n0, n1}}
	first, _, err := activitytest.Run[cps.BOSSessionStarted](t, a, a.StartBOSSession, req, nil)
	if err != nil || first.Name != req.Name {
		t.Fatalf("first StartBOSSession = %+v, %v", first, err)
	}
	// The retry after a lost answer, with the xnames in another order.
	req.Xnames = []string{n1, n0}
	again, _, err := activitytest.Run[cps.BOSSessionStarted](t, a, a.StartBOSSession, req, nil)
	if err != nil || again.Name != req.Name || !strings.Contains(again.Message, "already started") {
		t.Fatalf("second StartBOSSession = %+v, %v; want success saying it was already started", again, err)
	}
	if s := e.BOSSessions(); len(s) != 1 || s[0].Name != req.Name || s[0].Limit != n0+","+n1 {
		t.Errorf("emulator sessions %+v, want the one %s with limit %s,%s", s, req.Name, n0, n1)
	}

	for _, other := range []cps.BOSSessionRequest{
		{Name: req.Name, Template: "cos", Operation: "boot", Xnames: req.Xnames},
		{Name: req.Name, Template: "cos", Operation: "shutdown", Xnames: []string{n0}},
	} {
		_, _, err = activitytest.Run[cps.BOSSessionStarted](t, a, a.StartBOSSession, other, nil)
		activitytest.NonRetryable(t, err, cps.ErrBOSSessionConflict, req.Name, "already exists", "delete it")
	}
	_, _, err = activitytest.Run[cps.BOSSessionStarted](t, a, a.StartBOSSession, cps.BOSSessionRequest{Name: "r", Template: "cos", Operation: "reboot", Xnames: []string{n0}}, nil)
	activitytest.NonRetryable(t, err, api.InvalidRequestError, `operation "reboot"`)
	_, _, err = activitytest.Run[cps.BOSSessionStarted](t, a, a.StartBOSSession, cps.BOSSessionRequest{Name: "r", Template: "cos", Operation: "boot"}, nil)
	activitytest.NonRetryable(t, err, api.InvalidRequestError, "no xnames")
	if n := len(e.BOSSessions()); n != 1 {
		t.Errorf("%d sessions, want still 1", n)
	}
}

func TestWaitNodesStateAfterShutdownSession(t *testing.T) {
	e, a := csmEmu(t, csmemu.ComputeNodes(3))
	e.SetBOSTiming(300 * time.Millisecond)
	setTemplate(t, e, "cos", csm.BootSet{RootfsProvider: "cpss3", NodeRolesGroups: []string{"Compute"}})
	xs := []string{n0, n1}
	if _, _, err := activitytest.Run[cps.BOSSessionStarted](t, a, a.StartBOSSession, cps.BOSSessionRequest{Name: "s", Template: "cos", Operation: "shutdown", Xnames: xs}, nil); err != nil {
		t.Fatal(err)
	}
	got, beats, err := activitytest.Run[activities.Outcome](t, a, a.WaitNodesState, cps.WaitNodesRequest{Xnames: xs, States: []string{"Off"}, Budget: 20 * time.Second, Poll: 50 * time.Millisecond}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got.Message != "2/2 nodes Off" {
		t.Errorf("outcome %q, want 2/2 nodes Off", got.Message)
	}
	if len(beats) == 0 || !strings.Contains(beats[0], "0/2 nodes Off") {
		t.Errorf("heartbeats %v, want progress 0/2 nodes Off first", beats)
	}

	// Boot: On is not enough when Ready is wanted.
	e.SetBOSStuck(true, n1)
	if _, _, err := activitytest.Run[cps.BOSSessionStarted](t, a, a.StartBOSSession, cps.BOSSessionRequest{Name: "b", Template: "cos", Operation: "boot", Xnames: xs}, nil); err != nil {
		t.Fatal(err)
	}
	_, _, err = activitytest.Run[activities.Outcome](t, a, a.WaitNodesState, cps.WaitNodesRequest{Xnames: xs, States: []string{"Ready"}, Budget: time.Second, Poll: 50 * time.Millisecond}, nil)
	activitytest.NonRetryable(t, err, activities.ErrWaitTimedOut, "1/2 nodes Ready", n1+" (Off)")
	if strings.Contains(err.Error(), n0) {
		t.Errorf("error %q names %s, which is Ready", err, n0)
	}
}

func TestWaitNodesStateStuckNodeListed(t *testing.T) {
	e, a := csmEmu(t, csmemu.ComputeNodes(25))
	setTemplate(t, e, "cos", csm.BootSet{RootfsProvider: "cpss3", NodeRolesGroups: []string{"Compute"}})
	var all []string
	for _, c := range e.Components() {
		all = append(all, c.ID)
	}
	e.SetBOSStuck(true, all...)
	if _, _, err := activitytest.Run[cps.BOSSessionStarted](t, a, a.StartBOSSession, cps.BOSSessionRequest{Name: "s", Template: "cos", Operation: "shutdown", Xnames: all}, nil); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, _, err := activitytest.Run[activities.Outcome](t, a, a.WaitNodesState, cps.WaitNodesRequest{Xnames: all, States: []string{"Off"}, Budget: 500 * time.Millisecond, Poll: 50 * time.Millisecond}, nil)
	activitytest.NonRetryable(t, err, activities.ErrWaitTimedOut, "0/25 nodes Off", n0+" (Ready)", "and 5 more")
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("gave up after %s, budget 500ms", d)
	}
}

func TestWaitNodesStateResumesDeadline(t *testing.T) {
	e, a := csmEmu(t, csmemu.ComputeNodes(2))
	req := cps.WaitNodesRequest{Xnames: []string{n0, n1}, States: []string{"Off"}, Budget: time.Minute, Poll: 50 * time.Millisecond}
	// An earlier attempt started waiting an hour ago: the budget is spent,
	// so this attempt gives up at its first look instead of waiting a minute.
	start := time.Now()
	_, _, err := activitytest.Run[activities.Outcome](t, a, a.WaitNodesState, req, map[string]any{"since": time.Now().Add(-time.Hour), "last": "0/2 nodes Off"})
	activitytest.NonRetryable(t, err, activities.ErrWaitTimedOut, "0/2 nodes Off", n1+" (Ready)")
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("resumed wait took %s, want an immediate time-out", d)
	}
	// An earlier attempt within its budget: this one carries on and, when
	// the nodes get there, succeeds.
	go func() {
		time.Sleep(300 * time.Millisecond)
		comps := e.Components()
		for i := range comps {
			comps[i].State = "Off"
		}
		e.SetComponents(comps)
	}()
	got, _, err := activitytest.Run[activities.Outcome](t, a, a.WaitNodesState, req, map[string]any{"since": time.Now().Add(-time.Second)})
	if err != nil || got.Message != "2/2 nodes Off" {
		t.Errorf("resumed wait = %+v, %v; want 2/2 nodes Off", got, err)
	}
}

func TestWaitNodesStateBatchesIDs(t *testing.T) {
	e, a := csmEmu(t, csmemu.ComputeNodes(250))
	var all []string
	for _, c := range e.Components() {
		all = append(all, c.ID)
	}
	got, _, err := activitytest.Run[activities.Outcome](t, a, a.WaitNodesState, cps.WaitNodesRequest{Xnames: all, States: []string{"Ready", "On"}, Budget: 10 * time.Second}, nil)
	if err != nil || got.Message != "250/250 nodes Ready or On" {
		t.Fatalf("WaitNodesState = %+v, %v", got, err)
	}
	if n := e.Requests(csm.PathHSMComponents); n != 3 {
		t.Errorf("%d HSM queries for 250 xnames, want 3 (100 ids each)", n)
	}
}

func equalJSON(a, b any) bool {
	x, _ := json.Marshal(a)
	y, _ := json.Marshal(b)
	return string(x) == string(y)
}

// At thousands of nodes one look at HSM is many sequential calls of up to
// csm.timeout each: the wait heartbeats after every call, not once per
// look, and every heartbeat keeps the first attempt's start.
func TestWaitNodesStateHeartbeatsPerHSMCall(t *testing.T) {
	_, a := csmEmu(t, csmemu.ComputeNodes(250))
	var all []string
	for i := range 250 {
		all = append(all, csmemu.ComputeNodes(250)[i].ID)
	}
	since := time.Now().Add(-time.Minute).UTC().Truncate(time.Second)
	req := cps.WaitNodesRequest{Xnames: all, States: []string{"Ready"}, Budget: time.Hour, Poll: 50 * time.Millisecond}
	// The SDK throttles what reaches a test listener: count at the source.
	recorded, stop := activities.CountHeartbeats()
	defer stop()
	got, _, err := activitytest.Run[activities.Outcome](t, a, a.WaitNodesState, req, map[string]any{"since": since, "last": "earlier attempt"})
	if err != nil {
		t.Fatal(err)
	}
	if got.Message != "250/250 nodes Ready" {
		t.Errorf("outcome %q", got.Message)
	}
	// 250 xnames are 3 HSM calls of at most 100 ids: a heartbeat between
	// each two, in the one look that finds them all Ready.
	beats := recorded()
	if len(beats) != 2 || !strings.Contains(beats[0], `"last":"reading HSM: 100 of 250 nodes"`) {
		t.Fatalf("%d heartbeats during a look of 3 HSM calls, want one between each two: %v", len(beats), beats)
	}
	for _, b := range beats {
		var p struct{ Since time.Time }
		if err := json.Unmarshal([]byte(b), &p); err != nil || !p.Since.Equal(since) {
			t.Errorf("heartbeat %s lost the first attempt's start %s", b, since)
		}
	}
}

// TestStartBOSv1SessionAdoptsALostSession: BOS v1 names sessions itself;
// a retry after a lost answer finds the session by the ids listed before
// the POST, instead of shutting the nodes down twice.
func TestStartBOSv1SessionAdoptsALostSession(t *testing.T) {
	e, a := csmEmuRelease(t, api.CSM10, csmemu.ComputeNodes(2))
	setTemplate(t, e, "cos", csm.BootSet{RootfsProvider: "cpss3", NodeList: []string{n0, n1}})
	// Someone else's session, there before the step.
	other, _, err := activitytest.Run[cps.BOSSessionStarted](t, a, a.StartBOSSession,
		cps.BOSSessionRequest{Template: "cos", Operation: "boot", Xnames: []string{n0}, APIs: api.CSM10.APIs()}, nil)
	if err != nil {
		t.Fatal(err)
	}
	req := cps.BOSSessionRequest{Name: "run1-cps-shutdown", Template: "cos", Operation: "shutdown", Xnames: []string{n1, n0}, APIs: api.CSM10.APIs()}
	e.DropResponse("POST", csm.PathBOSv1Session, 1)
	_, beats, err := activitytest.Run[cps.BOSSessionStarted](t, a, a.StartBOSSession, req, nil)
	if err == nil || len(beats) != 1 {
		t.Fatalf("first attempt: %v, heartbeats %v", err, beats)
	}
	got, _, err := activitytest.Run[cps.BOSSessionStarted](t, a, a.StartBOSSession, req, json.RawMessage(beats[0]))
	if err != nil {
		t.Fatal(err)
	}
	if got.Name == "" || got.Name == other.Name || !strings.Contains(got.Message, "earlier attempt") {
		t.Fatalf("retry = %+v", got)
	}
	ids, err := a.CSM.Client.WithAPIs(api.CSM10.APIs()).BOSSessionIDs(context.Background())
	if err != nil || len(ids) != 2 {
		t.Errorf("BOS v1 sessions %v, %v: want the other one and exactly one shutdown", ids, err)
	}
}

// csmEmuRelease serves an emulator of rel's APIs ("": the default) with
// comps in HSM and returns the cps activities talking to it.
func csmEmuRelease(t *testing.T, rel api.Release, comps []csm.Component) (*csmemu.Emulator, *cps.Activities) {
	e, c := activitytest.CSM(t, rel, comps)
	return e, &cps.Activities{CSM: c}
}
