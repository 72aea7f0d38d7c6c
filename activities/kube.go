// Package activities holds the steps of the runbook. Each exported method of
// an activity struct is one idempotent Temporal activity; the workflows call
// them through a nil pointer of the struct (var k *activities.Kube).
package activities

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"go.temporal.io/sdk/activity"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"

	"github.com/csmops/etcd-repopulate/internal/api"
	"github.com/csmops/etcd-repopulate/internal/kube"
)

// Kube performs the Kubernetes half of the runbook: its activities adapt
// internal/kube to Temporal (requests and results kept in history,
// heartbeats, and the library's typed errors as ApplicationErrors).
type Kube struct {
	Core    kubernetes.Interface
	Dynamic dynamic.Interface
}

func (k *Kube) Client() *kube.Client {
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

func NewOutcome(ctx context.Context, format string, args ...any) Outcome {
	return Outcome{Message: fmt.Sprintf(format, args...), Attempt: activity.GetInfo(ctx).Attempt}
}

func (k *Kube) CheckNamespace(ctx context.Context, ns string) error {
	return KubeError(k.Client().CheckNamespace(ctx, ns))
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
	saved, err := k.Client().Save(ctx, kube.Kind(req.Kind), req.Ref)
	if err != nil {
		return SavedObject{}, KubeError(err)
	}
	return SavedObject{
		Kind: req.Kind, Ref: req.Ref, UID: saved.UID, ResourceVersion: saved.ResourceVersion,
		Manifest: saved.Manifest, Stripped: saved.Stripped,
		Outcome: NewOutcome(ctx, "saved %s %s (uid %s, resourceVersion %s, %d bytes)", req.Kind, req.Ref, saved.UID, saved.ResourceVersion, len(saved.Manifest)),
	}, nil
}

func (k *Kube) Get(ctx context.Context, kind Kind, ref api.ObjectRef) (*unstructured.Unstructured, error) {
	obj, err := k.Client().Get(ctx, kube.Kind(kind), ref)
	return obj, KubeError(err)
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
	msg, err := k.Client().DeleteAndWait(ctx, kube.Kind(s.Kind), s.Ref, s.UID, WaitFor(ctx, req.Timings, req.Timings.Delete))
	if err != nil {
		return Outcome{}, KubeError(err)
	}
	return NewOutcome(ctx, "deleted %s %s (uid %s): %s", s.Kind, s.Ref, s.UID, msg), nil
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
	created, err := k.Client().CreateFromSaved(ctx, kube.Kind(s.Kind), s.Ref, s.Manifest, req.RunID)
	switch {
	case err != nil:
		return Created{}, KubeError(err)
	case created.Already:
		return Created{UID: created.UID, Outcome: NewOutcome(ctx, "%s %s already created by this run (uid %s)", s.Kind, s.Ref, created.UID)}, nil
	}
	return Created{UID: created.UID, Outcome: NewOutcome(ctx, "created %s %s from the saved copy (new uid %s; removed %s)", s.Kind, s.Ref, created.UID, strings.Join(s.Stripped, ", "))}, nil
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
	msg, err := k.Client().WaitJobComplete(ctx, req.Ref, req.UID, WaitFor(ctx, req.Timings, req.Timings.Wait))
	if err != nil {
		return Outcome{}, KubeError(err)
	}
	return NewOutcome(ctx, "Job %s (uid %s) %s", req.Ref, req.UID, msg), nil
}

// WaitEtcdClusterRunning waits until etcd-operator reports the cluster Running
// with every member ready.
func (k *Kube) WaitEtcdClusterRunning(ctx context.Context, req WaitRequest) (Outcome, error) {
	msg, err := k.Client().WaitEtcdClusterRunning(ctx, req.Ref, req.UID, WaitFor(ctx, req.Timings, req.Timings.Wait))
	if err != nil {
		return Outcome{}, KubeError(err)
	}
	return NewOutcome(ctx, "EtcdCluster %s (uid %s) %s", req.Ref, req.UID, msg), nil
}

func (k *Kube) ListPods(ctx context.Context, set api.PodSet) ([]corev1.Pod, error) {
	pods, err := k.Client().ListPods(ctx, set)
	return pods, KubeError(err)
}

// waitProgress is kept in heartbeat details, so that a retried wait keeps the
// deadline of the first attempt instead of starting a new one.
type waitProgress struct {
	Since time.Time `json:"since"`
	Last  string    `json:"last"`
}

type waitProgressKey struct{}

// recordHeartbeat is activity.RecordHeartbeat; tests count the heartbeats
// through it (CountHeartbeats), since the SDK throttles what reaches a test
// listener.
var recordHeartbeat = activity.RecordHeartbeat

// RecordHeartbeat records an activity heartbeat with its details.
func RecordHeartbeat(ctx context.Context, details ...any) { recordHeartbeat(ctx, details...) }

// HeartbeatBetweenCalls records a heartbeat from inside a poll's check,
// before one of its many sequential calls (each bounded by csm.timeout):
// together they would outlast the heartbeat timeout. The details keep the
// first attempt's start; note says where the look stands when no earlier
// look has reported yet. Outside a poll it records no details.
func HeartbeatBetweenCalls(ctx context.Context, note string) {
	if !activity.IsActivity(ctx) {
		return
	}
	p, ok := ctx.Value(waitProgressKey{}).(*waitProgress)
	if !ok {
		RecordHeartbeat(ctx)
		return
	}
	beat := *p
	if beat.Last == "" {
		beat.Last = note
	}
	RecordHeartbeat(ctx, beat)
}

// waitFor is the kube.Wait of this activity: its budget runs from the first
// attempt's start (kept in the heartbeat details), and every look that is
// not done heartbeats with its state.
func WaitFor(ctx context.Context, t api.Timings, budget time.Duration) kube.Wait {
	w, _ := WaitWithProgress(ctx, t, budget)
	return w
}

func WaitWithProgress(ctx context.Context, t api.Timings, budget time.Duration) (kube.Wait, *waitProgress) {
	progress := &waitProgress{Since: time.Now()}
	if activity.HasHeartbeatDetails(ctx) {
		var prev waitProgress
		if activity.GetHeartbeatDetails(ctx, &prev) == nil && !prev.Since.IsZero() {
			progress.Since = prev.Since
		}
	}
	return kube.Wait{Since: progress.Since, Budget: budget, Interval: t.Poll, Progress: func(state string) {
		progress.Last = state
		RecordHeartbeat(ctx, *progress)
	}}, progress
}

// poll is kube.Poll for the activities' own waits (the CSM API's): a check
// that makes many calls heartbeats between them (HeartbeatBetweenCalls)
// with this wait's progress, so the first attempt's start survives in the
// details.
func Poll(ctx context.Context, t api.Timings, budget time.Duration, what string, check func(context.Context) (string, bool, error)) (string, error) {
	w, progress := WaitWithProgress(ctx, t, budget)
	checkCtx := context.WithValue(ctx, waitProgressKey{}, progress)
	state, err := kube.Poll(ctx, w, what, func(context.Context) (string, bool, error) { return check(checkCtx) })
	return state, KubeError(err)
}
