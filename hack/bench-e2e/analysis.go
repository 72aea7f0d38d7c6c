package main

import (
	"fmt"
	"slices"
	"sort"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	historypb "go.temporal.io/api/history/v1"

	"github.com/csmops/etcd-repopulate/internal/api"
)

// activity is one activity of a workflow execution, as its history has it:
// scheduled, started (the last attempt: Temporal writes the started event
// when the activity closes) and closed.
type activity struct {
	Name                       string
	Scheduled, Started, Closed time.Time
	Attempt                    int32
}

// execution is one workflow execution of the run: the parent (Service "")
// or a service's child.
type execution struct {
	Service        api.Service
	Started, Ended time.Time
	Activities     []activity
	// Gates are the intervals the service's gates waited for a person.
	Gates []interval
	// Signals are the signals this execution sent (a child's status to
	// its parent, the parent's gate decisions to a child): initiated →
	// delivered.
	Signals []interval
	// ChildInitiated is when the parent asked the server to start each
	// child, by workflow ID.
	ChildInitiated map[string]time.Time
}

type interval struct{ From, To time.Time }

func (i interval) length() time.Duration { return i.To.Sub(i.From) }

// parseHistory reads the executions' start and end and every activity that
// closed. An activity that never closed (the run failed) is left out.
func parseHistory(events []*historypb.HistoryEvent) (execution, error) {
	x := execution{ChildInitiated: map[string]time.Time{}}
	byScheduled := map[int64]*activity{}
	var order []int64
	signals := map[int64]time.Time{}
	for _, e := range events {
		at := e.GetEventTime().AsTime()
		switch e.GetEventType() {
		case enumspb.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED:
			x.Started = at
		case enumspb.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED, enumspb.EVENT_TYPE_WORKFLOW_EXECUTION_FAILED,
			enumspb.EVENT_TYPE_WORKFLOW_EXECUTION_CANCELED, enumspb.EVENT_TYPE_WORKFLOW_EXECUTION_TERMINATED,
			enumspb.EVENT_TYPE_WORKFLOW_EXECUTION_TIMED_OUT:
			x.Ended = at
		case enumspb.EVENT_TYPE_START_CHILD_WORKFLOW_EXECUTION_INITIATED:
			x.ChildInitiated[e.GetStartChildWorkflowExecutionInitiatedEventAttributes().GetWorkflowId()] = at
		case enumspb.EVENT_TYPE_SIGNAL_EXTERNAL_WORKFLOW_EXECUTION_INITIATED:
			signals[e.GetEventId()] = at
		case enumspb.EVENT_TYPE_EXTERNAL_WORKFLOW_EXECUTION_SIGNALED:
			if from, ok := signals[e.GetExternalWorkflowExecutionSignaledEventAttributes().GetInitiatedEventId()]; ok {
				x.Signals = append(x.Signals, interval{from, at})
			}
		case enumspb.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
			a := e.GetActivityTaskScheduledEventAttributes()
			byScheduled[e.GetEventId()] = &activity{Name: a.GetActivityType().GetName(), Scheduled: at}
			order = append(order, e.GetEventId())
		case enumspb.EVENT_TYPE_ACTIVITY_TASK_STARTED:
			a := e.GetActivityTaskStartedEventAttributes()
			if act := byScheduled[a.GetScheduledEventId()]; act != nil {
				act.Started, act.Attempt = at, a.GetAttempt()
			}
		case enumspb.EVENT_TYPE_ACTIVITY_TASK_COMPLETED:
			closeActivity(byScheduled, e.GetActivityTaskCompletedEventAttributes().GetScheduledEventId(), at)
		case enumspb.EVENT_TYPE_ACTIVITY_TASK_FAILED:
			closeActivity(byScheduled, e.GetActivityTaskFailedEventAttributes().GetScheduledEventId(), at)
		case enumspb.EVENT_TYPE_ACTIVITY_TASK_TIMED_OUT:
			closeActivity(byScheduled, e.GetActivityTaskTimedOutEventAttributes().GetScheduledEventId(), at)
		case enumspb.EVENT_TYPE_ACTIVITY_TASK_CANCELED:
			closeActivity(byScheduled, e.GetActivityTaskCanceledEventAttributes().GetScheduledEventId(), at)
		}
	}
	if x.Started.IsZero() || x.Ended.IsZero() {
		return x, fmt.Errorf("history has no start or no end (%d events): the execution has not finished", len(events))
	}
	for _, id := range order {
		if a := byScheduled[id]; !a.Closed.IsZero() && !a.Started.IsZero() {
			x.Activities = append(x.Activities, *a)
		}
	}
	return x, nil
}

func closeActivity(by map[int64]*activity, scheduled int64, at time.Time) {
	if a := by[scheduled]; a != nil {
		a.Closed = at
	}
}

// span is what a service itself takes: the time its activities'
// executions (started → closed, the last attempt) and its gates' waits
// cover, overlaps counted once (hmnfd runs several orca batches at once).
func (x execution) span() time.Duration {
	is := slices.Clone(x.Gates)
	for _, a := range x.Activities {
		is = append(is, interval{a.Started, a.Closed})
	}
	return covered(is)
}

// covered is the length of the union of the intervals.
func covered(is []interval) time.Duration {
	is = slices.Clone(is)
	sort.Slice(is, func(i, j int) bool { return is[i].From.Before(is[j].From) })
	var d time.Duration
	var end time.Time
	for _, i := range is {
		if i.From.After(end) {
			end = i.From
		}
		if i.To.After(end) {
			d += i.To.Sub(end)
			end = i.To
		}
	}
	return d
}

func (x execution) gateWait() time.Duration {
	var d time.Duration
	for _, g := range x.Gates {
		d += g.length()
	}
	return d
}

// edges are the times from the execution's start to its first activity
// being scheduled and from its last activity closing to its end (0 and 0
// without activities).
func (x execution) edges() (before, after time.Duration) {
	if len(x.Activities) == 0 {
		return 0, 0
	}
	first, last := x.Activities[0].Scheduled, x.Activities[0].Closed
	for _, a := range x.Activities {
		if a.Scheduled.Before(first) {
			first = a.Scheduled
		}
		if a.Closed.After(last) {
			last = a.Closed
		}
	}
	return first.Sub(x.Started), x.Ended.Sub(last)
}

// lastClosed is when the execution's last activity closed (its start
// without activities).
func (x execution) lastClosed() time.Time {
	last := x.Started
	for _, a := range x.Activities {
		if a.Closed.After(last) {
			last = a.Closed
		}
	}
	return last
}

func lengths(is []interval) []time.Duration {
	out := make([]time.Duration, 0, len(is))
	for _, i := range is {
		out = append(out, i.length())
	}
	return out
}

// queueLatencies are the activities' scheduled → started times.
func (x execution) queueLatencies() []time.Duration {
	out := make([]time.Duration, 0, len(x.Activities))
	for _, a := range x.Activities {
		out = append(out, a.Started.Sub(a.Scheduled))
	}
	return out
}

// gaps are the times between one activity closing and the next being
// scheduled (workflow tasks, the child's own timers), less the gates'
// waits that fall between them: what the workflow adds between its steps.
func (x execution) gaps() []time.Duration {
	acts := slices.Clone(x.Activities)
	sort.SliceStable(acts, func(i, j int) bool { return acts[i].Scheduled.Before(acts[j].Scheduled) })
	var out []time.Duration
	for i := 1; i < len(acts); i++ {
		gap := interval{acts[i-1].Closed, acts[i].Scheduled}
		if gap.To.Before(gap.From) {
			continue // overlapping activities (parallel batches): no gap
		}
		d := gap.length()
		for _, g := range x.Gates {
			d -= overlap(gap, g)
		}
		out = append(out, max(d, 0))
	}
	return out
}

func overlap(a, b interval) time.Duration {
	from, to := a.From, a.To
	if b.From.After(from) {
		from = b.From
	}
	if b.To.Before(to) {
		to = b.To
	}
	return max(to.Sub(from), 0)
}

// criticalPath is the longest chain of spans through the orderings: each
// service starts after every service in after[s] (that is in spans), and
// every service after prefix (the parent's own steps). It returns the
// chain's length and the services on it, first to last. Ties go to the
// service listed first in order.
func criticalPath(prefix time.Duration, spans map[api.Service]time.Duration, after map[api.Service][]api.Service, order []api.Service) (time.Duration, []api.Service, error) {
	ends := map[api.Service]time.Duration{}
	via := map[api.Service]api.Service{}
	visiting := map[api.Service]bool{}
	var end func(s api.Service) (time.Duration, error)
	end = func(s api.Service) (time.Duration, error) {
		if d, ok := ends[s]; ok {
			return d, nil
		}
		if visiting[s] {
			return 0, fmt.Errorf("the orderings have a cycle through %s", s)
		}
		visiting[s] = true
		begin := prefix
		for _, p := range after[s] {
			if _, ok := spans[p]; !ok {
				continue // not in this run
			}
			d, err := end(p)
			if err != nil {
				return 0, err
			}
			if d > begin {
				begin, via[s] = d, p
			}
		}
		visiting[s] = false
		ends[s] = begin + spans[s]
		return ends[s], nil
	}
	var best time.Duration
	var last api.Service
	for _, s := range order {
		if _, ok := spans[s]; !ok {
			continue
		}
		d, err := end(s)
		if err != nil {
			return 0, nil, err
		}
		if last == "" || d > best {
			best, last = d, s
		}
	}
	if last == "" {
		return prefix, nil, nil
	}
	chain := []api.Service{last}
	for s := last; via[s] != ""; s = via[s] {
		chain = append([]api.Service{via[s]}, chain...)
	}
	return best, chain, nil
}

// chainEnds is, for each service, the length of the longest chain that
// ends with it (criticalPath's per-service figures).
func chainEnds(prefix time.Duration, spans map[api.Service]time.Duration, after map[api.Service][]api.Service, order []api.Service) (map[api.Service]time.Duration, error) {
	out := map[api.Service]time.Duration{}
	for _, s := range order {
		if _, ok := spans[s]; !ok {
			continue
		}
		d, _, err := criticalPath(prefix, onlyUpTo(spans, after, s), after, []api.Service{s})
		if err != nil {
			return nil, err
		}
		out[s] = d
	}
	return out, nil
}

// onlyUpTo keeps the spans of s and everything s transitively waits for.
func onlyUpTo(spans map[api.Service]time.Duration, after map[api.Service][]api.Service, s api.Service) map[api.Service]time.Duration {
	out := map[api.Service]time.Duration{}
	var add func(api.Service)
	add = func(s api.Service) {
		if _, done := out[s]; done {
			return
		}
		if d, ok := spans[s]; ok {
			out[s] = d
			for _, p := range after[s] {
				add(p)
			}
		}
	}
	add(s)
	return out
}

// stats are min / median / p95 / max and the sum of ds (nearest rank).
type stats struct {
	N                     int
	Min, Median, P95, Max time.Duration
	Sum                   time.Duration
}

func summarize(ds []time.Duration) stats {
	if len(ds) == 0 {
		return stats{}
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	rank := func(p float64) time.Duration {
		i := int(p*float64(len(s))+0.999999) - 1
		return s[min(max(i, 0), len(s)-1)]
	}
	out := stats{N: len(s), Min: s[0], Median: rank(0.5), P95: rank(0.95), Max: s[len(s)-1]}
	for _, d := range s {
		out.Sum += d
	}
	return out
}
