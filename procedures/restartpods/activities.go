package restartpods

import (
	"context"
	"strings"

	"k8s.io/apimachinery/pkg/types"

	"github.com/csmops/etcd-repopulate/activities"
	"github.com/csmops/etcd-repopulate/internal/api"
	"github.com/csmops/etcd-repopulate/internal/kube"
)

// Activities restart pods through the worker's Kubernetes client.
type Activities struct{ Kube *activities.Kube }

// named maps each contract name (internal/api) to its implementation.
func named(k *activities.Kube, _ *activities.CSM) map[string]any {
	a := &Activities{Kube: k}
	return map[string]any{
		api.ActivitySnapshotPods:     a.SnapshotPods,
		api.ActivityDeletePods:       a.DeletePods,
		api.ActivityWaitPodsReplaced: a.WaitPodsReplaced,
	}
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
	activities.Outcome
}

// SnapshotPods records which pods will be restarted and how many are Ready,
// so the wait step knows what "back to how it was" means.
func (a *Activities) SnapshotPods(ctx context.Context, set api.PodSet) (PodSnapshot, error) {
	pods, err := a.Kube.Client().SnapshotPods(ctx, set)
	if err != nil {
		return PodSnapshot{}, activities.KubeError(err)
	}
	snap := PodSnapshot{Ready: pods.Ready}
	var names []string
	for _, p := range pods.Pods {
		snap.Pods = append(snap.Pods, PodRef(p))
		names = append(names, p.Name)
	}
	snap.Outcome = activities.NewOutcome(ctx, "%d pods (%d Ready) match %s: %s", len(pods.Pods), snap.Ready, set, strings.Join(names, ", "))
	return snap, nil
}

// DeletePodsRequest deletes the snapshot's pods.
type DeletePodsRequest struct {
	Namespace string   `json:"namespace"`
	Pods      []PodRef `json:"pods"`
}

// DeletePods deletes exactly the snapshot's pod generations (UID
// preconditions, so a retry never deletes a replacement that reused a name).
func (a *Activities) DeletePods(ctx context.Context, req DeletePodsRequest) (activities.Outcome, error) {
	names, err := a.Kube.Client().DeletePods(ctx, req.Namespace, kubePods(req.Pods), func(done int) { activities.RecordHeartbeat(ctx, done) })
	if err != nil {
		return activities.Outcome{}, activities.KubeError(err)
	}
	return activities.NewOutcome(ctx, "deleted %d pods: %s", len(names), strings.Join(names, ", ")), nil
}

// WaitPodsRequest waits for replacements of the snapshot's pods.
type WaitPodsRequest struct {
	Pods     api.PodSet  `json:"pods"`
	Snapshot PodSnapshot `json:"snapshot"`
	Timings  api.Timings `json:"timings"`
}

// WaitPodsReplaced waits until none of the deleted pods is left and as many
// Ready pods match as before (as many pods, when none was Ready before).
func (a *Activities) WaitPodsReplaced(ctx context.Context, req WaitPodsRequest) (activities.Outcome, error) {
	snap := kube.PodSnapshot{Pods: kubePods(req.Snapshot.Pods), Ready: req.Snapshot.Ready}
	msg, err := a.Kube.Client().WaitPodsReplaced(ctx, req.Pods, snap, activities.WaitFor(ctx, req.Timings, req.Timings.Wait))
	if err != nil {
		return activities.Outcome{}, activities.KubeError(err)
	}
	return activities.NewOutcome(ctx, "%s: %s", req.Pods, msg), nil
}

func kubePods(pods []PodRef) []kube.Pod {
	out := make([]kube.Pod, 0, len(pods))
	for _, p := range pods {
		out = append(out, kube.Pod(p))
	}
	return out
}
