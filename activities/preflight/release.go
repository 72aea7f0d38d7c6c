package preflight

import (
	"context"
	"errors"
	"fmt"

	"go.temporal.io/sdk/temporal"

	"github.com/csmops/etcd-repopulate/activities"
	"github.com/csmops/etcd-repopulate/internal/api"
	"github.com/csmops/etcd-repopulate/internal/csm"
	"github.com/csmops/etcd-repopulate/internal/productcatalog"
)

// ErrRelease: the release cannot be told, or the APIs contradict it.
const ErrRelease = "ReleaseUnknown"

// DetectReleaseRequest is empty: the setting is the worker's.
type DetectReleaseRequest struct{}

// DetectRelease finds the CSM release the run acts for: the configured one,
// or with auto the product catalog's highest CSM version, confirmed by
// probing which BOS and HMNFD API versions the gateway serves. A release
// the probes contradict, or none at all, fails non-retryably before
// anything changes.
func (a *Activities) DetectRelease(ctx context.Context, _ DetectReleaseRequest) (api.ReleaseDetection, error) {
	configured := a.Config.Release
	if configured == "" {
		configured = api.ReleaseAuto
	}
	var cat productcatalog.Catalog
	if configured == api.ReleaseAuto {
		if a.Kube.Core == nil {
			cat.Note = "no Kubernetes client"
		} else {
			var err error
			if cat, err = productcatalog.Read(ctx, a.Kube.Core); err != nil {
				var forbidden productcatalog.ErrForbidden
				if errors.As(err, &forbidden) {
					return api.ReleaseDetection{}, temporal.NewNonRetryableApplicationError(err.Error(), activities.ErrPreflight, nil)
				}
				return api.ReleaseDetection{}, err // transient: retried
			}
		}
	}
	var probes *api.ReleaseProbes
	probeNote := ""
	if cl, err := a.CSM.APIClient(); err != nil {
		probeNote = activities.ErrorText(err)
	} else if p, err := cl.Probe(ctx); err != nil {
		if csm.Retryable(err) {
			return api.ReleaseDetection{}, err
		}
		probeNote = err.Error()
	} else {
		probes = &p
	}
	d, err := api.DecideRelease(configured, cat.Highest, cat.Note, probes, probeNote)
	if err != nil {
		return api.ReleaseDetection{}, temporal.NewNonRetryableApplicationError(err.Error(), ErrRelease, nil)
	}
	if cat.Versions > 1 {
		d.How += fmt.Sprintf(" [the catalog lists %d CSM versions]", cat.Versions)
	}
	return d, nil
}
