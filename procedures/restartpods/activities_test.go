package restartpods_test

import (
	"context"
	"testing"

	"github.com/csmops/etcd-repopulate/activities"
	"github.com/csmops/etcd-repopulate/internal/activitytest"
	"github.com/csmops/etcd-repopulate/internal/api"
	"github.com/csmops/etcd-repopulate/internal/simcluster"
	"github.com/csmops/etcd-repopulate/procedures/restartpods"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
)

// One seeded control plane (real etcd, kube-apiserver, controller-manager,
// kwok) serves the whole package; each test leaves it seeded as it found it.
var cluster *simcluster.Cluster

func TestMain(m *testing.M) { activitytest.ClusterMain(m, "restartpods", &cluster) }

// TestPodRestart deletes MEDS pods by UID and waits for Ready replacements.
func TestPodRestart(t *testing.T) {
	k := pods(cluster.Config)
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
	out, err := run[activities.Outcome](t, k, a.WaitPodsReplaced, restartpods.WaitPodsRequest{Pods: set, Snapshot: snap, Timings: activitytest.Timings()})
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

// pods is the pod activities talking to the API server at cfg.
func pods(cfg *rest.Config) *restartpods.Activities {
	return &restartpods.Activities{Kube: activitytest.Kube(cfg)}
}

// run executes one pod activity as Temporal would, against the real API server.
func run[T any](t *testing.T, a *restartpods.Activities, fn any, arg any) (T, error) {
	t.Helper()
	out, _, err := activitytest.Run[T](t, a, fn, arg, nil)
	return out, err
}
