package workflows

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/mock"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/workflow"

	"github.com/csmops/etcd-repopulate/activities"
	"github.com/csmops/etcd-repopulate/activities/preflight"
	"github.com/csmops/etcd-repopulate/internal/api"
	"github.com/csmops/etcd-repopulate/internal/badinput"
	"github.com/csmops/etcd-repopulate/internal/catalog"
	"github.com/csmops/etcd-repopulate/internal/config"
	"github.com/csmops/etcd-repopulate/internal/settings"
	"github.com/csmops/etcd-repopulate/procedures/bos"
	"github.com/csmops/etcd-repopulate/procedures/cps"
	"github.com/csmops/etcd-repopulate/procedures/crus"
	"github.com/csmops/etcd-repopulate/procedures/datacheck"
	"github.com/csmops/etcd-repopulate/procedures/fasloader"
	"github.com/csmops/etcd-repopulate/procedures/orca"
	"github.com/csmops/etcd-repopulate/procedures/rerunjob"
	"github.com/csmops/etcd-repopulate/procedures/restartpods"
)

// kubeFake answers the activities as a healthy cluster would and counts the
// destructive calls, so tests can tell exactly what a run changed.
type kubeFake struct {
	mu                           sync.Mutex // mocked activities run concurrently
	deletes, creates, podDeletes int
	createErr                    error
	restoreErr                   error
	deleteTakes                  time.Duration
	orcaTakes                    time.Duration // each orca batch
	// orcaBatch, when set, runs first in each RestartOrca call (outside
	// mu, in real time); its error is the batch's.
	orcaBatch  func(context.Context, orca.RestartBatch) error
	checkTakes time.Duration
	// CSM side: the nodes HSM lists, the hosts that fail, CRUS answers.
	nodes        int
	failingHosts map[string]bool
	// oldTargets answers discovery in the one-entry-per-node form of older runs.
	oldTargets bool
	// allFail fails every host with failReason (default "connection refused").
	allFail    bool
	failReason string
	crus       crus.CRUSCheck
	batches    []orca.RestartBatch
	verified   []string
	// CPS and BOS: the nodes that boot from CPS (none: CPS unused), the
	// BOS sessions started, templates restored and checked.
	cpsNodes     []string
	bosSessions  []cps.BOSSessionRequest
	nodeWaits    []cps.WaitNodesRequest
	restored     [][]json.RawMessage
	checkedTmpls int
	// order records CPS discovery and BOS restores as they happen.
	order []string
	// planHook changes the plans Preflight returns.
	planHook func(*api.ServicePlan)
	// release is what DetectRelease finds (csm-1.0 when empty); detectErr
	// is its failure instead.
	release   api.Release
	detectErr error
	// hmnfdNotReady: HMNFD says not ready until its pods are restarted.
	hmnfdNotReady bool
	hmnfdChecks   int
	// selectors are the pod sets snapshotted before a restart.
	selectors []string
	// bssEmpty: BSS holds nothing after the Job, so bss's data check fails.
	bssEmpty bool
	// podsNotReady: replacement pods never get Ready.
	podsNotReady bool
}

func (f *kubeFake) podSelectors() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.selectors)
}

func (f *kubeFake) register(env *testsuite.TestWorkflowEnvironment) {
	k := &activities.Kube{}
	pre := &preflight.Activities{}
	pods := &restartpods.Activities{}
	cfg := config.Default()
	config.SettingsOf[*fasloader.FASSettings](cfg, api.FAS).Job = "cray-fas-loader" // a site that names its loader Job, which exists
	env.OnActivity(pre.Preflight, mock.Anything, mock.Anything).Return(func(_ context.Context, req preflight.PreflightRequest) (preflight.PreflightResult, error) {
		res := preflight.PreflightResult{Release: req.Release}
		for _, s := range req.Services {
			p := cfg.Plan(req.Release, s)
			if p.Procedure == api.RunFASLoaderAPI && p.Object.Name != "" {
				p.Procedure = api.RerunJob
			}
			if f.planHook != nil {
				f.planHook(&p)
			}
			res.Plans = append(res.Plans, p)
		}
		return res, nil
	})
	env.OnActivity(k.SaveObject, mock.Anything, mock.Anything).Return(func(_ context.Context, req activities.ObjectRequest) (activities.SavedObject, error) {
		return activities.SavedObject{Kind: req.Kind, Ref: req.Ref, UID: "old-uid", Manifest: json.RawMessage(`{"kind":"` + string(req.Kind) + `"}`), Stripped: []string{".status", ".metadata.uid"}, Outcome: activities.Outcome{Message: "saved", Attempt: 1}}, nil
	})
	env.OnActivity(k.DeleteObject, mock.Anything, mock.Anything).After(f.deleteTakes).Return(func(context.Context, activities.DeleteRequest) (activities.Outcome, error) {
		f.mu.Lock()
		defer f.mu.Unlock()
		f.deletes++
		return activities.Outcome{Message: "deleted", Attempt: 1}, nil
	})
	env.OnActivity(k.CreateObject, mock.Anything, mock.Anything).Return(func(context.Context, activities.CreateRequest) (activities.Created, error) {
		f.mu.Lock()
		defer f.mu.Unlock()
		f.creates++
		if f.createErr != nil {
			return activities.Created{}, f.createErr
		}
		return activities.Created{UID: "new-uid", Outcome: activities.Outcome{Message: "created", Attempt: 1}}, nil
	})
	env.OnActivity(k.WaitJobComplete, mock.Anything, mock.Anything).Return(activities.Outcome{Message: "complete", Attempt: 1}, nil)
	env.OnActivity(k.WaitEtcdClusterRunning, mock.Anything, mock.Anything).Return(activities.Outcome{Message: "running", Attempt: 1}, nil)
	env.OnActivity(pods.SnapshotPods, mock.Anything, mock.Anything).Return(func(_ context.Context, pods api.PodSet) (restartpods.PodSnapshot, error) {
		f.mu.Lock()
		defer f.mu.Unlock()
		f.selectors = append(f.selectors, pods.Selector)
		return restartpods.PodSnapshot{Pods: []restartpods.PodRef{{Name: "p-1", UID: "u1", Ready: true}}, Ready: 1}, nil
	})
	env.OnActivity(pods.DeletePods, mock.Anything, mock.Anything).Return(func(context.Context, restartpods.DeletePodsRequest) (activities.Outcome, error) {
		f.mu.Lock()
		defer f.mu.Unlock()
		f.podDeletes++
		f.order = append(f.order, "delete-pods")
		return activities.Outcome{Message: "deleted pods"}, nil
	})
	env.OnActivity(pods.WaitPodsReplaced, mock.Anything, mock.Anything).Return(func(context.Context, restartpods.WaitPodsRequest) (activities.Outcome, error) {
		if f.podsNotReady {
			return activities.Outcome{}, temporal.NewNonRetryableApplicationError("1 of 1 replacement pods not Ready after 10m0s", activities.ErrWaitTimedOut, nil)
		}
		return activities.Outcome{Message: "ready"}, nil
	})
	env.OnActivity(pre.DetectRelease, mock.Anything, mock.Anything).Return(func(context.Context, preflight.DetectReleaseRequest) (api.ReleaseDetection, error) {
		if f.detectErr != nil {
			return api.ReleaseDetection{}, f.detectErr
		}
		r := f.release
		if r == "" {
			r = api.CSM10
		}
		return api.ReleaseDetection{Release: r, Configured: api.ReleaseAuto, How: "product catalog's highest CSM version is test"}, nil
	})
	fanout := &orca.Activities{}
	env.OnActivity(fanout.CheckHMNFDReady, mock.Anything, mock.Anything).Return(func(_ context.Context, r orca.HMNFDReadyRequest) (orca.HMNFDReadiness, error) {
		f.mu.Lock()
		defer f.mu.Unlock()
		f.hmnfdChecks++
		f.order = append(f.order, fmt.Sprintf("check-hmnfd-ready(budget %s)", r.Budget))
		if f.hmnfdNotReady && r.Budget == 0 {
			return orca.HMNFDReadiness{Outcome: activities.Outcome{Message: "HMNFD reports not ready"}}, nil
		}
		return orca.HMNFDReadiness{Ready: true, Outcome: activities.Outcome{Message: "HMNFD reports ready"}}, nil
	})
	env.OnActivity(pre.CheckAccess, mock.Anything, mock.Anything).Return(activities.Outcome{}, nil)
	crusActs := &crus.Activities{}
	env.OnActivity(crusActs.CheckCRUSSessions, mock.Anything, mock.Anything).Return(func(context.Context, crus.CRUSCheckRequest) (crus.CRUSCheck, error) {
		return f.crus, nil
	})
	env.OnActivity(crusActs.ConfirmCRUSSessions, mock.Anything, mock.Anything).Return(activities.Outcome{Message: "listed"}, nil)
	env.OnActivity(fanout.DiscoverOrcaTargets, mock.Anything, mock.Anything).Return(func(context.Context, orca.OrcaTargetsRequest) (orca.OrcaTargets, error) {
		// As DiscoverOrcaTargets answers: NID ranges, their xnames, NCN hosts.
		t := orca.OrcaTargets{ComputeNIDs: []orca.NIDRange{{First: 1, Last: f.nodes}}, NCNs: []string{"ncn-w001-can.local"}}
		for i := 1; i <= f.nodes; i++ {
			t.ComputeXnames = append(t.ComputeXnames, fakeXname(i))
		}
		if f.oldTargets { // as a run recorded before the compact form
			t = orca.OrcaTargets{Nodes: t.All()}
		}
		return t, nil
	})
	env.OnActivity(fanout.DiscoverOrcaNodes, mock.Anything, mock.Anything).Return(func(context.Context, orca.OrcaTargetsRequest) (orca.OrcaTargets, error) {
		// As DiscoverOrcaNodes answers: NID ranges and NCN hosts.
		return orca.OrcaTargets{ComputeNIDs: []orca.NIDRange{{First: 1, Last: f.nodes}}, Computes: f.nodes, NCNs: []string{"ncn-w001-can.local"}}, nil
	})
	env.OnActivity(fanout.RestartOrca, mock.Anything, mock.Anything).After(f.orcaTakes).Return(func(ctx context.Context, b orca.RestartBatch) (orca.BatchResult, error) {
		if f.orcaBatch != nil {
			if err := f.orcaBatch(ctx, b); err != nil {
				return orca.BatchResult{}, err
			}
		}
		f.mu.Lock()
		defer f.mu.Unlock()
		f.batches = append(f.batches, b)
		if len(f.batches) == 1 {
			f.order = append(f.order, "restart-orca")
		}
		r := orca.BatchResult{Restarted: map[string][]string{}}
		for _, h := range b.Hosts {
			if f.failingHosts[h] || f.allFail {
				reason := "connection refused"
				if f.failReason != "" {
					reason = f.failReason
				}
				r.Problems = append(r.Problems, api.NodeProblem{Host: h, Status: "unreachable", Reason: reason})
			} else {
				r.OK = append(r.OK, h)
				r.Restarted[b.Units[0]] = append(r.Restarted[b.Units[0]], h)
			}
		}
		return r, nil
	})
	env.OnActivity(fanout.VerifySubscriptions, mock.Anything, mock.Anything).Return(func(_ context.Context, v orca.VerifyRequest) (orca.VerifyResult, error) {
		f.mu.Lock()
		defer f.mu.Unlock()
		f.verified = v.Xnames
		return orca.VerifyResult{Outcome: activities.Outcome{Message: fmt.Sprintf("HMNFD lists subscriptions for all %d compute nodes", len(v.Xnames))}}, nil
	})
	env.OnActivity(fanout.VerifyComputeSubscriptions, mock.Anything, mock.Anything).Return(func(_ context.Context, v orca.ComputeSubscriptionsRequest) (orca.VerifyResult, error) {
		f.mu.Lock()
		defer f.mu.Unlock()
		// As HSM would name the NIDs DiscoverOrcaTargets lists.
		f.verified = slices.Clone(v.Xnames)
		for _, r := range v.NIDs {
			for nid := r.First; nid <= r.Last; nid++ {
				f.verified = append(f.verified, fakeXname(nid))
			}
		}
		return orca.VerifyResult{Outcome: activities.Outcome{Message: fmt.Sprintf("HMNFD lists subscriptions for all %d compute nodes", len(f.verified))}}, nil
	})
	cpsActs := &cps.Activities{}
	env.OnActivity(cpsActs.FindCPSNodes, mock.Anything, mock.Anything).Return(func(context.Context, cps.CPSNodesRequest) (cps.CPSNodes, error) {
		f.mu.Lock()
		f.order = append(f.order, "find-cps-nodes")
		f.mu.Unlock()
		if len(f.cpsNodes) == 0 {
			return cps.CPSNodes{Reason: "no client uses CPS"}, nil
		}
		return cps.CPSNodes{InUse: true, Groups: []cps.CPSNodeGroup{{Template: "cos-2.0", Xnames: f.cpsNodes}}}, nil
	})
	env.OnActivity(cpsActs.StartBOSSession, mock.Anything, mock.Anything).Return(func(_ context.Context, r cps.BOSSessionRequest) (cps.BOSSessionStarted, error) {
		f.mu.Lock()
		defer f.mu.Unlock()
		f.bosSessions = append(f.bosSessions, r)
		f.order = append(f.order, "bos-"+r.Operation)
		return cps.BOSSessionStarted{Name: r.Name}, nil
	})
	env.OnActivity(cpsActs.WaitNodesState, mock.Anything, mock.Anything).Return(func(_ context.Context, r cps.WaitNodesRequest) (activities.Outcome, error) {
		f.mu.Lock()
		defer f.mu.Unlock()
		f.nodeWaits = append(f.nodeWaits, r)
		return activities.Outcome{Message: "all " + strings.Join(r.States, ",")}, nil
	})
	bosActs := &bos.Activities{}
	env.OnActivity(bosActs.RestoreSessionTemplates, mock.Anything, mock.Anything).Return(func(_ context.Context, r bos.RestoreTemplatesRequest) (bos.RestoreTemplatesResult, error) {
		f.mu.Lock()
		defer f.mu.Unlock()
		f.restored = append(f.restored, r.Templates)
		f.order = append(f.order, "restore-bos-templates")
		if f.restoreErr != nil {
			return bos.RestoreTemplatesResult{}, f.restoreErr
		}
		return bos.RestoreTemplatesResult{Outcome: activities.Outcome{Message: "restored"}}, nil
	})
	checks := &datacheck.Activities{}
	env.OnActivity(checks.CheckBootParameters, mock.Anything, mock.Anything).Return(func(context.Context, datacheck.BootParametersRequest) (datacheck.Result, error) {
		f.mu.Lock()
		defer f.mu.Unlock()
		f.order = append(f.order, "check-boot-parameters")
		if f.bssEmpty {
			return datacheck.Result{}, temporal.NewNonRetryableApplicationError("BSS holds no boot parameters for 3 of the 3 nodes HSM lists (x1000c0s1b0n0, x1000c0s2b0n0, x1000c0s3b0n0)", datacheck.ErrDataCheckFailed, nil)
		}
		return datacheck.Result{Outcome: activities.Outcome{Message: "BSS holds boot parameters for all 3 nodes HSM lists", Attempt: 1}}, nil
	})
	env.OnActivity(checks.CheckFASImages, mock.Anything, mock.Anything).Return(datacheck.Result{Outcome: activities.Outcome{Message: "FAS lists 3 images (at least one expected without a snapshot)", Attempt: 1}}, nil)
	env.OnActivity(bosActs.CheckSessionTemplates, mock.Anything, mock.Anything).After(f.checkTakes).Return(func(context.Context, bos.CheckTemplatesRequest) (bos.TemplatesCheck, error) {
		f.mu.Lock()
		defer f.mu.Unlock()
		f.checkedTmpls++
		return bos.TemplatesCheck{Names: []string{"cos-2.0"}, Outcome: activities.Outcome{Message: "1 template"}}, nil
	})
}

// fakeXname is the xname the fake HSM gives a NID.
func fakeXname(nid int) string { return fmt.Sprintf("x1000c0s%db0n0", nid) }

func newEnv(t *testing.T, configure ...func(*kubeFake)) (*testsuite.TestWorkflowEnvironment, *kubeFake) {
	var suite testsuite.WorkflowTestSuite
	env := suite.NewTestWorkflowEnvironment()
	Register(env)
	f := &kubeFake{nodes: 3}
	for _, c := range configure {
		c(f)
	}
	f.register(env)
	return env, f
}

func serviceState(t *testing.T, st api.RunStatus, s api.Service) api.ServiceStatus {
	t.Helper()
	for _, ss := range st.Services {
		if ss.Service == s {
			return ss
		}
	}
	t.Fatalf("service %s not in status %+v", s, st)
	return api.ServiceStatus{}
}

// runAllWithTemplates runs every service with a snapshot that has a
// template: bos restores it instead of waiting at its gate.
func runAllWithTemplates(t *testing.T) (api.Report, *kubeFake) {
	t.Helper()
	env, f := newEnv(t)
	snap := &api.SnapshotInput{Dir: "/snap", SessionTemplates: []json.RawMessage{json.RawMessage(`{"name":"cos-2.0"}`)}}
	env.ExecuteWorkflow(api.RepopulateWorkflow, api.Request{Snapshot: snap})
	if err := env.GetWorkflowError(); err != nil {
		t.Fatalf("workflow failed: %v", err)
	}
	var report api.Report
	if err := env.GetWorkflowResult(&report); err != nil {
		t.Fatal(err)
	}
	return report, f
}

func TestAllServicesRun(t *testing.T) {
	report, f := runAllWithTemplates(t)
	if report.State != api.Done || len(report.Services) != len(catalog.Services()) || report.Snapshot != "/snap" {
		t.Fatalf("report state %s with %d services (snapshot %q), want done with every service from /snap", report.State, len(report.Services), report.Snapshot)
	}
	for _, s := range catalog.Services() {
		ss := serviceState(t, report, s)
		if ss.State != api.Done {
			t.Errorf("%s: state %s (%s), want done", s, ss.State, ss.Message)
		}
		if ss.WorkflowID != "default-test-workflow-id/"+string(s) {
			t.Errorf("%s: child ID %q", s, ss.WorkflowID)
		}
	}
	// Every service closes with evidence: what was checked, what was found.
	for _, s := range report.Services {
		if e := s.Evidence; e == nil || e.Checked == "" || e.Found == "" || !e.OK {
			t.Errorf("%s: evidence %+v, want what was checked and found, passed", s.Service, e)
		}
	}
	crusStatus := serviceState(t, report, api.CRUS)
	if len(crusStatus.Steps) != 5 || crusStatus.Steps[0].Name != crus.StepCheckCRUS || crusStatus.Steps[4].Name != crus.StepConfirmCRUS {
		t.Errorf("crus steps %+v", crusStatus.Steps)
	}
	// bss, fas and externaldns each delete and create once; three pod sets restart.
	if f.deletes != 3 || f.creates != 3 || f.podDeletes != 3 {
		t.Errorf("deletes %d creates %d pod deletes %d, want 3 3 3", f.deletes, f.creates, f.podDeletes)
	}
	// CPS unused: nothing shut down, both gates skipped with the reason.
	cps := serviceState(t, report, api.CPS)
	if len(f.bosSessions) != 0 || len(cps.Gates) != 2 || cps.Gates[0].State != api.GateSkipped || !strings.Contains(cps.Message, "no client uses CPS") {
		t.Errorf("cps with no CPS client: sessions %v, status %+v", f.bosSessions, cps)
	}
	if len(f.restored) != 1 || len(f.restored[0]) != 1 || f.checkedTmpls != 0 {
		t.Errorf("bos: restored %v, checked %d; want the snapshot's one template restored", f.restored, f.checkedTmpls)
	}
	// cps finds its nodes in the templates bos restores and must not shut
	// nodes down while hmnfd restarts orca: cps goes after both.
	if i, j, k := slices.Index(f.order, "restore-bos-templates"), slices.Index(f.order, "restart-orca"), slices.Index(f.order, "find-cps-nodes"); i < 0 || j < 0 || k < i || k < j {
		t.Errorf("order %v: cps must start after bos and hmnfd", f.order)
	}
}

func TestDryRunChangesNothing(t *testing.T) {
	env, f := newEnv(t)
	env.ExecuteWorkflow(api.RepopulateWorkflow, api.Request{DryRun: true, Services: []string{"bss", "meds", "externaldns"}})
	if err := env.GetWorkflowError(); err != nil {
		t.Fatal(err)
	}
	var report api.Report
	_ = env.GetWorkflowResult(&report)
	if f.deletes+f.creates+f.podDeletes != 0 {
		t.Fatalf("dry-run changed things: deletes %d creates %d pod deletes %d", f.deletes, f.creates, f.podDeletes)
	}
	bss := serviceState(t, report, api.BSS)
	if got := bss.Steps[1]; got.State != api.Skipped || !strings.Contains(got.Message, "would delete Job services/cray-reds-init (uid old-uid)") {
		t.Errorf("dry-run delete step: %+v", got)
	}
	if got := bss.Steps[2]; !strings.Contains(got.Message, "without .status, .metadata.uid") {
		t.Errorf("dry-run create step should list what is stripped: %+v", got)
	}
}

func TestUnknownServiceIsRejectedBeforeAnythingRuns(t *testing.T) {
	env, f := newEnv(t)
	env.ExecuteWorkflow(api.RepopulateWorkflow, api.Request{Services: []string{"bss", "dns"}})
	err := env.GetWorkflowError()
	var appErr *temporal.ApplicationError
	if !errors.As(err, &appErr) || appErr.Type() != api.InvalidRequestError {
		t.Fatalf("error %v, want %s", err, api.InvalidRequestError)
	}
	if !strings.Contains(appErr.Message(), `"dns"`) || !strings.Contains(appErr.Message(), catalog.Names()) {
		t.Errorf("message %q should name the bad service and the valid ones", appErr.Message())
	}
	if f.deletes+f.creates+f.podDeletes != 0 {
		t.Fatal("something ran")
	}
	badinput.Record(t, badinput.Case{Area: badinput.Request, Input: "Request{Services: [bss dns]} sent to the workflow directly", Message: appErr.Message(),
		Exit: "run fails, type " + appErr.Type(), Unchanged: "no activity ran: no delete, create or pod delete"})
}

func TestFailedServiceFailsTheRunWithTheReportAsDetails(t *testing.T) {
	env, _ := newEnv(t, func(f *kubeFake) {
		f.createErr = temporal.NewNonRetryableApplicationError("the API server rejected the saved copy", "CreateRejected", nil)
	})
	env.ExecuteWorkflow(api.RepopulateWorkflow, api.Request{Services: []string{"externaldns", "meds"}})
	err := env.GetWorkflowError()
	var appErr *temporal.ApplicationError
	if !errors.As(err, &appErr) || appErr.Type() != api.ServicesFailedError {
		t.Fatalf("error %v, want %s", err, api.ServicesFailedError)
	}
	var report api.Report
	if err := appErr.Details(&report); err != nil {
		t.Fatalf("no report in details: %v", err)
	}
	dns := serviceState(t, report, api.ExternalDNS)
	if dns.State != api.Failed || !strings.Contains(dns.Message, "create-etcdcluster") {
		t.Errorf("externaldns %s %q, want failed at create-etcdcluster", dns.State, dns.Message)
	}
	if len(dns.SavedManifest) == 0 || len(dns.FollowUps) == 0 {
		t.Errorf("a deleted object that was not re-created must be in the report: %+v", dns)
	}
	if serviceState(t, report, api.MEDS).State != api.Done {
		t.Error("one service's failure must not stop the others")
	}
}

func TestCancelAfterDeleteStillRecreates(t *testing.T) {
	// The delete is slow, so the cancel lands while it runs.
	env, f := newEnv(t, func(f *kubeFake) { f.deleteTakes = time.Minute })
	env.RegisterDelayedCallback(env.CancelWorkflow, 30*time.Second)
	env.ExecuteWorkflow(api.RepopulateWorkflow, api.Request{Services: []string{"externaldns"}})
	if err := env.GetWorkflowError(); !temporal.IsCanceledError(err) {
		t.Fatalf("error %v, want canceled", err)
	}
	if f.deletes != 1 || f.creates != 1 {
		t.Fatalf("deletes %d creates %d: a cancel must not strand a deleted object", f.deletes, f.creates)
	}
}

func TestStatusQueryShowsSteps(t *testing.T) {
	// The delete takes a (mocked) second, so the query surely comes mid-run.
	env, _ := newEnv(t, func(f *kubeFake) { f.deleteTakes = time.Second })
	var mid api.RunStatus
	env.RegisterDelayedCallback(func() {
		v, err := env.QueryWorkflow(api.StatusQuery)
		if err != nil {
			t.Errorf("query: %v", err)
			return
		}
		if err := v.Get(&mid); err != nil {
			t.Errorf("query result: %v", err)
		}
	}, time.Millisecond)
	env.ExecuteWorkflow(api.RepopulateWorkflow, api.Request{Services: []string{"bss"}})
	if mid.RunID == "" || len(mid.Services) != 1 {
		t.Fatalf("status during the run: %+v", mid)
	}
	var report api.Report
	_ = env.GetWorkflowResult(&report)
	steps := report.Services[0].Steps
	want := []string{rerunjob.StepSaveJob, rerunjob.StepDeleteJob, rerunjob.StepCreateJob, rerunjob.StepWaitJob, datacheck.StepDataCheck}
	if len(steps) != len(want) {
		t.Fatalf("steps %+v", steps)
	}
	for i, s := range steps {
		if s.Name != want[i] || s.State != api.Done || s.Started.IsZero() || s.Ended.IsZero() || s.Message == "" {
			t.Errorf("step %d: %+v", i, s)
		}
	}
}

// sortBatches puts the batches restarted in batch order: several run at
// once and reach the fake in any order.
func (f *kubeFake) sortBatches() {
	f.mu.Lock()
	defer f.mu.Unlock()
	slices.SortFunc(f.batches, func(a, b orca.RestartBatch) int { return a.Batch - b.Batch })
}

// TestHMNFDBatchesAndThreshold: nodes go in batches; failures within the
// threshold are reported, past it they fail the service with the node list;
// only compute nodes that restarted are verified.
func TestHMNFDBatchesAndThreshold(t *testing.T) {
	for _, tc := range []struct {
		name      string
		failing   int
		wantState api.State
	}{{"all ok", 0, api.Done}, {"few failed", 1, api.Done}, {"too many failed", 60, api.Failed}} {
		t.Run(tc.name, func(t *testing.T) {
			env, f := newEnv(t, func(f *kubeFake) {
				f.nodes = 2500
				f.failingHosts = map[string]bool{}
				for i := 1; i <= tc.failing*2; i += 2 {
					f.failingHosts[fmt.Sprintf("nid%06d-nmn", i)] = true
				}
			})
			env.ExecuteWorkflow(api.RepopulateWorkflow, api.Request{Services: []string{"hmnfd"}})
			var report api.Report
			if err := env.GetWorkflowResult(&report); err != nil {
				var appErr *temporal.ApplicationError
				if !errors.As(err, &appErr) || appErr.Details(&report) != nil {
					t.Fatal(err)
				}
			}
			h := serviceState(t, report, api.HMNFD)
			if h.State != tc.wantState {
				t.Fatalf("state %s (%s), want %s", h.State, h.Message, tc.wantState)
			}
			f.sortBatches()
			if len(f.batches) != 3 || len(f.batches[0].Hosts) != 1000 || len(f.batches[2].Hosts) != 501 || strings.Join(f.batches[0].Units, ",") != "cray-dvs-orca,cray-orca" {
				t.Errorf("batches: %d, sizes %d..%d", len(f.batches), len(f.batches[0].Hosts), len(f.batches[len(f.batches)-1].Hosts))
			}
			if h.Nodes == nil || h.Nodes.Total != 2501 || h.Nodes.Unreachable != tc.failing || len(h.NodeProblems) != min(tc.failing, api.NodeProblemsInStatus) {
				t.Errorf("counts %+v problems %d", h.Nodes, len(h.NodeProblems))
			}
			if tc.failing > 0 && !strings.Contains(strings.Join(h.FollowUps, " "), "nid000001-nmn") {
				t.Errorf("follow-ups must name the failed nodes: %v", h.FollowUps)
			}
			if tc.wantState == api.Done && len(f.verified) != 2500-tc.failing {
				t.Errorf("verified %d xnames, want the %d computes that restarted", len(f.verified), 2500-tc.failing)
			}
		})
	}
}

func TestCRUSNotInstalledIsSkipped(t *testing.T) {
	env, f := newEnv(t, func(f *kubeFake) { f.crus = crus.CRUSCheck{NotInstalled: true} })
	env.ExecuteWorkflow(api.RepopulateWorkflow, api.Request{Services: []string{"crus"}})
	var report api.Report
	if err := env.GetWorkflowResult(&report); err != nil {
		t.Fatal(err)
	}
	if c := serviceState(t, report, api.CRUS); c.State != api.Skipped || !strings.Contains(c.Message, "not installed") {
		t.Fatalf("crus %+v", c)
	}
	if f.podDeletes != 0 {
		t.Fatal("the pod of an absent CRUS was restarted")
	}
}

func TestStuckCRUSSessionBecomesAFollowUp(t *testing.T) {
	env, _ := newEnv(t, func(f *kubeFake) {
		f.crus = crus.CRUSCheck{Sessions: []crus.CRUSSessionState{
			{UpgradeID: "a", Completed: true},
			{UpgradeID: "e0131663", State: "UPDATING", Stuck: true, LastMessage: []string{"Began the boot session for step 0: moving to BOOTING"}},
		}}
	})
	env.ExecuteWorkflow(api.RepopulateWorkflow, api.Request{Services: []string{"crus"}})
	var report api.Report
	if err := env.GetWorkflowResult(&report); err != nil {
		t.Fatal(err)
	}
	c := serviceState(t, report, api.CRUS)
	if c.State != api.Done || !strings.Contains(strings.Join(c.FollowUps, " "), "CRUS session e0131663 is stuck in UPDATING") {
		t.Fatalf("crus %+v", c)
	}
}

// cps starts only when bos ended done: without the templates bos restores
// it finds no CPS node and would report "nothing to remount" while CPS
// clients stay mounted.
func TestCPSStartsOnlyWhenBOSIsDone(t *testing.T) {
	for _, tc := range []struct {
		name      string
		configure func(*kubeFake)
		bosGate   *api.GateDecision
		wantCPS   api.State
		wantWords string
	}{
		{"bos rejected", nil, &api.GateDecision{Gate: api.GateBOSTemplates, Decision: api.Reject, By: "ops", Note: "templates not rebuilt yet"},
			api.Skipped, "not started: bos ended failed: gate bos-templates was rejected by ops: templates not rebuilt yet"},
		{"bos failed", func(f *kubeFake) {
			f.restoreErr = temporal.NewNonRetryableApplicationError("BOS answered 500", "BOSDown", nil)
		}, nil, api.Failed, "not started: bos ended failed (failed at step restore-bos-templates: BOS answered 500)"},
		{"bos skipped", func(f *kubeFake) {
			f.planHook = func(p *api.ServicePlan) {
				p.Gates = api.GatePolicy{Deadline: time.Hour, OnDeadline: api.OnDeadlineSkip}
			}
		}, nil, api.Skipped, "not started: bos ended skipped"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			configure := []func(*kubeFake){func(f *kubeFake) { f.cpsNodes = []string{"x1000c0s1b0n0"} }}
			if tc.configure != nil {
				configure = append(configure, tc.configure)
			}
			env, f := newEnv(t, configure...)
			req := api.Request{Services: []string{"bos", "cps"}}
			if tc.name == "bos failed" {
				req.Snapshot = &api.SnapshotInput{Dir: "/snap", SessionTemplates: []json.RawMessage{json.RawMessage(`{"name":"cos-2.0"}`)}}
			}
			if tc.bosGate != nil {
				var d decision
				decide(env, time.Minute, *tc.bosGate, &d)
			}
			env.ExecuteWorkflow(api.RepopulateWorkflow, req)
			var report api.Report
			if err := env.GetWorkflowResult(&report); err != nil {
				var appErr *temporal.ApplicationError
				if !errors.As(err, &appErr) || appErr.Details(&report) != nil {
					t.Fatal(err)
				}
			}
			cps := serviceState(t, report, api.CPS)
			if cps.State != tc.wantCPS || !strings.Contains(cps.Message, tc.wantWords) || len(cps.FollowUps) == 0 {
				t.Errorf("cps %s %q follow-ups %q, want %s with %q", cps.State, cps.Message, cps.FollowUps, tc.wantCPS, tc.wantWords)
			}
			if slices.Contains(f.order, "find-cps-nodes") {
				t.Errorf("cps looked for its nodes although bos is not done: %v", f.order)
			}
		})
	}
}

// cps waits for hmnfd: the nodes cps shuts down would otherwise count as
// hmnfd failures and be missing in the subscription comparison; this way
// round hmnfd is never held behind cps's gates.
func TestCPSWaitsForHMNFD(t *testing.T) {
	env, f := cpsRun(t, func(f *kubeFake) { f.orcaTakes = 20 * time.Second })
	var early api.RunStatus
	env.RegisterDelayedCallback(func() {
		v, err := env.QueryWorkflow(api.StatusQuery)
		if err == nil {
			_ = v.Get(&early)
		}
	}, 10*time.Second)
	var unmount, reboot decision
	decide(env, time.Minute, api.GateDecision{Gate: api.GateCPSUnmount, Decision: api.Approve, By: "ops"}, &unmount)
	decide(env, 2*time.Minute, api.GateDecision{Gate: api.GateCPSReboot, Decision: api.Approve, By: "ops"}, &reboot)
	env.ExecuteWorkflow(api.RepopulateWorkflow, api.Request{Services: []string{"cps", "hmnfd"}})
	if err := env.GetWorkflowError(); err != nil {
		t.Fatal(err)
	}
	if c := serviceState(t, early, api.CPS); c.State != api.Pending || !strings.Contains(c.Message, "waiting for hmnfd to finish first: the compute nodes cps shuts down must not count as hmnfd failures") {
		t.Errorf("cps while hmnfd runs: %s %q", c.State, c.Message)
	}
	if got := strings.Join(f.order, ","); got != "check-hmnfd-ready(budget 0s),restart-orca,find-cps-nodes,bos-shutdown,bos-boot" {
		t.Errorf("order %s: cps must shut nodes down only after hmnfd restarted orca", got)
	}
}

// Runs started before the orderings were versioned replay as they ran:
// cps after bos whatever its outcome, hmnfd at once.
func TestOrderingsBeforeTheirVersion(t *testing.T) {
	env, f := newEnv(t, func(f *kubeFake) {
		f.planHook = func(p *api.ServicePlan) {
			p.Gates = api.GatePolicy{Deadline: time.Hour, OnDeadline: api.OnDeadlineSkip}
		}
	})
	env.OnGetVersion(catalog.ChangeCPSNeedsBOSDone, workflow.DefaultVersion, 1).Return(workflow.DefaultVersion)
	env.OnGetVersion(catalog.ChangeCPSAfterHMNFD, workflow.DefaultVersion, 1).Return(workflow.DefaultVersion)
	env.ExecuteWorkflow(api.RepopulateWorkflow, api.Request{Services: []string{"bos", "cps", "hmnfd"}})
	if err := env.GetWorkflowError(); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(f.order, ","); got != "check-hmnfd-ready(budget 0s),restart-orca,find-cps-nodes" {
		t.Errorf("order %s, want the old one: hmnfd at once, cps after bos although bos was skipped", got)
	}
}

// Children are asked to cancel when the parent closes (terminate, reset):
// the default, terminate, would leave an object deleted mid-recreate.
// internal/e2e's TestTerminateParentDuringDeleteRecreates proves it on a
// real server.
func TestChildrenAreCanceledNotTerminatedWithTheParent(t *testing.T) {
	for _, s := range catalog.Services() {
		opts := childOptions("r1", config.Default().Plan(api.CSM10, s), false)
		if opts.ParentClosePolicy != enumspb.PARENT_CLOSE_POLICY_REQUEST_CANCEL || !opts.WaitForCancellation || opts.WorkflowID != "r1/"+string(s) {
			t.Errorf("%s: child options %+v, want parent-close REQUEST_CANCEL, wait for cancellation, ID r1/%s", s, opts, s)
		}
	}
}

// A plan from an older run's history lacks the fields added since: their
// zero values are defaulted, never used as a budget or a timeout.
func TestOldPlanZeroTimingsAreDefaulted(t *testing.T) {
	env, f := cpsRun(t)
	var heartbeats []time.Duration
	env.SetOnActivityStartedListener(func(info *activity.Info, _ context.Context, _ converter.EncodedValues) {
		if info.ActivityType.Name == api.ActivityWaitNodesState {
			heartbeats = append(heartbeats, info.HeartbeatTimeout)
		}
	})
	for i, gate := range []string{api.GateCPSUnmount, api.GateCPSReboot} {
		env.RegisterDelayedCallback(func() {
			env.SignalWorkflow(api.GateDecisionSignal, api.GateDecision{Gate: gate, Decision: api.Approve, By: "ops"})
		}, time.Duration(i+1)*time.Minute)
	}
	// As an older parent recorded it: no timings, no CPS timeouts.
	old := ServiceInput{RunID: "old-run", Plan: api.ServicePlan{Service: api.CPS, Procedure: api.RemountCPS, CPS: &api.CPSPlan{}}}
	env.ExecuteWorkflow(api.ServiceWorkflow, old)
	if err := env.GetWorkflowError(); err != nil {
		t.Fatal(err)
	}
	if len(f.nodeWaits) != 2 || f.nodeWaits[0].Budget != cps.DefaultShutdown || f.nodeWaits[1].Budget != cps.DefaultBoot || f.nodeWaits[0].Poll != defaultPoll {
		t.Errorf("HSM waits %+v: zero budgets and polls must be defaulted", f.nodeWaits)
	}
	if len(heartbeats) != 2 || heartbeats[0] != defaultHeartbeat {
		t.Errorf("heartbeat timeouts %v, want %s", heartbeats, defaultHeartbeat)
	}
}

// Checking thousands of templates outlasts one read: the step heartbeats
// and has the service's wait budget, not a one-minute read bound.
func TestTemplateCheckHeartbeats(t *testing.T) {
	env, f := newEnv(t)
	var heartbeat time.Duration
	started := false
	env.SetOnActivityStartedListener(func(i *activity.Info, _ context.Context, _ converter.EncodedValues) {
		if i.ActivityType.Name == api.ActivityCheckSessionTemplates {
			heartbeat, started = i.HeartbeatTimeout, true
		}
	})
	env.RegisterDelayedCallback(func() {
		env.SignalWorkflow(api.GateDecisionSignal, api.GateDecision{Gate: api.GateBOSTemplates, Decision: api.Approve, By: "ops"})
	}, time.Minute)
	// The child alone: the test environment leaves heartbeat timeouts out
	// of the activity info of a child's activities.
	env.ExecuteWorkflow(api.ServiceWorkflow, ServiceInput{RunID: "r", Plan: config.Default().Plan(api.CSM10, api.BOS)})
	if err := env.GetWorkflowError(); err != nil || f.checkedTmpls != 1 || !started {
		t.Fatalf("run %v, checked %d", err, f.checkedTmpls)
	}
	if heartbeat <= 0 || heartbeat != time.Duration(config.Default().HeartbeatTimeout) {
		t.Errorf("check-bos-templates heartbeat timeout %s, want heartbeatTimeout", heartbeat)
	}
}

// Discovery in each form a run may have recorded (one entry per node; NID
// ranges with xnames; NID ranges alone, since orca-nid-ranges) gives the
// same batches and the same nodes checked in HMNFD.
func TestOrcaTargetsOldAndCompactForms(t *testing.T) {
	var got [][]string
	for _, form := range []struct {
		name            string
		before, perNode bool // before orca-nid-ranges; discovery's one-entry-per-node result
	}{{"nid ranges", false, false}, {"ranges and xnames", true, false}, {"one entry per node", true, true}} {
		env, f := newEnv(t, func(f *kubeFake) { f.nodes, f.oldTargets = 1500, form.perNode })
		if form.before {
			env.OnGetVersion("orca-nid-ranges", workflow.DefaultVersion, 1).Return(workflow.DefaultVersion)
		}
		var activityTypes []string
		env.SetOnActivityStartedListener(func(info *activity.Info, _ context.Context, _ converter.EncodedValues) {
			activityTypes = append(activityTypes, info.ActivityType.Name)
		})
		env.ExecuteWorkflow(api.RepopulateWorkflow, api.Request{Services: []string{"hmnfd"}})
		if err := env.GetWorkflowError(); err != nil {
			t.Fatal(err)
		}
		var hosts []string
		f.sortBatches()
		for _, b := range f.batches {
			hosts = append(hosts, b.Hosts...)
		}
		if len(hosts) != 1501 || hosts[0] != "nid000001-nmn" || hosts[1500] != "ncn-w001-can.local" || len(f.verified) != 1500 || f.verified[1499] != "x1000c0s1500b0n0" {
			t.Errorf("%s: %d hosts (%s..%s), %d verified", form.name, len(hosts), hosts[0], hosts[len(hosts)-1], len(f.verified))
		}
		discover, verify := api.ActivityDiscoverOrcaNodes, api.ActivityVerifyComputeSubscriptions
		if form.before {
			discover, verify = api.ActivityDiscoverOrcaTargets, api.ActivityVerifySubscriptions
		}
		if !slices.Contains(activityTypes, discover) || !slices.Contains(activityTypes, verify) {
			t.Errorf("%s: activities %v, want %s and %s", form.name, activityTypes, discover, verify)
		}
		got = append(got, hosts)
	}
	if !slices.Equal(got[0], got[1]) || !slices.Equal(got[0], got[2]) {
		t.Error("the forms gave different targets")
	}
}

// TestReleaseDecidesWhatRuns: the detected release is in the report, the
// services CSM 1.5 does not have are skipped with the reason, BSS is a
// follow-up with the restore command, and BOS checks its templates.
func TestReleaseDecidesWhatRuns(t *testing.T) {
	env, f := newEnv(t, func(f *kubeFake) { f.release = api.CSM15 })
	env.ExecuteWorkflow(api.RepopulateWorkflow, api.Request{})
	var report api.Report
	if err := env.GetWorkflowResult(&report); err != nil {
		t.Fatal(err)
	}
	if report.Release != api.CSM15 || report.Detection == nil || !strings.Contains(report.Detection.How, "product catalog") {
		t.Errorf("release %q detection %+v", report.Release, report.Detection)
	}
	for _, s := range []api.Service{api.CRUS, api.REDS, api.CPS, api.ExternalDNS, api.BSS} {
		if ss := serviceState(t, report, s); ss.State != api.Skipped || ss.Message == "" || len(ss.FollowUps) == 0 {
			t.Errorf("%s on csm-1.5: %+v", s, ss)
		}
	}
	if bss := serviceState(t, report, api.BSS); !strings.Contains(strings.Join(bss.FollowUps, " "), "etcd_restore_rebuild.sh -s cray-bss") {
		t.Errorf("bss follow-ups %q", bss.FollowUps)
	}
	bos := serviceState(t, report, api.BOS)
	if bos.State != api.Done || f.checkedTmpls != 1 || len(f.restored) != 0 || !strings.Contains(bos.Steps[0].Message, "Redis") {
		t.Errorf("bos on csm-1.5 must check, not restore: %+v (checked %d restored %d)", bos, f.checkedTmpls, len(f.restored))
	}
	if h := serviceState(t, report, api.HMNFD); h.State != api.Done || len(h.OrcaUnits["cray-orca"]) != 4 {
		t.Errorf("hmnfd on csm-1.5: %+v", h)
	}
}

func TestUndecidableReleaseChangesNothing(t *testing.T) {
	msg := "cannot tell which CSM release this is: product catalog: ConfigMap services/cray-product-catalog not found; API probes: they fit csm-1.3 or csm-1.5; nothing was changed; set release: in the worker config"
	env, f := newEnv(t, func(f *kubeFake) {
		f.detectErr = temporal.NewNonRetryableApplicationError(msg, preflight.ErrRelease, nil)
	})
	env.ExecuteWorkflow(api.RepopulateWorkflow, api.Request{})
	var appErr *temporal.ApplicationError
	if err := env.GetWorkflowError(); !errors.As(err, &appErr) || appErr.Type() != api.PreflightFailedError || !strings.Contains(appErr.Message(), "set release: in the worker config") {
		t.Fatalf("error %v, want preflight failed naming the setting", err)
	}
	if f.deletes+f.creates+f.podDeletes+len(f.batches) != 0 {
		t.Fatal("something changed")
	}
}

// TestHMNFDNotReadyIsRestartedBeforeOrca: HMNFD's pods are restarted, and
// HMNFD waited for, before any orca restart.
func TestHMNFDNotReadyIsRestartedBeforeOrca(t *testing.T) {
	env, f := newEnv(t, func(f *kubeFake) { f.hmnfdNotReady = true })
	env.ExecuteWorkflow(api.RepopulateWorkflow, api.Request{Services: []string{"hmnfd"}})
	var report api.Report
	if err := env.GetWorkflowResult(&report); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(f.order, ","); got != "check-hmnfd-ready(budget 0s),delete-pods,check-hmnfd-ready(budget 10m0s),restart-orca" {
		t.Errorf("order %s", got)
	}
	h := serviceState(t, report, api.HMNFD)
	if h.State != api.Done || h.Steps[1].Name != orca.StepCheckHMNFD || h.Steps[2].State != api.Done || h.Steps[3].State != api.Done {
		t.Errorf("hmnfd %+v", h)
	}
	// Ready from the start: the pods are left alone.
	env, f = newEnv(t)
	env.ExecuteWorkflow(api.RepopulateWorkflow, api.Request{Services: []string{"hmnfd"}})
	if err := env.GetWorkflowResult(&report); err != nil {
		t.Fatal(err)
	}
	if f.podDeletes != 0 || serviceState(t, report, api.HMNFD).Steps[2].State != api.Skipped {
		t.Errorf("a ready HMNFD was restarted: %d pod deletes", f.podDeletes)
	}
}

// A child publishes its final status before it returns. A prerequisite
// whose Done status has arrived but whose result has not must not start
// its dependant a second time when the result arrives (CI saw "cps: child
// workflow execution already started" in internal/webui).
func TestDependantStartsOnceWhenAPrerequisiteReportsDoneBeforeItReturns(t *testing.T) {
	for _, before := range []bool{false, true} {
		starts, err := runWithBOSResultLate(t, before)
		switch {
		case before && (err == nil || !strings.Contains(err.Error(), "failed: cps")):
			t.Errorf("before %s: cps started %d times (err %v), want the second start that failed, as recorded histories have it", changeStartEachServiceOnce, starts, err)
		case !before && (starts != 1 || err != nil):
			t.Errorf("cps started %d times (err %v), want once and the run done", starts, err)
		}
	}
}

func runWithBOSResultLate(t *testing.T, beforeTheChange bool) (cpsStarts int, _ error) {
	env, _ := newEnv(t)
	if beforeTheChange {
		env.OnGetVersion(changeStartEachServiceOnce, workflow.DefaultVersion, 1).Return(workflow.DefaultVersion)
	}
	var mu sync.Mutex
	starts := map[api.Service]int{}
	env.OnWorkflow(api.ServiceWorkflow, mock.Anything, mock.Anything).Return(func(ctx workflow.Context, in ServiceInput) (api.ServiceStatus, error) {
		s := in.Plan.Service
		mu.Lock()
		starts[s]++
		mu.Unlock()
		done := api.ServiceStatus{Service: s, State: api.Done}
		switch s {
		case api.BOS:
			// Done is told at once, the result comes a minute later; hmnfd
			// returns in between.
			parent := workflow.GetInfo(ctx).ParentWorkflowExecution
			_ = workflow.SignalExternalWorkflow(ctx, parent.ID, "", api.StepProgressSignal, done).Get(ctx, nil)
			_ = workflow.Sleep(ctx, time.Minute)
		case api.HMNFD:
			_ = workflow.Sleep(ctx, 10*time.Second)
		case api.CPS:
			// Still running when bos's result arrives.
			_ = workflow.Sleep(ctx, 2*time.Minute)
		}
		return done, nil
	})
	env.ExecuteWorkflow(api.RepopulateWorkflow, api.Request{Services: []string{"bos", "cps", "hmnfd"}})
	return starts[api.CPS], env.GetWorkflowError()
}

// A service that restarts pods is one catalog entry: with a tenth service
// added to the catalog (and nothing else), a run of all services plans,
// preflights and restarts it like meds and reds, with its own steps.
func TestATenthServiceIsOneCatalogEntry(t *testing.T) {
	const sls api.Service = "sls"
	defer catalog.Extend(catalog.Entry{
		Service: sls, Title: "System Layout Service (SLS)", Does: "restarts the cray-sls pods",
		Settings: func() settings.Settings {
			return &restartpods.PodSettings{Namespace: "services", Selector: "app.kubernetes.io/name=cray-sls", ReadyTimeout: settings.Duration(10 * time.Minute)}
		},
		Variants: []catalog.Variant{{Since: api.CSM10, Procedure: api.RestartPods}},
	})()
	report, f := runAllWithTemplates(t)
	if len(report.Services) != len(catalog.Services()) || len(catalog.Services()) != 10 {
		t.Fatalf("%d services in the report, %d in the catalog; want the tenth in both", len(report.Services), len(catalog.Services()))
	}
	st := serviceState(t, report, sls)
	var steps []string
	for _, s := range st.Steps {
		steps = append(steps, s.Name+":"+string(s.State))
	}
	if st.State != api.Done || strings.Join(steps, ",") != "snapshot-pods:done,delete-pods:done,wait-pods-ready:done" {
		t.Errorf("sls %s %q, steps %v", st.State, st.Message, steps)
	}
	if !slices.Contains(f.podSelectors(), "app.kubernetes.io/name=cray-sls") {
		t.Errorf("pods restarted by selector %v: sls's pods are not among them", f.podSelectors())
	}
}

// TestChosenByPlanReachesTheReport: the verdicts start --services auto
// records in the request are the run's status and report, unchanged.
func TestChosenByPlanReachesTheReport(t *testing.T) {
	env, _ := newEnv(t)
	chosen := &api.PlanVerdicts{Release: api.CSM10, Reference: time.Date(2026, 12, 1, 8, 0, 0, 0, time.UTC), ReferenceFrom: "the snapshot /snap",
		Services: []api.PlanVerdict{{Service: api.BSS, Verdict: "lost data", Reason: "BSS boot parameters: 0 now, 4 in the snapshot"},
			{Service: api.FAS, Verdict: "intact", Reason: "FAS images: 3 now, 3 in the snapshot"}}}
	env.ExecuteWorkflow(api.RepopulateWorkflow, api.Request{Services: []string{"bss"}, Plan: chosen})
	if err := env.GetWorkflowError(); err != nil {
		t.Fatalf("workflow failed: %v", err)
	}
	var report api.Report
	if err := env.GetWorkflowResult(&report); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(report.ChosenByPlan, chosen) {
		t.Errorf("chosen by plan in the report: %+v, want %+v", report.ChosenByPlan, chosen)
	}
}

// TestBSSDataCheckFailsWhenBSSStaysEmpty: the Job completes but BSS holds
// nothing: bss fails at its data check, which says so in the message and
// the evidence.
func TestBSSDataCheckFailsWhenBSSStaysEmpty(t *testing.T) {
	env, f := newEnv(t, func(f *kubeFake) { f.bssEmpty = true })
	env.ExecuteWorkflow(api.RepopulateWorkflow, api.Request{Services: []string{"bss"}})
	var appErr *temporal.ApplicationError
	if err := env.GetWorkflowError(); !errors.As(err, &appErr) || appErr.Type() != api.ServicesFailedError {
		t.Fatalf("error %v, want %s", err, api.ServicesFailedError)
	}
	var report api.Report
	if err := appErr.Details(&report); err != nil {
		t.Fatal(err)
	}
	bss := serviceState(t, report, api.BSS)
	last := bss.Steps[len(bss.Steps)-1]
	if bss.State != api.Failed || last.Name != datacheck.StepDataCheck || last.State != api.Failed ||
		!strings.Contains(bss.Message, "at step data-check: BSS holds no boot parameters for 3 of the 3 nodes") {
		t.Errorf("bss %s (%s), last step %+v; want failed at its data check", bss.State, bss.Message, last)
	}
	if e := bss.Evidence; e == nil || e.OK || !strings.Contains(e.Found, "no boot parameters") || !strings.Contains(e.Checked, "every node HSM lists") {
		t.Errorf("evidence %+v, want the failed check and what it found", e)
	}
	if f.creates != 1 {
		t.Errorf("creates %d: the Job runs before the check", f.creates)
	}
}

// TestRecordedPlansRunNoDataCheck: a plan recorded before data checks
// names none: the service ends at its last procedure step, without the
// check's step or activity, as the run did then.
func TestRecordedPlansRunNoDataCheck(t *testing.T) {
	env, f := newEnv(t, func(f *kubeFake) { f.planHook = func(p *api.ServicePlan) { p.DataCheck = "" } })
	env.ExecuteWorkflow(api.RepopulateWorkflow, api.Request{Services: []string{"bss", "fas"}})
	if err := env.GetWorkflowError(); err != nil {
		t.Fatal(err)
	}
	var report api.Report
	if err := env.GetWorkflowResult(&report); err != nil {
		t.Fatal(err)
	}
	for _, s := range report.Services {
		if last := s.Steps[len(s.Steps)-1]; last.Name == datacheck.StepDataCheck || s.State != api.Done {
			t.Errorf("%s: %s, steps %+v; want done without a data check", s.Service, s.State, s.Steps)
		}
		if s.Evidence == nil || !strings.Contains(s.Evidence.Checked, "Complete") {
			t.Errorf("%s: evidence %+v, want the Job's completion", s.Service, s.Evidence)
		}
	}
	if slices.Contains(f.order, "check-boot-parameters") {
		t.Errorf("order %v: the check ran", f.order)
	}
}

// TestDryRunSkipsTheDataCheck: a dry run changes nothing, so there is no
// result to check: the step says what it would check.
func TestDryRunSkipsTheDataCheck(t *testing.T) {
	env, f := newEnv(t)
	env.ExecuteWorkflow(api.RepopulateWorkflow, api.Request{DryRun: true, Services: []string{"bss"}})
	if err := env.GetWorkflowError(); err != nil {
		t.Fatal(err)
	}
	var report api.Report
	if err := env.GetWorkflowResult(&report); err != nil {
		t.Fatal(err)
	}
	bss := serviceState(t, report, api.BSS)
	last := bss.Steps[len(bss.Steps)-1]
	if last.Name != datacheck.StepDataCheck || last.State != api.Skipped || !strings.HasPrefix(last.Message, "dry-run: would check BSS boot parameters") || slices.Contains(f.order, "check-boot-parameters") {
		t.Errorf("last step %+v (order %v); want the data check skipped", last, f.order)
	}
}

// TestUnknownDataCheckFailsTheService: a plan naming a data check this
// worker does not know (made by a newer one) fails the service at that
// check, saying so, rather than ending done unchecked.
func TestUnknownDataCheckFailsTheService(t *testing.T) {
	env, _ := newEnv(t, func(f *kubeFake) {
		f.planHook = func(p *api.ServicePlan) { p.DataCheck = "bss-from-the-future" }
	})
	env.ExecuteWorkflow(api.RepopulateWorkflow, api.Request{Services: []string{"bss"}})
	var appErr *temporal.ApplicationError
	if err := env.GetWorkflowError(); !errors.As(err, &appErr) {
		t.Fatalf("error %v, want the run failed", err)
	}
	var report api.Report
	if err := appErr.Details(&report); err != nil {
		t.Fatal(err)
	}
	bss := serviceState(t, report, api.BSS)
	if bss.State != api.Failed || !strings.Contains(bss.Message, `service bss has no data check "bss-from-the-future"`) {
		t.Errorf("bss %s: %q", bss.State, bss.Message)
	}
}

// TestFailedProofIsTheEvidence: pods that never get Ready fail meds at its
// proof step, and the evidence says what was checked and what was found.
func TestFailedProofIsTheEvidence(t *testing.T) {
	env, _ := newEnv(t, func(f *kubeFake) { f.podsNotReady = true })
	env.ExecuteWorkflow(api.RepopulateWorkflow, api.Request{Services: []string{"meds"}})
	var appErr *temporal.ApplicationError
	if err := env.GetWorkflowError(); !errors.As(err, &appErr) {
		t.Fatalf("error %v, want the run failed", err)
	}
	var report api.Report
	if err := appErr.Details(&report); err != nil {
		t.Fatal(err)
	}
	meds := serviceState(t, report, api.MEDS)
	if e := meds.Evidence; meds.State != api.Failed || e == nil || e.OK || !strings.HasPrefix(e.Checked, "replacement pods Ready (services pods") || e.Found != "1 of 1 replacement pods not Ready after 10m0s" {
		t.Errorf("meds %s, evidence %+v", meds.State, meds.Evidence)
	}
}

// TestOvertakenReportIsDropped: since publish-without-waiting a child does
// not wait for its reports, so one may arrive after a later one; the parent
// keeps the later. Reports of older children (numbered 0) replace as before.
func TestOvertakenReportIsDropped(t *testing.T) {
	w := &repopulate{status: api.RunStatus{Services: []api.ServiceStatus{{Service: api.MEDS, State: api.Pending}}}}
	w.update(api.ServiceStatus{Service: api.MEDS, State: api.Running, Message: "step 2", Report: 2})
	w.update(api.ServiceStatus{Service: api.MEDS, State: api.Running, Message: "step 1", Report: 1})
	if got := w.status.Services[0]; got.Message != "step 2" {
		t.Errorf("report 1 after report 2 left %q, want step 2", got.Message)
	}
	w.update(api.ServiceStatus{Service: api.MEDS, State: api.Running, Message: "step 3", Report: 3})
	w.update(api.ServiceStatus{Service: api.MEDS, State: api.Running, Message: "old child"})
	if got := w.status.Services[0]; got.Message != "old child" {
		t.Errorf("an unnumbered report left %q", got.Message)
	}
}

// TestPrerequisitesFirst: the services another waits for come first, the
// rest after them, each group in the catalog's order.
func TestPrerequisitesFirst(t *testing.T) {
	deps := prerequisites(func(string) bool { return true })
	got := prerequisitesFirst([]api.Service{api.BOS, api.BSS, api.CPS, api.CRUS, api.HMNFD, api.MEDS}, deps)
	if want := []api.Service{api.BOS, api.HMNFD, api.BSS, api.CPS, api.CRUS, api.MEDS}; !slices.Equal(got, want) {
		t.Errorf("prerequisitesFirst = %v, want %v", got, want)
	}
	// Before cps waited for hmnfd, only bos was awaited.
	got = prerequisitesFirst([]api.Service{api.BOS, api.CPS, api.HMNFD, api.MEDS}, prerequisites(func(since string) bool { return since != catalog.ChangeCPSAfterHMNFD }))
	if want := []api.Service{api.BOS, api.CPS, api.HMNFD, api.MEDS}; !slices.Equal(got, want) {
		t.Errorf("without cps-after-hmnfd: %v, want %v", got, want)
	}
}
