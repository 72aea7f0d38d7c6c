package workflows

import (
	"fmt"

	"go.temporal.io/sdk/activity"

	"github.com/csmops/etcd-repopulate/activities"
	"github.com/csmops/etcd-repopulate/activities/preflight"
	"github.com/csmops/etcd-repopulate/internal/api"
	"github.com/csmops/etcd-repopulate/internal/catalog"
	"github.com/csmops/etcd-repopulate/internal/config"
)

// Workers is what a worker's activities are built from: its configuration
// and its two clients.
type Workers struct {
	Config config.Config
	Kube   *activities.Kube
	CSM    *activities.CSM
}

// RegisterActivities registers every activity under its contract name
// (internal/api): preflight's, the shared ones and each procedure's in
// the catalog, the one list a worker, a benchmark and a test share.
func RegisterActivities(r activities.Registry, w Workers) {
	for name, fn := range NamedActivities(w) {
		r.RegisterActivityWithOptions(fn, activity.RegisterOptions{Name: name})
	}
}

// NamedActivities maps each contract name to its implementation. A name
// given twice is a programming error: two procedures claiming one name.
func NamedActivities(w Workers) map[string]any {
	pre := &preflight.Activities{Config: w.Config, Kube: w.Kube, CSM: w.CSM}
	named := map[string]any{
		api.ActivityPreflight:     pre.Preflight,
		api.ActivityCheckAccess:   pre.CheckAccess,
		api.ActivityDetectRelease: pre.DetectRelease,
	}
	add := func(from string, m map[string]any) {
		for name, fn := range m {
			if _, dup := named[name]; dup {
				panic(fmt.Sprintf("activity %s is registered twice (again by %s)", name, from))
			}
			named[name] = fn
		}
	}
	add("activities.Shared", activities.Shared(w.Kube))
	for _, p := range catalog.Procedures() {
		if p.Activities != nil {
			add(string(p.Name), p.Activities(w.Kube, w.CSM))
		}
	}
	for _, c := range catalog.DataChecks() {
		add(string(c.Name), c.Activities(w.Kube, w.CSM))
	}
	return named
}
