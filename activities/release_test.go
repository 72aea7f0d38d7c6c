package activities_test

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"

	"github.com/csmops/etcd-repopulate/activities"
	"github.com/csmops/etcd-repopulate/internal/api"
	"github.com/csmops/etcd-repopulate/internal/csm"
	"github.com/csmops/etcd-repopulate/internal/csmemu"
)

// TestVerifySubscriptionsOnCSM10: HMNFD 1.8.5 lists no SubscriberComponent;
// the nodes are found from Subscriber alone, whatever the case.
func TestVerifySubscriptionsOnCSM10(t *testing.T) {
	e, a := csmEmuRelease(t, api.CSM10, csmemu.ComputeNodes(3))
	e.Subscribe(strings.ToUpper(n0))
	e.Subscribe(n1)
	req := activities.VerifyRequest{Xnames: []string{n0, n1, n2}, APIs: api.CSM10.APIs()}
	res, _, err := csmRun[activities.VerifyResult](t, a, a.VerifySubscriptions, req, nil)
	if err != nil || !slices.Equal(res.Missing, []string{n2}) {
		t.Fatalf("VerifySubscriptions = %+v, %v; want %s missing", res, err, n2)
	}
	if e.Requests(csm.PathHMNFDv1Subscriptions) == 0 || e.Requests(csm.PathHMNFDSubscriptions) != 0 {
		t.Errorf("requests %v: want /hmi/v1 only", e.RequestCounts())
	}
}

// TestStartFASLoaderAdoptsALostRun: FAS starts a Nexus load but its answer
// is lost; the retry adopts that run instead of starting a second one.
func TestStartFASLoaderAdoptsALostRun(t *testing.T) {
	e, a := csmEmuRelease(t, api.CSM10, nil)
	e.DropResponse("POST", csm.PathFASLoaderNexus, 1)
	req := activities.FASLoaderRequest{Budget: 10e9, Poll: 1e8}
	_, beats, err := csmRun[activities.FASLoaderStarted](t, a, a.StartFASLoader, req, nil)
	if err == nil || len(e.FASLoaderRuns()) != 1 || len(beats) == 0 {
		t.Fatalf("first attempt: %v, runs %v, heartbeats %v; want a (retryable) error after FAS started one run", err, e.FASLoaderRuns(), beats)
	}
	got, _, err := csmRun[activities.FASLoaderStarted](t, a, a.StartFASLoader, req, json.RawMessage(beats[len(beats)-1]))
	if err != nil {
		t.Fatal(err)
	}
	runs := e.FASLoaderRuns()
	if len(runs) != 1 || got.LoaderRunID != runs[0] || !strings.Contains(got.Message, "adopted loader run") {
		t.Fatalf("retry = %+v; runs %v: want exactly one Nexus load, adopted", got, runs)
	}
	if n := e.Requests(csm.PathFASLoaderNexus); n != 1 {
		t.Errorf("%d POSTs to %s, want 1", n, csm.PathFASLoaderNexus)
	}
	// A fresh start (no heartbeat) with an older run listed starts its own.
	fresh, _, err := csmRun[activities.FASLoaderStarted](t, a, a.StartFASLoader, req, nil)
	if err != nil || fresh.LoaderRunID == runs[0] || len(e.FASLoaderRuns()) != 2 {
		t.Errorf("fresh start = %+v, %v; runs %v", fresh, err, e.FASLoaderRuns())
	}
}
