package orca

import (
	"strings"
	"testing"
	"time"

	"github.com/csmops/etcd-repopulate/internal/api"
	"github.com/csmops/etcd-repopulate/internal/settings"
	"github.com/csmops/etcd-repopulate/procedures/restartpods"
)

// TestBatchTimeoutCoversTheBatchesInFlight: a batch may wait for every
// node of the batches started before it, which hold the width first.
func TestBatchTimeoutCoversTheBatchesInFlight(t *testing.T) {
	plan := func(inFlight int) api.HMNFDPlan {
		h := HMNFDSettings{BatchSize: 1000, BatchesInFlight: inFlight, VerifyTimeout: settings.Duration(time.Minute)}
		p := h.Plan(settings.PlanContext{Service: api.HMNFD, Release: api.CSM16,
			Timings: func(settings.Duration) api.Timings { return api.Timings{} },
			SSH:     settings.SSHBounds{Concurrency: 256, Connect: 10 * time.Second, Command: 2 * time.Minute}})
		return *p.HMNFD
	}
	// 1000 nodes at 256 wide: 4 waves of 10s + 2m, plus a minute.
	if got := plan(1); got.BatchTimeout != 4*130*time.Second+time.Minute || got.BatchesInFlight != 1 {
		t.Errorf("one at a time: %+v", got)
	}
	// 4000 nodes ahead of and in the last batch: 16 waves.
	if got := plan(4); got.BatchTimeout != 16*130*time.Second+time.Minute || got.BatchesInFlight != 4 {
		t.Errorf("four in flight: %+v", got)
	}
}

// TestOlderPlansRunOneBatchAtATime: a plan without batchesInFlight gets 1,
// never 0; its batch timeout was computed for one batch at a time.
func TestOlderPlansRunOneBatchAtATime(t *testing.T) {
	p := api.ServicePlan{HMNFD: &api.HMNFDPlan{BatchSize: 500}}
	defaults(&p)
	if p.HMNFD.BatchesInFlight != 1 || p.HMNFD.BatchSize != 500 {
		t.Errorf("defaults: %+v", p.HMNFD)
	}
}

func TestBatchesInFlightBounds(t *testing.T) {
	valid := func(n int) HMNFDSettings {
		return HMNFDSettings{BatchSize: 10, BatchesInFlight: n, VerifyTimeout: settings.Duration(time.Minute),
			Pods: restartpods.PodSettings{Namespace: "services", Selector: "app=hmnfd", ReadyTimeout: settings.Duration(time.Minute)}}
	}
	for _, n := range []int{0, -1, MaxBatchesInFlight + 1} {
		h := valid(n)
		errs := h.Validate("services.hmnfd")
		if len(errs) != 1 || !strings.Contains(errs[0].Error(), "services.hmnfd.batchesInFlight: must be 1 to 16") {
			t.Errorf("batchesInFlight %d: %v", n, errs)
		}
	}
	for _, n := range []int{1, MaxBatchesInFlight} {
		h := valid(n)
		if errs := h.Validate("services.hmnfd"); len(errs) != 0 {
			t.Errorf("batchesInFlight %d: %v", n, errs)
		}
	}
}
