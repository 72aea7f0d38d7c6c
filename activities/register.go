package activities

import (
	"go.temporal.io/sdk/activity"

	"github.com/csmops/etcd-repopulate/internal/api"
)

// Registry is where activities are registered: a worker, a replayer or the
// SDK's test environments.
type Registry interface {
	RegisterActivityWithOptions(a any, options activity.RegisterOptions)
}

// Shared maps the contract name (internal/api) of each activity several
// procedures use to its implementation; each procedure names its own
// (workflows.RegisterActivities registers them all).
func Shared(k *Kube) map[string]any {
	return map[string]any{
		api.ActivitySaveObject:             k.SaveObject,
		api.ActivityDeleteObject:           k.DeleteObject,
		api.ActivityCreateObject:           k.CreateObject,
		api.ActivityWaitJobComplete:        k.WaitJobComplete,
		api.ActivityWaitEtcdClusterRunning: k.WaitEtcdClusterRunning,
	}
}
