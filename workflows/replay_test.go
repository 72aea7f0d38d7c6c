package workflows

import (
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	enumspb "go.temporal.io/api/enums/v1"
	historypb "go.temporal.io/api/history/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/log"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	"github.com/csmops/etcd-repopulate/internal/api"
	"github.com/csmops/etcd-repopulate/internal/catalog"
)

// historiesDir holds the histories `make histories` recorded on the real
// Temporal dev server: one directory per recording (named after the code
// that made it), in it one per scenario, in that one file per workflow.
// Old recordings are kept: they are the runs a new worker may still meet.
const historiesDir = "testdata/histories"

func recordedHistories(t *testing.T) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(historiesDir, "*", "*", "*.json"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatalf("no recorded histories under %s: run make histories", historiesDir)
	}
	return files
}

// replay replays one recorded history against the workflows as the worker
// registers them. The file is named after the workflow's ID ("/" written as
// "@"), which the replay needs: a run names its children after its own ID.
func replay(file string) error {
	f, err := os.Open(file)
	if err != nil {
		return err
	}
	defer f.Close()
	history, err := client.HistoryFromJSON(f, client.HistoryJSONOptions{})
	if err != nil {
		return fmt.Errorf("%s: %w", file, err)
	}
	id := strings.ReplaceAll(strings.TrimSuffix(filepath.Base(file), ".json"), "@", "/")
	r := worker.NewWorkflowReplayer()
	Register(r)
	logger := log.NewStructuredLogger(slog.New(slog.NewTextHandler(io.Discard, nil)))
	return r.ReplayWorkflowHistoryWithOptions(logger, history, worker.ReplayWorkflowHistoryOptions{OriginalExecution: workflow.Execution{ID: id}})
}

// TestRecordedHistoriesReplay is what keeps an upgrade from breaking runs in
// flight: every recorded history must replay against today's workflow code.
// A change that would make a run take another path than its history says
// fails here; it must go behind workflow.GetVersion (docs/upgrading.md).
func TestRecordedHistoriesReplay(t *testing.T) {
	scenarios := map[string]map[string]bool{} // recording -> scenarios
	for _, file := range recordedHistories(t) {
		recording := filepath.Base(filepath.Dir(filepath.Dir(file)))
		if scenarios[recording] == nil {
			scenarios[recording] = map[string]bool{}
		}
		scenarios[recording][filepath.Base(filepath.Dir(file))] = true
		name := strings.TrimPrefix(file, historiesDir+string(filepath.Separator))
		t.Run(name, func(t *testing.T) {
			if err := replay(file); err != nil {
				t.Fatalf("%s no longer replays: %v", file, err)
			}
		})
	}
	for recording, got := range scenarios {
		for _, want := range []string{"all-nine-done", "waiting-bos-templates", "waiting-cps-unmount", "waiting-cps-reboot", "hmnfd-mid-batches", "failed-service", "canceled"} {
			if !got[want] {
				t.Errorf("recording %s lacks scenario %s: run make histories again", recording, want)
			}
		}
	}
}

// TestReplayCatchesAnOrderingChange shows the replay test can fail: make
// cps wait for hmnfd (so that cps's shut-down nodes do not count as hmnfd
// failures) without its version check, and the recorded nine-service run,
// which started cps as soon as bos was done while hmnfd still ran, no
// longer replays.
func TestReplayCatchesAnOrderingChange(t *testing.T) {
	file := filepath.Join(historiesDir, "released-c94cbdc", "all-nine-done", "hist-all-nine.json")
	if _, err := os.Stat(file); err != nil {
		t.Fatalf("%v: run make histories", err)
	}
	// The orderings of the catalog, without their version checks.
	saved := prerequisites
	prerequisites = func(func(string) bool) map[api.Service][]catalog.Prerequisite {
		return saved(func(string) bool { return true })
	}
	defer func() { prerequisites = saved }()
	err := replay(file)
	if err == nil {
		t.Fatal("the nine-service history replayed with cps waiting for hmnfd: the replay test cannot catch an unversioned ordering change")
	}
	t.Logf("replay refused, as it must: %v", err)
}

// TestStepsDoNotWaitForTheirReports reads the children's recorded
// histories (real server): since publish-without-waiting no activity is
// scheduled by a workflow task that only a report's delivery woke; before
// it, every step did that (the check finds such a task in the older
// recordings, so it can fail).
func TestStepsDoNotWaitForTheirReports(t *testing.T) {
	withMarker, oldWaits := 0, 0
	for _, file := range recordedHistories(t) {
		if !strings.Contains(filepath.Base(file), "@") {
			continue // a run, not a child
		}
		raw, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		history, err := client.HistoryFromJSON(bytes.NewReader(raw), client.HistoryJSONOptions{})
		if err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		woken := wokenByReportDelivery(history.GetEvents())
		if !hasVersionMarker(history.GetEvents(), "publish-without-waiting") {
			oldWaits += woken
			continue
		}
		withMarker++
		if woken > 0 {
			t.Errorf("%s: %d activities scheduled by a workflow task only a report's delivery woke", file, woken)
		}
	}
	t.Logf("%d children recorded since publish-without-waiting; %d activities in older ones scheduled only after a report's delivery", withMarker, oldWaits)
	if oldWaits == 0 {
		t.Error("no recording from before publish-without-waiting shows a step waiting for its report: the check would not see one")
	}
	if withMarker == 0 {
		t.Skip("no recording since publish-without-waiting yet: make histories")
	}
}

// hasVersionMarker: the history recorded GetVersion's marker for changeID.
func hasVersionMarker(events []*historypb.HistoryEvent, changeID string) bool {
	for _, e := range events {
		for _, p := range e.GetMarkerRecordedEventAttributes().GetDetails()["change-id"].GetPayloads() {
			if string(p.GetData()) == strconv.Quote(changeID) {
				return true
			}
		}
	}
	return false
}

// wokenByReportDelivery counts the activities scheduled by workflow tasks
// that nothing but ExternalWorkflowExecutionSignaled events woke: the
// events between the task before's commands and the task's schedule.
func wokenByReportDelivery(events []*historypb.HistoryEvent) int {
	commands := map[enumspb.EventType]bool{
		enumspb.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED: true, enumspb.EVENT_TYPE_SIGNAL_EXTERNAL_WORKFLOW_EXECUTION_INITIATED: true,
		enumspb.EVENT_TYPE_MARKER_RECORDED: true, enumspb.EVENT_TYPE_TIMER_STARTED: true, enumspb.EVENT_TYPE_TIMER_CANCELED: true,
		enumspb.EVENT_TYPE_START_CHILD_WORKFLOW_EXECUTION_INITIATED: true, enumspb.EVENT_TYPE_ACTIVITY_TASK_CANCEL_REQUESTED: true,
		enumspb.EVENT_TYPE_UPSERT_WORKFLOW_SEARCH_ATTRIBUTES: true, enumspb.EVENT_TYPE_WORKFLOW_PROPERTIES_MODIFIED: true,
		enumspb.EVENT_TYPE_REQUEST_CANCEL_EXTERNAL_WORKFLOW_EXECUTION_INITIATED: true,
		enumspb.EVENT_TYPE_WORKFLOW_TASK_SCHEDULED:                              true, enumspb.EVENT_TYPE_WORKFLOW_TASK_STARTED: true,
	}
	n := 0
	woken := map[enumspb.EventType]bool{} // what came in since the last task's commands
	for _, e := range events {
		switch t := e.GetEventType(); {
		case t == enumspb.EVENT_TYPE_WORKFLOW_TASK_COMPLETED:
			// The task just completed was woken by woken; its commands follow.
			deliveriesOnly := len(woken) == 1 && woken[enumspb.EVENT_TYPE_EXTERNAL_WORKFLOW_EXECUTION_SIGNALED]
			clear(woken)
			for _, c := range events[e.GetEventId():] { // events[i] has ID i+1
				if c.GetEventType() == enumspb.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED && c.GetActivityTaskScheduledEventAttributes().GetWorkflowTaskCompletedEventId() == e.GetEventId() && deliveriesOnly {
					n++
				}
				if !commands[c.GetEventType()] {
					break
				}
			}
		case !commands[t]:
			woken[t] = true
		}
	}
	return n
}

// TestRecordedRunsStartPrerequisitesFirst reads the runs' recorded
// histories (real server): since start-prerequisites-first, among the
// children a run starts together, those another service waits for come
// first; the older recordings start hmnfd after others (so it can fail).
func TestRecordedRunsStartPrerequisitesFirst(t *testing.T) {
	awaited := map[string]bool{}
	for _, ps := range prerequisites(func(string) bool { return true }) {
		for _, p := range ps {
			awaited[string(p.Service)] = true
		}
	}
	withMarker, oldLate := 0, 0
	for _, file := range recordedHistories(t) {
		if strings.Contains(filepath.Base(file), "@") {
			continue // a child
		}
		f, err := os.Open(file)
		if err != nil {
			t.Fatal(err)
		}
		history, err := client.HistoryFromJSON(f, client.HistoryJSONOptions{})
		f.Close()
		if err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		// The children started by the same workflow task, in command order.
		byTask := map[int64][]string{}
		var tasks []int64
		for _, e := range history.GetEvents() {
			if a := e.GetStartChildWorkflowExecutionInitiatedEventAttributes(); a != nil {
				id := a.GetWorkflowId()
				if _, seen := byTask[a.GetWorkflowTaskCompletedEventId()]; !seen {
					tasks = append(tasks, a.GetWorkflowTaskCompletedEventId())
				}
				byTask[a.GetWorkflowTaskCompletedEventId()] = append(byTask[a.GetWorkflowTaskCompletedEventId()], id[strings.LastIndex(id, "/")+1:])
			}
		}
		late := 0
		for _, task := range tasks {
			others := false
			for _, s := range byTask[task] {
				if !awaited[s] {
					others = true
				} else if others {
					late++
				}
			}
		}
		if !hasVersionMarker(history.GetEvents(), changeStartPrerequisitesFirst) {
			oldLate += late
			continue
		}
		withMarker++
		if late > 0 {
			t.Errorf("%s: %d awaited services started after others in the same workflow task: %v", file, late, byTask)
		}
	}
	t.Logf("%d runs recorded since start-prerequisites-first; %d awaited services started late in older ones", withMarker, oldLate)
	if oldLate == 0 {
		t.Error("no older recording starts an awaited service after another: the check would not see one")
	}
	if withMarker == 0 {
		t.Skip("no recording since start-prerequisites-first yet: make histories")
	}
}
