package kube

import (
	"fmt"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"

	"github.com/csmops/etcd-repopulate/internal/api"
)

// The errors below are the failures that retrying cannot fix; each message
// says what is wrong and what to check. Any other error the Client returns
// (API server unreachable, timeouts of one call, conflicts of the moment)
// is transient and wraps client-go's error.

// NamespaceNotFoundError: the namespace does not exist.
type NamespaceNotFoundError struct{ Namespace string }

func (e *NamespaceNotFoundError) Error() string {
	return fmt.Sprintf("namespace %q not found: is this the CSM cluster? check --kubeconfig/--context and the namespace in the worker config", e.Namespace)
}

// CRDNotInstalledError: the kind's CustomResourceDefinition is not served.
type CRDNotInstalledError struct {
	Kind Kind
	GVR  schema.GroupVersionResource
}

func (e *CRDNotInstalledError) Error() string {
	return fmt.Sprintf("the %s CRD (%s, %s) is not installed: is etcd-operator deployed on this cluster?", e.Kind, e.GVR.GroupResource(), e.GVR.Version)
}

// NotFoundError: the object to save does not exist.
type NotFoundError struct {
	Kind Kind
	Ref  api.ObjectRef
}

func (e *NotFoundError) Error() string {
	return fmt.Sprintf("%s %s not found: nothing to save, so nothing was deleted; check the name in the worker config or whether the chart that owns it is installed", e.Kind, e.Ref)
}

// EmptySelectorError: a pod selector is empty and would match every pod.
type EmptySelectorError struct{ Namespace string }

func (e *EmptySelectorError) Error() string {
	return fmt.Sprintf("empty selector for pods in namespace %s would match every pod: refusing", e.Namespace)
}

// NoPodsError: no pod matches the selector.
type NoPodsError struct{ Set api.PodSet }

func (e *NoPodsError) Error() string {
	return fmt.Sprintf("no pods match %q in namespace %s: is the service deployed? check the selector in the worker config", e.Set.Selector, e.Set.Namespace)
}

// ForbiddenError: the worker's identity may not do what it tried.
type ForbiddenError struct {
	What string
	Err  error
}

func (e *ForbiddenError) Error() string {
	return fmt.Sprintf("%s: %v; grant the worker's identity this verb on this resource (deploy/ has the Role)", e.What, e.Err)
}

func (e *ForbiddenError) Unwrap() error { return e.Err }

// UnauthorizedError: the API server rejected the worker's credentials.
type UnauthorizedError struct {
	What string
	Err  error
}

func (e *UnauthorizedError) Error() string {
	return fmt.Sprintf("%s: unauthorized: the worker's Kubernetes credentials were rejected (%v); check --kubeconfig/--context", e.What, e.Err)
}

func (e *UnauthorizedError) Unwrap() error { return e.Err }

// NotOursError: an object holds the name of the one to create again and
// was not created by this run.
type NotOursError struct {
	Kind Kind
	Ref  api.ObjectRef
	UID  types.UID
}

func (e *NotOursError) Error() string {
	return fmt.Sprintf("%s %s exists (uid %s) but was not created by this run: someone else created it after the delete; compare it with the saved copy in the run's history before deleting it", e.Kind, e.Ref, e.UID)
}

// ReplacedError: the generation being waited for disappeared (Now is
// empty) or another object took its name (Now is that object's UID).
type ReplacedError struct {
	Kind Kind
	Ref  api.ObjectRef
	UID  types.UID
	Now  types.UID
}

func (e *ReplacedError) Error() string {
	if e.Now == "" {
		return fmt.Sprintf("%s %s (uid %s) disappeared while waiting for it", e.Kind, e.Ref, e.UID)
	}
	return fmt.Sprintf("%s %s was replaced while waiting for it (uid %s, expected %s)", e.Kind, e.Ref, e.Now, e.UID)
}

// BadSavedObjectError: a saved copy is not a Kubernetes object.
type BadSavedObjectError struct {
	Kind Kind
	Ref  api.ObjectRef
	Err  error
}

func (e *BadSavedObjectError) Error() string {
	return fmt.Sprintf("saved copy of %s %s is not a Kubernetes object: %v", e.Kind, e.Ref, e.Err)
}

func (e *BadSavedObjectError) Unwrap() error { return e.Err }

// RejectedError: the API server refused to create the saved copy.
type RejectedError struct {
	Kind Kind
	Ref  api.ObjectRef
	Err  error
}

func (e *RejectedError) Error() string {
	return fmt.Sprintf("the API server rejected the saved copy of %s %s: %v; the copy is in this run's history (step save)", e.Kind, e.Ref, e.Err)
}

func (e *RejectedError) Unwrap() error { return e.Err }

// JobFailedError: the Job has a Failed condition.
type JobFailedError struct {
	Ref             api.ObjectRef
	Reason, Message string
}

func (e *JobFailedError) Error() string {
	return fmt.Sprintf("Job %s failed: %s: %s (kubectl -n %s logs job/%s)", e.Ref, e.Reason, e.Message, e.Ref.Namespace, e.Ref.Name)
}

// ClusterFailedError: etcd-operator reports the EtcdCluster Failed.
type ClusterFailedError struct {
	Ref api.ObjectRef
	// State is the phase and members as the wait last saw them.
	Reason, State string
}

func (e *ClusterFailedError) Error() string {
	return fmt.Sprintf("EtcdCluster %s failed: %s (%s); see the etcd-operator logs", e.Ref, e.Reason, e.State)
}

// classify turns API errors that retrying cannot fix into typed errors that
// say what is missing; everything else is wrapped for the retry policy.
func classify(err error, what string) error {
	switch {
	case err == nil:
		return nil
	case apierrors.IsForbidden(err):
		return &ForbiddenError{What: what, Err: err}
	case apierrors.IsUnauthorized(err):
		return &UnauthorizedError{What: what, Err: err}
	}
	return fmt.Errorf("%s: %w", what, err)
}
