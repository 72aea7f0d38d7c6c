// Package activities holds the steps of the runbook. Each exported method of
// an activity struct is one idempotent Temporal activity; the workflows call
// them through a nil pointer of the struct (var k *activities.Kube).
package activities

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/temporal"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"

	"github.com/csmops/etcd-repopulate/internal/api"
	"github.com/csmops/etcd-repopulate/internal/catalog"
	"github.com/csmops/etcd-repopulate/internal/config"
)

// Kube performs the Kubernetes half of the runbook with client-go. Jobs and
// EtcdClusters go through the dynamic client so that a saved object is the
// API server's own JSON, byte for byte, and one save/delete/create mechanism
// serves both kinds.
type Kube struct {
	Config  config.Config
	Core    kubernetes.Interface
	Dynamic dynamic.Interface
}

// Kind is a kind of object the runbook deletes and creates again.
type Kind string

// Kinds the runbook re-creates.
const (
	JobKind         Kind = "Job"
	EtcdClusterKind Kind = "EtcdCluster"
)

var (
	jobGVR         = schema.GroupVersionResource{Group: "batch", Version: "v1", Resource: "jobs"}
	etcdClusterGVR = schema.GroupVersionResource{Group: "etcd.database.coreos.com", Version: "v1beta2", Resource: "etcdclusters"}
)

func (k Kind) gvr() schema.GroupVersionResource {
	if k == JobKind {
		return jobGVR
	}
	return etcdClusterGVR
}

// RecreatedByAnnotation marks an object this tool created again, with the run
// that did it, so that a retried create recognises its own object.
const RecreatedByAnnotation = "etcd-repopulate.csmops.io/recreated-by"

// Non-retryable error types the activities return.
const (
	ErrObjectNotFound  = "ObjectNotFound"
	ErrCRDNotInstalled = "CRDNotInstalled"
	ErrNamespaceAbsent = "NamespaceNotFound"
	ErrNoPods          = "NoPodsMatch"
	ErrForbidden       = "Forbidden"
	ErrUnauthorized    = "Unauthorized"
	ErrObjectExists    = "ObjectExistsNotOurs"
	ErrObjectReplaced  = "ObjectReplaced"
	ErrJobFailed       = "JobFailed"
	ErrClusterFailed   = "EtcdClusterFailed"
	ErrWaitTimedOut    = "WaitTimedOut"
	ErrPreflight       = api.PreflightFailedError
)

// Outcome is what every step reports besides its own result.
type Outcome struct {
	Message string `json:"message"`
	Attempt int32  `json:"attempt"`
}

func outcome(ctx context.Context, format string, args ...any) Outcome {
	return Outcome{Message: fmt.Sprintf(format, args...), Attempt: activity.GetInfo(ctx).Attempt}
}

// PreflightRequest names the services of a run and the release it acts for.
type PreflightRequest struct {
	Services []api.Service `json:"services"`
	// Release is what DetectRelease found; empty in runs started before
	// releases were detected.
	Release api.Release `json:"release,omitempty"`
}

// PreflightResult is the resolved plan of each service.
type PreflightResult struct {
	// Release is the CSM release the plans were resolved for.
	Release api.Release `json:"release,omitempty"`
	// Profile is what results recorded before releases carried instead.
	Profile string            `json:"profile,omitempty"`
	Plans   []api.ServicePlan `json:"plans"`
	// Notes say what preflight decided beyond the configuration (which
	// FAS procedure, and why).
	Notes []string `json:"notes,omitempty"`
}

// RunRelease is the release a recorded result names, old ones included.
func (r PreflightResult) RunRelease() api.Release {
	if r.Release != "" {
		return r.Release
	}
	return api.Release(r.Profile)
}

// Preflight resolves the worker's configuration into each service's plan for
// the run's release and checks, before anything is touched, that every
// object the plans need is there and readable. Every problem is reported at
// once, so that a run either starts with all its targets present or changes
// nothing at all.
func (k *Kube) Preflight(ctx context.Context, req PreflightRequest) (PreflightResult, error) {
	release := req.Release
	if release == "" {
		release = k.Config.Release
	}
	if !catalog.KnownRelease(release) {
		return PreflightResult{}, temporal.NewNonRetryableApplicationError(fmt.Sprintf(
			"this run was started before the worker detected CSM releases and the worker's release setting is %q: start the run again, or set release: in the worker config", release), ErrPreflight, nil)
	}
	res := PreflightResult{Release: release}
	var problems []string
	for _, s := range req.Services {
		plan := k.Config.Plan(release, s)
		var err error
		switch plan.Procedure {
		case api.RerunJob:
			err = k.checkNamespace(ctx, plan.Object.Namespace)
			if err == nil {
				_, err = k.get(ctx, JobKind, plan.Object)
			}
		case api.RunFASLoaderAPI:
			if plan.Object.Name != "" {
				var note string
				plan, note, err = k.chooseFASProcedure(ctx, plan)
				res.Notes = append(res.Notes, note)
			}
		case api.RecreateEtcdCluster:
			err = k.checkNamespace(ctx, plan.Object.Namespace)
			if err == nil {
				_, err = k.get(ctx, EtcdClusterKind, plan.Object)
			}
		case api.RestartPods, api.RestartCRUS:
			err = k.checkNamespace(ctx, plan.Pods.Namespace)
			if err == nil {
				_, err = k.listPods(ctx, plan.Pods)
			}
		case api.RestartOrca:
			// HMNFD's pods are restarted only if it is not ready; that they
			// can be is checked now, before anything changes.
			err = k.checkNamespace(ctx, plan.HMNFD.Pods.Namespace)
			if err == nil {
				_, err = k.listPods(ctx, plan.HMNFD.Pods)
			}
		}
		res.Plans = append(res.Plans, plan)
		if err == nil {
			continue
		}
		var appErr *temporal.ApplicationError
		if !errors.As(err, &appErr) || !appErr.NonRetryable() {
			return PreflightResult{}, err // transient: let the retry policy try again
		}
		problems = append(problems, fmt.Sprintf("%s: %s", s, appErr.Message()))
	}
	if len(problems) > 0 {
		return PreflightResult{}, temporal.NewNonRetryableApplicationError(
			"preflight found problems, nothing was changed:\n  "+strings.Join(problems, "\n  "), ErrPreflight, nil)
	}
	return res, nil
}

// chooseFASProcedure keeps the Job procedure for a site whose config names
// a FAS loader Job that exists; FAS itself removed the Job before CSM 1.0,
// so a named Job that is not there falls back to the loader API.
func (k *Kube) chooseFASProcedure(ctx context.Context, plan api.ServicePlan) (api.ServicePlan, string, error) {
	ref := plan.Object
	if err := k.checkNamespace(ctx, ref.Namespace); err != nil {
		return plan, "", err
	}
	_, err := k.get(ctx, JobKind, ref)
	var appErr *temporal.ApplicationError
	switch {
	case err == nil:
		plan.Procedure = api.RerunJob
		return plan, fmt.Sprintf("fas: re-running Job %s: services.fas.job names it and it exists", ref), nil
	case errors.As(err, &appErr) && appErr.Type() == ErrObjectNotFound:
		plan.Object = api.ObjectRef{}
		return plan, fmt.Sprintf("fas: services.fas.job names Job %s but it does not exist (FAS removed its loader Job before CSM 1.0): loading firmware through the loader API instead", ref), nil
	}
	return plan, "", err
}

func (k *Kube) checkNamespace(ctx context.Context, ns string) error {
	_, err := k.Core.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return temporal.NewNonRetryableApplicationError(
			fmt.Sprintf("namespace %q not found: is this the CSM cluster? check --kubeconfig/--context and the namespace in the worker config", ns), ErrNamespaceAbsent, nil)
	}
	return classify(err, "get namespace "+ns)
}

// ObjectRequest names one object of a kind.
type ObjectRequest struct {
	Kind Kind          `json:"kind"`
	Ref  api.ObjectRef `json:"ref"`
}

// SavedObject is an object as the API server returned it, kept in workflow
// history before the object is deleted, so that a crash between delete and
// create loses nothing.
type SavedObject struct {
	Kind            Kind            `json:"kind"`
	Ref             api.ObjectRef   `json:"ref"`
	UID             types.UID       `json:"uid"`
	ResourceVersion string          `json:"resourceVersion"`
	Manifest        json.RawMessage `json:"manifest"`
	// Stripped lists what the create step removes from Manifest.
	Stripped []string `json:"stripped"`
	Outcome
}

// SaveObject reads the object that is about to be deleted.
func (k *Kube) SaveObject(ctx context.Context, req ObjectRequest) (SavedObject, error) {
	obj, err := k.get(ctx, req.Kind, req.Ref)
	if err != nil {
		return SavedObject{}, err
	}
	manifest, err := obj.MarshalJSON()
	if err != nil {
		return SavedObject{}, fmt.Errorf("encode %s %s: %w", req.Kind, req.Ref, err)
	}
	stripped := StripForCreate(req.Kind, obj.DeepCopy())
	return SavedObject{
		Kind: req.Kind, Ref: req.Ref, UID: obj.GetUID(), ResourceVersion: obj.GetResourceVersion(),
		Manifest: manifest, Stripped: stripped,
		Outcome: outcome(ctx, "saved %s %s (uid %s, resourceVersion %s, %d bytes)", req.Kind, req.Ref, obj.GetUID(), obj.GetResourceVersion(), len(manifest)),
	}, nil
}

func (k *Kube) get(ctx context.Context, kind Kind, ref api.ObjectRef) (*unstructured.Unstructured, error) {
	obj, err := k.Dynamic.Resource(kind.gvr()).Namespace(ref.Namespace).Get(ctx, ref.Name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		if kind == EtcdClusterKind && !k.crdInstalled() {
			return nil, temporal.NewNonRetryableApplicationError(
				fmt.Sprintf("the EtcdCluster CRD (%s, %s) is not installed: is etcd-operator deployed on this cluster?", etcdClusterGVR.GroupResource(), etcdClusterGVR.Version), ErrCRDNotInstalled, nil)
		}
		return nil, temporal.NewNonRetryableApplicationError(
			fmt.Sprintf("%s %s not found: nothing to save, so nothing was deleted; check the name in the worker config or whether the chart that owns it is installed", kind, ref), ErrObjectNotFound, nil)
	}
	return obj, classify(err, fmt.Sprintf("get %s %s", kind, ref))
}

func (k *Kube) crdInstalled() bool {
	_, err := k.Core.Discovery().ServerResourcesForGroupVersion(etcdClusterGVR.GroupVersion().String())
	return err == nil
}

// DeleteRequest deletes the saved generation of an object.
type DeleteRequest struct {
	Saved   SavedObject `json:"saved"`
	Timings api.Timings `json:"timings"`
}

// DeleteObject deletes exactly the saved object (a UID precondition, so a
// retry never deletes a newer object of the same name) with background
// propagation (client-go's default would orphan a Job's pods) and waits until
// it is gone.
func (k *Kube) DeleteObject(ctx context.Context, req DeleteRequest) (Outcome, error) {
	s := req.Saved
	client := k.Dynamic.Resource(s.Kind.gvr()).Namespace(s.Ref.Namespace)
	background := metav1.DeletePropagationBackground
	uid := s.UID
	err := client.Delete(ctx, s.Ref.Name, metav1.DeleteOptions{
		PropagationPolicy: &background,
		Preconditions:     &metav1.Preconditions{UID: &uid},
	})
	switch {
	case err == nil, apierrors.IsNotFound(err):
	case apierrors.IsConflict(err):
		// The precondition failed: the saved generation is already gone and
		// another object holds the name. The create step will refuse it.
	default:
		return Outcome{}, classify(err, fmt.Sprintf("delete %s %s", s.Kind, s.Ref))
	}
	msg, err := poll(ctx, req.Timings, req.Timings.Delete, fmt.Sprintf("%s %s to be deleted", s.Kind, s.Ref), func(ctx context.Context) (string, bool, error) {
		obj, err := client.Get(ctx, s.Ref.Name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return "gone", true, nil
		}
		if err != nil {
			return "", false, classify(err, fmt.Sprintf("get %s %s", s.Kind, s.Ref))
		}
		if obj.GetUID() != s.UID {
			return "gone (another object now has the name)", true, nil
		}
		return fmt.Sprintf("still present, finalizers %v", obj.GetFinalizers()), false, nil
	})
	if err != nil {
		return Outcome{}, err
	}
	return outcome(ctx, "deleted %s %s (uid %s): %s", s.Kind, s.Ref, s.UID, msg), nil
}

// CreateRequest creates an object again from its saved copy.
type CreateRequest struct {
	Saved SavedObject `json:"saved"`
	// RunID marks the new object, so that a retried create recognises it.
	RunID string `json:"runId"`
}

// Created is the re-created object.
type Created struct {
	UID types.UID `json:"uid"`
	Outcome
}

// CreateObject creates the saved object again without its server-set fields.
// An object of the same name that this run created already is success (the
// create was retried); any other is refused rather than overwritten.
func (k *Kube) CreateObject(ctx context.Context, req CreateRequest) (Created, error) {
	s := req.Saved
	obj := &unstructured.Unstructured{}
	if err := obj.UnmarshalJSON(s.Manifest); err != nil {
		return Created{}, temporal.NewNonRetryableApplicationError(fmt.Sprintf("saved copy of %s %s is not a Kubernetes object: %v", s.Kind, s.Ref, err), "BadSavedObject", err)
	}
	StripForCreate(s.Kind, obj)
	annotations := obj.GetAnnotations()
	if annotations == nil {
		annotations = map[string]string{}
	}
	annotations[RecreatedByAnnotation] = req.RunID
	obj.SetAnnotations(annotations)

	client := k.Dynamic.Resource(s.Kind.gvr()).Namespace(s.Ref.Namespace)
	created, err := client.Create(ctx, obj, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		existing, getErr := client.Get(ctx, s.Ref.Name, metav1.GetOptions{})
		if getErr != nil {
			return Created{}, classify(getErr, fmt.Sprintf("get %s %s", s.Kind, s.Ref))
		}
		if existing.GetAnnotations()[RecreatedByAnnotation] == req.RunID {
			return Created{UID: existing.GetUID(), Outcome: outcome(ctx, "%s %s already created by this run (uid %s)", s.Kind, s.Ref, existing.GetUID())}, nil
		}
		return Created{}, temporal.NewNonRetryableApplicationError(
			fmt.Sprintf("%s %s exists (uid %s) but was not created by this run: someone else created it after the delete; compare it with the saved copy in the run's history before deleting it", s.Kind, s.Ref, existing.GetUID()), ErrObjectExists, nil)
	}
	if err != nil {
		if apierrors.IsInvalid(err) || apierrors.IsBadRequest(err) {
			return Created{}, temporal.NewNonRetryableApplicationError(
				fmt.Sprintf("the API server rejected the saved copy of %s %s: %v; the copy is in this run's history (step save)", s.Kind, s.Ref, err), "CreateRejected", err)
		}
		return Created{}, classify(err, fmt.Sprintf("create %s %s", s.Kind, s.Ref))
	}
	return Created{UID: created.GetUID(), Outcome: outcome(ctx, "created %s %s from the saved copy (new uid %s; removed %s)", s.Kind, s.Ref, created.GetUID(), strings.Join(s.Stripped, ", "))}, nil
}

// WaitRequest waits for one object generation to be healthy.
type WaitRequest struct {
	Kind    Kind          `json:"kind"`
	Ref     api.ObjectRef `json:"ref"`
	UID     types.UID     `json:"uid"`
	Timings api.Timings   `json:"timings"`
}

// WaitJobComplete waits until the Job completes; a Failed condition is a
// non-retryable error carrying the Job's reason.
func (k *Kube) WaitJobComplete(ctx context.Context, req WaitRequest) (Outcome, error) {
	msg, err := poll(ctx, req.Timings, req.Timings.Wait, fmt.Sprintf("Job %s to complete", req.Ref), func(ctx context.Context) (string, bool, error) {
		obj, err := k.getGeneration(ctx, JobKind, req.Ref, req.UID)
		if err != nil {
			return "", false, err
		}
		conds, _, _ := unstructured.NestedSlice(obj.Object, "status", "conditions")
		for _, c := range conds {
			m, _ := c.(map[string]any)
			if m["status"] != "True" {
				continue
			}
			switch m["type"] {
			case "Complete":
				return "complete", true, nil
			case "Failed":
				return "", false, temporal.NewNonRetryableApplicationError(
					fmt.Sprintf("Job %s failed: %v: %v (kubectl -n %s logs job/%s)", req.Ref, m["reason"], m["message"], req.Ref.Namespace, req.Ref.Name), ErrJobFailed, nil)
			}
		}
		active, _, _ := unstructured.NestedInt64(obj.Object, "status", "active")
		succeeded, _, _ := unstructured.NestedInt64(obj.Object, "status", "succeeded")
		failed, _, _ := unstructured.NestedInt64(obj.Object, "status", "failed")
		return fmt.Sprintf("active %d, succeeded %d, failed %d", active, succeeded, failed), false, nil
	})
	if err != nil {
		return Outcome{}, err
	}
	return outcome(ctx, "Job %s (uid %s) %s", req.Ref, req.UID, msg), nil
}

// WaitEtcdClusterRunning waits until etcd-operator reports the cluster Running
// with every member ready.
func (k *Kube) WaitEtcdClusterRunning(ctx context.Context, req WaitRequest) (Outcome, error) {
	msg, err := poll(ctx, req.Timings, req.Timings.Wait, fmt.Sprintf("EtcdCluster %s to be Running", req.Ref), func(ctx context.Context) (string, bool, error) {
		obj, err := k.getGeneration(ctx, EtcdClusterKind, req.Ref, req.UID)
		if err != nil {
			return "", false, err
		}
		phase, _, _ := unstructured.NestedString(obj.Object, "status", "phase")
		size, _, _ := unstructured.NestedInt64(obj.Object, "spec", "size")
		ready, _, _ := unstructured.NestedStringSlice(obj.Object, "status", "members", "ready")
		unready, _, _ := unstructured.NestedStringSlice(obj.Object, "status", "members", "unready")
		state := fmt.Sprintf("phase %q, %d/%d members ready, %d unready", phase, len(ready), size, len(unready))
		if phase == "Failed" {
			reason, _, _ := unstructured.NestedString(obj.Object, "status", "reason")
			return "", false, temporal.NewNonRetryableApplicationError(
				fmt.Sprintf("EtcdCluster %s failed: %s (%s); see the etcd-operator logs", req.Ref, reason, state), ErrClusterFailed, nil)
		}
		return state, phase == "Running" && int64(len(ready)) == size && len(unready) == 0, nil
	})
	if err != nil {
		return Outcome{}, err
	}
	return outcome(ctx, "EtcdCluster %s (uid %s) %s", req.Ref, req.UID, msg), nil
}

// getGeneration reads the object and insists it is the generation we created.
func (k *Kube) getGeneration(ctx context.Context, kind Kind, ref api.ObjectRef, uid types.UID) (*unstructured.Unstructured, error) {
	obj, err := k.Dynamic.Resource(kind.gvr()).Namespace(ref.Namespace).Get(ctx, ref.Name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil, temporal.NewNonRetryableApplicationError(fmt.Sprintf("%s %s (uid %s) disappeared while waiting for it", kind, ref, uid), ErrObjectReplaced, nil)
	}
	if err != nil {
		return nil, classify(err, fmt.Sprintf("get %s %s", kind, ref))
	}
	if obj.GetUID() != uid {
		return nil, temporal.NewNonRetryableApplicationError(fmt.Sprintf("%s %s was replaced while waiting for it (uid %s, expected %s)", kind, ref, obj.GetUID(), uid), ErrObjectReplaced, nil)
	}
	return obj, nil
}

// PodRef is one pod generation.
type PodRef struct {
	Name  string    `json:"name"`
	UID   types.UID `json:"uid"`
	Ready bool      `json:"ready"`
}

// PodSnapshot is the pods a selector picked before the restart.
type PodSnapshot struct {
	Pods  []PodRef `json:"pods"`
	Ready int      `json:"ready"`
	Outcome
}

// SnapshotPods records which pods will be restarted and how many are Ready,
// so the wait step knows what "back to how it was" means.
func (k *Kube) SnapshotPods(ctx context.Context, set api.PodSet) (PodSnapshot, error) {
	pods, err := k.listPods(ctx, set)
	if err != nil {
		return PodSnapshot{}, err
	}
	snap := PodSnapshot{}
	var names []string
	for _, p := range pods {
		ready := podReady(&p)
		snap.Pods = append(snap.Pods, PodRef{Name: p.Name, UID: p.UID, Ready: ready})
		if ready {
			snap.Ready++
		}
		names = append(names, p.Name)
	}
	snap.Outcome = outcome(ctx, "%d pods (%d Ready) match %s: %s", len(pods), snap.Ready, set, strings.Join(names, ", "))
	return snap, nil
}

func (k *Kube) listPods(ctx context.Context, set api.PodSet) ([]corev1.Pod, error) {
	if strings.TrimSpace(set.Selector) == "" {
		return nil, temporal.NewNonRetryableApplicationError(fmt.Sprintf("empty selector for pods in namespace %s would match every pod: refusing", set.Namespace), "EmptySelector", nil)
	}
	list, err := k.Core.CoreV1().Pods(set.Namespace).List(ctx, metav1.ListOptions{LabelSelector: set.Selector})
	if err != nil {
		return nil, classify(err, "list "+set.String())
	}
	if len(list.Items) == 0 {
		return nil, temporal.NewNonRetryableApplicationError(
			fmt.Sprintf("no pods match %q in namespace %s: is the service deployed? check the selector in the worker config", set.Selector, set.Namespace), ErrNoPods, nil)
	}
	return list.Items, nil
}

// DeletePodsRequest deletes the snapshot's pods.
type DeletePodsRequest struct {
	Namespace string   `json:"namespace"`
	Pods      []PodRef `json:"pods"`
}

// DeletePods deletes exactly the snapshot's pod generations (UID
// preconditions, so a retry never deletes a replacement that reused a name).
func (k *Kube) DeletePods(ctx context.Context, req DeletePodsRequest) (Outcome, error) {
	var names []string
	for _, p := range req.Pods {
		uid := p.UID
		err := k.Core.CoreV1().Pods(req.Namespace).Delete(ctx, p.Name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &uid}})
		if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
			return Outcome{}, classify(err, fmt.Sprintf("delete pod %s/%s", req.Namespace, p.Name))
		}
		names = append(names, p.Name)
		recordHeartbeat(ctx, len(names))
	}
	return outcome(ctx, "deleted %d pods: %s", len(names), strings.Join(names, ", ")), nil
}

// WaitPodsRequest waits for replacements of the snapshot's pods.
type WaitPodsRequest struct {
	Pods     api.PodSet  `json:"pods"`
	Snapshot PodSnapshot `json:"snapshot"`
	Timings  api.Timings `json:"timings"`
}

// WaitPodsReplaced waits until none of the deleted pods is left and as many
// Ready pods match as before (as many pods, when none was Ready before).
func (k *Kube) WaitPodsReplaced(ctx context.Context, req WaitPodsRequest) (Outcome, error) {
	old := map[types.UID]bool{}
	for _, p := range req.Snapshot.Pods {
		old[p.UID] = true
	}
	msg, err := poll(ctx, req.Timings, req.Timings.Wait, fmt.Sprintf("%s to be replaced", req.Pods), func(ctx context.Context) (string, bool, error) {
		list, err := k.Core.CoreV1().Pods(req.Pods.Namespace).List(ctx, metav1.ListOptions{LabelSelector: req.Pods.Selector})
		if err != nil {
			return "", false, classify(err, "list "+req.Pods.String())
		}
		var leftover, fresh, ready int
		var readyNames []string
		for _, p := range list.Items {
			if old[p.UID] {
				leftover++
				continue
			}
			fresh++
			if podReady(&p) {
				ready++
				readyNames = append(readyNames, p.Name)
			}
		}
		state := fmt.Sprintf("%d/%d Ready replacements (%s), %d old pods left", ready, req.Snapshot.Ready, strings.Join(readyNames, ", "), leftover)
		done := leftover == 0 && ready >= req.Snapshot.Ready
		if req.Snapshot.Ready == 0 {
			done = leftover == 0 && fresh >= len(req.Snapshot.Pods)
		}
		return state, done, nil
	})
	if err != nil {
		return Outcome{}, err
	}
	return outcome(ctx, "%s: %s", req.Pods, msg), nil
}

func podReady(p *corev1.Pod) bool {
	if p.DeletionTimestamp != nil || p.Status.Phase != corev1.PodRunning {
		return false
	}
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// waitProgress is kept in heartbeat details, so that a retried wait keeps the
// deadline of the first attempt instead of starting a new one.
type waitProgress struct {
	Since time.Time `json:"since"`
	Last  string    `json:"last"`
}

type waitProgressKey struct{}

// recordHeartbeat is activity.RecordHeartbeat; tests count the heartbeats
// through it, since the SDK throttles what reaches a test listener.
var recordHeartbeat = activity.RecordHeartbeat

// heartbeatBetweenCalls records a heartbeat from inside a poll's check,
// before one of its many sequential calls (each bounded by csm.timeout):
// together they would outlast the heartbeat timeout. The details keep the
// first attempt's start; note says where the look stands when no earlier
// look has reported yet. Outside a poll it records no details.
func heartbeatBetweenCalls(ctx context.Context, note string) {
	if !activity.IsActivity(ctx) {
		return
	}
	p, ok := ctx.Value(waitProgressKey{}).(*waitProgress)
	if !ok {
		recordHeartbeat(ctx)
		return
	}
	beat := *p
	if beat.Last == "" {
		beat.Last = note
	}
	recordHeartbeat(ctx, beat)
}

// poll calls check every Timings.Poll until it reports done or an error, or
// until budget has passed since the first attempt of this activity began.
func poll(ctx context.Context, t api.Timings, budget time.Duration, what string, check func(context.Context) (string, bool, error)) (string, error) {
	progress := waitProgress{Since: time.Now()}
	if activity.HasHeartbeatDetails(ctx) {
		var prev waitProgress
		if activity.GetHeartbeatDetails(ctx, &prev) == nil && !prev.Since.IsZero() {
			progress.Since = prev.Since
		}
	}
	interval := t.Poll
	if interval <= 0 {
		interval = 2 * time.Second
	}
	// A check that makes many calls heartbeats between them (heartbeat) with
	// this progress, so the first attempt's start survives in the details.
	checkCtx := context.WithValue(ctx, waitProgressKey{}, &progress)
	for {
		state, done, err := check(checkCtx)
		if err != nil || done {
			return state, err
		}
		progress.Last = state
		recordHeartbeat(ctx, progress)
		if time.Since(progress.Since) > budget {
			return "", temporal.NewNonRetryableApplicationError(
				fmt.Sprintf("timed out after %s waiting for %s: %s", budget, what, state), ErrWaitTimedOut, nil)
		}
		select {
		case <-ctx.Done():
			return "", ctx.Err()
		case <-time.After(interval):
		}
	}
}

// classify turns API errors that retrying cannot fix into non-retryable errors
// that say what is missing; everything else is left for the retry policy.
func classify(err error, what string) error {
	switch {
	case err == nil:
		return nil
	case apierrors.IsForbidden(err):
		return temporal.NewNonRetryableApplicationError(
			fmt.Sprintf("%s: %v; grant the worker's identity this verb on this resource (deploy/ has the Role)", what, err), ErrForbidden, nil)
	case apierrors.IsUnauthorized(err):
		return temporal.NewNonRetryableApplicationError(
			fmt.Sprintf("%s: unauthorized: the worker's Kubernetes credentials were rejected (%v); check --kubeconfig/--context", what, err), ErrUnauthorized, nil)
	}
	return fmt.Errorf("%s: %w", what, err)
}
