// Package webui checks what an operator sees of a run in the Temporal Web UI,
// in a real browser: Debian's chromium, headless, against the dev server's
// bundled UI.
package webui

import (
	"bytes"
	"context"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	"github.com/csmops/etcd-repopulate/internal/api"
	"github.com/csmops/etcd-repopulate/internal/browser"
	"github.com/csmops/etcd-repopulate/internal/devserver"
	"github.com/csmops/etcd-repopulate/internal/testenv"
	"github.com/csmops/etcd-repopulate/internal/workerconfig"
)

// renderTimeout bounds one page: on this 2-core machine shared with other
// builds a render took up to ~18 s.
const renderTimeout = time.Minute

func startTemporal(t *testing.T, dir string) (*devserver.Server, client.Client) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	srv, err := testenv.Temporal(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Stop)
	tc, err := client.Dial(client.Options{HostPort: srv.Address})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(tc.Close)
	return srv, tc
}

// runPage is the UI's page of one workflow run: its event history, above
// which every tab (relationships, user metadata ...) sits.
func runPage(srv *devserver.Server, workflowID, runID, tab string) string {
	return fmt.Sprintf("%s/namespaces/default/workflows/%s/%s/%s", srv.UIURL, url.PathEscape(workflowID), runID, tab)
}

// render opens u in chromium until every text in want is visible, keeps a
// screenshot, the DOM and the visible text named name in the test's
// artifacts and logs it.
func render(t *testing.T, artifacts, name, u string, want ...string) *browser.Page {
	t.Helper()
	shot := filepath.Join(artifacts, name+".png")
	// 1400 px high: a run's relationships page then shows all nine
	// services' rows in the screenshot.
	page, err := browser.Render(context.Background(), u, browser.Options{Want: want, Timeout: renderTimeout, Screenshot: shot, Width: 1600, Height: 1400})
	if page != nil && page.DOM != "" {
		_ = os.WriteFile(filepath.Join(artifacts, name+".html"), []byte(page.DOM), 0o644)
	}
	// The visible text too: the DOM holds user metadata only as the
	// markdown in its iframes' URLs, the text as the UI rendered it.
	if page != nil && page.Text != "" {
		_ = os.WriteFile(filepath.Join(artifacts, name+".txt"), []byte(page.Text), 0o644)
	}
	if err != nil {
		if page != nil {
			t.Logf("visible text of %s:\n%s", u, page.Text)
		}
		t.Fatalf("%v (screenshot %s)", err, shot)
	}
	t.Logf("%s rendered in %s (ends at %s); screenshot %s", u, page.Elapsed.Round(time.Millisecond), page.URL, shot)
	return page
}

// TestRunPageListsServiceWorkflows starts a real dry run with the real
// worker on the simulated cluster and finds each service's child workflow
// on the run's page.
func TestRunPageListsServiceWorkflows(t *testing.T) {
	testenv.Chromium(t)
	artifacts, scratch := testenv.Artifacts(t), t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	srv, tc := startTemporal(t, scratch)
	cluster, err := testenv.Cluster(ctx, filepath.Join(scratch, "cluster"), true)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cluster.Stop)
	cli, workerBin, err := testenv.BuildCommands(filepath.Join(scratch, "bin"))
	if err != nil {
		t.Fatal(err)
	}
	const queue = "webui"
	// The release is named rather than detected, and FAS re-runs the
	// simulated cluster's loader Job; the CSM API emulator is there for
	// the data checks that close bss and fas (skipped in a dry run, but
	// preflight checks that they could run).
	const secret = "webui-client-secret"
	emu, sys, err := testenv.Emulator(scratch, testenv.CSMOptions{Release: api.CSM10, ClientSecret: secret, Computes: 2})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { emu.Close() })
	sys.Release, sys.SecretFile = api.CSM10, filepath.Join(scratch, "client-secret")
	if err := os.WriteFile(sys.SecretFile, []byte(secret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := workerconfig.Endpoints(sys)
	workerconfig.FAS(cfg).Job = workerconfig.FASLoaderJob
	testenv.StartWorker(t, testenv.WorkerOptions{BinDir: filepath.Dir(workerBin), LogDir: artifacts, LogFile: filepath.Join(artifacts, "worker.log"),
		Address: srv.Address, Queue: queue, Config: cfg, Kubeconfig: cluster.Kubeconfig})

	const run = "webui-dry"
	services := []string{"bss", "fas", "meds", "reds", "externaldns"}
	runCtx, cancelRun := context.WithTimeout(ctx, 3*time.Minute)
	defer cancelRun()
	cmd := exec.CommandContext(runCtx, cli, "--address", srv.Address, "--task-queue", queue, "--ui-url", srv.UIURL,
		"start", "--dry-run", "--wait", "--id", run, "--services", strings.Join(services, ","))
	var out, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("repopulate start: %v\nstdout:\n%s\nstderr:\n%s", err, out.String(), stderr.String())
	}
	desc, err := tc.DescribeWorkflowExecution(ctx, run, "")
	if err != nil {
		t.Fatal(err)
	}
	runID := desc.WorkflowExecutionInfo.Execution.RunId

	// The link the CLI prints names the run without Temporal's run ID; the
	// UI opens the run's latest execution.
	link := cliLink(t, out.String())
	page := render(t, artifacts, "cli-link", link, runID)
	if want := runPage(srv, run, runID, "history"); page.URL != want {
		t.Errorf("the CLI's link %s ends at %s, want %s", link, page.URL, want)
	}

	// The Relationships tab draws the run's tree: one row per child with its
	// status, type and workflow ID. (The History tab lists "Child Workflow
	// Execution Started" events without the IDs.)
	var children []string
	for _, s := range services {
		children = append(children, api.ServiceWorkflowID(run, api.Service(s)))
	}
	page = render(t, artifacts, "relationships", runPage(srv, run, runID, "relationships"), children...)
	lines := visibleLines(page)
	for _, id := range children {
		if !slices.Contains(lines, id) {
			t.Errorf("relationships: no line %q", id)
		}
	}
	if !adjacent(lines, "Child Count", fmt.Sprint(len(services))) {
		t.Errorf("relationships: no Child Count %d in\n%s", len(services), page.Text)
	}
}

// visibleLines are the page's non-empty lines of visible text, trimmed.
func visibleLines(p *browser.Page) []string {
	var lines []string
	for _, l := range strings.Split(p.Text, "\n") {
		if l = strings.TrimSpace(l); l != "" {
			lines = append(lines, l)
		}
	}
	return lines
}

// adjacent reports whether line b directly follows line a: a label and its
// value in the UI's layout.
func adjacent(lines []string, a, b string) bool {
	for i := 1; i < len(lines); i++ {
		if lines[i-1] == a && lines[i] == b {
			return true
		}
	}
	return false
}

// cliLink is the Web UI link in repopulate start's text output.
func cliLink(t *testing.T, out string) string {
	t.Helper()
	for _, l := range strings.Split(out, "\n") {
		if u, ok := strings.CutPrefix(l, "Web UI: "); ok {
			return u
		}
	}
	t.Fatalf("repopulate start printed no Web UI link:\n%s", out)
	return ""
}

// fixtureDetails is what detailsFixture publishes; not its input, so that
// the page cannot show it as the workflow's input instead.
const fixtureDetails = "Waiting for approval of gate cps-restart"

// detailsFixture stands for a step that is waiting: it publishes its
// current details, as the lead's workflows will, and waits to be told to
// finish.
func detailsFixture(ctx workflow.Context) error {
	workflow.SetCurrentDetails(ctx, fixtureDetails)
	workflow.GetSignalChannel(ctx, "finish").Receive(ctx, nil)
	return nil
}

// TestRunningWorkflowShowsCurrentDetails proves the mechanism the lead's
// workflows use to tell an operator what a running step waits for: a
// workflow's static summary and current details show on its page while it
// runs.
func TestRunningWorkflowShowsCurrentDetails(t *testing.T) {
	testenv.Chromium(t)
	artifacts := testenv.Artifacts(t)
	srv, tc := startTemporal(t, t.TempDir())
	const queue = "webui-fixture"
	w := worker.New(tc, queue, worker.Options{})
	w.RegisterWorkflowWithOptions(detailsFixture, workflow.RegisterOptions{Name: "DetailsFixture"})
	if err := w.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(w.Stop)

	ctx := context.Background()
	const summary = "fixture: cps gate"
	run, err := tc.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: "webui-fixture", TaskQueue: queue, StaticSummary: summary}, "DetailsFixture")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tc.SignalWorkflow(ctx, run.GetID(), run.GetRunID(), "finish", nil) })

	// The User Metadata tab shows the static summary and, by querying the
	// running workflow, its current details; both as markdown in iframes.
	page := render(t, artifacts, "user-metadata", runPage(srv, run.GetID(), run.GetRunID(), "user-metadata"), summary, fixtureDetails)
	if !adjacent(visibleLines(page), "Running", run.GetID()) {
		t.Errorf("the page does not show %s as Running:\n%s", run.GetID(), page.Text)
	}
}
