package rerunjob_test

import (
	"context"
	"encoding/json"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/mock"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/worker"

	"github.com/csmops/etcd-repopulate/activities"
	"github.com/csmops/etcd-repopulate/internal/api"
	"github.com/csmops/etcd-repopulate/procedures/rerunjob"
	"github.com/csmops/etcd-repopulate/workflows"
)

// jobCalls runs bss's child workflow alone (no parent) on mocked shared
// object activities and returns the activities it called, in order, and
// the service's final status.
func jobCalls(t *testing.T, dryRun bool) ([]string, api.ServiceStatus) {
	t.Helper()
	var suite testsuite.WorkflowTestSuite
	env := suite.NewTestWorkflowEnvironment()
	// Under -race on a loaded machine a workflow task can take over the
	// default second of wall time without any deadlock.
	env.SetWorkerOptions(worker.Options{DeadlockDetectionTimeout: time.Minute})
	workflows.Register(env)
	var mu sync.Mutex
	var calls []string
	called := func(name string) {
		mu.Lock()
		defer mu.Unlock()
		calls = append(calls, name)
	}
	k := &activities.Kube{}
	saved := activities.SavedObject{Kind: activities.JobKind, Ref: api.ObjectRef{Namespace: "services", Name: "cray-reds-init"}, UID: "old-uid", Manifest: json.RawMessage(`{"kind":"Job"}`)}
	env.OnActivity(k.SaveObject, mock.Anything, mock.Anything).Return(func(context.Context, activities.ObjectRequest) (activities.SavedObject, error) {
		called(api.ActivitySaveObject)
		return saved, nil
	})
	env.OnActivity(k.DeleteObject, mock.Anything, mock.Anything).Return(func(_ context.Context, req activities.DeleteRequest) (activities.Outcome, error) {
		called(api.ActivityDeleteObject)
		if req.Saved.UID != saved.UID || string(req.Saved.Manifest) != string(saved.Manifest) {
			t.Errorf("delete got %+v, want the copy save-job returned (in history before anything is deleted)", req.Saved)
		}
		return activities.Outcome{Message: "deleted"}, nil
	})
	env.OnActivity(k.CreateObject, mock.Anything, mock.Anything).Return(func(context.Context, activities.CreateRequest) (activities.Created, error) {
		called(api.ActivityCreateObject)
		return activities.Created{UID: "new-uid"}, nil
	})
	env.OnActivity(k.WaitJobComplete, mock.Anything, mock.Anything).Return(func(context.Context, activities.WaitRequest) (activities.Outcome, error) {
		called(api.ActivityWaitJobComplete)
		return activities.Outcome{Message: "complete"}, nil
	})
	plan := api.ServicePlan{Service: api.BSS, Procedure: api.RerunJob, Object: saved.Ref, Timings: api.Timings{Wait: time.Minute}}
	env.ExecuteWorkflow(api.ServiceWorkflow, workflows.ServiceInput{RunID: "run-1", Plan: plan, DryRun: dryRun})
	if err := env.GetWorkflowError(); err != nil {
		t.Fatal(err)
	}
	var st api.ServiceStatus
	if err := env.GetWorkflowResult(&st); err != nil {
		t.Fatal(err)
	}
	return calls, st
}

// The Job is saved into history before it is deleted, the delete and the
// create work from that copy, and the run waits for the new Job.
func TestRerunJobSavesBeforeDeletingAndWaitsForTheNewJob(t *testing.T) {
	calls, st := jobCalls(t, false)
	want := []string{api.ActivitySaveObject, api.ActivityDeleteObject, api.ActivityCreateObject, api.ActivityWaitJobComplete}
	if !slices.Equal(calls, want) {
		t.Fatalf("activities %v, want %v", calls, want)
	}
	var steps []string
	for _, s := range st.Steps {
		steps = append(steps, s.Name)
		if s.State != api.Done {
			t.Errorf("step %s is %s", s.Name, s.State)
		}
	}
	if !slices.Equal(steps, []string{rerunjob.StepSaveJob, rerunjob.StepDeleteJob, rerunjob.StepCreateJob, rerunjob.StepWaitJob}) || st.State != api.Done {
		t.Errorf("status %+v", st)
	}
}

// A dry run only reads: the Job is saved, nothing is deleted or created.
func TestRerunJobDryRunOnlySaves(t *testing.T) {
	calls, st := jobCalls(t, true)
	if !slices.Equal(calls, []string{api.ActivitySaveObject}) {
		t.Fatalf("activities %v, want only %s", calls, api.ActivitySaveObject)
	}
	for _, s := range st.Steps[1:] {
		if s.State != api.Skipped {
			t.Errorf("dry-run step %s is %s, want skipped", s.Name, s.State)
		}
	}
}
