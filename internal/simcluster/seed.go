package simcluster

import (
	"context"
	"fmt"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/utils/ptr"

	"github.com/csmops/etcd-repopulate/internal/api"
	"github.com/csmops/etcd-repopulate/internal/catalog"
	"github.com/csmops/etcd-repopulate/internal/kube"
	"github.com/csmops/etcd-repopulate/internal/productcatalog"
)

// What Seed creates, named as on a CSM 1.0 system.
const (
	Namespace       = "services"
	NodeName        = "kwok-node-0"
	REDSInitJob     = "cray-reds-init"
	FASLoaderJob    = "cray-fas-loader"
	ExternalDNSEtcd = "cray-externaldns-etcd"
)

// Deployment is one Deployment Seed creates.
type Deployment struct {
	Name     string
	Labels   map[string]string
	Replicas int32
}

// Deployments are what Seed creates for the pods the catalog's services
// restart: one per pod set, named after its app.kubernetes.io/name, with
// one replica; cray-meds has two, so that a restart replaces several pods.
func Deployments() []Deployment {
	var out []Deployment
	for _, e := range catalog.Entries() {
		for _, set := range e.PodSets() {
			lbls, err := labels.ConvertSelectorToLabelsMap(set.Selector)
			if err != nil {
				panic(fmt.Sprintf("simcluster: %s's default selector %q: %v", e.Service, set.Selector, err)) // the catalog's test validates them
			}
			d := Deployment{Name: lbls[NameLabel], Labels: lbls, Replicas: 1}
			if d.Name == "" {
				d.Name = string(e.Service)
			}
			if d.Name == "cray-meds" {
				d.Replicas = 2
			}
			out = append(out, d)
		}
	}
	return out
}

// NameLabel selects a service's pods, as the runbook does.
const NameLabel = "app.kubernetes.io/name"

// Seed creates what the runbook's Kubernetes steps act on: the services
// namespace, a fake node, the Deployments of the pods the catalog's services restart, the REDS init and
// FAS loader Jobs, the EtcdCluster CRD and the services' EtcdClusters of CSM 1.0
// (EtcdClusters). It waits until the pods are Ready, the Jobs complete and
// the clusters are Running (the last needs RunEtcdOperator). It needs a cluster started with Controllers.
func (c *Cluster) Seed(ctx context.Context) error {
	if err := c.SeedObjects(ctx); err != nil {
		return err
	}
	return c.WaitSeeded(ctx, 90*time.Second)
}

// SeedObjects creates the objects without waiting for them.
func (c *Cluster) SeedObjects(ctx context.Context) error {
	core := c.Core
	if _, err := core.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: Namespace}}, metav1.CreateOptions{}); ignoreExists(err) != nil {
		return fmt.Errorf("namespace: %w", err)
	}
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{
		Name:        NodeName,
		Annotations: map[string]string{FakeNodeAnnotation: "fake"},
		Labels:      map[string]string{"type": "kwok", "kubernetes.io/hostname": NodeName},
	}}
	if _, err := core.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{}); ignoreExists(err) != nil {
		return fmt.Errorf("node: %w", err)
	}
	for _, dep := range Deployments() {
		d := &appsv1.Deployment{
			ObjectMeta: metav1.ObjectMeta{Name: dep.Name, Namespace: Namespace, Labels: dep.Labels},
			Spec: appsv1.DeploymentSpec{
				Replicas: ptr.To(dep.Replicas),
				Selector: &metav1.LabelSelector{MatchLabels: dep.Labels},
				Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: dep.Labels}, Spec: podSpec(dep.Name, corev1.RestartPolicyAlways)},
			},
		}
		if _, err := core.AppsV1().Deployments(Namespace).Create(ctx, d, metav1.CreateOptions{}); ignoreExists(err) != nil {
			return fmt.Errorf("deployment %s: %w", dep.Name, err)
		}
	}
	for _, name := range []string{REDSInitJob, FASLoaderJob} {
		if err := c.CreateJob(ctx, name); ignoreExists(err) != nil {
			return fmt.Errorf("job %s: %w", name, err)
		}
	}
	if err := c.InstallEtcdClusterCRD(ctx); err != nil {
		return err
	}
	for _, name := range EtcdClusters() {
		if _, err := c.Dynamic.Resource(kube.EtcdClusterGVR).Namespace(Namespace).Create(ctx, EtcdClusterObject(name), metav1.CreateOptions{}); ignoreExists(err) != nil {
			return fmt.Errorf("etcdcluster %s: %w", name, err)
		}
	}
	return nil
}

// EtcdClusters names the EtcdClusters Seed creates: every service's that
// the catalog says CSM 1.0 runs under etcd-operator (cray-externaldns-etcd
// among them).
func EtcdClusters() []string {
	var out []string
	for _, e := range catalog.Entries() {
		if c := e.EtcdOn(api.CSM10); c.Kind == catalog.EtcdOperator {
			out = append(out, c.Name)
		}
	}
	return out
}

// CatalogVersions are product-catalog CSM keys of a system on each
// release, upgrades included, as docs-csm's examples show them.
var CatalogVersions = map[api.Release][]string{
	api.CSM10: {"1.0.1", "1.0.11"},
	api.CSM12: {"1.0.11", "1.2.0", "1.2.2"},
	api.CSM13: {"1.2.2", "1.3.0", "1.4.0-rc.2", "1.4.4"},
	api.CSM15: {"1.4.4", "1.5.0-rc.1", "1.5.0", "1.5.2"},
	api.CSM16: {"1.5.2", "1.6.0-rc.3", "1.6.0"},
}

// SeedProductCatalog creates ConfigMap services/cray-product-catalog with
// key csm listing versions, as CSM's installer leaves it.
func (c *Cluster) SeedProductCatalog(ctx context.Context, versions []string) error {
	var data strings.Builder
	for _, v := range versions {
		data.WriteString(productcatalog.Entry(v))
	}
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: productcatalog.ConfigMap, Namespace: productcatalog.Namespace}, Data: map[string]string{productcatalog.Key: data.String()}}
	_, err := c.Core.CoreV1().ConfigMaps(productcatalog.Namespace).Create(ctx, cm, metav1.CreateOptions{})
	return err
}

// CreateJob creates a Job like the Helm charts' init jobs.
func (c *Cluster) CreateJob(ctx context.Context, name string) error {
	job := &batchv1.Job{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: Namespace, Labels: map[string]string{NameLabel: name}},
		Spec: batchv1.JobSpec{
			BackoffLimit: ptr.To[int32](2),
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{NameLabel: name}},
				Spec:       podSpec(name, corev1.RestartPolicyNever),
			},
		},
	}
	_, err := c.Core.BatchV1().Jobs(Namespace).Create(ctx, job, metav1.CreateOptions{})
	return err
}

// podSpec pins pods to the kwok node, so no scheduler is needed.
func podSpec(name string, restart corev1.RestartPolicy) corev1.PodSpec {
	return corev1.PodSpec{
		NodeName:      NodeName,
		RestartPolicy: restart,
		Containers:    []corev1.Container{{Name: name, Image: "registry.local/cray/" + name + ":1.0.0"}},
	}
}

// InstallEtcdClusterCRD registers etcd-operator's EtcdCluster kind and waits
// until it is served.
func (c *Cluster) InstallEtcdClusterCRD(ctx context.Context) error {
	u := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "apiextensions.k8s.io/v1",
		"kind":       "CustomResourceDefinition",
		"metadata":   map[string]any{"name": kube.EtcdClusterGVR.GroupResource().String()},
		"spec": map[string]any{
			"group": kube.EtcdClusterGVR.Group,
			"names": map[string]any{"plural": kube.EtcdClusterGVR.Resource, "singular": "etcdcluster", "kind": string(kube.EtcdCluster), "listKind": string(kube.EtcdCluster) + "List", "shortNames": []any{"etcd"}},
			"scope": "Namespaced",
			"versions": []any{map[string]any{
				"name": kube.EtcdClusterGVR.Version, "served": true, "storage": true,
				"schema":       map[string]any{"openAPIV3Schema": map[string]any{"type": "object", "x-kubernetes-preserve-unknown-fields": true}},
				"subresources": map[string]any{"status": map[string]any{}},
			}},
		},
	}}
	crdGVR := schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}
	if _, err := c.Dynamic.Resource(crdGVR).Create(ctx, u, metav1.CreateOptions{}); ignoreExists(err) != nil {
		return fmt.Errorf("etcdcluster CRD: %w", err)
	}
	return poll(ctx, 30*time.Second, "EtcdCluster CRD to be served", func() (bool, error) {
		_, err := c.Core.Discovery().ServerResourcesForGroupVersion(kube.EtcdClusterGVR.GroupVersion().String())
		return err == nil, nil
	})
}

// ExternalDNSEtcdCluster is the runbook's example EtcdCluster.
func ExternalDNSEtcdCluster() *unstructured.Unstructured { return EtcdClusterObject(ExternalDNSEtcd) }

// EtcdClusterObject is an EtcdCluster named name shaped like the runbook's
// example (the cray-service chart makes them all alike).
func EtcdClusterObject(name string) *unstructured.Unstructured {
	return &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": kube.EtcdClusterGVR.GroupVersion().String(),
		"kind":       string(kube.EtcdCluster),
		"metadata": map[string]any{
			"name": name, "namespace": Namespace,
			"annotations": map[string]any{"etcd.database.coreos.com/scope": "clusterwide"},
			"labels":      map[string]any{NameLabel: name},
		},
		"spec": map[string]any{
			"pod": map[string]any{
				"ClusterDomain": "",
				"annotations":   map[string]any{"sidecar.istio.io/inject": "false"},
				"busyboxImage":  "registry.local/library/busybox:1.28.0-glibc",
				"persistentVolumeClaimSpec": map[string]any{
					"accessModes": []any{"ReadWriteOnce"},
					"dataSource":  nil,
					"resources":   map[string]any{"requests": map[string]any{"storage": "1Gi"}},
				},
				"resources": map[string]any{},
			},
			"repository": "registry.local/coreos/etcd",
			"size":       int64(3),
			"version":    "3.3.8",
		},
	}}
}

// WaitSeeded waits until the seeded workloads are healthy; on time-out the
// error says which one is not.
func (c *Cluster) WaitSeeded(ctx context.Context, timeout time.Duration) error {
	var last string
	err := poll(ctx, timeout, "seeded workloads to be healthy", func() (bool, error) {
		last = c.unhealthy(ctx)
		return last == "", nil
	})
	if err != nil {
		return fmt.Errorf("%w: %s", err, last)
	}
	return nil
}

// unhealthy names the first seeded workload that is not healthy, or "".
func (c *Cluster) unhealthy(ctx context.Context) string {
	for _, dep := range Deployments() {
		pods, err := c.Core.CoreV1().Pods(Namespace).List(ctx, metav1.ListOptions{LabelSelector: labels.SelectorFromSet(dep.Labels).String()})
		if err != nil {
			return err.Error()
		}
		if n := ReadyPods(pods.Items); n != int(dep.Replicas) || len(pods.Items) != int(dep.Replicas) {
			return fmt.Sprintf("deployment %s: %d pods, %d Ready, want %d", dep.Name, len(pods.Items), n, dep.Replicas)
		}
	}
	for _, name := range []string{REDSInitJob, FASLoaderJob} {
		job, err := c.Core.BatchV1().Jobs(Namespace).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err.Error()
		}
		if !JobComplete(job) {
			return fmt.Sprintf("job %s not complete: %+v", name, job.Status)
		}
	}
	for _, name := range EtcdClusters() {
		ec, err := c.Dynamic.Resource(kube.EtcdClusterGVR).Namespace(Namespace).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err.Error()
		}
		if phase, _, _ := unstructured.NestedString(ec.Object, "status", "phase"); phase != "Running" {
			return fmt.Sprintf("etcdcluster %s phase %q", name, phase)
		}
	}
	return ""
}

// ReadyPods counts Running pods with the Ready condition, not being deleted.
func ReadyPods(pods []corev1.Pod) int {
	n := 0
	for _, p := range pods {
		if p.DeletionTimestamp != nil || p.Status.Phase != corev1.PodRunning {
			continue
		}
		for _, cond := range p.Status.Conditions {
			if cond.Type == corev1.PodReady && cond.Status == corev1.ConditionTrue {
				n++
			}
		}
	}
	return n
}

// JobComplete reports a Complete=True condition.
func JobComplete(job *batchv1.Job) bool {
	for _, cond := range job.Status.Conditions {
		if cond.Type == batchv1.JobComplete && cond.Status == corev1.ConditionTrue {
			return true
		}
	}
	return false
}

// RunEtcdOperator plays etcd-operator until ctx ends: an EtcdCluster with no
// status phase is marked Creating, then after delay Running with spec.size
// ready members.
func (c *Cluster) RunEtcdOperator(ctx context.Context, delay time.Duration) {
	seen := map[string]time.Time{}
	for ctx.Err() == nil {
		list, err := c.Dynamic.Resource(kube.EtcdClusterGVR).Namespace(metav1.NamespaceAll).List(ctx, metav1.ListOptions{})
		if err == nil {
			for i := range list.Items {
				c.operate(ctx, &list.Items[i], seen, delay)
			}
		}
		select {
		case <-ctx.Done():
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func (c *Cluster) operate(ctx context.Context, ec *unstructured.Unstructured, seen map[string]time.Time, delay time.Duration) {
	uid := string(ec.GetUID())
	phase, _, _ := unstructured.NestedString(ec.Object, "status", "phase")
	if phase == "Running" {
		return
	}
	first, ok := seen[uid]
	if !ok {
		seen[uid] = time.Now()
		first = seen[uid]
	}
	size, _, _ := unstructured.NestedInt64(ec.Object, "spec", "size")
	status := map[string]any{"phase": "Creating", "size": int64(0), "members": map[string]any{"ready": []any{}}}
	if time.Since(first) >= delay {
		var ready []any
		for i := range size {
			ready = append(ready, fmt.Sprintf("%s-%04d", ec.GetName(), i))
		}
		status = map[string]any{
			"phase": "Running", "size": size, "serviceName": ec.GetName() + "-client", "clientPort": int64(2379),
			"members":        map[string]any{"ready": ready},
			"currentVersion": ec.Object["spec"].(map[string]any)["version"],
			"conditions":     []any{map[string]any{"type": "Available", "status": "True"}},
		}
	} else if phase == "Creating" {
		return
	}
	ec.Object["status"] = status
	_, _ = c.Dynamic.Resource(kube.EtcdClusterGVR).Namespace(ec.GetNamespace()).UpdateStatus(ctx, ec, metav1.UpdateOptions{})
}

func poll(ctx context.Context, timeout time.Duration, what string, check func() (bool, error)) error {
	deadline := time.Now().Add(timeout)
	for {
		ok, err := check()
		if err != nil {
			return err
		}
		if ok {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("timed out after %s waiting for %s", timeout, what)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func ignoreExists(err error) error {
	if apierrors.IsAlreadyExists(err) {
		return nil
	}
	return err
}

// Fingerprint maps every pod, Job and EtcdCluster in the services namespace
// to its UID and resourceVersion: equal fingerprints mean nothing changed.
func (c *Cluster) Fingerprint(ctx context.Context) (map[string]string, error) {
	out := map[string]string{}
	pods, err := c.Core.CoreV1().Pods(Namespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, err
	}
	for _, p := range pods.Items {
		out["pod/"+p.Name] = string(p.UID) + "@" + p.ResourceVersion
	}
	jobs, err := c.Core.BatchV1().Jobs(Namespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, err
	}
	for _, j := range jobs.Items {
		out["job/"+j.Name] = string(j.UID) + "@" + j.ResourceVersion
	}
	ecs, err := c.Dynamic.Resource(kube.EtcdClusterGVR).Namespace(Namespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, err
	}
	for _, e := range ecs.Items {
		out["etcdcluster/"+e.GetName()] = string(e.GetUID()) + "@" + e.GetResourceVersion()
	}
	return out, nil
}
