package orca_test

import (
	"slices"
	"strings"
	"testing"
	"time"

	"go.temporal.io/sdk/testsuite"

	"github.com/csmops/etcd-repopulate/activities"
	"github.com/csmops/etcd-repopulate/internal/api"
	"github.com/csmops/etcd-repopulate/internal/csm"
	"github.com/csmops/etcd-repopulate/internal/csmemu"
	"github.com/csmops/etcd-repopulate/procedures/orca"
)

const (
	n0 = "x1000c0s0b0n0"
	n1 = "x1000c0s1b0n0"
	n2 = "x1000c0s2b0n0"
)

// csmEmuRelease serves an emulator of rel's APIs with comps in HSM and
// returns the orca activities talking to it over HTTP.
func csmEmuRelease(t *testing.T, rel api.Release, comps []csm.Component) (*csmemu.Emulator, *orca.Activities) {
	t.Helper()
	e := csmemu.New(csmemu.Options{Release: rel, Components: comps})
	base, err := e.Start(false)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	cl, err := csm.New(csm.Config{BaseURL: base, Secret: csm.SecretValue(csmemu.DefaultClientSecret), Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return e, &orca.Activities{CSM: &activities.CSM{Client: cl}}
}

// csmRun runs one orca activity as Temporal would.
func csmRun[T any](t *testing.T, a *orca.Activities, fn, arg any) (T, error) {
	t.Helper()
	var suite testsuite.WorkflowTestSuite
	env := suite.NewTestActivityEnvironment()
	env.RegisterActivity(a)
	var out T
	v, err := env.ExecuteActivity(fn, arg)
	if err == nil {
		err = v.Get(&out)
	}
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
