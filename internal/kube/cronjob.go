package kube

import (
	"context"
	"fmt"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/csmops/etcd-repopulate/internal/api"
)

// CronJob is the kind of a periodic backup's schedule (read only).
const CronJob Kind = "CronJob"

// CronJobRuns is what a CronJob's status says of its runs.
type CronJobRuns struct {
	Schedule string
	Suspend  bool
	// LastSuccess is status.lastSuccessfulTime; zero: no run succeeded
	// since the CronJob was created (or the API server predates the field).
	LastSuccess time.Time
	// LastSchedule is status.lastScheduleTime; zero: never scheduled.
	LastSchedule time.Time
	Created      time.Time
}

// CronJobRuns reads the CronJob ref. A missing CronJob is NotFoundError, a
// read the worker's identity may not make ForbiddenError.
func (c *Client) CronJobRuns(ctx context.Context, ref api.ObjectRef) (CronJobRuns, error) {
	cj, err := c.Core.BatchV1().CronJobs(ref.Namespace).Get(ctx, ref.Name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return CronJobRuns{}, &NotFoundError{Kind: CronJob, Ref: ref}
	}
	if err != nil {
		return CronJobRuns{}, classify(err, fmt.Sprintf("get CronJob %s", ref))
	}
	out := CronJobRuns{Schedule: cj.Spec.Schedule, Created: cj.CreationTimestamp.Time}
	if cj.Spec.Suspend != nil {
		out.Suspend = *cj.Spec.Suspend
	}
	if t := cj.Status.LastSuccessfulTime; t != nil {
		out.LastSuccess = t.Time
	}
	if t := cj.Status.LastScheduleTime; t != nil {
		out.LastSchedule = t.Time
	}
	return out, nil
}
