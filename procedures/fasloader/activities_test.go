package fasloader_test

import (
	"encoding/json"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/testsuite"

	"github.com/csmops/etcd-repopulate/activities"
	"github.com/csmops/etcd-repopulate/internal/api"
	"github.com/csmops/etcd-repopulate/internal/csm"
	"github.com/csmops/etcd-repopulate/internal/csmemu"
	"github.com/csmops/etcd-repopulate/procedures/fasloader"
)

// csmEmuRelease serves an emulator of rel's APIs and returns the FAS
// activities talking to it over HTTP.
func csmEmuRelease(t *testing.T, rel api.Release) (*csmemu.Emulator, *fasloader.Activities) {
	t.Helper()
	e := csmemu.New(csmemu.Options{Release: rel})
	base, err := e.Start(false)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	cl, err := csm.New(csm.Config{BaseURL: base, Secret: csm.SecretValue(csmemu.DefaultClientSecret), Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return e, &fasloader.Activities{CSM: &activities.CSM{Client: cl}}
}

// csmRun runs one activity as Temporal would. details, if not nil, are the
// heartbeat details of an earlier attempt; the heartbeats sent are
// returned as JSON.
func csmRun[T any](t *testing.T, a *fasloader.Activities, fn, arg, details any) (T, []string, error) {
	t.Helper()
	var suite testsuite.WorkflowTestSuite
	env := suite.NewTestActivityEnvironment()
	env.RegisterActivity(a)
	if details != nil {
		env.SetHeartbeatDetails(details)
	}
	var mu sync.Mutex
	var beats []string
	env.SetOnActivityHeartbeatListener(func(_ *activity.Info, d converter.EncodedValues) {
		var v json.RawMessage
		if d.Get(&v) == nil {
			mu.Lock()
			beats = append(beats, string(v))
			mu.Unlock()
		}
	})
	var out T
	v, err := env.ExecuteActivity(fn, arg)
	if err == nil {
		err = v.Get(&out)
	}
	mu.Lock()
	defer mu.Unlock()
	return out, slices.Clone(beats), err
}

// TestStartFASLoaderAdoptsALostRun: FAS starts a Nexus load but its answer
// is lost; the retry adopts that run instead of starting a second one.
func TestStartFASLoaderAdoptsALostRun(t *testing.T) {
	e, a := csmEmuRelease(t, api.CSM10)
	e.DropResponse("POST", csm.PathFASLoaderNexus, 1)
	req := fasloader.FASLoaderRequest{Budget: 10e9, Poll: 1e8}
	_, beats, err := csmRun[fasloader.FASLoaderStarted](t, a, a.StartFASLoader, req, nil)
	if err == nil || len(e.FASLoaderRuns()) != 1 || len(beats) == 0 {
		t.Fatalf("first attempt: %v, runs %v, heartbeats %v; want a (retryable) error after FAS started one run", err, e.FASLoaderRuns(), beats)
	}
	got, _, err := csmRun[fasloader.FASLoaderStarted](t, a, a.StartFASLoader, req, json.RawMessage(beats[len(beats)-1]))
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
	fresh, _, err := csmRun[fasloader.FASLoaderStarted](t, a, a.StartFASLoader, req, nil)
	if err != nil || fresh.LoaderRunID == runs[0] || len(e.FASLoaderRuns()) != 2 {
		t.Errorf("fresh start = %+v, %v; runs %v", fresh, err, e.FASLoaderRuns())
	}
}
