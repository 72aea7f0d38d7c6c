package restartpods_test

import (
	"context"
	"errors"
	"os"
	"testing"
	"time"

	"github.com/csmops/etcd-repopulate/activities"
	"github.com/csmops/etcd-repopulate/internal/api"
	"github.com/csmops/etcd-repopulate/internal/simcluster"
	"github.com/csmops/etcd-repopulate/internal/testenv"
	"github.com/csmops/etcd-repopulate/procedures/restartpods"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

// One seeded control plane (real etcd, kube-apiserver, controller-manager,
// kwok) serves the whole package; each test leaves it seeded as it found it.
var cluster *simcluster.Cluster

func TestMain(m *testing.M) {
	ctx, cancel := context.WithCancel(context.Background())
	dir := testenv.KeepDir("restartpods-cluster-")
	c, err := testenv.Cluster(ctx, dir, true)
	if err != nil {
		testenv.Fatalf("start the real control plane: %v", err)
	}
	cluster = c
	code := m.Run()
	cancel()
	c.Stop()
	if code == 0 {
		os.RemoveAll(dir)
	}
	os.Exit(code)
}

// kube is the pod activities talking to the API server at cfg.
func kube(cfg *rest.Config) *restartpods.Activities {
	return &restartpods.Activities{Kube: &activities.Kube{Core: kubernetes.NewForConfigOrDie(cfg), Dynamic: dynamic.NewForConfigOrDie(cfg)}}
}

// run executes one activity method as Temporal would, against the real API server.
func run[T any](t *testing.T, a *restartpods.Activities, fn any, arg any) (T, error) {
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

func timings() api.Timings {
	return api.Timings{Wait: time.Minute, Delete: time.Minute, Poll: 200 * time.Millisecond, Heartbeat: 5 * time.Second, Attempts: 3}
}

// snapshotUIDs fingerprints the seeded cluster (UIDs and resourceVersions).
func snapshotUIDs(t *testing.T) map[string]string {
	t.Helper()
	fp, err := cluster.Fingerprint(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return fp
}

// appMessage is the message of the ApplicationError in err, without the
// SDK's "activity error (type: ...)" wrapping.
func appMessage(err error) string {
	var appErr *temporal.ApplicationError
	if errors.As(err, &appErr) {
		return appErr.Message()
	}
	return err.Error()
}

// TestPodRestart deletes MEDS pods by UID and waits for Ready replacements.
func TestPodRestart(t *testing.T) {
	k := kube(cluster.Config)
	var a *restartpods.Activities
	set := api.PodSet{Namespace: simcluster.Namespace, Selector: simcluster.NameLabel + "=cray-meds"}
	snap, err := run[restartpods.PodSnapshot](t, k, a.SnapshotPods, set)
	if err != nil {
		t.Fatal(err)
	}
	if len(snap.Pods) != 2 || snap.Ready != 2 {
		t.Fatalf("snapshot %+v, want 2 Ready pods", snap)
	}
	if _, err := run[activities.Outcome](t, k, a.DeletePods, restartpods.DeletePodsRequest{Namespace: set.Namespace, Pods: snap.Pods}); err != nil {
		t.Fatal(err)
	}
	out, err := run[activities.Outcome](t, k, a.WaitPodsReplaced, restartpods.WaitPodsRequest{Pods: set, Snapshot: snap, Timings: timings()})
	if err != nil {
		t.Fatal(err)
	}
	pods, _ := cluster.Core.CoreV1().Pods(set.Namespace).List(context.Background(), metav1.ListOptions{LabelSelector: set.Selector})
	for _, p := range pods.Items {
		for _, old := range snap.Pods {
			if p.UID == old.UID {
				t.Errorf("old pod %s still there", p.Name)
			}
		}
	}
	if simcluster.ReadyPods(pods.Items) != 2 {
		t.Errorf("%d Ready pods after restart, want 2 (%s)", simcluster.ReadyPods(pods.Items), out.Message)
	}
	// A retried delete with the old UIDs leaves the replacements alone.
	if _, err := run[activities.Outcome](t, k, a.DeletePods, restartpods.DeletePodsRequest{Namespace: set.Namespace, Pods: snap.Pods}); err != nil {
		t.Fatal(err)
	}
	again, _ := cluster.Core.CoreV1().Pods(set.Namespace).List(context.Background(), metav1.ListOptions{LabelSelector: set.Selector})
	if simcluster.ReadyPods(again.Items) != 2 {
		t.Error("a stale delete touched the replacements")
	}
}
