package chaos

import (
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/csmops/etcd-repopulate/internal/api"
	"github.com/csmops/etcd-repopulate/internal/kube"
	"github.com/csmops/etcd-repopulate/internal/ledger"
	"github.com/csmops/etcd-repopulate/internal/simcluster"
	"github.com/csmops/etcd-repopulate/internal/testenv"
)

// TestParentTerminatedDuringDelete: the run is terminated — what an
// operator does before a reset, the usual remedy for a replay error — while
// externaldns's EtcdCluster is being deleted (a finalizer holds it). The
// child is asked to cancel instead of dying with its parent, so it creates
// the object again from the copy in history once the delete completes: the
// ledger finds nothing lost and no delete repeated.
func TestParentTerminatedDuringDelete(t *testing.T) {
	ctx := context.Background()
	if err := cluster.WaitSeeded(ctx, 2*time.Minute); err != nil {
		t.Fatal(err)
	}
	ecs := cluster.Dynamic.Resource(kube.EtcdClusterGVR).Namespace(simcluster.Namespace)
	const hold = "chaos.csmops.io/hold"
	unhold := func() {
		_, _ = ecs.Patch(ctx, simcluster.ExternalDNSEtcd, types.JSONPatchType, []byte(`[{"op":"remove","path":"/metadata/finalizers"}]`), metav1.PatchOptions{})
	}
	if _, err := ecs.Patch(ctx, simcluster.ExternalDNSEtcd, types.MergePatchType, fmt.Appendf(nil, `{"metadata":{"finalizers":[%q]}}`, hold), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	defer unhold()
	led := ledger.Start(t, cluster, []api.Service{api.ExternalDNS})
	queue, run := "chaos-terminate", fmt.Sprintf("chaos-terminate-%d", time.Now().UnixNano())
	w, err := testenv.LaunchWorker(testenv.WorkerOptions{BinDir: binDir, LogDir: scratch, Address: temporal.Address, Queue: queue, Config: workerConfig, Kubeconfig: kubeconfig})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Kill()
	if out, err := exec.Command(filepath.Join(binDir, "repopulate"), "--address", temporal.Address, "--task-queue", queue,
		"start", "--services", "externaldns", "--id", run).CombinedOutput(); err != nil {
		t.Fatalf("repopulate start: %v\n%s", err, out)
	}
	deadline := time.Now().Add(3 * time.Minute)
	for {
		cur, err := ecs.Get(ctx, simcluster.ExternalDNSEtcd, metav1.GetOptions{})
		if err == nil && cur.GetDeletionTimestamp() != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the run never started deleting the EtcdCluster")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err := tc.TerminateWorkflow(ctx, run, "", "chaos: terminate the run during delete-etcdcluster"); err != nil {
		t.Fatal(err)
	}
	unhold()
	child := api.ServiceWorkflowID(run, api.ExternalDNS)
	wctx, cancel := context.WithTimeout(ctx, 8*time.Minute)
	defer cancel()
	_ = tc.GetWorkflow(wctx, child, "").Get(wctx, nil) // it ends canceled; the ledger says what matters
	// The copy in history carried the finalizer: clear it before checking.
	unhold()
	if err := cluster.WaitSeeded(ctx, 3*time.Minute); err != nil {
		t.Errorf("cluster not healthy after the terminated run: %v", err)
	}
	time.Sleep(time.Second) // let the watches deliver the last events
	for _, dup := range led.Stop() {
		t.Errorf("duplicate destructive step: %s", dup)
	}
	for _, l := range led.Lost(ctx, run) {
		t.Errorf("object lost or not restored after the run was terminated: %s", l)
	}
}
