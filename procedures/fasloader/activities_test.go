package fasloader_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/csmops/etcd-repopulate/internal/activitytest"
	"github.com/csmops/etcd-repopulate/internal/api"
	"github.com/csmops/etcd-repopulate/internal/csm"
	"github.com/csmops/etcd-repopulate/internal/csmemu"
	"github.com/csmops/etcd-repopulate/procedures/fasloader"
)

// TestStartFASLoaderAdoptsALostRun: FAS starts a Nexus load but its answer
// is lost; the retry adopts that run instead of starting a second one.
func TestStartFASLoaderAdoptsALostRun(t *testing.T) {
	e, a := csmEmuRelease(t, api.CSM10)
	e.DropResponse("POST", csm.PathFASLoaderNexus, 1)
	req := fasloader.FASLoaderRequest{Budget: 10e9, Poll: 1e8}
	_, beats, err := activitytest.Run[fasloader.FASLoaderStarted](t, a, a.StartFASLoader, req, nil)
	if err == nil || len(e.FASLoaderRuns()) != 1 || len(beats) == 0 {
		t.Fatalf("first attempt: %v, runs %v, heartbeats %v; want a (retryable) error after FAS started one run", err, e.FASLoaderRuns(), beats)
	}
	got, _, err := activitytest.Run[fasloader.FASLoaderStarted](t, a, a.StartFASLoader, req, json.RawMessage(beats[len(beats)-1]))
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
	fresh, _, err := activitytest.Run[fasloader.FASLoaderStarted](t, a, a.StartFASLoader, req, nil)
	if err != nil || fresh.LoaderRunID == runs[0] || len(e.FASLoaderRuns()) != 2 {
		t.Errorf("fresh start = %+v, %v; runs %v", fresh, err, e.FASLoaderRuns())
	}
}

// csmEmuRelease serves an emulator of rel's APIs and returns the fasloader
// activities talking to it.
func csmEmuRelease(t *testing.T, rel api.Release) (*csmemu.Emulator, *fasloader.Activities) {
	e, c := activitytest.CSM(t, rel, nil)
	return e, &fasloader.Activities{CSM: c}
}
