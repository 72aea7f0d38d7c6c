package kube

import (
	"errors"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/csmops/etcd-repopulate/internal/api"
)

// TestErrorMessages pins each typed error's text: these are the messages
// the activities reported before the library existed, and operators and
// docs/bad-input.md know them.
func TestErrorMessages(t *testing.T) {
	ref := api.ObjectRef{Namespace: "services", Name: "cray-reds-init"}
	cause := errors.New("boom")
	cases := []struct {
		err  error
		want string
	}{
		{&NamespaceNotFoundError{Namespace: "servicez"}, `namespace "servicez" not found: is this the CSM cluster? check --kubeconfig/--context and the namespace in the worker config`},
		{&CRDNotInstalledError{Kind: EtcdCluster, GVR: EtcdClusterGVR}, "the EtcdCluster CRD (etcdclusters.etcd.database.coreos.com, v1beta2) is not installed: is etcd-operator deployed on this cluster?"},
		{&NotFoundError{Kind: Job, Ref: ref}, "Job services/cray-reds-init not found: nothing to save, so nothing was deleted; check the name in the worker config or whether the chart that owns it is installed"},
		{&EmptySelectorError{Namespace: "services"}, "empty selector for pods in namespace services would match every pod: refusing"},
		{&NoPodsError{Set: api.PodSet{Namespace: "services", Selector: "app=x"}}, `no pods match "app=x" in namespace services: is the service deployed? check the selector in the worker config`},
		{&ForbiddenError{What: "get Job services/cray-reds-init", Err: cause}, "get Job services/cray-reds-init: boom; grant the worker's identity this verb on this resource (deploy/ has the Role)"},
		{&UnauthorizedError{What: "get namespace services", Err: cause}, "get namespace services: unauthorized: the worker's Kubernetes credentials were rejected (boom); check --kubeconfig/--context"},
		{&NotOursError{Kind: Job, Ref: ref, UID: "u2"}, "Job services/cray-reds-init exists (uid u2) but was not created by this run: someone else created it after the delete; compare it with the saved copy in the run's history before deleting it"},
		{&ReplacedError{Kind: Job, Ref: ref, UID: "u1"}, "Job services/cray-reds-init (uid u1) disappeared while waiting for it"},
		{&ReplacedError{Kind: Job, Ref: ref, UID: "u1", Now: "u2"}, "Job services/cray-reds-init was replaced while waiting for it (uid u2, expected u1)"},
		{&BadSavedObjectError{Kind: Job, Ref: ref, Err: cause}, "saved copy of Job services/cray-reds-init is not a Kubernetes object: boom"},
		{&RejectedError{Kind: Job, Ref: ref, Err: cause}, "the API server rejected the saved copy of Job services/cray-reds-init: boom; the copy is in this run's history (step save)"},
		{&JobFailedError{Ref: ref, Reason: "BackoffLimitExceeded", Message: "Job has reached the specified backoff limit"}, "Job services/cray-reds-init failed: BackoffLimitExceeded: Job has reached the specified backoff limit (kubectl -n services logs job/cray-reds-init)"},
		{&ClusterFailedError{Ref: ref, Reason: "lost quorum", State: `phase "Failed", 1/3 members ready, 2 unready`}, `EtcdCluster services/cray-reds-init failed: lost quorum (phase "Failed", 1/3 members ready, 2 unready); see the etcd-operator logs`},
		{&TimeoutError{Budget: time.Minute, What: "Job services/cray-reds-init to complete", State: "active 1, succeeded 0, failed 0"}, "timed out after 1m0s waiting for Job services/cray-reds-init to complete: active 1, succeeded 0, failed 0"},
	}
	for _, tc := range cases {
		if got := tc.err.Error(); got != tc.want {
			t.Errorf("%T:\n got %s\nwant %s", tc.err, got, tc.want)
		}
	}
	for _, err := range []error{&ForbiddenError{Err: cause}, &UnauthorizedError{Err: cause}, &BadSavedObjectError{Err: cause}, &RejectedError{Err: cause}} {
		if !errors.Is(err, cause) {
			t.Errorf("%T does not unwrap to client-go's error", err)
		}
	}
}

func TestKindsNameTheirResources(t *testing.T) {
	for kind, want := range map[Kind]schema.GroupVersionResource{Job: JobGVR, EtcdCluster: EtcdClusterGVR} {
		if got := kind.GVR(); got != want {
			t.Errorf("%s: %v, want %v", kind, got, want)
		}
	}
}
