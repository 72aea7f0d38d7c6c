package activities_test

import (
	"encoding/json"
	"slices"
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
)

const (
	n0 = "x1000c0s0b0n0"
	n1 = "x1000c0s1b0n0"
	n2 = "x1000c0s2b0n0"
)

// csmEmuRelease serves an emulator of rel's APIs ("": csmemu.DefaultRelease)
// with comps in HSM and returns the CSM activities talking to it over HTTP.
func csmEmuRelease(t *testing.T, rel api.Release, comps []csm.Component) (*csmemu.Emulator, *activities.CSM) {
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
	return e, &activities.CSM{Client: cl}
}

// csmRun runs one CSM activity as Temporal would. details, if not nil, are
// the heartbeat details of an earlier attempt; the heartbeats sent are
// returned as JSON.
func csmRun[T any](t *testing.T, a *activities.CSM, fn, arg, details any) (T, []string, error) {
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
	var args []any
	if arg != nil { // nil: an activity that takes no argument
		args = append(args, arg)
	}
	v, err := env.ExecuteActivity(fn, args...)
	if err == nil {
		err = v.Get(&out)
	}
	mu.Lock()
	defer mu.Unlock()
	return out, slices.Clone(beats), err
}
