package main

import (
	"strings"
	"testing"
	"time"

	commonpb "go.temporal.io/api/common/v1"
	enumspb "go.temporal.io/api/enums/v1"
	historypb "go.temporal.io/api/history/v1"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// TestReadHistory: activities, timers, children and signals are matched to
// their closing events by id, and workflow tasks are summed.
func TestReadHistory(t *testing.T) {
	t0 := time.Date(2026, 12, 2, 3, 0, 0, 0, time.UTC)
	ev := func(id int64, at time.Duration, typ enumspb.EventType, set func(*historypb.HistoryEvent)) *historypb.HistoryEvent {
		e := &historypb.HistoryEvent{EventId: id, EventTime: timestamppb.New(t0.Add(at)), EventType: typ}
		if set != nil {
			set(e)
		}
		return e
	}
	ms := time.Millisecond
	events := []*historypb.HistoryEvent{
		ev(1, 0, enumspb.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED, nil),
		ev(2, 0, enumspb.EVENT_TYPE_WORKFLOW_TASK_SCHEDULED, nil),
		ev(3, 10*ms, enumspb.EVENT_TYPE_WORKFLOW_TASK_STARTED, nil),
		ev(4, 30*ms, enumspb.EVENT_TYPE_WORKFLOW_TASK_COMPLETED, func(e *historypb.HistoryEvent) {
			e.Attributes = &historypb.HistoryEvent_WorkflowTaskCompletedEventAttributes{WorkflowTaskCompletedEventAttributes: &historypb.WorkflowTaskCompletedEventAttributes{ScheduledEventId: 2}}
		}),
		ev(5, 30*ms, enumspb.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED, func(e *historypb.HistoryEvent) {
			e.Attributes = &historypb.HistoryEvent_ActivityTaskScheduledEventAttributes{ActivityTaskScheduledEventAttributes: &historypb.ActivityTaskScheduledEventAttributes{ActivityType: &commonpb.ActivityType{Name: "RestartOrca"}}}
		}),
		ev(6, 40*ms, enumspb.EVENT_TYPE_SIGNAL_EXTERNAL_WORKFLOW_EXECUTION_INITIATED, func(e *historypb.HistoryEvent) {
			e.Attributes = &historypb.HistoryEvent_SignalExternalWorkflowExecutionInitiatedEventAttributes{SignalExternalWorkflowExecutionInitiatedEventAttributes: &historypb.SignalExternalWorkflowExecutionInitiatedEventAttributes{SignalName: "step-progress"}}
		}),
		ev(7, 50*ms, enumspb.EVENT_TYPE_ACTIVITY_TASK_STARTED, func(e *historypb.HistoryEvent) {
			e.Attributes = &historypb.HistoryEvent_ActivityTaskStartedEventAttributes{ActivityTaskStartedEventAttributes: &historypb.ActivityTaskStartedEventAttributes{ScheduledEventId: 5, Attempt: 2}}
		}),
		ev(8, 70*ms, enumspb.EVENT_TYPE_EXTERNAL_WORKFLOW_EXECUTION_SIGNALED, func(e *historypb.HistoryEvent) {
			e.Attributes = &historypb.HistoryEvent_ExternalWorkflowExecutionSignaledEventAttributes{ExternalWorkflowExecutionSignaledEventAttributes: &historypb.ExternalWorkflowExecutionSignaledEventAttributes{InitiatedEventId: 6}}
		}),
		ev(9, 5050*ms, enumspb.EVENT_TYPE_ACTIVITY_TASK_COMPLETED, func(e *historypb.HistoryEvent) {
			e.Attributes = &historypb.HistoryEvent_ActivityTaskCompletedEventAttributes{ActivityTaskCompletedEventAttributes: &historypb.ActivityTaskCompletedEventAttributes{ScheduledEventId: 5}}
		}),
		ev(10, 5100*ms, enumspb.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED, func(e *historypb.HistoryEvent) {
			e.Attributes = &historypb.HistoryEvent_ActivityTaskScheduledEventAttributes{ActivityTaskScheduledEventAttributes: &historypb.ActivityTaskScheduledEventAttributes{ActivityType: &commonpb.ActivityType{Name: "RestartOrca"}}}
		}),
		ev(11, 5200*ms, enumspb.EVENT_TYPE_ACTIVITY_TASK_STARTED, func(e *historypb.HistoryEvent) {
			e.Attributes = &historypb.HistoryEvent_ActivityTaskStartedEventAttributes{ActivityTaskStartedEventAttributes: &historypb.ActivityTaskStartedEventAttributes{ScheduledEventId: 10, Attempt: 1}}
		}),
		ev(12, 6000*ms, enumspb.EVENT_TYPE_ACTIVITY_TASK_FAILED, func(e *historypb.HistoryEvent) {
			e.Attributes = &historypb.HistoryEvent_ActivityTaskFailedEventAttributes{ActivityTaskFailedEventAttributes: &historypb.ActivityTaskFailedEventAttributes{ScheduledEventId: 10}}
		}),
		ev(13, 6000*ms, enumspb.EVENT_TYPE_TIMER_STARTED, func(e *historypb.HistoryEvent) {
			e.Attributes = &historypb.HistoryEvent_TimerStartedEventAttributes{TimerStartedEventAttributes: &historypb.TimerStartedEventAttributes{StartToFireTimeout: durationpb.New(2 * time.Second)}}
		}),
		ev(14, 8000*ms, enumspb.EVENT_TYPE_TIMER_FIRED, func(e *historypb.HistoryEvent) {
			e.Attributes = &historypb.HistoryEvent_TimerFiredEventAttributes{TimerFiredEventAttributes: &historypb.TimerFiredEventAttributes{StartedEventId: 13}}
		}),
		ev(15, 8100*ms, enumspb.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED, func(e *historypb.HistoryEvent) {
			e.Attributes = &historypb.HistoryEvent_ActivityTaskScheduledEventAttributes{ActivityTaskScheduledEventAttributes: &historypb.ActivityTaskScheduledEventAttributes{ActivityType: &commonpb.ActivityType{Name: "VerifySubscriptions"}}}
		}),
		ev(16, 8200*ms, enumspb.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED, nil),
	}
	h := readHistory(events)
	if h.events != 16 || h.tasks != 1 || h.taskTotal != 30*ms || h.last.Sub(h.first) != 8200*ms {
		t.Errorf("events %d, tasks %d taking %v, wall %v; want 16, 1 taking 30ms, 8.2s", h.events, h.tasks, h.taskTotal, h.last.Sub(h.first))
	}
	first, last, ok := h.span("RestartOrca")
	if !ok || first.Sub(t0) != 30*ms || last.Sub(t0) != 6000*ms {
		t.Errorf("RestartOrca span %v..%v (%v), want 30ms..6s", first.Sub(t0), last.Sub(t0), ok)
	}
	if _, _, ok := h.span("VerifySubscriptions"); ok {
		t.Error("an activity still open has a span")
	}
	if n := h.count("signal "); n != 1 {
		t.Errorf("%d signals, want 1", n)
	}
	got := h.String()
	for _, want := range []string{
		"8.20s first to last event, 16 events, 1 workflow tasks (0.03s scheduled to completed in all)",
		"@  0.03s RestartOrca                  5.02s (queued 0.020s, ran 5.00s, attempt 2)",
		"@  0.04s signal step-progress         0.03s",
		"@  6.00s timer 2s                     2.00s",
		"@  8.10s VerifySubscriptions          still open",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("breakdown lacks %q:\n%s", want, got)
		}
	}
}
