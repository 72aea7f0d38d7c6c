package procedure

import (
	"slices"
	"time"

	"go.temporal.io/sdk/workflow"

	"github.com/csmops/etcd-repopulate/activities"
	"github.com/csmops/etcd-repopulate/internal/api"
)

// Procedure is how a child workflow carries out one api.Procedure, and
// what it needs from the worker: each is declared in its folder under
// procedures/ with its steps, activities and settings.
type Procedure struct {
	Name api.Procedure
	// Steps lists the steps in order, gates included, so that status shows
	// what is still to come before it starts.
	Steps func(Input) []string
	// Gates lists the approval gates in the order they are reached; nil: none.
	Gates func(Input) []string
	// RestoringGates are the gates whose approval undoes what an earlier
	// step destroyed (cps-reboot: the nodes are Off): an expired one fails
	// the service whatever gates.onDeadline says.
	RestoringGates []string
	Run            func(*Run, workflow.Context) error
	// Defaults fills the procedure's zero plan fields: a plan read from an
	// older run's history has zero in every field added since, and a zero
	// timeout, budget or batch size must never be used as one.
	Defaults func(*api.ServicePlan)
	// Needs is what preflight checks before a run starts.
	Needs Needs
	// Activities are the procedure's own activities by contract name
	// (internal/api); nil: it uses only shared ones.
	Activities func(k *activities.Kube, c *activities.CSM) map[string]any
	// Proof names the step whose message shows the service's data is back
	// and says what that step checked: the evidence of a service without
	// a data check of its own. Nil: the procedure proves nothing.
	Proof func(Input) (step, checked string)
}

// Check is a data check: the last step of a service whose procedure
// alone does not show that the data is back (a catalog entry names it;
// a plan names it in DataCheck). Its folder is procedures/datacheck.
type Check struct {
	Name api.DataCheck
	// Step is the name of the check's step.
	Step string
	// Run runs the step and sets the run's evidence, passed or not.
	Run func(*Run, workflow.Context) error
	// Checked says what the check looks at, for a dry run's step.
	Checked func(Input) string
	// Activities are the check's activities by contract name (internal/api).
	Activities func(k *activities.Kube, c *activities.CSM) map[string]any
}

// StepsOf lists p's steps for in; none for a procedure not known.
func (p Procedure) StepsOf(in Input) []string {
	if p.Steps == nil {
		return nil
	}
	return p.Steps(in)
}

// GatesOf lists p's gates for in.
func (p Procedure) GatesOf(in Input) []string {
	if p.Gates == nil {
		return nil
	}
	return p.Gates(in)
}

// OrDefault sets *d to def when it is not positive.
func OrDefault(d *time.Duration, def time.Duration) {
	if *d <= 0 {
		*d = def
	}
}

// FixedSteps is Steps for a procedure whose steps never vary.
func FixedSteps(steps ...string) func(Input) []string {
	return func(Input) []string { return slices.Clone(steps) }
}

// Needs is what a procedure needs before a run starts; preflight checks
// it for every service before anything changes.
type Needs struct {
	// Kube is the Kubernetes object preflight reads.
	Kube KubeObject
	// CSMAPI: the API gateway must accept the worker's credentials.
	CSMAPI bool
	// SSH: the worker's SSH settings must be usable.
	SSH bool
	// Note adds to the procedure's cell in docs/csm-releases.md.
	Note func(api.APIVersions) string
}

// KubeObject is what preflight reads of a plan.
type KubeObject string

// The objects preflight reads.
const (
	NoObject KubeObject = ""
	// PlanJob: the plan's Job (and its namespace).
	PlanJob KubeObject = "job"
	// PlanEtcdCluster: the plan's EtcdCluster (and its namespace).
	PlanEtcdCluster KubeObject = "etcdcluster"
	// PlanPods: the plan's pods (and their namespace).
	PlanPods KubeObject = "pods"
	// HMNFDPods: HMNFD's own pods, restarted when it is not ready.
	HMNFDPods KubeObject = "hmnfd-pods"
	// LoaderJobIfNamed: a FAS loader Job the config names; it decides
	// between the Job and the loader API.
	LoaderJobIfNamed KubeObject = "loader-job-if-named"
)
