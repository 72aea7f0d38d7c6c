// Package activitytest runs activities in tests as Temporal would, against
// the real parts: the CSM API emulator over HTTP, or a seeded simulated
// control plane shared by a test package. The procedures' and preflight's
// activity tests share it.
package activitytest

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/csmops/etcd-repopulate/activities"
	"github.com/csmops/etcd-repopulate/internal/api"
	"github.com/csmops/etcd-repopulate/internal/csm"
	"github.com/csmops/etcd-repopulate/internal/csmemu"
	"github.com/csmops/etcd-repopulate/internal/simcluster"
	"github.com/csmops/etcd-repopulate/internal/testenv"
)

// CSM starts an emulator serving rel's APIs ("": csmemu.DefaultRelease)
// with comps in HSM, stopped when t ends, and returns it with the shared
// CSM plumbing of a worker talking to it over HTTP.
func CSM(t testing.TB, rel api.Release, comps []csm.Component) (*csmemu.Emulator, *activities.CSM) {
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

// Run executes one activity as Temporal would and returns its result and
// the heartbeats it sent, as JSON. impl is what the activity is a method
// of (registered whole), or a map of contract names to functions (such as
// activities.Shared) when fn is a name. details, if not nil, are the
// heartbeat details of an earlier attempt; arg nil: the activity takes no
// argument.
func Run[T any](t testing.TB, impl, fn, arg, details any) (T, []string, error) {
	t.Helper()
	var suite testsuite.WorkflowTestSuite
	env := suite.NewTestActivityEnvironment()
	if named, ok := impl.(map[string]any); ok {
		for name, f := range named {
			env.RegisterActivityWithOptions(f, activity.RegisterOptions{Name: name})
		}
	} else {
		env.RegisterActivity(impl)
	}
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
	if arg != nil {
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

// ClusterMain is a test package's TestMain whose tests share one seeded
// simulated control plane (real etcd, kube-apiserver, controller-manager,
// kwok), set into *cluster; each test leaves it seeded as it found it. Its
// directory is kept when a test fails.
func ClusterMain(m *testing.M, name string, cluster **simcluster.Cluster) {
	ctx, cancel := context.WithCancel(context.Background())
	dir := testenv.KeepDir(name + "-cluster-")
	c, err := testenv.Cluster(ctx, dir, true)
	if err != nil {
		testenv.Fatalf("start the real control plane: %v", err)
	}
	*cluster = c
	code := m.Run()
	cancel()
	c.Stop()
	if code == 0 {
		os.RemoveAll(dir)
	}
	os.Exit(code)
}

// Kube is the shared Kubernetes plumbing of a worker talking to cfg.
func Kube(cfg *rest.Config) *activities.Kube {
	return &activities.Kube{Core: kubernetes.NewForConfigOrDie(cfg), Dynamic: dynamic.NewForConfigOrDie(cfg)}
}

// Fingerprint is the UIDs and resourceVersions of every object of c the
// runbook touches, to show a test changed nothing.
func Fingerprint(t testing.TB, c *simcluster.Cluster) map[string]string {
	t.Helper()
	fp, err := c.Fingerprint(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return fp
}

// Timings are short waits and polls for activities on loopback.
func Timings() api.Timings {
	return api.Timings{Wait: time.Minute, Delete: time.Minute, Poll: 200 * time.Millisecond, Heartbeat: 5 * time.Second, Attempts: 3}
}

// ErrType is the type of the ApplicationError in err ("" for none).
func ErrType(err error) string {
	var appErr *temporal.ApplicationError
	if errors.As(err, &appErr) {
		return appErr.Type()
	}
	return ""
}

// Message is the message of the ApplicationError in err, without the
// SDK's "activity error (type: ...)" wrapping.
func Message(err error) string {
	var appErr *temporal.ApplicationError
	if errors.As(err, &appErr) {
		return appErr.Message()
	}
	return err.Error()
}

// NonRetryable fails t unless err is a non-retryable ApplicationError of
// type typ whose text has every word.
func NonRetryable(t testing.TB, err error, typ string, words ...string) {
	t.Helper()
	var appErr *temporal.ApplicationError
	if err == nil {
		t.Fatalf("got no error, want a non-retryable %s", typ)
	}
	if !errors.As(err, &appErr) || !appErr.NonRetryable() || appErr.Type() != typ {
		t.Fatalf("got %v, want a non-retryable %s", err, typ)
	}
	for _, w := range words {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q does not say %q", err, w)
		}
	}
}
