// Package kube is the Kubernetes half of the runbook as a plain Go library:
// check, save, delete, create and wait for the Jobs, EtcdClusters and pods a
// run acts on. It knows nothing of Temporal: long waits report progress
// through a callback and stop with their context, and every failure that
// retrying cannot fix is one of the typed errors in errors.go, which the
// activities turn into their Temporal errors.
package kube

import (
	"context"
	"encoding/json"
	"fmt"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"

	"github.com/csmops/etcd-repopulate/internal/api"
)

// Kind is a kind of object the runbook deletes and creates again.
type Kind string

// Kinds the runbook re-creates.
const (
	Job         Kind = "Job"
	EtcdCluster Kind = "EtcdCluster"
)

// The resources of those kinds: the one declaration the worker, the
// snapshot command and the simulated cluster share.
var (
	JobGVR         = schema.GroupVersionResource{Group: "batch", Version: "v1", Resource: "jobs"}
	EtcdClusterGVR = schema.GroupVersionResource{Group: "etcd.database.coreos.com", Version: "v1beta2", Resource: "etcdclusters"}
)

// GVR is the resource of the kind.
func (k Kind) GVR() schema.GroupVersionResource {
	if k == Job {
		return JobGVR
	}
	return EtcdClusterGVR
}

// RecreatedByAnnotation marks an object this tool created again, with the run
// that did it, so that a retried create recognises its own object.
const RecreatedByAnnotation = "etcd-repopulate.csmops.io/recreated-by"

// Client reaches one cluster. Jobs and EtcdClusters go through the dynamic
// client so that a saved object is the API server's own JSON, byte for
// byte, and one save/delete/create mechanism serves both kinds.
type Client struct {
	Core    kubernetes.Interface
	Dynamic dynamic.Interface
}

// CheckNamespace says whether namespace ns exists.
func (c *Client) CheckNamespace(ctx context.Context, ns string) error {
	_, err := c.Core.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return &NamespaceNotFoundError{Namespace: ns}
	}
	return classify(err, "get namespace "+ns)
}

// Get reads one object. A missing EtcdCluster is told apart from a missing
// CRD, so that a cluster without etcd-operator is named as such.
func (c *Client) Get(ctx context.Context, kind Kind, ref api.ObjectRef) (*unstructured.Unstructured, error) {
	obj, err := c.Dynamic.Resource(kind.GVR()).Namespace(ref.Namespace).Get(ctx, ref.Name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		if kind == EtcdCluster && !c.crdInstalled() {
			return nil, &CRDNotInstalledError{Kind: kind, GVR: EtcdClusterGVR}
		}
		return nil, &NotFoundError{Kind: kind, Ref: ref}
	}
	return obj, classify(err, fmt.Sprintf("get %s %s", kind, ref))
}

func (c *Client) crdInstalled() bool {
	_, err := c.Core.Discovery().ServerResourcesForGroupVersion(EtcdClusterGVR.GroupVersion().String())
	return err == nil
}

// Saved is an object as the API server returned it, before it is deleted.
type Saved struct {
	UID             types.UID
	ResourceVersion string
	Manifest        json.RawMessage
	// Stripped lists what CreateFromSaved removes from Manifest.
	Stripped []string
}

// Save reads the object that is about to be deleted.
func (c *Client) Save(ctx context.Context, kind Kind, ref api.ObjectRef) (Saved, error) {
	obj, err := c.Get(ctx, kind, ref)
	if err != nil {
		return Saved{}, err
	}
	manifest, err := obj.MarshalJSON()
	if err != nil {
		return Saved{}, fmt.Errorf("encode %s %s: %w", kind, ref, err)
	}
	return Saved{
		UID: obj.GetUID(), ResourceVersion: obj.GetResourceVersion(),
		Manifest: manifest, Stripped: StripForCreate(kind, obj.DeepCopy()),
	}, nil
}

// DeleteAndWait deletes exactly the generation uid of the object (a UID
// precondition, so a retry never deletes a newer object of the same name)
// with background propagation (client-go's default would orphan a Job's
// pods) and waits until it is gone. It returns how it ended.
func (c *Client) DeleteAndWait(ctx context.Context, kind Kind, ref api.ObjectRef, uid types.UID, w Wait) (string, error) {
	client := c.Dynamic.Resource(kind.GVR()).Namespace(ref.Namespace)
	background := metav1.DeletePropagationBackground
	err := client.Delete(ctx, ref.Name, metav1.DeleteOptions{
		PropagationPolicy: &background,
		Preconditions:     &metav1.Preconditions{UID: &uid},
	})
	switch {
	case err == nil, apierrors.IsNotFound(err):
	case apierrors.IsConflict(err):
		// The precondition failed: the saved generation is already gone and
		// another object holds the name. The create step will refuse it.
	default:
		return "", classify(err, fmt.Sprintf("delete %s %s", kind, ref))
	}
	return Poll(ctx, w, fmt.Sprintf("%s %s to be deleted", kind, ref), func(ctx context.Context) (string, bool, error) {
		obj, err := client.Get(ctx, ref.Name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return "gone", true, nil
		}
		if err != nil {
			return "", false, classify(err, fmt.Sprintf("get %s %s", kind, ref))
		}
		if obj.GetUID() != uid {
			return "gone (another object now has the name)", true, nil
		}
		return fmt.Sprintf("still present, finalizers %v", obj.GetFinalizers()), false, nil
	})
}

// Created is an object CreateFromSaved made, or found made by the same run.
type Created struct {
	UID types.UID
	// Already is true when this run had created it before (a retried create).
	Already bool
}

// CreateFromSaved creates the object of manifest again without its
// server-set fields, annotated with runID. An object of the same name that
// runID created already is success (the create was retried); any other is
// refused rather than overwritten.
func (c *Client) CreateFromSaved(ctx context.Context, kind Kind, ref api.ObjectRef, manifest []byte, runID string) (Created, error) {
	obj := &unstructured.Unstructured{}
	if err := obj.UnmarshalJSON(manifest); err != nil {
		return Created{}, &BadSavedObjectError{Kind: kind, Ref: ref, Err: err}
	}
	StripForCreate(kind, obj)
	annotations := obj.GetAnnotations()
	if annotations == nil {
		annotations = map[string]string{}
	}
	annotations[RecreatedByAnnotation] = runID
	obj.SetAnnotations(annotations)

	client := c.Dynamic.Resource(kind.GVR()).Namespace(ref.Namespace)
	created, err := client.Create(ctx, obj, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		existing, getErr := client.Get(ctx, ref.Name, metav1.GetOptions{})
		if getErr != nil {
			return Created{}, classify(getErr, fmt.Sprintf("get %s %s", kind, ref))
		}
		if existing.GetAnnotations()[RecreatedByAnnotation] == runID {
			return Created{UID: existing.GetUID(), Already: true}, nil
		}
		return Created{}, &NotOursError{Kind: kind, Ref: ref, UID: existing.GetUID()}
	}
	if err != nil {
		if apierrors.IsInvalid(err) || apierrors.IsBadRequest(err) {
			return Created{}, &RejectedError{Kind: kind, Ref: ref, Err: err}
		}
		return Created{}, classify(err, fmt.Sprintf("create %s %s", kind, ref))
	}
	return Created{UID: created.GetUID()}, nil
}

// WaitJobComplete waits until generation uid of the Job completes; a Failed
// condition is a *JobFailedError carrying the Job's reason.
func (c *Client) WaitJobComplete(ctx context.Context, ref api.ObjectRef, uid types.UID, w Wait) (string, error) {
	return Poll(ctx, w, fmt.Sprintf("Job %s to complete", ref), func(ctx context.Context) (string, bool, error) {
		obj, err := c.getGeneration(ctx, Job, ref, uid)
		if err != nil {
			return "", false, err
		}
		conds, _, _ := unstructured.NestedSlice(obj.Object, "status", "conditions")
		for _, cond := range conds {
			m, _ := cond.(map[string]any)
			if m["status"] != "True" {
				continue
			}
			switch m["type"] {
			case "Complete":
				return "complete", true, nil
			case "Failed":
				return "", false, &JobFailedError{Ref: ref, Reason: fmt.Sprint(m["reason"]), Message: fmt.Sprint(m["message"])}
			}
		}
		active, _, _ := unstructured.NestedInt64(obj.Object, "status", "active")
		succeeded, _, _ := unstructured.NestedInt64(obj.Object, "status", "succeeded")
		failed, _, _ := unstructured.NestedInt64(obj.Object, "status", "failed")
		return fmt.Sprintf("active %d, succeeded %d, failed %d", active, succeeded, failed), false, nil
	})
}

// WaitEtcdClusterRunning waits until etcd-operator reports generation uid of
// the cluster Running with every member ready; phase Failed is a
// *ClusterFailedError.
func (c *Client) WaitEtcdClusterRunning(ctx context.Context, ref api.ObjectRef, uid types.UID, w Wait) (string, error) {
	return Poll(ctx, w, fmt.Sprintf("EtcdCluster %s to be Running", ref), func(ctx context.Context) (string, bool, error) {
		obj, err := c.getGeneration(ctx, EtcdCluster, ref, uid)
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
			return "", false, &ClusterFailedError{Ref: ref, Reason: reason, State: state}
		}
		return state, phase == "Running" && int64(len(ready)) == size && len(unready) == 0, nil
	})
}

// getGeneration reads the object and insists it is generation uid.
func (c *Client) getGeneration(ctx context.Context, kind Kind, ref api.ObjectRef, uid types.UID) (*unstructured.Unstructured, error) {
	obj, err := c.Dynamic.Resource(kind.GVR()).Namespace(ref.Namespace).Get(ctx, ref.Name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil, &ReplacedError{Kind: kind, Ref: ref, UID: uid}
	}
	if err != nil {
		return nil, classify(err, fmt.Sprintf("get %s %s", kind, ref))
	}
	if obj.GetUID() != uid {
		return nil, &ReplacedError{Kind: kind, Ref: ref, UID: uid, Now: obj.GetUID()}
	}
	return obj, nil
}
