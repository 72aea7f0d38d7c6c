package cli

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/client"
	sdklog "go.temporal.io/sdk/log"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	"github.com/csmops/etcd-repopulate/internal/api"
	"github.com/csmops/etcd-repopulate/internal/devserver"
	"github.com/csmops/etcd-repopulate/internal/testenv"
)

// The commands are tested against a real Temporal dev server, started once
// by the first test that needs it (the pure renderer tests do not), and a
// scripted stand-in for the Repopulate workflow.

const fixtureQueue = "cli-fixture"

var (
	serverOnce    sync.Once
	server        *devserver.Server
	tc            client.Client
	fixtureWorker worker.Worker
	scratch       string
	serverErr     error
	cancelAll     context.CancelFunc
	binOnce       sync.Once
	binPath       string
	binErr        error
)

func TestMain(m *testing.M) {
	code := m.Run()
	planStop()
	if server != nil {
		if fixtureWorker != nil {
			fixtureWorker.Stop()
		}
		tc.Close()
		cancelAll()
		server.Stop()
	}
	if binPath != "" {
		os.RemoveAll(filepath.Dir(binPath))
	}
	if scratch != "" {
		if code == 0 {
			os.RemoveAll(scratch)
		} else {
			fmt.Fprintf(os.Stderr, "cli tests: Temporal logs kept in %s\n", scratch)
		}
	}
	os.Exit(code)
}

// temporalServer starts the dev server and a worker for the fixture.
func temporalServer(t *testing.T) string {
	t.Helper()
	serverOnce.Do(func() {
		var ctx context.Context
		ctx, cancelAll = context.WithCancel(context.Background())
		scratch = testenv.KeepDir("cli-")
		if server, serverErr = testenv.Temporal(ctx, scratch); serverErr != nil {
			return
		}
		// The fixture worker's debug lines would bury a failure's output.
		quiet := sdklog.NewStructuredLogger(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})))
		if tc, serverErr = client.Dial(client.Options{HostPort: server.Address, Logger: quiet}); serverErr != nil {
			return
		}
		fixtureWorker = worker.New(tc, fixtureQueue, worker.Options{})
		fixtureWorker.RegisterWorkflowWithOptions(fixtureWorkflow, workflow.RegisterOptions{Name: api.RepopulateWorkflow})
		fixtureWorker.RegisterWorkflowWithOptions(fixtureNodeBatches, workflow.RegisterOptions{Name: "FixtureNodeBatches"})
		fixtureWorker.RegisterActivityWithOptions(func(_ context.Context, b nodeBatch) (nodeBatch, error) { return b, nil },
			activity.RegisterOptions{Name: api.ActivityRestartOrca})
		serverErr = fixtureWorker.Start()
	})
	if serverErr != nil {
		t.Fatalf("temporal dev server: %v", serverErr)
	}
	return server.Address
}

// fixtureInput scripts the fixture.
type fixtureInput struct {
	// Script is what the status query answers, one snapshot after another.
	Script []api.RunStatus
	Every  time.Duration
	// Hold keeps the run open after the script, so that gates can be decided.
	Hold bool
	// NodeBatches, if any, are the RestartOrca results a child named
	// RUN_ID/hmnfd records in its history before the script runs.
	NodeBatches []nodeBatch
}

// fixtureNodeBatches is a TEST FIXTURE: it records each batch as the result
// of an activity named RestartOrca, where report --nodes reads them.
func fixtureNodeBatches(ctx workflow.Context, batches []nodeBatch) error {
	ctx = workflow.WithActivityOptions(ctx, workflow.ActivityOptions{StartToCloseTimeout: time.Minute})
	for _, b := range batches {
		if err := workflow.ExecuteActivity(ctx, api.ActivityRestartOrca, b).Get(ctx, nil); err != nil {
			return err
		}
	}
	return nil
}

// fixtureWorkflow is a TEST FIXTURE FOR THE CLI ONLY, registered as
// "Repopulate": it answers the status query from a script and takes the
// decide-gate Update with a validator, as the contract in internal/api says
// the real parent does. The real workflow is in workflows/.
func fixtureWorkflow(ctx workflow.Context, in fixtureInput) (api.RunStatus, error) {
	cur := in.Script[0]
	if err := workflow.SetQueryHandler(ctx, api.StatusQuery, func() (api.RunStatus, error) { return cur, nil }); err != nil {
		return cur, err
	}
	find := func(name string) *api.GateStatus {
		for i := range cur.Services {
			for j := range cur.Services[i].Gates {
				if cur.Services[i].Gates[j].Name == name {
					return &cur.Services[i].Gates[j]
				}
			}
		}
		return nil
	}
	err := workflow.SetUpdateHandlerWithOptions(ctx, api.DecideGateUpdate,
		func(ctx workflow.Context, d api.GateDecision) (api.GateStatus, error) {
			g := find(d.Gate)
			g.State = api.GateApproved
			if d.Decision == api.Reject {
				g.State = api.GateRejected
			}
			g.Decided, g.By, g.Note = workflow.Now(ctx), d.By, d.Note
			return *g, nil
		},
		workflow.UpdateHandlerOptions{Validator: func(_ workflow.Context, d api.GateDecision) error {
			g := find(d.Gate)
			switch {
			case g == nil:
				return fmt.Errorf("no gate %q in run %s", d.Gate, cur.RunID)
			case g.State != api.GateWaiting:
				return fmt.Errorf("gate %q is not waiting (state %s, decided by %s at %s)", d.Gate, g.State, g.By, g.Decided.Format(time.RFC3339))
			}
			return nil
		}})
	if err != nil {
		return cur, err
	}
	if len(in.NodeBatches) > 0 {
		cctx := workflow.WithChildOptions(ctx, workflow.ChildWorkflowOptions{WorkflowID: api.ServiceWorkflowID(workflow.GetInfo(ctx).WorkflowExecution.ID, api.HMNFD)})
		if err := workflow.ExecuteChildWorkflow(cctx, "FixtureNodeBatches", in.NodeBatches).Get(ctx, nil); err != nil {
			return cur, err
		}
	}
	for _, next := range in.Script[1:] {
		if err := workflow.Sleep(ctx, in.Every); err != nil {
			return cur, err
		}
		cur = next
	}
	if in.Hold {
		if err := workflow.Await(ctx, func() bool { return false }); err != nil {
			return cur, err
		}
	}
	if cur.State != api.Done {
		return cur, temporal.NewNonRetryableApplicationError("services failed", api.ServicesFailedError, nil, cur)
	}
	return cur, nil
}

// startFixture starts a fixture run with the given ID and memo.
func startFixture(t *testing.T, id string, in fixtureInput, memo map[string]any) {
	t.Helper()
	temporalServer(t)
	for i := range in.Script {
		in.Script[i].RunID = id
	}
	_, err := tc.ExecuteWorkflow(context.Background(), client.StartWorkflowOptions{ID: id, TaskQueue: fixtureQueue, Memo: memo}, api.RepopulateWorkflow, in)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tc.TerminateWorkflow(context.Background(), id, "", "test over") })
}

// run executes the CLI in-process against the dev server.
func run(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	var out, errb bytes.Buffer
	full := append([]string{"--address", temporalServer(t), "--dial-timeout", "5s"}, args...)
	code = Execute(context.Background(), full, Streams{Out: &out, Err: &errb})
	return out.String(), errb.String(), code
}

// binary builds ./starter once, for the tests that need a real process.
func binary(t *testing.T) string {
	t.Helper()
	binOnce.Do(func() {
		dir, err := os.MkdirTemp("", "cli-bin-")
		if err != nil {
			binErr = err
			return
		}
		binPath = filepath.Join(dir, "repopulate")
		cmd := exec.Command("go", "build", "-o", binPath, "./starter")
		cmd.Dir = testenv.RepoRoot()
		if out, err := cmd.CombinedOutput(); err != nil {
			binErr = fmt.Errorf("build ./starter: %v\n%s", err, out)
		}
	})
	if binErr != nil {
		t.Fatal(binErr)
	}
	return binPath
}
