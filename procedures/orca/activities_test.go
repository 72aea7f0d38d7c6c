package orca_test

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/csmops/etcd-repopulate/activities"
	"github.com/csmops/etcd-repopulate/internal/activitytest"
	"github.com/csmops/etcd-repopulate/internal/api"
	"github.com/csmops/etcd-repopulate/internal/csm"
	"github.com/csmops/etcd-repopulate/internal/csmemu"
	"github.com/csmops/etcd-repopulate/internal/sshfan"
	"github.com/csmops/etcd-repopulate/internal/sshtest"
	"github.com/csmops/etcd-repopulate/procedures/orca"
)

const (
	n0 = "x1000c0s0b0n0"
	n1 = "x1000c0s1b0n0"
	n2 = "x1000c0s2b0n0"
)

// csmRun runs one orca activity as Temporal would.
func csmRun[T any](t *testing.T, a *orca.Activities, fn, arg any) (T, error) {
	t.Helper()
	return retried[T](t, a, fn, arg, nil)
}

// retried runs one orca activity as Temporal retries it: details, if not
// nil, are the heartbeat details of the attempt before.
func retried[T any](t *testing.T, a *orca.Activities, fn, arg, details any) (T, error) {
	t.Helper()
	out, _, err := activitytest.Run[T](t, a, fn, arg, details)
	return out, err
}

// TestVerifySubscriptionsOnCSM10: HMNFD 1.8.5 lists no SubscriberComponent;
// the nodes are found from Subscriber alone, whatever the case.
func TestVerifySubscriptionsOnCSM10(t *testing.T) {
	e, a := csmEmuRelease(t, api.CSM10, csmemu.ComputeNodes(3))
	e.Subscribe(strings.ToUpper(n0))
	e.Subscribe(n1)
	req := orca.VerifyRequest{Xnames: []string{n0, n1, n2}, APIs: api.CSM10.APIs()}
	res, err := csmRun[orca.VerifyResult](t, a, a.VerifySubscriptions, req)
	if err != nil || !slices.Equal(res.Missing, []string{n2}) {
		t.Fatalf("VerifySubscriptions = %+v, %v; want %s missing", res, err, n2)
	}
	if e.Requests(csm.PathHMNFDv1Subscriptions) == 0 || e.Requests(csm.PathHMNFDSubscriptions) != 0 {
		t.Errorf("requests %v: want /hmi/v1 only", e.RequestCounts())
	}
}

// TestVerifyComputeSubscriptionsByNID: the nodes to check come as NID
// ranges and their xnames from HSM; a NID HSM no longer lists counts as
// missing; the result names at most MaxMissingInResult nodes and counts all.
func TestVerifyComputeSubscriptionsByNID(t *testing.T) {
	e, a := csmEmuRelease(t, api.CSM10, csmemu.ComputeNodes(150))
	e.Subscribe(n0)
	e.Subscribe(strings.ToUpper(n1))
	req := orca.ComputeSubscriptionsRequest{NIDs: []orca.NIDRange{{First: 1, Last: 3}, {First: 200, Last: 200}}, APIs: api.CSM10.APIs()}
	res, err := csmRun[orca.VerifyResult](t, a, a.VerifyComputeSubscriptions, req)
	if err != nil || !slices.Equal(res.Missing, []string{n2, "nid000200-nmn"}) || res.MissingCount != 2 {
		t.Fatalf("VerifyComputeSubscriptions = %+v, %v; want %s and nid000200-nmn missing", res, err, n2)
	}
	if !strings.Contains(res.Message, "2 of 4 restarted compute nodes") || !strings.Contains(res.Message, "1 of them no longer listed by HSM") {
		t.Errorf("message %q", res.Message)
	}

	req.NIDs = []orca.NIDRange{{First: 1, Last: 150}}
	res, err = csmRun[orca.VerifyResult](t, a, a.VerifyComputeSubscriptions, req)
	if err != nil || res.MissingCount != 148 || len(res.Missing) != orca.MaxMissingInResult || res.Missing[0] != n2 {
		t.Fatalf("150 nodes, 2 subscribed: missing %d listed of %d, first %v, err %v", len(res.Missing), res.MissingCount, res.Missing[:1], err)
	}

	// The snapshot's xnames are checked as given.
	res, err = csmRun[orca.VerifyResult](t, a, a.VerifyComputeSubscriptions, orca.ComputeSubscriptionsRequest{Xnames: []string{n0, n1}, APIs: api.CSM10.APIs()})
	if err != nil || res.MissingCount != 0 || len(res.Missing) != 0 || !strings.Contains(res.Message, "all 2") {
		t.Fatalf("subscribed xnames: %+v, %v", res, err)
	}
}

// TestDiscoverOrcaNodes: the same targets as DiscoverOrcaTargets, counted,
// without one xname per node.
func TestDiscoverOrcaNodes(t *testing.T) {
	comps := csmemu.ComputeNodes(6)
	comps[2].State = "Off" // NID 3
	_, a := csmEmuRelease(t, "", comps)
	got, err := csmRun[orca.OrcaTargets](t, a, a.DiscoverOrcaNodes, orca.OrcaTargetsRequest{NCNGroups: []string{"ncn-w00[1-2]-can.local"}})
	if err != nil || got.Computes != 5 || len(got.ComputeXnames) != 0 || !slices.Equal(got.ComputeNIDs, []orca.NIDRange{{First: 1, Last: 2}, {First: 4, Last: 6}}) {
		t.Fatalf("DiscoverOrcaNodes = %+v, %v", got, err)
	}
	hosts, nids := got.Hosts()
	if !slices.Equal(hosts, []string{"nid000001-nmn", "nid000002-nmn", "nid000004-nmn", "nid000005-nmn", "nid000006-nmn", "ncn-w001-can.local", "ncn-w002-can.local"}) || len(nids) != 5 || nids["nid000004-nmn"] != 4 {
		t.Errorf("Hosts() = %v, %v", hosts, nids)
	}
	if r := orca.NIDRanges([]int{6, 1, 2, 4, 5, 2}); !slices.Equal(r, []orca.NIDRange{{First: 1, Last: 2}, {First: 4, Last: 6}}) {
		t.Errorf("NIDRanges = %v", r)
	}
}

// TestDiscoverOrcaTargets: HSM's Ready computes come back in NID order as
// NID ranges with their xnames (a node not Ready leaves a gap), then the
// NCN groups expanded, each host once.
func TestDiscoverOrcaTargets(t *testing.T) {
	comps := csmemu.ComputeNodes(6)
	comps[2].State = "Off" // NID 3
	slices.Reverse(comps)  // HSM's order is not NID order
	_, a := csmEmuRelease(t, "", comps)
	req := orca.OrcaTargetsRequest{NCNGroups: []string{"ncn-w00[1-2]-can.local", "ncn-w002-can.local"}}
	got, err := csmRun[orca.OrcaTargets](t, a, a.DiscoverOrcaTargets, req)
	if err != nil {
		t.Fatal(err)
	}
	wantRanges := []orca.NIDRange{{First: 1, Last: 2}, {First: 4, Last: 6}}
	wantXnames := []string{"x1000c0s0b0n0", "x1000c0s1b0n0", "x1000c0s3b0n0", "x1000c0s4b0n0", "x1000c0s5b0n0"}
	if !slices.Equal(got.ComputeNIDs, wantRanges) || !slices.Equal(got.ComputeXnames, wantXnames) || len(got.Nodes) != 0 {
		t.Errorf("computes %v %v (nodes %v), want %v %v", got.ComputeNIDs, got.ComputeXnames, got.Nodes, wantRanges, wantXnames)
	}
	if !slices.Equal(got.NCNs, []string{"ncn-w001-can.local", "ncn-w002-can.local"}) {
		t.Errorf("NCNs %v", got.NCNs)
	}
	all := got.All()
	if len(all) != 7 || all[2] != (orca.OrcaTarget{Host: "nid000004-nmn", Xname: "x1000c0s3b0n0"}) || all[6] != (orca.OrcaTarget{Host: "ncn-w002-can.local"}) {
		t.Errorf("All() = %v", all)
	}
	if !strings.Contains(got.Message, "5 Ready compute nodes from HSM and 2 NCNs") {
		t.Errorf("message %q", got.Message)
	}
}

// TestDiscoverOrcaTargetsRefusesBadInput: a host range pdsh would not take,
// and nothing at all to restart, fail at once and say what to change.
func TestDiscoverOrcaTargetsRefusesBadInput(t *testing.T) {
	_, a := csmEmuRelease(t, "", csmemu.ComputeNodes(2))
	_, err := csmRun[orca.OrcaTargets](t, a, a.DiscoverOrcaTargets, orca.OrcaTargetsRequest{NCNGroups: []string{"ncn-w00[4-1]"}})
	activitytest.NonRetryable(t, err, activities.ErrBadHostRange, "ncn-w00[4-1]")

	_, a = csmEmuRelease(t, "", nil)
	_, err = csmRun[orca.OrcaTargets](t, a, a.DiscoverOrcaTargets, orca.OrcaTargetsRequest{})
	activitytest.NonRetryable(t, err, orca.ErrEmptyTargets, "no Ready compute node", "services.hmnfd.ncnGroups")
}

// TestCheckHMNFDReady: after its etcd is wiped HMNFD answers not ready
// (asked once, that is a result, not an error); with a budget the check
// waits for the restart that makes it ready, and fails when none comes.
func TestCheckHMNFDReady(t *testing.T) {
	e, a := csmEmuRelease(t, "", csmemu.ComputeNodes(1))
	got, err := csmRun[orca.HMNFDReadiness](t, a, a.CheckHMNFDReady, orca.HMNFDReadyRequest{})
	if err != nil || !got.Ready {
		t.Fatalf("healthy HMNFD: %+v, %v", got, err)
	}
	e.WipeHMNFD()
	got, err = csmRun[orca.HMNFDReadiness](t, a, a.CheckHMNFDReady, orca.HMNFDReadyRequest{})
	if err != nil || got.Ready || !strings.Contains(got.Message, "not ready") {
		t.Fatalf("wiped HMNFD asked once: %+v, %v", got, err)
	}
	_, err = csmRun[orca.HMNFDReadiness](t, a, a.CheckHMNFDReady, orca.HMNFDReadyRequest{Budget: 300 * time.Millisecond, Poll: 50 * time.Millisecond})
	activitytest.NonRetryable(t, err, activities.ErrWaitTimedOut, "HMNFD to report ready")

	restarted := time.AfterFunc(300*time.Millisecond, e.RestartHMNFD)
	defer restarted.Stop()
	got, err = csmRun[orca.HMNFDReadiness](t, a, a.CheckHMNFDReady, orca.HMNFDReadyRequest{Budget: 30 * time.Second, Poll: 50 * time.Millisecond})
	if err != nil || !got.Ready {
		t.Fatalf("HMNFD restarted while waited for: %+v, %v", got, err)
	}
}

// startFleet starts real sshd processes for nodes nid000001-nmn.. and
// returns the orca activities reaching them over SSH.
func startFleet(t *testing.T, nodes int) (*sshtest.Fleet, *orca.Activities) {
	t.Helper()
	if err := sshtest.CheckTools(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	f, err := sshtest.Start(ctx, sshtest.Options{Dir: t.TempDir(), Nodes: nodes})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(f.Stop)
	r, err := sshfan.New(sshfan.Options{ConfigFile: f.ConfigFile, KnownHosts: []string{f.KnownHosts}, Concurrency: 4,
		ConnectTimeout: 10 * time.Second, CommandTimeout: 30 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return f, &orca.Activities{CSM: &activities.CSM{SSH: r}}
}

// TestRestartOrcaResumesAndTriesUnitsInOrder: a batch retried after a
// crash leaves alone the node its heartbeat says is done; a node without
// the first unit (systemctl exit 5) gets the second; a node with neither is
// a problem that names both.
func TestRestartOrcaResumesAndTriesUnitsInOrder(t *testing.T) {
	f, a := startFleet(t, 4)
	const first, second = "cray-dvs-orca", "cray-orca"
	if err := f.SetCommandFailure("nid000002-nmn", "systemctl restart "+first, 5, "Unit "+first+".service not found."); err != nil {
		t.Fatal(err)
	}
	if err := f.SetFailure("nid000003-nmn", 5, "Unit not found."); err != nil {
		t.Fatal(err)
	}
	done := map[string]any{"ok": []string{"nid000004-nmn"}, "restarted": map[string][]string{first: {"nid000004-nmn"}}}
	req := orca.RestartBatch{Batch: 7, Hosts: f.NodeNames, Units: []string{first, second}}
	got, err := retried[orca.BatchResult](t, a, a.RestartOrca, req, done)
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(got.OK)
	slices.Sort(got.Restarted[first])
	if !slices.Equal(got.OK, []string{"nid000001-nmn", "nid000002-nmn", "nid000004-nmn"}) ||
		!slices.Equal(got.Restarted[first], []string{"nid000001-nmn", "nid000004-nmn"}) || !slices.Equal(got.Restarted[second], []string{"nid000002-nmn"}) {
		t.Errorf("ok %v restarted %v", got.OK, got.Restarted)
	}
	if len(got.Problems) != 1 || got.Problems[0].Host != "nid000003-nmn" || !strings.Contains(got.Problems[0].Reason, "none of the units "+first+", "+second) {
		t.Errorf("problems %+v", got.Problems)
	}
	if !strings.Contains(got.Message, "batch 7: 3 of 4 nodes") || !strings.Contains(got.Message, "(1 already done before a retry)") {
		t.Errorf("message %q", got.Message)
	}
	runs, err := f.Restarts()
	if err != nil {
		t.Fatal(err)
	}
	if runs["nid000004-nmn"] != 0 || runs["nid000001-nmn"] != 1 || runs["nid000002-nmn"] != 2 || runs["nid000003-nmn"] != 2 {
		t.Errorf("commands run per node %v", runs)
	}
}

// TestRestartOrcaRefusesAUnitThatIsNoUnitName: the unit goes into a shell
// command on every node; anything but a unit name fails before any node is
// reached.
func TestRestartOrcaRefusesAUnitThatIsNoUnitName(t *testing.T) {
	f, a := startFleet(t, 1)
	for _, req := range []orca.RestartBatch{
		{Hosts: f.NodeNames, Units: []string{"cray-orca", "cray-orca; reboot"}},
		{Hosts: f.NodeNames, Unit: " "}, // as recorded before units
	} {
		_, err := csmRun[orca.BatchResult](t, a, a.RestartOrca, req)
		activitytest.NonRetryable(t, err, api.InvalidRequestError, "is not a systemd unit name")
	}
	if runs, err := f.Restarts(); err != nil || len(runs) != 0 {
		t.Errorf("commands run %v, %v; want none", runs, err)
	}
}

// csmEmuRelease serves an emulator of rel's APIs ("": the default) with
// comps in HSM and returns the orca activities talking to it.
func csmEmuRelease(t *testing.T, rel api.Release, comps []csm.Component) (*csmemu.Emulator, *orca.Activities) {
	e, c := activitytest.CSM(t, rel, comps)
	return e, &orca.Activities{CSM: c}
}
