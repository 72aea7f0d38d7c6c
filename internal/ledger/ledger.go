// Package ledger proves, against the API server rather than the tool's own
// report, that a run under faults lost nothing and repeated no destructive
// step: the chaos tests and the production-shaped tests (internal/production)
// watch their runs with it.
package ledger

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/tools/cache"
	watchtools "k8s.io/client-go/tools/watch"

	"github.com/csmops/etcd-repopulate/internal/api"
	"github.com/csmops/etcd-repopulate/internal/kube"
	"github.com/csmops/etcd-repopulate/internal/simcluster"
	"github.com/csmops/etcd-repopulate/internal/testenv"
)

// The Kubernetes objects each service deletes and re-creates (or restarts),
// named here rather than read from the tool, so that the invariants do not
// trust what is being tested.
var (
	jobOf     = map[api.Service]string{api.BSS: simcluster.REDSInitJob, api.FAS: simcluster.FASLoaderJob}
	podsOf    = map[api.Service]string{api.MEDS: "cray-meds", api.REDS: "cray-reds", api.CRUS: "cray-crus"}
	clusterOf = map[api.Service]string{api.ExternalDNS: simcluster.ExternalDNSEtcd}
)

// Ledger watches the API server from just before a run starts and counts
// every DELETED event of a Job, an EtcdCluster or a Deployment's pod in
// namespace services. Each target generation may be deleted once; deleting
// an object created after the baseline (a re-created Job or EtcdCluster, a
// replacement pod) or an object that is not a target is a duplicate
// destructive step.
type Ledger struct {
	cluster  *simcluster.Cluster
	baseline map[types.UID]string // uid -> kind/name of every tracked object at the start
	targets  map[types.UID]bool   // baseline objects the run's services may delete once
	// What the targets looked like, to check they were restored.
	jobSpecs     map[string]any
	clusterSpecs map[string]any
	podsBefore   map[string]map[types.UID]bool
	readyBefore  map[string]int

	mu         sync.Mutex
	deletes    map[types.UID]int
	duplicates []string
	cancel     context.CancelFunc
	done       sync.WaitGroup
}

// Start records the baseline of the services' targets on cluster and starts
// watching from the baseline's resourceVersions, so no event is missed.
func Start(t testing.TB, cluster *simcluster.Cluster, services []api.Service) *Ledger {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	l := &Ledger{cluster: cluster, baseline: map[types.UID]string{}, targets: map[types.UID]bool{}, jobSpecs: map[string]any{}, clusterSpecs: map[string]any{},
		podsBefore: map[string]map[types.UID]bool{}, readyBefore: map[string]int{}, deletes: map[types.UID]int{}, cancel: cancel}
	jobs := cluster.Dynamic.Resource(kube.JobGVR).Namespace(simcluster.Namespace)
	ecs := cluster.Dynamic.Resource(kube.EtcdClusterGVR).Namespace(simcluster.Namespace)
	pods := cluster.Core.CoreV1().Pods(simcluster.Namespace)

	jobList, err := jobs.List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ecList, err := ecs.List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	podList, err := pods.List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	isTarget := func(kind, name string, labels map[string]string) bool {
		for _, s := range services {
			switch kind {
			case "Job":
				if jobOf[s] == name {
					return true
				}
			case "EtcdCluster":
				if clusterOf[s] == name {
					return true
				}
			case "Pod":
				if app := podsOf[s]; app != "" && labels[simcluster.NameLabel] == app {
					return true
				}
			}
		}
		return false
	}
	for _, j := range jobList.Items {
		l.baseline[j.GetUID()] = "Job/" + j.GetName()
		if isTarget("Job", j.GetName(), nil) {
			l.targets[j.GetUID()] = true
			l.jobSpecs[j.GetName()], _, _ = unstructured.NestedFieldCopy(j.Object, "spec", "template", "spec")
		}
	}
	for _, e := range ecList.Items {
		l.baseline[e.GetUID()] = "EtcdCluster/" + e.GetName()
		if isTarget("EtcdCluster", e.GetName(), nil) {
			l.targets[e.GetUID()] = true
			l.clusterSpecs[e.GetName()] = e.Object["spec"]
		}
	}
	for _, p := range podList.Items {
		if ownedByJob(&p) {
			continue
		}
		l.baseline[p.UID] = "Pod/" + p.Name
		if isTarget("Pod", p.Name, p.Labels) {
			l.targets[p.UID] = true
			app := p.Labels[simcluster.NameLabel]
			if l.podsBefore[app] == nil {
				l.podsBefore[app] = map[types.UID]bool{}
			}
			l.podsBefore[app][p.UID] = true
		}
	}
	for _, s := range services {
		if app := podsOf[s]; app != "" {
			var mine []corev1.Pod
			for _, p := range podList.Items {
				if p.Labels[simcluster.NameLabel] == app {
					mine = append(mine, p)
				}
			}
			l.readyBefore[app] = simcluster.ReadyPods(mine)
		}
	}
	watchers := []struct {
		rv string
		w  cache.WatchFuncWithContext
	}{
		{jobList.GetResourceVersion(), func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) { return jobs.Watch(ctx, o) }},
		{ecList.GetResourceVersion(), func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) { return ecs.Watch(ctx, o) }},
		{podList.ResourceVersion, func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) { return pods.Watch(ctx, o) }},
	}
	for _, w := range watchers {
		rw, err := watchtools.NewRetryWatcherWithContext(ctx, w.rv, &cache.ListWatch{WatchFuncWithContext: w.w})
		if err != nil {
			t.Fatal(err)
		}
		l.done.Add(1)
		go func() {
			defer l.done.Done()
			defer rw.Stop()
			for {
				select {
				case <-ctx.Done():
					return
				case ev, ok := <-rw.ResultChan():
					if !ok {
						return
					}
					if ev.Type == watch.Deleted {
						l.deleted(ev.Object)
					}
				}
			}
		}()
	}
	return l
}

func ownedByJob(o metav1.Object) bool {
	return slices.ContainsFunc(o.GetOwnerReferences(), func(r metav1.OwnerReference) bool { return r.Kind == string(kube.Job) })
}

func (l *Ledger) deleted(obj any) {
	m, err := meta.Accessor(obj)
	if err != nil || ownedByJob(m) {
		return // a Job's pods go with their Job: the Job's delete is what counts
	}
	kind := "Pod"
	if u, ok := obj.(*unstructured.Unstructured); ok {
		kind = u.GetKind()
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	uid := m.GetUID()
	l.deletes[uid]++
	what := fmt.Sprintf("%s/%s (uid %s)", kind, m.GetName(), uid)
	switch _, known := l.baseline[uid]; {
	case !known:
		if by := m.GetAnnotations()[kube.RecreatedByAnnotation]; by != "" {
			what += ", re-created by run " + by
		} else {
			what += ", created during the run"
		}
		l.duplicates = append(l.duplicates, what)
	case !l.targets[uid]:
		l.duplicates = append(l.duplicates, what+", not a target of the run")
	case l.deletes[uid] > 1:
		l.duplicates = append(l.duplicates, what+fmt.Sprintf(", deleted %d times", l.deletes[uid]))
	}
}

// Stop ends the watches and returns the duplicate destructive steps seen.
func (l *Ledger) Stop() []string {
	l.cancel()
	l.done.Wait()
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.duplicates)
}

// Lost checks every target against the cluster now: each Job and
// EtcdCluster exists with a new UID, the saved spec, marked as re-created by
// run and healthy; each Deployment has as many Ready pods as before and
// none of the old ones. It returns what is missing or wrong.
func (l *Ledger) Lost(ctx context.Context, run string) []string {
	cluster := l.cluster
	var out []string
	for name, spec := range l.jobSpecs {
		j, err := cluster.Dynamic.Resource(kube.JobGVR).Namespace(simcluster.Namespace).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			out = append(out, fmt.Sprintf("Job/%s: %v", name, err))
			continue
		}
		now, _, _ := unstructured.NestedFieldCopy(j.Object, "spec", "template", "spec")
		job, _ := cluster.Core.BatchV1().Jobs(simcluster.Namespace).Get(ctx, name, metav1.GetOptions{})
		if l.baseline[j.GetUID()] != "" || !testenv.EqualJSON(now, spec) || j.GetAnnotations()[kube.RecreatedByAnnotation] != run || job == nil || !simcluster.JobComplete(job) {
			out = append(out, fmt.Sprintf("Job/%s: uid %s (baseline: %v), same pod spec %v, recreated-by %q, complete %v",
				name, j.GetUID(), l.baseline[j.GetUID()] != "", testenv.EqualJSON(now, spec), j.GetAnnotations()[kube.RecreatedByAnnotation], job != nil && simcluster.JobComplete(job)))
		}
	}
	for name, spec := range l.clusterSpecs {
		e, err := cluster.Dynamic.Resource(kube.EtcdClusterGVR).Namespace(simcluster.Namespace).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			out = append(out, fmt.Sprintf("EtcdCluster/%s: %v", name, err))
			continue
		}
		phase, _, _ := unstructured.NestedString(e.Object, "status", "phase")
		if l.baseline[e.GetUID()] != "" || !testenv.EqualJSON(e.Object["spec"], spec) || phase != "Running" {
			out = append(out, fmt.Sprintf("EtcdCluster/%s: uid %s (baseline: %v), same spec %v, phase %q", name, e.GetUID(), l.baseline[e.GetUID()] != "", testenv.EqualJSON(e.Object["spec"], spec), phase))
		}
	}
	for app, old := range l.podsBefore {
		pods, err := cluster.Core.CoreV1().Pods(simcluster.Namespace).List(ctx, metav1.ListOptions{LabelSelector: simcluster.NameLabel + "=" + app})
		if err != nil {
			out = append(out, fmt.Sprintf("pods %s: %v", app, err))
			continue
		}
		left := 0
		for _, p := range pods.Items {
			if old[p.UID] {
				left++
			}
		}
		if ready := simcluster.ReadyPods(pods.Items); left > 0 || ready != l.readyBefore[app] {
			out = append(out, fmt.Sprintf("pods %s: %d Ready (before: %d), %d old pods left", app, ready, l.readyBefore[app], left))
		}
	}
	return out
}

// DuplicatesSoFar is how many duplicate destructive steps were seen until now.
func (l *Ledger) DuplicatesSoFar() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.duplicates)
}

// Deletes is how many DELETED events the object uid had until now.
func (l *Ledger) Deletes(uid types.UID) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.deletes[uid]
}
