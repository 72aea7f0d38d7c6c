package kube

import (
	"slices"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

func TestStripForCreate(t *testing.T) {
	job := func(manual bool) *unstructured.Unstructured {
		return &unstructured.Unstructured{Object: map[string]any{
			"metadata": map[string]any{"name": "cray-reds-init", "uid": "u", "resourceVersion": "7", "creationTimestamp": "t", "generation": int64(1), "managedFields": []any{},
				"labels": map[string]any{"app.kubernetes.io/name": "cray-reds-init"}, "finalizers": []any{"keep"}},
			"spec": map[string]any{
				"manualSelector": manual,
				"selector":       map[string]any{"matchLabels": map[string]any{"batch.kubernetes.io/controller-uid": "u"}},
				"template": map[string]any{"metadata": map[string]any{"labels": map[string]any{
					"controller-uid": "u", "batch.kubernetes.io/controller-uid": "u", "job-name": "cray-reds-init", "batch.kubernetes.io/job-name": "cray-reds-init",
				}}},
			},
			"status": map[string]any{"succeeded": int64(1)},
		}}
	}
	obj := job(false)
	removed := StripForCreate(Job, obj)
	want := []string{".status", ".metadata.uid", ".metadata.resourceVersion", ".metadata.generation", ".metadata.creationTimestamp", ".metadata.managedFields",
		".spec.selector", `.spec.template.metadata.labels["controller-uid"]`, `.spec.template.metadata.labels["batch.kubernetes.io/controller-uid"]`}
	if !slices.Equal(removed, want) {
		t.Errorf("removed %q\nwant    %q", removed, want)
	}
	labels, _, _ := unstructured.NestedStringMap(obj.Object, "spec", "template", "metadata", "labels")
	if labels["job-name"] == "" || labels["batch.kubernetes.io/job-name"] == "" {
		t.Errorf("job-name labels must stay: %v", labels)
	}
	if obj.GetFinalizers()[0] != "keep" || obj.GetName() != "cray-reds-init" {
		t.Error("user-set metadata must stay")
	}

	manual := job(true)
	StripForCreate(Job, manual)
	if _, found, _ := unstructured.NestedMap(manual.Object, "spec", "selector"); !found {
		t.Error("a manual selector is the owner's and must stay")
	}

	// Not a Job: the selector and labels of any other kind are left alone.
	other := job(false)
	StripForCreate(EtcdCluster, other)
	if _, found, _ := unstructured.NestedMap(other.Object, "spec", "selector"); !found {
		t.Error("EtcdCluster strip touched spec.selector")
	}
	if len(StripForCreate(EtcdCluster, other)) != 0 {
		t.Error("stripping twice removed something the second time")
	}
}
