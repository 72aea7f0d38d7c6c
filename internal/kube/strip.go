package kube

import (
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// serverSetFields are written by the API server; an object created again must
// not carry them (resourceVersion, for one, makes the create fail).
var serverSetFields = [][]string{
	{"status"},
	{"metadata", "uid"},
	{"metadata", "selfLink"},
	{"metadata", "resourceVersion"},
	{"metadata", "generation"},
	{"metadata", "creationTimestamp"},
	{"metadata", "managedFields"},
	{"metadata", "deletionTimestamp"},
	{"metadata", "deletionGracePeriodSeconds"},
}

// jobControllerLabels tie a Job's pod template to the old Job's UID. The API
// server refuses a new Job whose template still has them; since Kubernetes
// 1.27 both must go (the CSM 1.0 jq line removes only the first).
var jobControllerLabels = []string{"controller-uid", "batch.kubernetes.io/controller-uid"}

// StripForCreate removes from obj what the API server set or derived from the
// old object's identity, and returns the removed paths in jq notation. Labels
// such as job-name stay: the server accepts them and they keep selectors of
// other tools working.
func StripForCreate(kind Kind, obj *unstructured.Unstructured) []string {
	var removed []string
	drop := func(path ...string) {
		if _, found, _ := unstructured.NestedFieldNoCopy(obj.Object, path...); found {
			unstructured.RemoveNestedField(obj.Object, path...)
			removed = append(removed, jqPath(path))
		}
	}
	for _, path := range serverSetFields {
		drop(path...)
	}
	if kind == Job {
		// The selector was generated from the old UID; the server generates a
		// new one unless spec.manualSelector says the owner wrote it.
		if manual, _, _ := unstructured.NestedBool(obj.Object, "spec", "manualSelector"); !manual {
			drop("spec", "selector")
		}
		for _, label := range jobControllerLabels {
			drop("spec", "template", "metadata", "labels", label)
			drop("metadata", "labels", label)
		}
	}
	return removed
}

func jqPath(path []string) string {
	out := ""
	for _, p := range path {
		if isIdent(p) {
			out += "." + p
		} else {
			out += `["` + p + `"]`
		}
	}
	return out
}

func isIdent(s string) bool {
	for i, r := range s {
		if !(r == '_' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || i > 0 && r >= '0' && r <= '9') {
			return false
		}
	}
	return s != ""
}
