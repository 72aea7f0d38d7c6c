package activities

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"go.temporal.io/sdk/temporal"

	"github.com/csmops/etcd-repopulate/internal/api"
	"github.com/csmops/etcd-repopulate/internal/kube"
)

// TestKubeErrorsKeepTheirApplicationErrorTypes: each of the library's typed
// errors becomes a non-retryable ApplicationError of the type the workflows
// and recorded histories know, with the library's message; anything else
// stays retryable.
func TestKubeErrorsKeepTheirApplicationErrorTypes(t *testing.T) {
	ref := api.ObjectRef{Namespace: "services", Name: "cray-reds-init"}
	cause := errors.New("the server rejected our request")
	cases := []struct {
		err       error
		wantType  string
		wantCause error
	}{
		{&kube.NamespaceNotFoundError{Namespace: "servicez"}, ErrNamespaceAbsent, nil},
		{&kube.CRDNotInstalledError{Kind: kube.EtcdCluster, GVR: kube.EtcdClusterGVR}, ErrCRDNotInstalled, nil},
		{&kube.NotFoundError{Kind: kube.Job, Ref: ref}, ErrObjectNotFound, nil},
		{&kube.EmptySelectorError{Namespace: "services"}, ErrEmptySelector, nil},
		{&kube.NoPodsError{Set: api.PodSet{Namespace: "services", Selector: "a=b"}}, ErrNoPods, nil},
		{&kube.ForbiddenError{What: "get Job", Err: cause}, ErrForbidden, nil},
		{&kube.UnauthorizedError{What: "get Job", Err: cause}, ErrUnauthorized, nil},
		{&kube.NotOursError{Kind: kube.Job, Ref: ref, UID: "u"}, ErrObjectExists, nil},
		{&kube.ReplacedError{Kind: kube.Job, Ref: ref, UID: "u"}, ErrObjectReplaced, nil},
		{&kube.ReplacedError{Kind: kube.Job, Ref: ref, UID: "u", Now: "v"}, ErrObjectReplaced, nil},
		{&kube.JobFailedError{Ref: ref, Reason: "BackoffLimitExceeded"}, ErrJobFailed, nil},
		{&kube.ClusterFailedError{Ref: ref, Reason: "lost quorum"}, ErrClusterFailed, nil},
		{&kube.TimeoutError{What: "Job to complete"}, ErrWaitTimedOut, nil},
		{&kube.BadSavedObjectError{Kind: kube.Job, Ref: ref, Err: cause}, ErrBadSavedObject, cause},
		{&kube.RejectedError{Kind: kube.Job, Ref: ref, Err: cause}, ErrCreateRejected, cause},
	}
	for _, tc := range cases {
		var appErr *temporal.ApplicationError
		if err := KubeError(tc.err); !errors.As(err, &appErr) {
			t.Errorf("%T: %v is not an ApplicationError", tc.err, err)
			continue
		}
		if appErr.Type() != tc.wantType || !appErr.NonRetryable() || appErr.Message() != tc.err.Error() {
			t.Errorf("%T: type %s, non-retryable %v, message %q; want %s, non-retryable, %q", tc.err, appErr.Type(), appErr.NonRetryable(), appErr.Message(), tc.wantType, tc.err.Error())
		}
		if got := errors.Unwrap(appErr); (tc.wantCause == nil) != (got == nil) || got != nil && got.Error() != tc.wantCause.Error() {
			t.Errorf("%T: cause %v, want %v", tc.err, got, tc.wantCause)
		}
	}

	transient := fmt.Errorf("get Job services/cray-reds-init: %w", context.DeadlineExceeded)
	if err := KubeError(transient); err != transient {
		t.Errorf("a transient error became %v", err)
	}
	if KubeError(nil) != nil {
		t.Error("nil became an error")
	}
}
