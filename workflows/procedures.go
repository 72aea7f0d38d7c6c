package workflows

import (
	"slices"

	"go.temporal.io/sdk/workflow"

	"github.com/csmops/etcd-repopulate/internal/api"
)

// procedure is how a child workflow carries out one api.Procedure; each
// is declared beside its steps (recreate.go, pods.go, crus.go, orca.go,
// fasloader.go, cps.go, bos.go). The catalog (internal/catalog) says
// which service runs which procedure on which release.
type procedure struct {
	// steps lists the steps in order, gates included, so that status shows
	// what is still to come before it starts.
	steps func(ServiceInput) []string
	// gates lists the approval gates in the order they are reached; nil: none.
	gates func(ServiceInput) []string
	run   func(*serviceRun, workflow.Context) error
}

// procedures are the procedures by name.
var procedures = map[api.Procedure]procedure{
	api.RerunJob:            rerunJob,
	api.RestartPods:         restartPods,
	api.RecreateEtcdCluster: recreateEtcdCluster,
	api.RestartCRUS:         restartCRUS,
	api.RestartOrca:         restartOrca,
	api.RunFASLoaderAPI:     runFASLoader,
	api.RemountCPS:          remountCPS,
	api.RestoreBOSTemplates: restoreBOSTemplates,
	api.CheckBOSTemplates:   checkBOSTemplates,
}

func fixedSteps(steps ...string) func(ServiceInput) []string {
	return func(ServiceInput) []string { return slices.Clone(steps) }
}

// Steps lists the steps of a service in order, gates included, so that
// status shows what is still to come before it starts.
func Steps(in ServiceInput) []string {
	if p, ok := procedures[in.Plan.Procedure]; ok {
		return p.steps(in)
	}
	return nil
}

// Gates lists the approval gates of a service, in the order they are reached.
func Gates(in ServiceInput) []string {
	if p, ok := procedures[in.Plan.Procedure]; ok && p.gates != nil {
		return p.gates(in)
	}
	return nil
}
