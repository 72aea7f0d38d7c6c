package main

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/csmops/etcd-repopulate/internal/api"
)

const s = time.Second

// TestCriticalPath: hand-made spans and the run's shape of orderings (cps
// after bos and after hmnfd). The chain is the longest sum through the
// orderings, not the longest single span, and a prerequisite that is not in
// the run does not count.
func TestCriticalPath(t *testing.T) {
	after := map[api.Service][]api.Service{api.CPS: {api.BOS, api.HMNFD}}
	order := []api.Service{api.BOS, api.BSS, api.CPS, api.CRUS, api.HMNFD}
	for _, tc := range []struct {
		name  string
		spans map[api.Service]time.Duration
		want  time.Duration
		chain []api.Service
	}{
		{"cps behind hmnfd beats the longest single span",
			map[api.Service]time.Duration{api.BOS: 2 * s, api.BSS: 20 * s, api.CPS: 12 * s, api.CRUS: 5 * s, api.HMNFD: 10 * s},
			3*s + 22*s, []api.Service{api.HMNFD, api.CPS}},
		{"bos is the longer prerequisite",
			map[api.Service]time.Duration{api.BOS: 15 * s, api.BSS: 20 * s, api.CPS: 12 * s, api.HMNFD: 10 * s},
			3*s + 27*s, []api.Service{api.BOS, api.CPS}},
		{"a lone service longer than any chain",
			map[api.Service]time.Duration{api.BOS: 2 * s, api.BSS: 40 * s, api.CPS: 12 * s, api.HMNFD: 10 * s},
			3*s + 40*s, []api.Service{api.BSS}},
		{"cps without its prerequisites in the run",
			map[api.Service]time.Duration{api.CPS: 12 * s, api.CRUS: 5 * s},
			3*s + 12*s, []api.Service{api.CPS}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, chain, err := criticalPath(3*s, tc.spans, after, order)
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want || !slices.Equal(chain, tc.chain) {
				t.Errorf("critical path %v via %v, want %v via %v", got, chain, tc.want, tc.chain)
			}
		})
	}
	ends, err := chainEnds(3*s, map[api.Service]time.Duration{api.BOS: 2 * s, api.CPS: 12 * s, api.HMNFD: 10 * s}, after, order)
	if err != nil {
		t.Fatal(err)
	}
	if ends[api.BOS] != 5*s || ends[api.HMNFD] != 13*s || ends[api.CPS] != 25*s {
		t.Errorf("chain ends %v", ends)
	}
	if _, _, err := criticalPath(0, map[api.Service]time.Duration{api.BOS: s, api.CPS: s}, map[api.Service][]api.Service{api.CPS: {api.BOS}, api.BOS: {api.CPS}}, order); err == nil {
		t.Error("a cycle in the orderings was accepted")
	}
}

// TestSpanGapsAndStats: a service's span is the time its activities'
// executions and its gates' waits cover; the gaps between activities leave the gates out.
func TestSpanGapsAndStats(t *testing.T) {
	t0 := time.Date(2026, 12, 2, 4, 0, 0, 0, time.UTC)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	x := execution{
		Activities: []activity{
			{Name: "a", Scheduled: at(0), Started: at(10), Closed: at(1010)},
			{Name: "b", Scheduled: at(1030), Started: at(1050), Closed: at(2050)},
			{Name: "c", Scheduled: at(7100), Started: at(7110), Closed: at(8110)},
		},
		Gates: []interval{{at(2070), at(7070)}},
	}
	if got, want := x.span(), 3*s+5*s; got != want {
		t.Errorf("span %v, want %v", got, want)
	}
	// Batches in flight at once count once: 0–1 s and 0.5–2 s cover 2 s.
	parallel := execution{Activities: []activity{{Started: at(0), Closed: at(1000)}, {Started: at(500), Closed: at(2000)}, {Started: at(600), Closed: at(900)}}}
	if got := parallel.span(); got != 2*s {
		t.Errorf("span of overlapping activities %v, want 2s", got)
	}
	if got, want := x.gaps(), []time.Duration{20 * time.Millisecond, 50 * time.Millisecond}; !slices.Equal(got, want) {
		t.Errorf("gaps %v, want %v", got, want)
	}
	st := summarize(x.queueLatencies())
	if st.N != 3 || st.Min != 10*time.Millisecond || st.Median != 10*time.Millisecond || st.Max != 20*time.Millisecond || st.Sum != 40*time.Millisecond {
		t.Errorf("queue latencies %+v", st)
	}
	if p := summarize([]time.Duration{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 100}); p.P95 != 19 || p.Median != 10 {
		t.Errorf("p95 %v median %v, want 19 and 10", p.P95, p.Median)
	}
}

// TestBadLatencies: a negative latency is refused with its flag named.
func TestBadLatencies(t *testing.T) {
	if err := (latencies{podReady: s, crusStep: 0}).validate(); err != nil {
		t.Errorf("good latencies refused: %v", err)
	}
	err := (latencies{podReady: s, orcaRestart: -2 * s}).validate()
	if err == nil || !strings.Contains(err.Error(), "-orca -2s is negative") {
		t.Errorf("negative -orca: %v", err)
	}
}
