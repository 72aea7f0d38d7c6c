package orca

import (
	"fmt"
	"regexp"
	"slices"
	"time"

	"github.com/csmops/etcd-repopulate/internal/api"
	"github.com/csmops/etcd-repopulate/internal/hostrange"
	"github.com/csmops/etcd-repopulate/internal/settings"
	"github.com/csmops/etcd-repopulate/procedures/restartpods"
)

// HMNFDSettings restart the orca daemon so nodes re-subscribe to HMNFD
// (procedure restart-orca).
type HMNFDSettings struct {
	// Unit replaces the release's list of units with this one unit.
	Unit string `json:"unit" doc:"one unit instead of the release's list, e.g. cray-orca"`
	// Units replaces the release's list of units tried in order on each
	// node (default by release: cray-dvs-orca then cray-orca on CSM 1.0,
	// cray-orca after).
	Units []string `json:"units" doc:"or a list tried in order; null: the release's (docs/csm-releases.md)"`
	// NCNGroups are pdsh host ranges of NCNs running orca (default by
	// release); an empty list restarts orca on compute nodes only.
	NCNGroups []string `json:"ncnGroups" doc:"pdsh host ranges besides HSM's Ready computes; null: the release's; []: none"`
	// Pods are HMNFD's own pods: restarted, before orca, when HMNFD
	// reports it is not ready (it stays so after an etcd wipe until its
	// process restarts).
	Pods restartpods.PodSettings `json:"pods" doc:"restarted before orca when HMNFD reports not ready"`
	// BatchSize is the number of nodes one durable step restarts.
	BatchSize int `json:"batchSize" doc:"nodes per durable step, at most 1000"`
	// BatchesInFlight is how many batches run at once, so that a batch's
	// slowest nodes do not leave the SSH width idle; they share the
	// worker's ssh.concurrency connections.
	BatchesInFlight int `json:"batchesInFlight" doc:"batches running at once, sharing ssh.concurrency; 1 to 16"`
	// MaxFailedPercent of nodes may fail or be unreachable before the
	// service is reported failed.
	MaxFailedPercent float64 `json:"maxFailedPercent" doc:"more failed/unreachable nodes than this fails the service"`
	// VerifyTimeout bounds waiting for HMNFD to list the subscriptions again.
	VerifyTimeout settings.Duration `json:"verifyTimeout" doc:"wait for HMNFD to list the computes' subscriptions again"`
}

// MaxBatchSize bounds batchSize: a batch's result lists each failed node
// with its reason, and past 1,000 nodes it outgrows what one Temporal
// payload should carry.
const MaxBatchSize = 1000

// MaxBatchesInFlight bounds batchesInFlight: each batch in flight holds
// up to MaxBatchSize nodes' results in its heartbeat details.
const MaxBatchesInFlight = 16

// DefaultBatchesInFlight is enough to keep the width busy past one batch's
// stragglers without many batches' results pending at once.
const DefaultBatchesInFlight = 4

// Placement is where orca runs on one release.
type Placement struct {
	Release api.Release
	// Units are tried in order on each node.
	Units []string
	// NCNGroups are the pdsh host ranges of the NCNs that run orca.
	NCNGroups []string
}

// placements say where orca runs on each release (CSM-APIS.md §8).
var placements = []Placement{
	// The 1.0 runbook names cray-dvs-orca; every later text and the NCN
	// package lists name cray-orca, so both are tried. It says
	// ncn-w00[0-4]; ncn-w000 and ncn-s000 do not exist (1.2 corrected
	// it), so the ranges start at 1.
	{api.CSM10, []string{"cray-dvs-orca", "cray-orca"}, []string{"ncn-w00[1-4]-can.local", "ncn-s00[1-4]-can.local"}},
	{api.CSM12, []string{"cray-orca"}, []string{"ncn-w00[1-4]-can.local", "ncn-s00[1-4]-can.local"}},
	// Storage NCNs are dropped from 1.3.
	{api.CSM13, []string{"cray-orca"}, []string{"ncn-w00[1-4]-can.local"}},
	{api.CSM15, []string{"cray-orca"}, []string{"ncn-w00[1-4]-can.local"}},
	{api.CSM16, []string{"cray-orca"}, []string{"ncn-w00[1-4]-can.local"}},
}

// PlacementOn returns where orca runs on r.
func PlacementOn(r api.Release) Placement {
	for _, p := range placements {
		if p.Release == r {
			return p
		}
	}
	panic("orca: no orca facts for release " + string(r)) // plans are made for known releases only
}

// PodSets are HMNFD's pods, which a run may restart (the test cluster seeds them).
func (h *HMNFDSettings) PodSets() []api.PodSet { return []api.PodSet{h.Pods.PodSet()} }

// Validate implements settings.Settings.
func (h *HMNFDSettings) Validate(field string) []error {
	var errs []error
	if h.Unit != "" && len(h.Units) > 0 {
		errs = append(errs, fmt.Errorf("%s: set unit (one unit) or units (a list tried in order), not both", field))
	}
	if h.Unit != "" && !unitPattern.MatchString(h.Unit) {
		errs = append(errs, fmt.Errorf("%s.unit: %q is not a systemd unit name (e.g. cray-orca)", field, h.Unit))
	}
	if h.Units != nil && len(h.Units) == 0 {
		errs = append(errs, fmt.Errorf("%s.units: empty list: name at least one unit, or leave the key out for the release's units", field))
	}
	for i, u := range h.Units {
		if !unitPattern.MatchString(u) {
			errs = append(errs, fmt.Errorf("%s.units[%d]: %q is not a systemd unit name (e.g. cray-orca)", field, i, u))
		}
	}
	for i, g := range h.NCNGroups {
		if _, err := hostrange.Expand(g); err != nil {
			errs = append(errs, fmt.Errorf("%s.ncnGroups[%d]: %v", field, i, err))
		}
	}
	if h.BatchSize < 1 || h.BatchSize > MaxBatchSize {
		errs = append(errs, fmt.Errorf("%s.batchSize: must be 1 to %d nodes (one batch's result lists each failed node and must stay a small Temporal payload), got %d", field, MaxBatchSize, h.BatchSize))
	}
	if h.BatchesInFlight < 1 || h.BatchesInFlight > MaxBatchesInFlight {
		errs = append(errs, fmt.Errorf("%s.batchesInFlight: must be 1 to %d batches running at once (1 runs them one after another), got %d", field, MaxBatchesInFlight, h.BatchesInFlight))
	}
	if h.MaxFailedPercent < 0 || h.MaxFailedPercent > 100 {
		errs = append(errs, fmt.Errorf("%s.maxFailedPercent: must be 0 to 100, got %g", field, h.MaxFailedPercent))
	}
	errs = append(errs, h.Pods.Validate(field+".pods")...)
	return append(errs, settings.CheckDuration(field+".verifyTimeout", h.VerifyTimeout)...)
}

// Plan implements settings.Settings.
func (h *HMNFDSettings) Plan(c settings.PlanContext) api.ServicePlan {
	where := PlacementOn(c.Release)
	units, ncns := where.Units, where.NCNGroups
	switch {
	case h.Unit != "":
		units = []string{h.Unit}
	case len(h.Units) > 0:
		units = h.Units
	}
	if h.NCNGroups != nil {
		ncns = h.NCNGroups
	}
	// A batch shares the width with the batches in flight before it, whose
	// nodes get connections first (sshfan.Runner serves batches in the
	// order they started): at worst it waits for all their nodes, so its
	// waves count every node in flight.
	perBatch := (h.BatchSize*max(h.BatchesInFlight, 1) + c.SSH.Concurrency - 1) / c.SSH.Concurrency
	return api.ServicePlan{Service: c.Service, Procedure: api.RestartOrca, Timings: c.Timings(h.VerifyTimeout), HMNFD: &api.HMNFDPlan{
		Units: slices.Clone(units), NCNGroups: slices.Clone(ncns), BatchSize: h.BatchSize, BatchesInFlight: h.BatchesInFlight,
		MaxFailedPercent: h.MaxFailedPercent, VerifyTimeout: time.Duration(h.VerifyTimeout),
		// Each unit tried is one more command per node.
		BatchTimeout:     time.Duration(perBatch)*(c.SSH.Connect+time.Duration(len(units))*c.SSH.Command) + time.Minute,
		Pods:             h.Pods.PodSet(),
		PodsReadyTimeout: time.Duration(h.Pods.ReadyTimeout),
	}}
}

// unitPattern rejects what is not a plain systemd unit name: the unit is
// put into a shell command on each node.
var unitPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9:_.@-]*$`)
