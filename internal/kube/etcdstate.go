package kube

import (
	"context"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/csmops/etcd-repopulate/internal/api"
)

// EtcdState is what repopulate plan shows of a service's etcd cluster.
type EtcdState struct {
	Created     time.Time
	Ready, Size int
}

// EtcdClusterState reads an etcd-operator EtcdCluster (CSM 1.0–1.4): its
// creation time, spec.size and status.members.ready. Errors are client-go's
// (or CRDNotInstalledError), for the caller to tell forbidden from missing.
func (c *Client) EtcdClusterState(ctx context.Context, ref api.ObjectRef) (EtcdState, error) {
	obj, err := c.Dynamic.Resource(EtcdClusterGVR).Namespace(ref.Namespace).Get(ctx, ref.Name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) && !c.crdInstalled() {
		return EtcdState{}, &CRDNotInstalledError{Kind: EtcdCluster, GVR: EtcdClusterGVR}
	}
	if err != nil {
		return EtcdState{}, err
	}
	size, _, _ := unstructured.NestedInt64(obj.Object, "spec", "size")
	ready, _, _ := unstructured.NestedSlice(obj.Object, "status", "members", "ready")
	return EtcdState{Created: obj.GetCreationTimestamp().Time, Size: int(size), Ready: len(ready)}, nil
}

// StatefulSetState reads a bitnami etcd StatefulSet (CSM 1.5 on): its
// creation time, spec.replicas and status.readyReplicas.
func (c *Client) StatefulSetState(ctx context.Context, ref api.ObjectRef) (EtcdState, error) {
	ss, err := c.Core.AppsV1().StatefulSets(ref.Namespace).Get(ctx, ref.Name, metav1.GetOptions{})
	if err != nil {
		return EtcdState{}, err
	}
	size := 1
	if ss.Spec.Replicas != nil {
		size = int(*ss.Spec.Replicas)
	}
	return EtcdState{Created: ss.CreationTimestamp.Time, Size: size, Ready: int(ss.Status.ReadyReplicas)}, nil
}
