package fasloader

import (
	"github.com/csmops/etcd-repopulate/internal/api"
	"github.com/csmops/etcd-repopulate/internal/settings"
)

// FASSettings run the FAS loader through its API on every release, or a
// site's loader Job where job names one and preflight finds it (FAS removed
// the cray-fas-loader Job before CSM 1.0). Not rerunjob.JobSettings: job
// may be empty here, and the keys' docs say what they mean for FAS.
type FASSettings struct {
	Namespace string `json:"namespace"`
	Job       string `json:"job" doc:"name a loader Job to re-run it instead, if preflight finds it"`
	// CompleteTimeout bounds waiting for the loader (API or Job) to finish.
	CompleteTimeout settings.Duration `json:"completeTimeout" doc:"wait for the loader (API or Job) to finish"`
}

// Validate implements settings.Settings: no job is the loader API.
func (f *FASSettings) Validate(field string) []error {
	errs := settings.CheckName(field+".namespace", "namespace", f.Namespace)
	if f.Job != "" {
		errs = append(errs, settings.CheckName(field+".job", "Job", f.Job)...)
	}
	return append(errs, settings.CheckDuration(field+".completeTimeout", f.CompleteTimeout)...)
}

// Plan implements settings.Settings.
func (f *FASSettings) Plan(c settings.PlanContext) api.ServicePlan {
	p := api.ServicePlan{Service: c.Service, Procedure: api.RunFASLoaderAPI, Timings: c.Timings(f.CompleteTimeout)}
	if f.Job != "" {
		p.Object = api.ObjectRef{Namespace: f.Namespace, Name: f.Job}
	}
	return p
}
