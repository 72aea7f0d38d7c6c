package main

import (
	"fmt"
	"strings"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	historypb "go.temporal.io/api/history/v1"
)

// span is one command of a workflow as its history records it: an
// activity (scheduled, started by a worker, closed), a timer, a child
// workflow or a signal sent.
type span struct {
	what      string
	scheduled time.Time
	started   time.Time // zero for timers and signals
	closed    time.Time // zero while open
	attempt   int32
}

// historyTimes is where a workflow's wall went, from its history's
// timestamps (the server's clock).
type historyTimes struct {
	first, last time.Time
	events      int
	spans       []span
	// Workflow tasks: how many, and their time from scheduled to
	// completed (the worker's decisions plus the task queue's latency).
	tasks     int
	taskTotal time.Duration
}

func readHistory(events []*historypb.HistoryEvent) historyTimes {
	h := historyTimes{events: len(events)}
	byID := map[int64]int{} // the opening event's id -> index in spans
	taskScheduled := map[int64]time.Time{}
	open := func(e *historypb.HistoryEvent, what string) {
		byID[e.GetEventId()] = len(h.spans)
		h.spans = append(h.spans, span{what: what, scheduled: e.GetEventTime().AsTime()})
	}
	at := func(id int64) *span {
		if i, ok := byID[id]; ok {
			return &h.spans[i]
		}
		return nil
	}
	for i, e := range events {
		t := e.GetEventTime().AsTime()
		if i == 0 {
			h.first = t
		}
		h.last = t
		switch e.GetEventType() {
		case enumspb.EVENT_TYPE_WORKFLOW_TASK_SCHEDULED:
			taskScheduled[e.GetEventId()] = t
		case enumspb.EVENT_TYPE_WORKFLOW_TASK_COMPLETED:
			if s, ok := taskScheduled[e.GetWorkflowTaskCompletedEventAttributes().GetScheduledEventId()]; ok {
				h.tasks++
				h.taskTotal += t.Sub(s)
			}
		case enumspb.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
			open(e, e.GetActivityTaskScheduledEventAttributes().GetActivityType().GetName())
		case enumspb.EVENT_TYPE_ACTIVITY_TASK_STARTED:
			a := e.GetActivityTaskStartedEventAttributes()
			if s := at(a.GetScheduledEventId()); s != nil {
				s.started, s.attempt = t, a.GetAttempt()
			}
		case enumspb.EVENT_TYPE_ACTIVITY_TASK_COMPLETED:
			closeSpan(at(e.GetActivityTaskCompletedEventAttributes().GetScheduledEventId()), t)
		case enumspb.EVENT_TYPE_ACTIVITY_TASK_FAILED:
			closeSpan(at(e.GetActivityTaskFailedEventAttributes().GetScheduledEventId()), t)
		case enumspb.EVENT_TYPE_ACTIVITY_TASK_TIMED_OUT:
			closeSpan(at(e.GetActivityTaskTimedOutEventAttributes().GetScheduledEventId()), t)
		case enumspb.EVENT_TYPE_ACTIVITY_TASK_CANCELED:
			closeSpan(at(e.GetActivityTaskCanceledEventAttributes().GetScheduledEventId()), t)
		case enumspb.EVENT_TYPE_TIMER_STARTED:
			open(e, "timer "+e.GetTimerStartedEventAttributes().GetStartToFireTimeout().AsDuration().String())
		case enumspb.EVENT_TYPE_TIMER_FIRED:
			closeSpan(at(e.GetTimerFiredEventAttributes().GetStartedEventId()), t)
		case enumspb.EVENT_TYPE_TIMER_CANCELED:
			closeSpan(at(e.GetTimerCanceledEventAttributes().GetStartedEventId()), t)
		case enumspb.EVENT_TYPE_START_CHILD_WORKFLOW_EXECUTION_INITIATED:
			open(e, "child "+e.GetStartChildWorkflowExecutionInitiatedEventAttributes().GetWorkflowType().GetName())
		case enumspb.EVENT_TYPE_CHILD_WORKFLOW_EXECUTION_STARTED:
			if s := at(e.GetChildWorkflowExecutionStartedEventAttributes().GetInitiatedEventId()); s != nil {
				s.started = t
			}
		case enumspb.EVENT_TYPE_CHILD_WORKFLOW_EXECUTION_COMPLETED:
			closeSpan(at(e.GetChildWorkflowExecutionCompletedEventAttributes().GetInitiatedEventId()), t)
		case enumspb.EVENT_TYPE_CHILD_WORKFLOW_EXECUTION_FAILED:
			closeSpan(at(e.GetChildWorkflowExecutionFailedEventAttributes().GetInitiatedEventId()), t)
		case enumspb.EVENT_TYPE_CHILD_WORKFLOW_EXECUTION_CANCELED:
			closeSpan(at(e.GetChildWorkflowExecutionCanceledEventAttributes().GetInitiatedEventId()), t)
		case enumspb.EVENT_TYPE_CHILD_WORKFLOW_EXECUTION_TIMED_OUT:
			closeSpan(at(e.GetChildWorkflowExecutionTimedOutEventAttributes().GetInitiatedEventId()), t)
		case enumspb.EVENT_TYPE_CHILD_WORKFLOW_EXECUTION_TERMINATED:
			closeSpan(at(e.GetChildWorkflowExecutionTerminatedEventAttributes().GetInitiatedEventId()), t)
		case enumspb.EVENT_TYPE_SIGNAL_EXTERNAL_WORKFLOW_EXECUTION_INITIATED:
			open(e, "signal "+e.GetSignalExternalWorkflowExecutionInitiatedEventAttributes().GetSignalName())
		case enumspb.EVENT_TYPE_EXTERNAL_WORKFLOW_EXECUTION_SIGNALED:
			closeSpan(at(e.GetExternalWorkflowExecutionSignaledEventAttributes().GetInitiatedEventId()), t)
		case enumspb.EVENT_TYPE_SIGNAL_EXTERNAL_WORKFLOW_EXECUTION_FAILED:
			closeSpan(at(e.GetSignalExternalWorkflowExecutionFailedEventAttributes().GetInitiatedEventId()), t)
		}
	}
	return h
}

func closeSpan(s *span, t time.Time) {
	if s != nil {
		s.closed = t
	}
}

// String is the breakdown: the wall from the first to the last event, then
// each command at its offset from the start with its time queued
// (scheduled to started: waiting for a worker) and running (started to
// closed).
func (h historyTimes) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%.2fs first to last event, %d events, %d workflow tasks (%.2fs scheduled to completed in all)",
		h.last.Sub(h.first).Seconds(), h.events, h.tasks, h.taskTotal.Seconds())
	for _, s := range h.spans {
		fmt.Fprintf(&b, "\n    @%6.2fs %-28s", s.scheduled.Sub(h.first).Seconds(), s.what)
		switch {
		case s.closed.IsZero():
			b.WriteString(" still open")
		case s.started.IsZero():
			fmt.Fprintf(&b, " %.2fs", s.closed.Sub(s.scheduled).Seconds())
		default:
			fmt.Fprintf(&b, " %.2fs (queued %.3fs, ran %.2fs", s.closed.Sub(s.scheduled).Seconds(), s.started.Sub(s.scheduled).Seconds(), s.closed.Sub(s.started).Seconds())
			if s.attempt > 1 {
				fmt.Fprintf(&b, ", attempt %d", s.attempt)
			}
			b.WriteString(")")
		}
	}
	return b.String()
}

// span is when the activities named what ran: the first one scheduled to
// the last one closed; ok is false when none closed.
func (h historyTimes) span(what string) (first, last time.Time, ok bool) {
	for _, s := range h.spans {
		if s.what != what || s.closed.IsZero() {
			continue
		}
		if !ok || s.scheduled.Before(first) {
			first = s.scheduled
		}
		if !ok || s.closed.After(last) {
			last = s.closed
		}
		ok = true
	}
	return first, last, ok
}

// count is the number of commands whose name starts with prefix.
func (h historyTimes) count(prefix string) int {
	n := 0
	for _, s := range h.spans {
		if strings.HasPrefix(s.what, prefix) {
			n++
		}
	}
	return n
}
