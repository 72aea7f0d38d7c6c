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
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"

	"github.com/csmops/etcd-repopulate/internal/api"
	"github.com/csmops/etcd-repopulate/internal/catalog"
	"github.com/csmops/etcd-repopulate/internal/config"
	"github.com/csmops/etcd-repopulate/internal/kube"
)

// Kube performs the Kubernetes half of the runbook: its activities adapt
// internal/kube to Temporal (requests and results kept in history,
// heartbeats, and the library's typed errors as ApplicationErrors).
type Kube struct {
	Config  config.Config
	Core    kubernetes.Interface
	Dynamic dynamic.Interface
}

func (k *Kube) client() *kube.Client {
	return &kube.Client{Core: k.Core, Dynamic: k.Dynamic}
}

// Kind is a kind of object the runbook deletes and creates again, as the
// workflows name it in their requests.
type Kind string

// Kinds the runbook re-creates.
const (
	JobKind         = Kind(kube.Job)
	EtcdClusterKind = Kind(kube.EtcdCluster)
)

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
	ErrEmptySelector   = "EmptySelector"
	ErrBadSavedObject  = "BadSavedObject"
	ErrCreateRejected  = "CreateRejected"
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
		plan, note, err := k.checkTargets(ctx, k.Config.Plan(release, s))
		if note != "" {
			res.Notes = append(res.Notes, note)
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

// checkTargets reads the objects a plan's procedure needs (the catalog
// says which), and for a FAS loader Job the config names, whether it
// exists: that decides the FAS procedure.
func (k *Kube) checkTargets(ctx context.Context, plan api.ServicePlan) (api.ServicePlan, string, error) {
	var err error
	switch catalog.NeedsOf(plan.Procedure).Kube {
	case catalog.PlanJob:
		if err = k.checkNamespace(ctx, plan.Object.Namespace); err == nil {
			_, err = k.get(ctx, JobKind, plan.Object)
		}
	case catalog.PlanEtcdCluster:
		if err = k.checkNamespace(ctx, plan.Object.Namespace); err == nil {
			_, err = k.get(ctx, EtcdClusterKind, plan.Object)
		}
	case catalog.PlanPods:
		if err = k.checkNamespace(ctx, plan.Pods.Namespace); err == nil {
			_, err = k.listPods(ctx, plan.Pods)
		}
	case catalog.HMNFDPods:
		// HMNFD's pods are restarted only if it is not ready; that they
		// can be is checked now, before anything changes.
		if err = k.checkNamespace(ctx, plan.HMNFD.Pods.Namespace); err == nil {
			_, err = k.listPods(ctx, plan.HMNFD.Pods)
		}
	case catalog.LoaderJobIfNamed:
		if plan.Object.Name != "" {
			return k.chooseFASProcedure(ctx, plan)
		}
	}
	return plan, "", err
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
	return kubeError(k.client().CheckNamespace(ctx, ns))
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
	saved, err := k.client().Save(ctx, kube.Kind(req.Kind), req.Ref)
	if err != nil {
		return SavedObject{}, kubeError(err)
	}
	return SavedObject{
		Kind: req.Kind, Ref: req.Ref, UID: saved.UID, ResourceVersion: saved.ResourceVersion,
		Manifest: saved.Manifest, Stripped: saved.Stripped,
		Outcome: outcome(ctx, "saved %s %s (uid %s, resourceVersion %s, %d bytes)", req.Kind, req.Ref, saved.UID, saved.ResourceVersion, len(saved.Manifest)),
	}, nil
}

func (k *Kube) get(ctx context.Context, kind Kind, ref api.ObjectRef) (*unstructured.Unstructured, error) {
	obj, err := k.client().Get(ctx, kube.Kind(kind), ref)
	return obj, kubeError(err)
}

// DeleteRequest deletes the saved generation of an object.
type DeleteRequest struct {
	Saved   SavedObject `json:"saved"`
	Timings api.Timings `json:"timings"`
}

// DeleteObject deletes exactly the saved generation of the object and waits
// until it is gone (kube.Client.DeleteAndWait).
func (k *Kube) DeleteObject(ctx context.Context, req DeleteRequest) (Outcome, error) {
	s := req.Saved
	msg, err := k.client().DeleteAndWait(ctx, kube.Kind(s.Kind), s.Ref, s.UID, waitFor(ctx, req.Timings, req.Timings.Delete))
	if err != nil {
		return Outcome{}, kubeError(err)
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
	created, err := k.client().CreateFromSaved(ctx, kube.Kind(s.Kind), s.Ref, s.Manifest, req.RunID)
	switch {
	case err != nil:
		return Created{}, kubeError(err)
	case created.Already:
		return Created{UID: created.UID, Outcome: outcome(ctx, "%s %s already created by this run (uid %s)", s.Kind, s.Ref, created.UID)}, nil
	}
	return Created{UID: created.UID, Outcome: outcome(ctx, "created %s %s from the saved copy (new uid %s; removed %s)", s.Kind, s.Ref, created.UID, strings.Join(s.Stripped, ", "))}, nil
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
	msg, err := k.client().WaitJobComplete(ctx, req.Ref, req.UID, waitFor(ctx, req.Timings, req.Timings.Wait))
	if err != nil {
		return Outcome{}, kubeError(err)
	}
	return outcome(ctx, "Job %s (uid %s) %s", req.Ref, req.UID, msg), nil
}

// WaitEtcdClusterRunning waits until etcd-operator reports the cluster Running
// with every member ready.
func (k *Kube) WaitEtcdClusterRunning(ctx context.Context, req WaitRequest) (Outcome, error) {
	msg, err := k.client().WaitEtcdClusterRunning(ctx, req.Ref, req.UID, waitFor(ctx, req.Timings, req.Timings.Wait))
	if err != nil {
		return Outcome{}, kubeError(err)
	}
	return outcome(ctx, "EtcdCluster %s (uid %s) %s", req.Ref, req.UID, msg), nil
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
	pods, err := k.client().SnapshotPods(ctx, set)
	if err != nil {
		return PodSnapshot{}, kubeError(err)
	}
	snap := PodSnapshot{Ready: pods.Ready}
	var names []string
	for _, p := range pods.Pods {
		snap.Pods = append(snap.Pods, PodRef(p))
		names = append(names, p.Name)
	}
	snap.Outcome = outcome(ctx, "%d pods (%d Ready) match %s: %s", len(pods.Pods), snap.Ready, set, strings.Join(names, ", "))
	return snap, nil
}

func (k *Kube) listPods(ctx context.Context, set api.PodSet) ([]corev1.Pod, error) {
	pods, err := k.client().ListPods(ctx, set)
	return pods, kubeError(err)
}

// DeletePodsRequest deletes the snapshot's pods.
type DeletePodsRequest struct {
	Namespace string   `json:"namespace"`
	Pods      []PodRef `json:"pods"`
}

// DeletePods deletes exactly the snapshot's pod generations (UID
// preconditions, so a retry never deletes a replacement that reused a name).
func (k *Kube) DeletePods(ctx context.Context, req DeletePodsRequest) (Outcome, error) {
	names, err := k.client().DeletePods(ctx, req.Namespace, kubePods(req.Pods), func(done int) { recordHeartbeat(ctx, done) })
	if err != nil {
		return Outcome{}, kubeError(err)
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
	snap := kube.PodSnapshot{Pods: kubePods(req.Snapshot.Pods), Ready: req.Snapshot.Ready}
	msg, err := k.client().WaitPodsReplaced(ctx, req.Pods, snap, waitFor(ctx, req.Timings, req.Timings.Wait))
	if err != nil {
		return Outcome{}, kubeError(err)
	}
	return outcome(ctx, "%s: %s", req.Pods, msg), nil
}

func kubePods(pods []PodRef) []kube.Pod {
	out := make([]kube.Pod, 0, len(pods))
	for _, p := range pods {
		out = append(out, kube.Pod(p))
	}
	return out
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

// waitFor is the kube.Wait of this activity: its budget runs from the first
// attempt's start (kept in the heartbeat details), and every look that is
// not done heartbeats with its state.
func waitFor(ctx context.Context, t api.Timings, budget time.Duration) kube.Wait {
	w, _ := waitWithProgress(ctx, t, budget)
	return w
}

func waitWithProgress(ctx context.Context, t api.Timings, budget time.Duration) (kube.Wait, *waitProgress) {
	progress := &waitProgress{Since: time.Now()}
	if activity.HasHeartbeatDetails(ctx) {
		var prev waitProgress
		if activity.GetHeartbeatDetails(ctx, &prev) == nil && !prev.Since.IsZero() {
			progress.Since = prev.Since
		}
	}
	return kube.Wait{Since: progress.Since, Budget: budget, Interval: t.Poll, Progress: func(state string) {
		progress.Last = state
		recordHeartbeat(ctx, *progress)
	}}, progress
}

// poll is kube.Poll for the activities' own waits (the CSM API's): a check
// that makes many calls heartbeats between them (heartbeatBetweenCalls)
// with this wait's progress, so the first attempt's start survives in the
// details.
func poll(ctx context.Context, t api.Timings, budget time.Duration, what string, check func(context.Context) (string, bool, error)) (string, error) {
	w, progress := waitWithProgress(ctx, t, budget)
	checkCtx := context.WithValue(ctx, waitProgressKey{}, progress)
	state, err := kube.Poll(ctx, w, what, func(context.Context) (string, bool, error) { return check(checkCtx) })
	return state, kubeError(err)
}
