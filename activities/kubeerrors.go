package activities

import (
	"errors"

	"go.temporal.io/sdk/temporal"

	"github.com/csmops/etcd-repopulate/internal/kube"
)

// KubeError turns internal/kube's typed errors, the failures that retrying
// cannot fix, into non-retryable ApplicationErrors of the types the
// workflows and recorded histories know, with the library's message. Any
// other error is returned as it is, for the retry policy.
func KubeError(err error) error {
	if err == nil {
		return nil
	}
	errType, cause := kubeErrorType(err)
	if errType == "" {
		return err
	}
	return temporal.NewNonRetryableApplicationError(err.Error(), errType, cause)
}

// kubeErrorType is the ApplicationError type of err, and the cause the
// error carries into history (only a rejected or unreadable saved copy
// keeps client-go's error as its cause); "" for a transient error.
func kubeErrorType(err error) (string, error) {
	var (
		badSaved *kube.BadSavedObjectError
		rejected *kube.RejectedError
	)
	switch {
	case isA[*kube.NamespaceNotFoundError](err):
		return ErrNamespaceAbsent, nil
	case isA[*kube.CRDNotInstalledError](err):
		return ErrCRDNotInstalled, nil
	case isA[*kube.NotFoundError](err):
		return ErrObjectNotFound, nil
	case isA[*kube.EmptySelectorError](err):
		return ErrEmptySelector, nil
	case isA[*kube.NoPodsError](err):
		return ErrNoPods, nil
	case isA[*kube.ForbiddenError](err):
		return ErrForbidden, nil
	case isA[*kube.UnauthorizedError](err):
		return ErrUnauthorized, nil
	case isA[*kube.NotOursError](err):
		return ErrObjectExists, nil
	case isA[*kube.ReplacedError](err):
		return ErrObjectReplaced, nil
	case isA[*kube.JobFailedError](err):
		return ErrJobFailed, nil
	case isA[*kube.ClusterFailedError](err):
		return ErrClusterFailed, nil
	case isA[*kube.TimeoutError](err):
		return ErrWaitTimedOut, nil
	case errors.As(err, &badSaved):
		return ErrBadSavedObject, badSaved.Err
	case errors.As(err, &rejected):
		return ErrCreateRejected, rejected.Err
	}
	return "", nil
}

func isA[T error](err error) bool {
	var target T
	return errors.As(err, &target)
}
