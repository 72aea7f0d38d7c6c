package rerunjob

import (
	"github.com/csmops/etcd-repopulate/internal/api"
	"github.com/csmops/etcd-repopulate/internal/settings"
)

// JobSettings re-run a Job (procedure rerun-job).
type JobSettings struct {
	Namespace string `json:"namespace"`
	Job       string `json:"job"`
	// CompleteTimeout bounds waiting for the re-created Job to complete.
	CompleteTimeout settings.Duration `json:"completeTimeout" doc:"wait for the re-created Job to complete"`
}

// Validate implements settings.Settings.
func (j *JobSettings) Validate(field string) []error {
	errs := settings.CheckName(field+".namespace", "namespace", j.Namespace)
	errs = append(errs, settings.CheckName(field+".job", "Job", j.Job)...)
	return append(errs, settings.CheckDuration(field+".completeTimeout", j.CompleteTimeout)...)
}

// Plan implements settings.Settings.
func (j *JobSettings) Plan(c settings.PlanContext) api.ServicePlan {
	return api.ServicePlan{Service: c.Service, Procedure: api.RerunJob, Object: api.ObjectRef{Namespace: j.Namespace, Name: j.Job}, Timings: c.Timings(j.CompleteTimeout)}
}
