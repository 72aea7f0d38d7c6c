package kube

import (
	"context"
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/csmops/etcd-repopulate/internal/api"
)

// Pod is one pod generation.
type Pod struct {
	Name  string
	UID   types.UID
	Ready bool
}

// PodSnapshot is the pods a selector picked before a restart.
type PodSnapshot struct {
	Pods  []Pod
	Ready int
}

// ListPods lists the pods of set. An empty selector, which would match every
// pod of the namespace, and a selector that matches none are errors.
func (c *Client) ListPods(ctx context.Context, set api.PodSet) ([]corev1.Pod, error) {
	if strings.TrimSpace(set.Selector) == "" {
		return nil, &EmptySelectorError{Namespace: set.Namespace}
	}
	list, err := c.Core.CoreV1().Pods(set.Namespace).List(ctx, metav1.ListOptions{LabelSelector: set.Selector})
	if err != nil {
		return nil, classify(err, "list "+set.String())
	}
	if len(list.Items) == 0 {
		return nil, &NoPodsError{Set: set}
	}
	return list.Items, nil
}

// SnapshotPods records which pods will be restarted and how many are Ready,
// so that WaitPodsReplaced knows what "back to how it was" means.
func (c *Client) SnapshotPods(ctx context.Context, set api.PodSet) (PodSnapshot, error) {
	pods, err := c.ListPods(ctx, set)
	if err != nil {
		return PodSnapshot{}, err
	}
	var snap PodSnapshot
	for _, p := range pods {
		ready := podReady(&p)
		snap.Pods = append(snap.Pods, Pod{Name: p.Name, UID: p.UID, Ready: ready})
		if ready {
			snap.Ready++
		}
	}
	return snap, nil
}

// DeletePods deletes exactly the given pod generations (UID preconditions,
// so a retry never deletes a replacement that reused a name); one already
// gone or replaced counts as deleted. deleted is called after each pod with
// how many are done. It returns the names of the pods.
func (c *Client) DeletePods(ctx context.Context, namespace string, pods []Pod, deleted func(done int)) ([]string, error) {
	var names []string
	for _, p := range pods {
		uid := p.UID
		err := c.Core.CoreV1().Pods(namespace).Delete(ctx, p.Name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &uid}})
		if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
			return names, classify(err, fmt.Sprintf("delete pod %s/%s", namespace, p.Name))
		}
		names = append(names, p.Name)
		deleted(len(names))
	}
	return names, nil
}

// WaitPodsReplaced waits until none of the snapshot's pods is left and as
// many Ready pods match set as before (as many pods, when none was Ready
// before).
func (c *Client) WaitPodsReplaced(ctx context.Context, set api.PodSet, snap PodSnapshot, w Wait) (string, error) {
	old := map[types.UID]bool{}
	for _, p := range snap.Pods {
		old[p.UID] = true
	}
	return Poll(ctx, w, fmt.Sprintf("%s to be replaced", set), func(ctx context.Context) (string, bool, error) {
		list, err := c.Core.CoreV1().Pods(set.Namespace).List(ctx, metav1.ListOptions{LabelSelector: set.Selector})
		if err != nil {
			return "", false, classify(err, "list "+set.String())
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
		state := fmt.Sprintf("%d/%d Ready replacements (%s), %d old pods left", ready, snap.Ready, strings.Join(readyNames, ", "), leftover)
		done := leftover == 0 && ready >= snap.Ready
		if snap.Ready == 0 {
			done = leftover == 0 && fresh >= len(snap.Pods)
		}
		return state, done, nil
	})
}

// podReady is whether p is Running, not being deleted, and Ready.
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
