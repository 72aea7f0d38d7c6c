package kube_test

import (
	"context"
	"errors"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/csmops/etcd-repopulate/internal/api"
	"github.com/csmops/etcd-repopulate/internal/kube"
	"github.com/csmops/etcd-repopulate/internal/simcluster"
	"github.com/csmops/etcd-repopulate/internal/testenv"
)

// The tests below run on a bare control plane (etcd and kube-apiserver, no
// controllers: a Job never runs and an EtcdCluster's status is what the test
// writes), started by the first test that needs it, so that the pure tests
// of this package run without one.
var (
	bareOnce sync.Once
	bare     *simcluster.Cluster
	bareErr  error
	bareStop = func() {}
)

func TestMain(m *testing.M) {
	code := m.Run()
	bareStop()
	os.Exit(code)
}

func bareCluster(t *testing.T) *simcluster.Cluster {
	t.Helper()
	if testing.Short() {
		t.Skip("needs a real API server (make tools); make test-unit runs with -short")
	}
	bareOnce.Do(func() {
		ctx, cancel := context.WithCancel(context.Background())
		dir := testenv.KeepDir("kube-cluster-")
		c, err := testenv.Cluster(ctx, dir, false)
		if err == nil {
			_, err = c.Core.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: simcluster.Namespace}}, metav1.CreateOptions{})
		}
		bare, bareErr = c, err
		bareStop = func() {
			cancel()
			if c != nil {
				c.Stop()
			}
			if err == nil {
				os.RemoveAll(dir)
			}
		}
	})
	if bareErr != nil {
		t.Fatalf("start the bare control plane: %v", bareErr)
	}
	return bare
}

func clientOf(cfg *rest.Config) *kube.Client {
	return &kube.Client{Core: kubernetes.NewForConfigOrDie(cfg), Dynamic: dynamic.NewForConfigOrDie(cfg)}
}

func ref(name string) api.ObjectRef {
	return api.ObjectRef{Namespace: simcluster.Namespace, Name: name}
}

func quick() kube.Wait { return kube.Wait{Budget: 30 * time.Second, Interval: 50 * time.Millisecond} }

func as[T error](t *testing.T, err error) T {
	t.Helper()
	var target T
	if !errors.As(err, &target) {
		t.Fatalf("error %v (%T), want %T", err, err, target)
	}
	return target
}

// TestMissingTargetsAndRefusedAccess: what preflight reports, as typed
// errors, from the real API server.
func TestMissingTargetsAndRefusedAccess(t *testing.T) {
	c := bareCluster(t)
	k := clientOf(c.Config)
	ctx := context.Background()

	if e := as[*kube.NamespaceNotFoundError](t, k.CheckNamespace(ctx, "servicez")); e.Namespace != "servicez" {
		t.Errorf("namespace %q", e.Namespace)
	}
	if err := k.CheckNamespace(ctx, simcluster.Namespace); err != nil {
		t.Fatal(err)
	}
	_, err := k.Get(ctx, kube.Job, ref("cray-reds-init-x"))
	if e := as[*kube.NotFoundError](t, err); e.Kind != kube.Job || e.Ref != ref("cray-reds-init-x") {
		t.Errorf("%+v", e)
	}
	_, err = k.Save(ctx, kube.EtcdCluster, ref(simcluster.ExternalDNSEtcd))
	as[*kube.CRDNotInstalledError](t, err)

	_, err = k.ListPods(ctx, api.PodSet{Namespace: simcluster.Namespace, Selector: " "})
	as[*kube.EmptySelectorError](t, err)
	set := api.PodSet{Namespace: simcluster.Namespace, Selector: simcluster.NameLabel + "=cray-medz"}
	_, err = k.ListPods(ctx, set)
	if e := as[*kube.NoPodsError](t, err); e.Set != set {
		t.Errorf("%+v", e)
	}
	_, err = k.SnapshotPods(ctx, set)
	as[*kube.NoPodsError](t, err)

	nobody := rest.CopyConfig(c.Config)
	nobody.Impersonate = rest.ImpersonationConfig{UserName: "nobody"}
	_, err = clientOf(nobody).Get(ctx, kube.Job, ref("cray-reds-init"))
	if e := as[*kube.ForbiddenError](t, err); !apierrors.IsForbidden(e.Err) || e.What != "get Job services/cray-reds-init" {
		t.Errorf("%+v", e)
	}

	stranger := &rest.Config{Host: c.Config.Host, TLSClientConfig: rest.TLSClientConfig{CAData: c.Config.CAData, CAFile: c.Config.CAFile}, BearerToken: "not-a-token"}
	as[*kube.UnauthorizedError](t, clientOf(stranger).CheckNamespace(ctx, simcluster.Namespace))

	// Unreachable is transient: none of the typed errors, and it names where.
	dead := rest.CopyConfig(c.Config)
	dead.Host, dead.Timeout = "https://127.0.0.1:1", 2*time.Second
	err = clientOf(dead).CheckNamespace(ctx, simcluster.Namespace)
	if err == nil || !strings.Contains(err.Error(), "127.0.0.1:1") || isTyped(err) {
		t.Fatalf("error %v, want a plain error naming the address", err)
	}
}

func isTyped(err error) bool {
	var (
		a *kube.NamespaceNotFoundError
		b *kube.NotFoundError
		c *kube.ForbiddenError
		d *kube.UnauthorizedError
		e *kube.TimeoutError
	)
	return errors.As(err, &a) || errors.As(err, &b) || errors.As(err, &c) || errors.As(err, &d) || errors.As(err, &e)
}

// TestJobSavedDeletedCreatedAndWaitedFor walks a Job through the steps of
// a re-run, with the typed error of each way a step can be refused.
func TestJobSavedDeletedCreatedAndWaitedFor(t *testing.T) {
	c := bareCluster(t)
	k := clientOf(c.Config)
	ctx := context.Background()
	const name = "cray-kube-lib-job"
	if err := c.CreateJob(ctx, name); err != nil {
		t.Fatal(err)
	}
	saved, err := k.Save(ctx, kube.Job, ref(name))
	if err != nil {
		t.Fatal(err)
	}
	if saved.UID == "" || !strings.Contains(strings.Join(saved.Stripped, " "), ".spec.selector") || !strings.Contains(string(saved.Manifest), `"uid":"`+string(saved.UID)) {
		t.Fatalf("saved %+v", saved)
	}

	// No controllers: the Job never completes, so the wait times out,
	// reporting what it saw on each look.
	var looks []string
	w := kube.Wait{Budget: 300 * time.Millisecond, Interval: 50 * time.Millisecond, Progress: func(s string) { looks = append(looks, s) }}
	_, err = k.WaitJobComplete(ctx, ref(name), saved.UID, w)
	if e := as[*kube.TimeoutError](t, err); e.Budget != w.Budget || len(looks) < 2 || looks[0] != "active 0, succeeded 0, failed 0" {
		t.Fatalf("%v after looks %q", e, looks)
	}
	_, err = k.WaitJobComplete(ctx, ref(name), "another-uid", quick())
	if e := as[*kube.ReplacedError](t, err); e.Now != saved.UID || e.UID != "another-uid" {
		t.Errorf("%+v", e)
	}

	msg, err := k.DeleteAndWait(ctx, kube.Job, ref(name), saved.UID, quick())
	if err != nil || msg != "gone" {
		t.Fatalf("delete: %q %v", msg, err)
	}
	if msg, err := k.DeleteAndWait(ctx, kube.Job, ref(name), saved.UID, quick()); err != nil || msg != "gone" {
		t.Fatalf("retried delete: %q %v", msg, err)
	}
	_, err = k.WaitJobComplete(ctx, ref(name), saved.UID, quick())
	if e := as[*kube.ReplacedError](t, err); e.Now != "" {
		t.Errorf("%+v", e)
	}

	created, err := k.CreateFromSaved(ctx, kube.Job, ref(name), saved.Manifest, "run-1")
	if err != nil || created.Already || created.UID == saved.UID {
		t.Fatalf("create: %+v %v", created, err)
	}
	again, err := k.CreateFromSaved(ctx, kube.Job, ref(name), saved.Manifest, "run-1")
	if err != nil || !again.Already || again.UID != created.UID {
		t.Fatalf("retried create: %+v %v", again, err)
	}
	_, err = k.CreateFromSaved(ctx, kube.Job, ref(name), saved.Manifest, "run-2")
	if e := as[*kube.NotOursError](t, err); e.UID != created.UID {
		t.Errorf("%+v", e)
	}
	// A stale delete (the old generation's UID) leaves the new Job alone.
	if msg, err := k.DeleteAndWait(ctx, kube.Job, ref(name), saved.UID, quick()); err != nil || msg != "gone (another object now has the name)" {
		t.Fatalf("stale delete: %q %v", msg, err)
	}
	if now, err := k.Get(ctx, kube.Job, ref(name)); err != nil || now.GetUID() != created.UID || now.GetAnnotations()[kube.RecreatedByAnnotation] != "run-1" {
		t.Fatalf("after a stale delete: %v %v", now, err)
	}

	// The Job fails (the status a job controller writes): the wait says why.
	job, err := c.Core.BatchV1().Jobs(simcluster.Namespace).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	started := metav1.Now()
	job.Status = batchv1.JobStatus{StartTime: &started, Failed: 3, Conditions: []batchv1.JobCondition{
		{Type: batchv1.JobFailureTarget, Status: corev1.ConditionTrue, Reason: "BackoffLimitExceeded", Message: "Job has reached the specified backoff limit", LastTransitionTime: started},
		{Type: batchv1.JobFailed, Status: corev1.ConditionTrue, Reason: "BackoffLimitExceeded", Message: "Job has reached the specified backoff limit", LastTransitionTime: started},
	}}
	if _, err := c.Core.BatchV1().Jobs(simcluster.Namespace).UpdateStatus(ctx, job, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	_, err = k.WaitJobComplete(ctx, ref(name), created.UID, quick())
	if e := as[*kube.JobFailedError](t, err); e.Reason != "BackoffLimitExceeded" || e.Ref != ref(name) {
		t.Errorf("%+v", e)
	}

	_, err = k.CreateFromSaved(ctx, kube.Job, ref(name+"-bad"), []byte("{not json"), "run-1")
	as[*kube.BadSavedObjectError](t, err)
	invalid := &unstructured.Unstructured{}
	if err := invalid.UnmarshalJSON(saved.Manifest); err != nil {
		t.Fatal(err)
	}
	invalid.SetName(name + "-invalid")
	unstructured.RemoveNestedField(invalid.Object, "spec", "template", "spec", "containers")
	manifest, _ := invalid.MarshalJSON()
	_, err = k.CreateFromSaved(ctx, kube.Job, ref(name+"-invalid"), manifest, "run-1")
	if e := as[*kube.RejectedError](t, err); !apierrors.IsInvalid(e.Err) {
		t.Errorf("%+v", e)
	}
}

// TestEtcdClusterWait: Running with every member ready ends the wait;
// phase Failed is a ClusterFailedError with etcd-operator's reason.
func TestEtcdClusterWait(t *testing.T) {
	c := bareCluster(t)
	k := clientOf(c.Config)
	ctx := context.Background()
	if err := c.InstallEtcdClusterCRD(ctx); err != nil {
		t.Fatal(err)
	}
	_, err := k.Get(ctx, kube.EtcdCluster, ref("nope"))
	as[*kube.NotFoundError](t, err) // the CRD is there now: the object is missing
	ecs := c.Dynamic.Resource(kube.EtcdClusterGVR).Namespace(simcluster.Namespace)
	ec, err := ecs.Create(ctx, simcluster.ExternalDNSEtcdCluster(), metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	setStatus := func(status map[string]any) {
		t.Helper()
		now, err := ecs.Get(ctx, ec.GetName(), metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		now.Object["status"] = status
		if _, err := ecs.UpdateStatus(ctx, now, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	size, _, _ := unstructured.NestedInt64(ec.Object, "spec", "size")
	var ready []any
	for i := range size {
		ready = append(ready, "member-"+string(rune('a'+i)))
	}
	setStatus(map[string]any{"phase": "Running", "members": map[string]any{"ready": ready}})
	msg, err := k.WaitEtcdClusterRunning(ctx, ref(ec.GetName()), ec.GetUID(), quick())
	if err != nil || !strings.Contains(msg, `phase "Running"`) {
		t.Fatalf("%q %v", msg, err)
	}
	setStatus(map[string]any{"phase": "Failed", "reason": "lost quorum", "members": map[string]any{"ready": ready[:1], "unready": ready[1:]}})
	_, err = k.WaitEtcdClusterRunning(ctx, ref(ec.GetName()), ec.GetUID(), quick())
	if e := as[*kube.ClusterFailedError](t, err); e.Reason != "lost quorum" || !strings.Contains(e.State, `phase "Failed", 1/`) {
		t.Errorf("%+v", e)
	}
}
