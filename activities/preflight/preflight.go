// Package preflight holds the activities that run before anything
// changes: which CSM release a run acts for, and whether every object,
// credential and API the services' procedures need is there.
package preflight

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"go.temporal.io/sdk/temporal"

	"github.com/csmops/etcd-repopulate/activities"
	"github.com/csmops/etcd-repopulate/internal/api"
	"github.com/csmops/etcd-repopulate/internal/catalog"
	"github.com/csmops/etcd-repopulate/internal/config"
	"github.com/csmops/etcd-repopulate/internal/csm"
	"github.com/csmops/etcd-repopulate/internal/hostrange"
	"github.com/csmops/etcd-repopulate/workflows/procedure"
)

// CSMPreflightRequest names the plans that need the API or SSH.
type CSMPreflightRequest struct {
	Plans []api.ServicePlan `json:"plans"`
}

// CheckAccess checks, before anything changes, that the API gateway accepts
// the worker's credentials and that SSH is usable, for the plans that need
// them. CRUS not installed is not a problem here: its service skips itself.
func (a *Activities) CheckAccess(ctx context.Context, req CSMPreflightRequest) (activities.Outcome, error) {
	var needAPI, needSSH []string
	for _, p := range req.Plans {
		needs := catalog.NeedsOf(p.Procedure)
		// A data check reads the service through the CSM API.
		if needs.CSMAPI || p.DataCheck != "" {
			needAPI = append(needAPI, string(p.Service))
		}
		if needs.SSH {
			needSSH = append(needSSH, string(p.Service))
		}
		if p.HMNFD == nil {
			continue
		}
		for _, g := range p.HMNFD.NCNGroups {
			if _, err := hostrange.Expand(g); err != nil {
				return activities.Outcome{}, temporal.NewNonRetryableApplicationError(fmt.Sprintf("%s: NCN group: %v", p.Service, err), activities.ErrBadHostRange, nil)
			}
		}
	}
	var problems []string
	if len(needAPI) > 0 {
		if cl, err := a.CSM.APIClient(); err != nil {
			problems = append(problems, fmt.Sprintf("%s: %s", strings.Join(needAPI, ", "), activities.ErrorText(err)))
		} else if err := cl.Authenticate(ctx); err != nil {
			if csm.Retryable(err) {
				return activities.Outcome{}, err
			}
			problems = append(problems, fmt.Sprintf("%s: %v", strings.Join(needAPI, ", "), err))
		}
	}
	if len(needSSH) > 0 {
		if _, err := a.CSM.SSHRunner(); err != nil {
			problems = append(problems, fmt.Sprintf("%s: %s", strings.Join(needSSH, ", "), activities.ErrorText(err)))
		}
	}
	if len(problems) > 0 {
		return activities.Outcome{}, temporal.NewNonRetryableApplicationError(
			"preflight found problems, nothing was changed:\n  "+strings.Join(problems, "\n  "), activities.ErrPreflight, nil)
	}
	return activities.NewOutcome(ctx, "CSM API and SSH ready for %d services", len(req.Plans)), nil
}

// Activities are the checks before a run: they read the worker's
// configuration and both clients, and change nothing.
type Activities struct {
	Config config.Config
	Kube   *activities.Kube
	CSM    *activities.CSM
}

// PreflightRequest names the services of a run and the release it acts for.
type PreflightRequest struct {
	Services []api.Service `json:"services"`
	// Release is what DetectRelease found; empty in runs started before
	// releases were detected.
	Release api.Release `json:"release,omitempty"`
}

// PreflightResult is the resolved plan of each service.
type PreflightResult struct {
	// Release is the CSM release the plans were resolved for.
	Release api.Release `json:"release,omitempty"`
	// Profile is what results recorded before releases carried instead.
	Profile string            `json:"profile,omitempty"`
	Plans   []api.ServicePlan `json:"plans"`
	// Notes say what preflight decided beyond the configuration (which
	// FAS procedure, and why).
	Notes []string `json:"notes,omitempty"`
}

// RunRelease is the release a recorded result names, old ones included.
func (r PreflightResult) RunRelease() api.Release {
	if r.Release != "" {
		return r.Release
	}
	return api.Release(r.Profile)
}

// Preflight resolves the worker's configuration into each service's plan for
// the run's release and checks, before anything is touched, that every
// object the plans need is there and readable. Every problem is reported at
// once, so that a run either starts with all its targets present or changes
// nothing at all.
func (a *Activities) Preflight(ctx context.Context, req PreflightRequest) (PreflightResult, error) {
	release := req.Release
	if release == "" {
		release = a.Config.Release
	}
	if !catalog.KnownRelease(release) {
		return PreflightResult{}, temporal.NewNonRetryableApplicationError(fmt.Sprintf(
			"this run was started before the worker detected CSM releases and the worker's release setting is %q: start the run again, or set release: in the worker config", release), activities.ErrPreflight, nil)
	}
	res := PreflightResult{Release: release}
	var problems []string
	for _, s := range req.Services {
		plan, note, err := a.checkTargets(ctx, a.Config.Plan(release, s))
		if note != "" {
			res.Notes = append(res.Notes, note)
		}
		res.Plans = append(res.Plans, plan)
		if err == nil {
			continue
		}
		var appErr *temporal.ApplicationError
		if !errors.As(err, &appErr) || !appErr.NonRetryable() {
			return PreflightResult{}, err // transient: let the retry policy try again
		}
		problems = append(problems, fmt.Sprintf("%s: %s", s, appErr.Message()))
	}
	if len(problems) > 0 {
		return PreflightResult{}, temporal.NewNonRetryableApplicationError(
			"preflight found problems, nothing was changed:\n  "+strings.Join(problems, "\n  "), activities.ErrPreflight, nil)
	}
	return res, nil
}

// checkTargets reads the objects a plan's procedure needs (the catalog
// says which), and for a FAS loader Job the config names, whether it
// exists: that decides the FAS procedure.
func (a *Activities) checkTargets(ctx context.Context, plan api.ServicePlan) (api.ServicePlan, string, error) {
	var err error
	switch catalog.NeedsOf(plan.Procedure).Kube {
	case procedure.PlanJob:
		if err = a.Kube.CheckNamespace(ctx, plan.Object.Namespace); err == nil {
			_, err = a.Kube.Get(ctx, activities.JobKind, plan.Object)
		}
	case procedure.PlanEtcdCluster:
		if err = a.Kube.CheckNamespace(ctx, plan.Object.Namespace); err == nil {
			_, err = a.Kube.Get(ctx, activities.EtcdClusterKind, plan.Object)
		}
	case procedure.PlanPods:
		if err = a.Kube.CheckNamespace(ctx, plan.Pods.Namespace); err == nil {
			_, err = a.Kube.ListPods(ctx, plan.Pods)
		}
	case procedure.HMNFDPods:
		// HMNFD's pods are restarted only if it is not ready; that they
		// can be is checked now, before anything changes.
		if err = a.Kube.CheckNamespace(ctx, plan.HMNFD.Pods.Namespace); err == nil {
			_, err = a.Kube.ListPods(ctx, plan.HMNFD.Pods)
		}
	case procedure.LoaderJobIfNamed:
		if plan.Object.Name != "" {
			return a.chooseFASProcedure(ctx, plan)
		}
	}
	return plan, "", err
}

// chooseFASProcedure keeps the Job procedure for a site whose config names
// a FAS loader Job that exists; FAS itself removed the Job before CSM 1.0,
// so a named Job that is not there falls back to the loader API.
func (a *Activities) chooseFASProcedure(ctx context.Context, plan api.ServicePlan) (api.ServicePlan, string, error) {
	ref := plan.Object
	if err := a.Kube.CheckNamespace(ctx, ref.Namespace); err != nil {
		return plan, "", err
	}
	_, err := a.Kube.Get(ctx, activities.JobKind, ref)
	var appErr *temporal.ApplicationError
	switch {
	case err == nil:
		plan.Procedure = api.RerunJob
		return plan, fmt.Sprintf("fas: re-running Job %s: services.fas.job names it and it exists", ref), nil
	case errors.As(err, &appErr) && appErr.Type() == activities.ErrObjectNotFound:
		plan.Object = api.ObjectRef{}
		return plan, fmt.Sprintf("fas: services.fas.job names Job %s but it does not exist (FAS removed its loader Job before CSM 1.0): loading firmware through the loader API instead", ref), nil
	}
	return plan, "", err
}
