// Package workflows turns the runbook into Temporal workflows: a parent that
// checks the whole run before touching anything and fans out one child per
// service, and the child that walks a service's steps.
package workflows

import (
	"errors"
	"fmt"

	"slices"
	"strings"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/csmops/etcd-repopulate/activities/preflight"
	"github.com/csmops/etcd-repopulate/internal/api"
	"github.com/csmops/etcd-repopulate/internal/catalog"
	"github.com/csmops/etcd-repopulate/workflows/procedure"
)

// repopulate is the parent workflow's state.
type repopulate struct {
	req      api.Request
	services []api.Service
	status   api.RunStatus
	gates    *gateRouter
}

// Repopulate validates the request, resolves and checks every service's plan
// before anything changes, then runs one child workflow per service in
// parallel and returns the report. When a service fails the run fails with a
// ServicesFailed error whose details are the same report.
func Repopulate(ctx workflow.Context, req api.Request) (api.Report, error) {
	w := &repopulate{req: req}
	if err := w.setup(ctx); err != nil {
		return api.Report{}, err
	}
	return w.run(ctx)
}

func (w *repopulate) setup(ctx workflow.Context) error {
	info := workflow.GetInfo(ctx)
	w.status = api.RunStatus{RunID: info.WorkflowExecution.ID, DryRun: w.req.DryRun, State: api.Pending, Started: workflow.Now(ctx)}
	if w.req.Snapshot != nil {
		w.status.Snapshot = w.req.Snapshot.Dir
	}
	w.status.ChosenByPlan = w.req.Plan
	if err := workflow.SetQueryHandlerWithOptions(ctx, api.StatusQuery, func() (api.RunStatus, error) { return w.status, nil },
		workflow.QueryHandlerOptions{Description: api.StatusQueryDescription}); err != nil {
		return err
	}
	if err := w.setupGates(ctx); err != nil {
		return err
	}
	services, err := catalog.Parse(w.req.Services)
	if err != nil {
		return temporal.NewNonRetryableApplicationError(err.Error(), api.InvalidRequestError, nil)
	}
	w.services = services
	for _, s := range services {
		w.status.Services = append(w.status.Services, api.ServiceStatus{Service: s, State: api.Pending, WorkflowID: api.ServiceWorkflowID(w.status.RunID, s)})
	}
	return nil
}

func (w *repopulate) run(ctx workflow.Context) (api.Report, error) {
	w.status.State = api.Running
	w.status.Message = "preflight: checking every target before anything changes"
	var pre preflight.PreflightResult
	preCtx := workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout: 2 * time.Minute,
		// Transient API errors get a few tries; an unreachable API server
		// then fails the run before any service starts.
		RetryPolicy: &temporal.RetryPolicy{InitialInterval: time.Second, BackoffCoefficient: 2, MaximumInterval: 10 * time.Second, MaximumAttempts: 4},
	})
	release, err := w.detectRelease(ctx, preCtx)
	if err == nil {
		err = workflow.ExecuteActivity(preCtx, api.ActivityPreflight, preflight.PreflightRequest{Services: w.services, Release: release}).Get(ctx, &pre)
	}
	if err == nil {
		err = workflow.ExecuteActivity(preCtx, api.ActivityCheckAccess, preflight.CSMPreflightRequest{Plans: pre.Plans}).Get(ctx, nil)
	}
	if err != nil {
		w.end(ctx, api.Failed, procedure.ErrorMessage(err))
		return api.Report{}, temporal.NewNonRetryableApplicationError(procedure.ErrorMessage(err), api.PreflightFailedError, nil, w.status)
	}
	w.status.Message = ""
	w.status.Release = pre.RunRelease()
	w.status.Notes = pre.Notes
	w.showDetails(ctx)

	progress := workflow.GetSignalChannelWithOptions(ctx, api.StepProgressSignal, workflow.SignalChannelOptions{Description: api.StepProgressSignalDescription})
	decisions := workflow.GetSignalChannelWithOptions(ctx, api.GateDecisionSignal, workflow.SignalChannelOptions{Description: api.GateDecisionSignalDescription})
	pending := map[api.Service]workflow.ChildWorkflowFuture{}
	plans := map[api.Service]api.ServicePlan{}
	for _, plan := range pre.Plans {
		if plan.Procedure == api.NotInRelease {
			followUps := plan.FollowUps
			if len(followUps) == 0 {
				followUps = []string{plan.Reason}
			}
			w.update(api.ServiceStatus{Service: plan.Service, State: api.Skipped, Message: plan.Reason, FollowUps: followUps})
			continue
		}
		plans[plan.Service] = plan
	}
	// Versioned orderings: runs started before them replay as they ran.
	needsDone := map[string]bool{}
	for _, change := range catalog.NeedsDoneChanges() {
		needsDone[change] = workflow.GetVersion(ctx, change, workflow.DefaultVersion, 1) == 1
	}
	orderings := map[string]bool{}
	for _, change := range catalog.OrderingChanges() {
		orderings[change] = workflow.GetVersion(ctx, change, workflow.DefaultVersion, 1) == 1
	}
	deps := prerequisites(func(since string) bool { return orderings[since] })
	// waiting returns the prerequisite s still waits for in this run.
	waiting := func(s api.Service) (catalog.Prerequisite, bool) {
		for _, dep := range deps[s] {
			if plans[dep.Service].Service != "" && !w.serviceState(dep.Service).Finished() {
				return dep, true
			}
		}
		return catalog.Prerequisite{}, false
	}
	sel := workflow.NewSelector(ctx)
	started := map[api.Service]bool{}
	var start, finished func(s api.Service)
	start = func(s api.Service) {
		// A prerequisite counts as finished once its final status arrives,
		// which is before its result: the result must not start s again.
		// Versioned at the point of the second start only, so histories
		// that recorded one (ending in "already started") still replay.
		if started[s] && workflow.GetVersion(ctx, changeStartEachServiceOnce, workflow.DefaultVersion, 1) == 1 {
			return
		}
		started[s] = true
		plan := plans[s]
		for _, dep := range deps[s] {
			if dep.DoneSince == "" || !needsDone[dep.DoneSince] || plans[dep.Service].Service == "" {
				continue
			}
			if st := w.service(dep.Service); st.State != api.Done {
				w.update(notStarted(s, dep, st))
				finished(s)
				return
			}
		}
		cctx := workflow.WithChildOptions(ctx, childOptions(w.status.RunID, plan, w.req.DryRun))
		in := ServiceInput{RunID: w.status.RunID, Plan: plan, DryRun: w.req.DryRun, Snapshot: snapshotFor(s, w.req.Snapshot)}
		f := workflow.ExecuteChildWorkflow(cctx, RepopulateService, in)
		pending[s] = f
		sel.AddFuture(f, func(f workflow.Future) {
			delete(pending, s)
			var st api.ServiceStatus
			if err := f.Get(ctx, &st); err != nil {
				st = w.childFailure(s, err)
			}
			w.update(st)
			finished(s)
		})
	}
	// finished starts the services that waited for s and wait for nothing else.
	finished = func(s api.Service) {
		for _, next := range w.services {
			if !slices.ContainsFunc(deps[next], func(p catalog.Prerequisite) bool { return p.Service == s }) || plans[next].Service == "" || ctx.Err() != nil {
				continue
			}
			if _, still := waiting(next); !still && !w.serviceState(next).Finished() {
				start(next)
			}
		}
	}
	order := w.services
	if workflow.GetVersion(ctx, changeStartPrerequisitesFirst, workflow.DefaultVersion, 1) == 1 {
		order = prerequisitesFirst(w.services, deps)
	}
	for _, s := range order {
		if _, ok := plans[s]; !ok {
			continue
		}
		if dep, ok := waiting(s); ok {
			// Its steps and gates are listed already, so that status shows
			// what is to come and a decision for its gate is told when it opens.
			in := ServiceInput{RunID: w.status.RunID, Plan: plans[s], DryRun: w.req.DryRun, Snapshot: snapshotFor(s, w.req.Snapshot)}
			st := api.ServiceStatus{Service: s, State: api.Pending, Message: waitingMessage(dep)}
			for _, name := range Steps(in) {
				st.Steps = append(st.Steps, api.StepStatus{Name: name, State: api.Pending})
			}
			for _, name := range Gates(in) {
				st.Gates = append(st.Gates, api.GateStatus{Name: name, State: api.GatePending})
			}
			w.update(st)
			continue
		}
		start(s)
	}

	sel.AddReceive(progress, func(c workflow.ReceiveChannel, _ bool) {
		var st api.ServiceStatus
		c.Receive(ctx, &st)
		w.update(st)
		w.showDetails(ctx)
	})
	sel.AddReceive(decisions, func(c workflow.ReceiveChannel, _ bool) {
		var d api.GateDecision
		c.Receive(ctx, &d)
		w.routeSignal(ctx, d)
	})
	for len(pending) > 0 {
		sel.Select(ctx)
	}
	// Progress signals sent before a child's result are all delivered by now;
	// drain them so none is left unhandled.
	for {
		var st api.ServiceStatus
		if !progress.ReceiveAsync(&st) {
			break
		}
	}
	// An Update still delivering a decision must end before the run does.
	if err := workflow.Await(ctx, func() bool { return workflow.AllHandlersFinished(ctx) }); err != nil && ctx.Err() == nil {
		return api.Report{}, err
	}
	rep, err := w.finish(ctx)
	w.showDetails(ctx)
	return rep, err
}

// detectRelease finds the CSM release the run acts for, before preflight
// resolves the plans for it. Runs started before releases were detected
// skip it: their preflight resolves the worker's configured release.
func (w *repopulate) detectRelease(ctx, actx workflow.Context) (api.Release, error) {
	if workflow.GetVersion(ctx, "detect-release", workflow.DefaultVersion, 1) == workflow.DefaultVersion {
		return "", nil
	}
	w.status.Message = "detecting the CSM release"
	var d api.ReleaseDetection
	if err := workflow.ExecuteActivity(actx, api.ActivityDetectRelease, preflight.DetectReleaseRequest{}).Get(ctx, &d); err != nil {
		return "", err
	}
	w.status.Release, w.status.Detection = d.Release, &d
	if err := workflow.UpsertMemo(ctx, map[string]any{api.MemoRelease: d.Release}); err != nil {
		return "", err
	}
	w.status.Message = "preflight: checking every target before anything changes"
	return d.Release, nil
}

// update records a service's status unless it would move a finished service back.
func (w *repopulate) update(st api.ServiceStatus) {
	for i := range w.status.Services {
		cur := &w.status.Services[i]
		if cur.Service != st.Service {
			continue
		}
		if cur.State.Finished() && !st.State.Finished() {
			return
		}
		// A report overtaken by a later one (reports are not waited for
		// since publish-without-waiting, so they may arrive out of order).
		if st.Report > 0 && st.Report < cur.Report {
			return
		}
		if st.WorkflowID == "" {
			st.WorkflowID = cur.WorkflowID
		}
		*cur = st
	}
}

// childFailure recovers the child's status from its error details.
func (w *repopulate) childFailure(s api.Service, err error) api.ServiceStatus {
	var appErr *temporal.ApplicationError
	var canceled *temporal.CanceledError
	var st api.ServiceStatus
	switch {
	case errors.As(err, &appErr) && appErr.HasDetails() && appErr.Details(&st) == nil && st.Service == s:
		return st
	case errors.As(err, &canceled) && canceled.HasDetails() && canceled.Details(&st) == nil && st.Service == s:
		return st
	}
	state := api.Failed
	if temporal.IsCanceledError(err) {
		state = api.Canceled
	}
	return api.ServiceStatus{Service: s, State: state, Message: procedure.ErrorMessage(err)}
}

func (w *repopulate) end(ctx workflow.Context, state api.State, message string) {
	w.status.State, w.status.Message, w.status.Ended = state, message, workflow.Now(ctx)
}

func (w *repopulate) finish(ctx workflow.Context) (api.Report, error) {
	var failed, canceled []string
	for i := range w.status.Services {
		// A service that waited for another and was never started.
		if s := &w.status.Services[i]; s.State == api.Pending && ctx.Err() != nil {
			s.State, s.Message = api.Canceled, "not started: the run was canceled first"
		}
	}
	for _, s := range w.status.Services {
		switch s.State {
		case api.Failed:
			failed = append(failed, string(s.Service))
		case api.Canceled:
			canceled = append(canceled, string(s.Service))
		}
	}
	switch {
	case len(failed) > 0:
		msg := fmt.Sprintf("%d of %d services failed: %s", len(failed), len(w.services), strings.Join(failed, ", "))
		w.end(ctx, api.Failed, msg)
		return api.Report{}, temporal.NewNonRetryableApplicationError(msg, api.ServicesFailedError, nil, w.status)
	case len(canceled) > 0 || ctx.Err() != nil:
		w.end(ctx, api.Canceled, "run canceled; services stopped early: "+strings.Join(canceled, ", "))
		return api.Report{}, temporal.NewCanceledError(w.status)
	}
	w.end(ctx, api.Done, w.doneMessage())
	return w.status, nil
}

func (w *repopulate) doneMessage() string {
	var done, skipped int
	for _, s := range w.status.Services {
		if s.State == api.Skipped {
			skipped++
		} else {
			done++
		}
	}
	if w.req.DryRun {
		return fmt.Sprintf("dry-run of %d services finished; nothing was changed", len(w.services))
	}
	return fmt.Sprintf("%d services repopulated, %d skipped", done, skipped)
}

// Registry is where the workflows are registered: a worker, or the SDK's
// test environment.
type Registry interface {
	RegisterWorkflowWithOptions(w any, options workflow.RegisterOptions)
}

// Register registers both workflows under their contract names, which
// histories and the CLI depend on.
func Register(r Registry) {
	r.RegisterWorkflowWithOptions(Repopulate, workflow.RegisterOptions{Name: api.RepopulateWorkflow})
	r.RegisterWorkflowWithOptions(RepopulateService, workflow.RegisterOptions{Name: api.ServiceWorkflow})
}

// Change IDs of workflow.GetVersion in the parent.
const (
	// changeStartEachServiceOnce: a service whose prerequisites finish
	// is started once; before, a prerequisite's result arriving after its
	// final status started the dependant a second time, which failed it
	// with "child workflow execution already started".
	changeStartEachServiceOnce = "start-each-service-once"
	// changeStartPrerequisitesFirst: the services others wait for are
	// started first. The server starts a run's children one after another
	// (on the dev server ~0.2 s each), and a dependant's chain is the
	// run's longest.
	changeStartPrerequisitesFirst = "start-prerequisites-first"
)

// prerequisitesFirst orders services so that those another one waits for
// come first, each group in its given order.
func prerequisitesFirst(services []api.Service, deps map[api.Service][]catalog.Prerequisite) []api.Service {
	awaited := map[api.Service]bool{}
	for _, s := range services {
		for _, d := range deps[s] {
			awaited[d.Service] = true
		}
	}
	out := slices.Clone(services)
	slices.SortStableFunc(out, func(a, b api.Service) int {
		switch {
		case awaited[a] == awaited[b]:
			return 0
		case awaited[a]:
			return -1
		}
		return 1
	})
	return out
}

// prerequisites says which services must finish before another starts,
// for a run that has the orderings has says (the replay test swaps it).
var prerequisites = catalog.Prerequisites

func waitingMessage(dep catalog.Prerequisite) string {
	msg := fmt.Sprintf("waiting for %s to finish first", dep.Service)
	if dep.Why != "" {
		msg += ": " + dep.Why
	}
	return msg
}

// notStarted ends s unstarted when dep, which it needs done, did not end
// done. A person said no to dep, or dep was skipped: s is skipped with it;
// dep failing on its own fails s too.
func notStarted(s api.Service, dep catalog.Prerequisite, st api.ServiceStatus) api.ServiceStatus {
	state, outcome := api.Failed, string(st.State)
	if st.Message != "" {
		outcome += " (" + st.Message + ")"
	}
	if st.State == api.Skipped {
		state = api.Skipped
	}
	for _, g := range st.Gates {
		if g.State == api.GateRejected {
			state, outcome = api.Skipped, fmt.Sprintf("%s: gate %s was rejected by %s%s", st.State, g.Name, procedure.OrSomeone(g.By), procedure.NoteSuffix(g.Note))
		}
	}
	msg := fmt.Sprintf("not started: %s ended %s, and %s", dep.Service, outcome, dep.NotDone)
	return api.ServiceStatus{Service: s, State: state, Message: msg, FollowUps: []string{dep.FollowUp}}
}

// service is a service's current status in the run.
func (w *repopulate) service(s api.Service) api.ServiceStatus {
	for _, st := range w.status.Services {
		if st.Service == s {
			return st
		}
	}
	return api.ServiceStatus{}
}

func (w *repopulate) serviceState(s api.Service) api.State { return w.service(s).State }

// snapshotFor trims the run's snapshot to what one service uses, so that
// children's histories do not each carry every template.
func snapshotFor(s api.Service, snap *api.SnapshotInput) *api.SnapshotInput {
	if snap == nil {
		return nil
	}
	e, _ := catalog.Lookup(s)
	if e.SnapshotPart == nil {
		return nil
	}
	// APIs say which API versions the snapshot was read through.
	out := &api.SnapshotInput{Dir: snap.Dir, Taken: snap.Taken, APIs: snap.APIs}
	e.SnapshotPart(snap, out)
	return out
}

// childOptions start a service's child workflow.
func childOptions(runID string, plan api.ServicePlan, dryRun bool) workflow.ChildWorkflowOptions {
	return workflow.ChildWorkflowOptions{
		WorkflowID: api.ServiceWorkflowID(runID, plan.Service),
		// A canceled run lets each child finish what it must (re-create
		// a deleted object) before the parent closes.
		WaitForCancellation: true,
		// Terminating or resetting the parent (the remedy for a stuck
		// workflow task) asks each child to cancel instead of killing it,
		// so a child past its delete still creates the object again.
		ParentClosePolicy: enumspb.PARENT_CLOSE_POLICY_REQUEST_CANCEL,
		StaticSummary:     childSummary(plan, dryRun),
	}
}

// childSummary is the one line the Web UI shows for a child workflow.
func childSummary(plan api.ServicePlan, dryRun bool) string {
	target := ""
	switch {
	case plan.Object.Name != "":
		target = " " + plan.Object.String()
	case plan.Pods.Selector != "":
		target = " " + plan.Pods.String()
	}
	s := fmt.Sprintf("%s: %s%s", plan.Service, plan.Procedure, target)
	if dryRun {
		s += " (dry-run)"
	}
	return s
}

// showDetails sets the run's current details, which the Web UI shows on
// the run's page: one line per service and the commands of waiting gates.
func (w *repopulate) showDetails(ctx workflow.Context) {
	var b strings.Builder
	b.WriteString(fmt.Sprintf("**%s**", w.status.State))
	if w.status.Message != "" {
		b.WriteString(fmt.Sprintf(": %s", w.status.Message))
	}
	if d := w.status.Detection; d != nil {
		b.WriteString(fmt.Sprintf("\n\nCSM release **%s**: %s", d.Release, d.How))
	}
	for _, n := range w.status.Notes {
		b.WriteString("\n\n" + n)
	}
	b.WriteString("\n\n| service | state | now |\n|---|---|---|\n")
	for _, s := range w.status.Services {
		b.WriteString(fmt.Sprintf("| %s | %s | %s |\n", s.Service, s.State, procedure.CurrentStep(s)))
	}
	for _, s := range w.status.Services {
		for _, g := range s.Gates {
			if g.State == api.GateWaiting {
				b.WriteString(fmt.Sprintf("\nGate **%s** (%s) is waiting for approval: %s\n\n    %s\n    %s\n\n%s", g.Name, s.Service, g.Action, g.ApproveCommand, g.RejectCommand, procedure.WebUIInstructions(w.status.RunID, g.Name)))
			}
		}
	}
	if n := len(w.status.RefusedDecisions); n > 0 {
		b.WriteString("\nRefused gate decisions (latest last):\n\n")
		for _, r := range w.status.RefusedDecisions {
			b.WriteString(fmt.Sprintf("- %s: %s %q by %s: %s\n", r.At.UTC().Format(time.RFC3339), r.Decision, r.Gate, procedure.OrSomeone(r.By), r.Reason))
		}
	}
	workflow.SetCurrentDetails(ctx, b.String())
}
