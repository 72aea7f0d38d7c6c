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

// Register registers every activity under its contract name
// (internal/api), the one list a worker, a benchmark and a test share.
func Register(r Registry, k *Kube, c *CSM) {
	for name, fn := range Named(k, c) {
		r.RegisterActivityWithOptions(fn, activity.RegisterOptions{Name: name})
	}
}

// Named maps each contract name to its implementation.
func Named(k *Kube, c *CSM) map[string]any {
	return map[string]any{
		api.ActivityPreflight:              k.Preflight,
		api.ActivitySaveObject:             k.SaveObject,
		api.ActivityDeleteObject:           k.DeleteObject,
		api.ActivityCreateObject:           k.CreateObject,
		api.ActivityWaitJobComplete:        k.WaitJobComplete,
		api.ActivityWaitEtcdClusterRunning: k.WaitEtcdClusterRunning,
		api.ActivitySnapshotPods:           k.SnapshotPods,
		api.ActivityDeletePods:             k.DeletePods,
		api.ActivityWaitPodsReplaced:       k.WaitPodsReplaced,

		api.ActivityCheckAccess:             c.CheckAccess,
		api.ActivityCheckCRUSSessions:       c.CheckCRUSSessions,
		api.ActivityConfirmCRUSSessions:     c.ConfirmCRUSSessions,
		api.ActivityDiscoverOrcaTargets:     c.DiscoverOrcaTargets,
		api.ActivityRestartOrca:             c.RestartOrca,
		api.ActivityVerifySubscriptions:     c.VerifySubscriptions,
		api.ActivityStartFASLoader:          c.StartFASLoader,
		api.ActivityWaitFASLoader:           c.WaitFASLoader,
		api.ActivityFindCPSNodes:            c.FindCPSNodes,
		api.ActivityStartBOSSession:         c.StartBOSSession,
		api.ActivityWaitNodesState:          c.WaitNodesState,
		api.ActivityRestoreSessionTemplates: c.RestoreSessionTemplates,
		api.ActivityCheckSessionTemplates:   c.CheckSessionTemplates,
		api.ActivityDetectRelease:           c.DetectRelease,
		api.ActivityCheckHMNFDReady:         c.CheckHMNFDReady,
	}
}
