package etcdcluster_test

import (
	"context"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/dynamic"

	"github.com/csmops/etcd-repopulate/activities"
	"github.com/csmops/etcd-repopulate/internal/activitytest"
	"github.com/csmops/etcd-repopulate/internal/api"
	"github.com/csmops/etcd-repopulate/internal/badinput"
	kubelib "github.com/csmops/etcd-repopulate/internal/kube"
	"github.com/csmops/etcd-repopulate/internal/simcluster"
	"github.com/csmops/etcd-repopulate/internal/testenv"
)

// The real-cluster tests of both procedures that re-create an object are
// here, rerun-job's TestJobRecreatedFromItsOwnJSON too (not in
// procedures/rerunjob): a package with such tests starts a control plane
// in its TestMain, and one is enough for tests of the object activities
// both procedures share; a second would only cost CI its start-up.
//
// One seeded control plane (real etcd, kube-apiserver, controller-manager,
// kwok) serves the whole package; each test leaves it seeded as it found it.
var cluster *simcluster.Cluster

func TestMain(m *testing.M) { activitytest.ClusterMain(m, "etcdcluster", &cluster) }

func ref(name string) api.ObjectRef {
	return api.ObjectRef{Namespace: simcluster.Namespace, Name: name}
}

// TestJobRecreatedFromItsOwnJSON shows on the real API server why the runbook
// strips a Job: its unmodified JSON, and the CSM 1.0 jq line's output, are
// rejected; the copy StripForCreate makes is accepted and runs to completion.
func TestJobRecreatedFromItsOwnJSON(t *testing.T) {
	ctx := context.Background()
	jobs := cluster.Dynamic.Resource(kubelib.JobGVR).Namespace(simcluster.Namespace)
	job, err := jobs.Get(ctx, simcluster.REDSInitJob, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	background := metav1.DeletePropagationBackground
	if err := jobs.Delete(ctx, job.GetName(), metav1.DeleteOptions{PropagationPolicy: &background}); err != nil {
		t.Fatal(err)
	}
	waitGone(t, jobs, job.GetName())

	// 1. Unmodified: refused (resourceVersion, old selector and labels).
	_, err = jobs.Create(ctx, job.DeepCopy(), metav1.CreateOptions{})
	if !apierrors.IsBadRequest(err) && !apierrors.IsInvalid(err) {
		t.Fatalf("create from unmodified JSON: %v, want rejected", err)
	}
	t.Logf("unmodified JSON rejected: %v", err)

	// 2. Server-set metadata removed, as for any object, but the Job's
	// controller-uid labels and selector kept: still refused.
	meta := job.DeepCopy()
	kubelib.StripForCreate(kubelib.EtcdCluster, meta) // the kind-independent part only
	_, err = jobs.Create(ctx, meta, metav1.CreateOptions{})
	if !apierrors.IsInvalid(err) || !strings.Contains(err.Error(), "controller-uid") {
		t.Fatalf("create with the old selector and labels: %v, want Invalid naming controller-uid", err)
	}

	// 3. The CSM 1.0 jq line: del(.spec.template.metadata.labels["controller-uid"], .spec.selector).
	jq := meta.DeepCopy()
	unstructured.RemoveNestedField(jq.Object, "spec", "template", "metadata", "labels", "controller-uid")
	unstructured.RemoveNestedField(jq.Object, "spec", "selector")
	_, err = jobs.Create(ctx, jq, metav1.CreateOptions{})
	if !apierrors.IsInvalid(err) || !strings.Contains(err.Error(), "batch.kubernetes.io/controller-uid") {
		t.Fatalf("create after the CSM 1.0 jq line: %v, want Invalid naming batch.kubernetes.io/controller-uid", err)
	}

	// 4. The stripped copy: accepted, with a new UID, and it completes.
	stripped := job.DeepCopy()
	removed := kubelib.StripForCreate(kubelib.Job, stripped)
	created, err := jobs.Create(ctx, stripped, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create stripped copy (removed %v): %v", removed, err)
	}
	if created.GetUID() == job.GetUID() {
		t.Fatal("same UID")
	}
	if _, err := run[activities.Outcome](t, activitytest.Kube(cluster.Config), api.ActivityWaitJobComplete, activities.WaitRequest{
		Kind: activities.JobKind, Ref: ref(job.GetName()), UID: created.GetUID(), Timings: activitytest.Timings(),
	}); err != nil {
		t.Fatalf("re-created job did not complete: %v", err)
	}
}

func waitGone(t *testing.T, r dynamic.ResourceInterface, name string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if _, err := r.Get(context.Background(), name, metav1.GetOptions{}); apierrors.IsNotFound(err) {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("%s still there after 30s", name)
}

// TestRecreateStepsAreIdempotent runs save → delete → create → wait on the
// External DNS EtcdCluster, then repeats delete and create as a retry would:
// nothing is deleted twice and a retried create recognises its own object.
func TestRecreateStepsAreIdempotent(t *testing.T) {
	k := activitytest.Kube(cluster.Config)
	saved, err := run[activities.SavedObject](t, k, api.ActivitySaveObject, activities.ObjectRequest{Kind: activities.EtcdClusterKind, Ref: ref(simcluster.ExternalDNSEtcd)})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(strings.Join(saved.Stripped, " "), ".metadata.resourceVersion") || strings.Contains(strings.Join(saved.Stripped, " "), "selector") {
		t.Errorf("stripped %v", saved.Stripped)
	}
	for range 2 { // the second delete is a retry after the object is gone
		if _, err := run[activities.Outcome](t, k, api.ActivityDeleteObject, activities.DeleteRequest{Saved: saved, Timings: activitytest.Timings()}); err != nil {
			t.Fatalf("delete: %v", err)
		}
	}
	var created activities.Created
	for i := range 2 { // the second create is a retry of one that succeeded
		c, err := run[activities.Created](t, k, api.ActivityCreateObject, activities.CreateRequest{Saved: saved, RunID: "test-run"})
		if err != nil {
			t.Fatalf("create %d: %v", i, err)
		}
		if i == 1 && c.UID != created.UID {
			t.Fatalf("retried create made another object: %s then %s", created.UID, c.UID)
		}
		created = c
	}
	if _, err := run[activities.Outcome](t, k, api.ActivityWaitEtcdClusterRunning, activities.WaitRequest{Kind: activities.EtcdClusterKind, Ref: saved.Ref, UID: created.UID, Timings: activitytest.Timings()}); err != nil {
		t.Fatal(err)
	}
	// A delete retried with the old generation's UID must not touch the new object.
	if _, err := run[activities.Outcome](t, k, api.ActivityDeleteObject, activities.DeleteRequest{Saved: saved, Timings: activitytest.Timings()}); err != nil {
		t.Fatal(err)
	}
	now, err := cluster.Dynamic.Resource(kubelib.EtcdClusterGVR).Namespace(simcluster.Namespace).Get(context.Background(), simcluster.ExternalDNSEtcd, metav1.GetOptions{})
	if err != nil || now.GetUID() != created.UID || now.GetDeletionTimestamp() != nil {
		t.Fatalf("the re-created object was touched by a stale delete: %v %v", now, err)
	}
	var before map[string]any
	_ = json.Unmarshal(saved.Manifest, &before)
	if !testenv.EqualJSON(before["spec"], now.Object["spec"]) {
		t.Errorf("spec changed:\n%v\n%v", before["spec"], now.Object["spec"])
	}
	// Someone else's object of the same name is refused, not overwritten.
	other := saved
	other.UID = "someone-else"
	if _, err := run[activities.Created](t, k, api.ActivityCreateObject, activities.CreateRequest{Saved: other, RunID: "another-run"}); activitytest.ErrType(err) != activities.ErrObjectExists {
		t.Fatalf("create over an object of another run: %v, want %s", err, activities.ErrObjectExists)
	}
}

// TestCRDNotInstalled uses a bare API server without etcd-operator's CRD.
func TestCRDNotInstalled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	bare, err := testenv.Cluster(ctx, filepath.Join(t.TempDir(), "bare"), false)
	if err != nil {
		t.Fatal(err)
	}
	defer bare.Stop()
	if _, err := bare.Core.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: simcluster.Namespace}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	before := namespaceState(t, bare)
	_, err = run[activities.SavedObject](t, activitytest.Kube(bare.Config), api.ActivitySaveObject, activities.ObjectRequest{Kind: activities.EtcdClusterKind, Ref: ref(simcluster.ExternalDNSEtcd)})
	if activitytest.ErrType(err) != activities.ErrCRDNotInstalled || !strings.Contains(err.Error(), "etcd-operator") {
		t.Fatalf("error %v, want %s", err, activities.ErrCRDNotInstalled)
	}
	if after := namespaceState(t, bare); after != before {
		t.Fatalf("the namespace changed: %s -> %s", before, after)
	}
	badinput.Record(t, badinput.Case{Area: badinput.Cluster, Input: "EtcdCluster CRD not installed (no etcd-operator)", Message: activitytest.Message(err),
		Exit: "activity fails, type " + activitytest.ErrType(err) + " (not retried)", Unchanged: "namespace resourceVersion and its Jobs and pods unchanged"})
}

// namespaceState sums up the services namespace of c: its resourceVersion
// and the UIDs of its Jobs and pods.
func namespaceState(t *testing.T, c *simcluster.Cluster) string {
	t.Helper()
	ctx := context.Background()
	ns, err := c.Core.CoreV1().Namespaces().Get(ctx, simcluster.Namespace, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	out := "ns@" + ns.ResourceVersion
	jobs, err := c.Core.BatchV1().Jobs(simcluster.Namespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, j := range jobs.Items {
		out += " job/" + j.Name + "@" + string(j.UID)
	}
	pods, err := c.Core.CoreV1().Pods(simcluster.Namespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range pods.Items {
		out += " pod/" + p.Name + "@" + string(p.UID)
	}
	return out
}

// run executes the shared activity named name (internal/api) on k as
// Temporal would, against the real API server.
func run[T any](t *testing.T, k *activities.Kube, name string, arg any) (T, error) {
	t.Helper()
	out, _, err := activitytest.Run[T](t, activities.Shared(k), name, arg, nil)
	return out, err
}
