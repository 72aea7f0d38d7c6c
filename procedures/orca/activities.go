package orca

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/temporal"

	"github.com/csmops/etcd-repopulate/activities"
	"github.com/csmops/etcd-repopulate/internal/api"
	"github.com/csmops/etcd-repopulate/internal/csm"
	"github.com/csmops/etcd-repopulate/internal/hostrange"
	"github.com/csmops/etcd-repopulate/internal/sshfan"
)

// Activities restart orca over SSH and ask HSM and HMNFD through the
// worker's CSM clients.
type Activities struct{ CSM *activities.CSM }

// named maps each contract name (internal/api) to its implementation.
func named(_ *activities.Kube, c *activities.CSM) map[string]any {
	a := &Activities{CSM: c}
	return map[string]any{
		api.ActivityDiscoverOrcaTargets: a.DiscoverOrcaTargets,
		api.ActivityRestartOrca:         a.RestartOrca,
		api.ActivityVerifySubscriptions: a.VerifySubscriptions,
		api.ActivityCheckHMNFDReady:     a.CheckHMNFDReady,

		api.ActivityDiscoverOrcaNodes:          a.DiscoverOrcaNodes,
		api.ActivityVerifyComputeSubscriptions: a.VerifyComputeSubscriptions,
	}
}

// Non-retryable error types of restart-orca.
const (
	ErrEmptyTargets  = "EmptyTargetSet"
	ErrTooManyFailed = "TooManyNodesFailed"
)

// OrcaTargetsRequest names the NCN groups besides the Ready computes.
type OrcaTargetsRequest struct {
	NCNGroups []string `json:"ncnGroups"`
}

// OrcaTarget is one node to restart orca on. Xname is empty for NCNs.
type OrcaTarget struct {
	Host  string `json:"host"`
	Xname string `json:"xname,omitempty"`
}

// OrcaTargets is the restart's target set, compact so that it stays a
// small payload at tens of thousands of nodes: the Ready computes as NID
// ranges (their hosts are nid%06d-nmn, csm.Component.Hostname) with their
// xnames in the same order, and the NCN hosts.
type OrcaTargets struct {
	// Nodes is the one-entry-per-node form results had before; it is still
	// read from the histories of older runs.
	Nodes         []OrcaTarget `json:"nodes,omitempty"`
	ComputeNIDs   []NIDRange   `json:"computeNids,omitempty"`
	ComputeXnames []string     `json:"computeXnames,omitempty"`
	// Computes counts the computes of ComputeNIDs when the xnames are left
	// out (DiscoverOrcaNodes).
	Computes int      `json:"computes,omitempty"`
	NCNs     []string `json:"ncns,omitempty"`
	activities.Outcome
}

// NIDRange is the NIDs First to Last, both included.
type NIDRange struct {
	First int `json:"first"`
	Last  int `json:"last"`
}

// All lists every target, computes first in NID order, then NCNs.
func (t OrcaTargets) All() []OrcaTarget {
	if len(t.Nodes) > 0 {
		return t.Nodes
	}
	var out []OrcaTarget
	i := 0
	for _, r := range t.ComputeNIDs {
		for nid := r.First; nid <= r.Last && i < len(t.ComputeXnames); nid++ {
			out = append(out, OrcaTarget{Host: csm.Component{NID: nid}.Hostname(), Xname: t.ComputeXnames[i]})
			i++
		}
	}
	for _, h := range t.NCNs {
		out = append(out, OrcaTarget{Host: h})
	}
	return out
}

// Hosts lists every target host, computes first in NID order, then NCNs,
// with each compute host's NID. Unlike All it needs no xnames.
func (t OrcaTargets) Hosts() (hosts []string, nids map[string]int) {
	nids = map[string]int{}
	for _, r := range t.ComputeNIDs {
		for nid := r.First; nid <= r.Last; nid++ {
			h := csm.Component{NID: nid}.Hostname()
			hosts = append(hosts, h)
			nids[h] = nid
		}
	}
	return append(hosts, t.NCNs...), nids
}

// NIDRanges folds NIDs into ascending ranges.
func NIDRanges(nids []int) []NIDRange {
	nids = slices.Clone(nids)
	slices.Sort(nids)
	var out []NIDRange
	for _, nid := range nids {
		if n := len(out); n > 0 && out[n-1].Last >= nid-1 {
			out[n-1].Last = max(out[n-1].Last, nid)
			continue
		}
		out = append(out, NIDRange{First: nid, Last: nid})
	}
	return out
}

// addCompute appends a compute node; nids must come in ascending order.
func (t *OrcaTargets) addCompute(nid int, xname string) {
	if n := len(t.ComputeNIDs); n > 0 && t.ComputeNIDs[n-1].Last == nid-1 {
		t.ComputeNIDs[n-1].Last = nid
	} else {
		t.ComputeNIDs = append(t.ComputeNIDs, NIDRange{First: nid, Last: nid})
	}
	t.ComputeXnames = append(t.ComputeXnames, xname)
}

// DiscoverOrcaTargets asks HSM for the Ready compute nodes (replacing the
// runbook's sat status | awk, which broke when sat's columns changed) and
// expands the NCN groups as pdsh would.
func (a *Activities) DiscoverOrcaTargets(ctx context.Context, req OrcaTargetsRequest) (OrcaTargets, error) {
	cl, err := a.CSM.APIClient()
	if err != nil {
		return OrcaTargets{}, err
	}
	computes, err := cl.ReadyComputeNodes(ctx)
	if err != nil {
		return OrcaTargets{}, activities.CSMError(err)
	}
	sort.Slice(computes, func(i, j int) bool { return computes[i].NID < computes[j].NID })
	var res OrcaTargets
	seen := map[string]bool{}
	for _, comp := range computes {
		if comp.NID <= 0 {
			continue // no NID, no nid hostname
		}
		host := comp.Hostname()
		if !seen[host] {
			seen[host] = true
			res.addCompute(comp.NID, comp.ID)
		}
	}
	var ncns []string
	if len(req.NCNGroups) > 0 { // none is fine: no NCN runs orca
		if ncns, err = hostrange.ExpandAll(req.NCNGroups); err != nil {
			return OrcaTargets{}, temporal.NewNonRetryableApplicationError(err.Error(), activities.ErrBadHostRange, nil)
		}
	}
	for _, h := range ncns {
		if !seen[h] {
			seen[h] = true
			res.NCNs = append(res.NCNs, h)
		}
	}
	if len(res.ComputeXnames)+len(res.NCNs) == 0 {
		return OrcaTargets{}, temporal.NewNonRetryableApplicationError(
			"no node to restart orca on: HSM lists no Ready compute node and no NCN group is configured (services.hmnfd.ncnGroups)", ErrEmptyTargets, nil)
	}
	res.Outcome = activities.NewOutcome(ctx, "%d Ready compute nodes from HSM and %d NCNs from %s", len(res.ComputeXnames), len(res.NCNs), strings.Join(req.NCNGroups, " "))
	return res, nil
}

// DiscoverOrcaNodes is DiscoverOrcaTargets without the computes' xnames:
// one per node, they made the result about 1 MB at 50,000 nodes, over the
// 512 KB at which Temporal's server warns. VerifyComputeSubscriptions looks
// them up in HSM by NID instead.
func (a *Activities) DiscoverOrcaNodes(ctx context.Context, req OrcaTargetsRequest) (OrcaTargets, error) {
	res, err := a.DiscoverOrcaTargets(ctx, req)
	res.Computes, res.ComputeXnames = len(res.ComputeXnames), nil
	return res, err
}

// RestartBatch is one batch of the fan-out.
type RestartBatch struct {
	Batch int      `json:"batch"`
	Hosts []string `json:"hosts"`
	// Unit is the single unit of batches recorded before Units existed.
	Unit string `json:"unit,omitempty"`
	// Units are tried in order on each host; systemctl's exit status 5
	// (unit not found) moves on to the next.
	Units []string `json:"units,omitempty"`
}

// BatchResult is what a batch did: the hosts that succeeded and every
// problem, so the report can list the failed nodes.
type BatchResult struct {
	OK       []string          `json:"ok"`
	Problems []api.NodeProblem `json:"problems,omitempty"`
	// Restarted lists, per unit, the hosts on which that unit was restarted.
	Restarted map[string][]string `json:"restarted,omitempty"`
	activities.Outcome
}

// batchProgress is the heartbeat detail of a batch: the hosts already
// finished, so a retried batch does not restart them again.
type batchProgress struct {
	OK        []string            `json:"ok"`
	Problems  []api.NodeProblem   `json:"problems,omitempty"`
	Restarted map[string][]string `json:"restarted,omitempty"`
}

// unitNotFound is systemctl's exit status for a unit the node does not have.
const unitNotFound = 5

// RestartOrca runs systemctl restart on each host of the batch over SSH with
// bounded concurrency, trying the units in order: a host whose systemctl
// says the unit does not exist (exit 5) gets the next one. Per-node progress
// is heartbeated, so a batch retried after a worker crash skips the nodes it
// already finished.
func (a *Activities) RestartOrca(ctx context.Context, req RestartBatch) (BatchResult, error) {
	runner, err := a.CSM.SSHRunner()
	if err != nil {
		return BatchResult{}, err
	}
	units := req.Units
	if len(units) == 0 {
		units = []string{req.Unit}
	}
	for _, u := range units {
		if strings.TrimSpace(u) == "" || strings.ContainsAny(u, " \t;|&$`'\"\\") {
			return BatchResult{}, temporal.NewNonRetryableApplicationError(fmt.Sprintf("unit %q is not a systemd unit name", u), api.InvalidRequestError, nil)
		}
	}
	var progress batchProgress
	if activity.HasHeartbeatDetails(ctx) {
		_ = activity.GetHeartbeatDetails(ctx, &progress)
	}
	if progress.Restarted == nil {
		progress.Restarted = map[string][]string{}
	}
	done := map[string]bool{}
	for _, h := range progress.OK {
		done[h] = true
	}
	for _, p := range progress.Problems {
		done[p.Host] = true
	}
	var todo []string
	for _, h := range req.Hosts {
		if !done[h] {
			todo = append(todo, h)
		}
	}
	resumed := len(req.Hosts) - len(todo)

	var mu sync.Mutex
	stopBeat := make(chan struct{})
	beatDone := make(chan struct{})
	go func() { // heartbeat on a clock, not per node: thousands of nodes finish in a second
		defer close(beatDone)
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-stopBeat:
				return
			case <-t.C:
				mu.Lock()
				snapshot := batchProgress{OK: slices.Clone(progress.OK), Problems: slices.Clone(progress.Problems), Restarted: map[string][]string{}}
				for u, hs := range progress.Restarted {
					snapshot.Restarted[u] = slices.Clone(hs)
				}
				mu.Unlock()
				activities.RecordHeartbeat(ctx, snapshot)
			}
		}
	}()
	for i, unit := range units {
		if len(todo) == 0 {
			break
		}
		last := i == len(units)-1
		var next []string
		err = runner.Run(ctx, todo, "systemctl restart "+unit, func(r sshfan.Result) {
			mu.Lock()
			defer mu.Unlock()
			switch {
			case r.Status == sshfan.StatusOK:
				progress.OK = append(progress.OK, r.Host)
				progress.Restarted[unit] = append(progress.Restarted[unit], r.Host)
			case r.ExitStatus == unitNotFound && !last:
				next = append(next, r.Host)
			case r.ExitStatus == unitNotFound && len(units) > 1:
				progress.Problems = append(progress.Problems, api.NodeProblem{Host: r.Host, Status: string(r.Status),
					Reason: activities.Clip(fmt.Sprintf("none of the units %s is on this node (systemctl exit 5 for each): %s", strings.Join(units, ", "), r.Reason), activities.MaxReasonBytes)})
			default:
				progress.Problems = append(progress.Problems, api.NodeProblem{Host: r.Host, Status: string(r.Status), Reason: activities.Clip(r.Reason, activities.MaxReasonBytes)})
			}
		})
		if err != nil {
			break
		}
		todo = next
	}
	close(stopBeat)
	<-beatDone
	if err != nil {
		activities.RecordHeartbeat(ctx, progress)
		return BatchResult{}, err
	}
	var per []string
	for _, u := range units {
		if n := len(progress.Restarted[u]); n > 0 {
			per = append(per, fmt.Sprintf("%s on %d", u, n))
		}
	}
	msg := fmt.Sprintf("batch %d: %d of %d nodes restarted orca (%s)", req.Batch, len(progress.OK), len(req.Hosts), strings.Join(per, ", "))
	if len(progress.Problems) > 0 {
		msg += fmt.Sprintf(", %d failed or unreachable", len(progress.Problems))
	}
	if resumed > 0 {
		msg += fmt.Sprintf(" (%d already done before a retry)", resumed)
	}
	return BatchResult{OK: progress.OK, Problems: progress.Problems, Restarted: progress.Restarted, Outcome: activities.NewOutcome(ctx, "%s", msg)}, nil
}

// HMNFDReadyRequest bounds waiting for HMNFD to be ready; Budget 0 asks once.
type HMNFDReadyRequest struct {
	Budget time.Duration `json:"budget"`
	Poll   time.Duration `json:"poll"`
}

// HMNFDReadiness is whether HMNFD said it is ready.
type HMNFDReadiness struct {
	Ready bool `json:"ready"`
	activities.Outcome
}

// CheckHMNFDReady asks HMNFD whether it is ready. After an etcd wipe HMNFD
// stays not-ready (and has lost its own HSM subscription) until its process
// restarts (csm-specs/observed), so orca's re-subscriptions would go nowhere.
// With a budget it waits until HMNFD is ready and fails when it never is.
func (a *Activities) CheckHMNFDReady(ctx context.Context, req HMNFDReadyRequest) (HMNFDReadiness, error) {
	cl, err := a.CSM.APIClient()
	if err != nil {
		return HMNFDReadiness{}, err
	}
	if req.Budget <= 0 {
		ready, err := cl.HMNFDReady(ctx)
		if err != nil {
			return HMNFDReadiness{}, activities.CSMError(err)
		}
		if ready {
			return HMNFDReadiness{Ready: true, Outcome: activities.NewOutcome(ctx, "HMNFD reports ready")}, nil
		}
		return HMNFDReadiness{Outcome: activities.NewOutcome(ctx, "HMNFD reports not ready (as it does after an etcd rebuild until its process restarts)")}, nil
	}
	msg, err := activities.Poll(ctx, api.Timings{Poll: req.Poll}, req.Budget, "HMNFD to report ready", func(ctx context.Context) (string, bool, error) {
		ready, err := cl.HMNFDReady(ctx)
		switch {
		case err != nil && (csm.Retryable(err) || csm.KindOf(err) == csm.NotFound):
			return fmt.Sprintf("HMNFD not answering yet: %v", err), false, nil // its pods are starting
		case err != nil:
			return "", false, activities.CSMError(err)
		case !ready:
			return "HMNFD reports not ready", false, nil
		}
		return "HMNFD reports ready", true, nil
	})
	if err != nil {
		return HMNFDReadiness{}, err
	}
	return HMNFDReadiness{Ready: true, Outcome: activities.NewOutcome(ctx, "%s", msg)}, nil
}

// VerifyRequest names the compute nodes that must be subscribed again.
type VerifyRequest struct {
	Xnames []string      `json:"xnames"`
	Budget time.Duration `json:"budget"`
	Poll   time.Duration `json:"poll"`
	// APIs: the HMNFD version to list subscriptions through.
	APIs api.APIVersions `json:"apis,omitzero"`
}

// VerifyResult lists the nodes HMNFD still has no subscription for.
type VerifyResult struct {
	Missing []string `json:"missing,omitempty"`
	// MissingCount counts every missing node when Missing holds only the
	// first MaxMissingInResult (VerifyComputeSubscriptions).
	MissingCount int `json:"missingCount,omitempty"`
	activities.Outcome
}

// VerifySubscriptions polls HMNFD until every restarted compute node has a
// subscription again, or the budget runs out; the ones still missing are
// returned, not treated as an error, so the report can list them.
func (a *Activities) VerifySubscriptions(ctx context.Context, req VerifyRequest) (VerifyResult, error) {
	cl, err := a.CSM.APIClient()
	if err != nil {
		return VerifyResult{}, err
	}
	missing, err := waitSubscribed(ctx, cl.WithAPIs(req.APIs), req.Xnames, req.Budget, req.Poll)
	if err != nil {
		return VerifyResult{}, err
	}
	if len(missing) > 0 {
		return VerifyResult{Missing: missing, Outcome: activities.NewOutcome(ctx, "after %s, %d of %d restarted compute nodes have no HMNFD subscription", req.Budget, len(missing), len(req.Xnames))}, nil
	}
	return VerifyResult{Outcome: activities.NewOutcome(ctx, "all %d restarted compute nodes are subscribed to HMNFD again", len(req.Xnames))}, nil
}

// ComputeSubscriptionsRequest names the compute nodes that must be
// subscribed again by NID (looked up in HSM), or by xname.
type ComputeSubscriptionsRequest struct {
	NIDs   []NIDRange    `json:"nids,omitempty"`
	Xnames []string      `json:"xnames,omitempty"`
	Budget time.Duration `json:"budget"`
	Poll   time.Duration `json:"poll"`
	// APIs: the HMNFD version to list subscriptions through.
	APIs api.APIVersions `json:"apis,omitzero"`
}

// MaxMissingInResult bounds the xnames a subscription check returns; the
// count is always whole.
const MaxMissingInResult = 100

// VerifyComputeSubscriptions is VerifySubscriptions for tens of thousands
// of nodes: it takes NID ranges, reads the xnames from HSM, and returns the
// count of nodes still missing with the first MaxMissingInResult of them,
// so that neither its input nor its result grows with the node count.
func (a *Activities) VerifyComputeSubscriptions(ctx context.Context, req ComputeSubscriptionsRequest) (VerifyResult, error) {
	cl, err := a.CSM.APIClient()
	if err != nil {
		return VerifyResult{}, err
	}
	xnames := slices.Clone(req.Xnames)
	var unknown []string
	if len(req.NIDs) > 0 {
		computes, err := cl.Components(ctx, csm.ComponentQuery{Types: []string{"Node"}, Roles: []string{"Compute"}})
		if err != nil {
			return VerifyResult{}, activities.CSMError(err)
		}
		byNID := map[int]string{}
		for _, c := range computes {
			if c.NID > 0 {
				byNID[c.NID] = c.ID
			}
		}
		for _, r := range req.NIDs {
			for nid := r.First; nid <= r.Last; nid++ {
				if x, ok := byNID[nid]; ok {
					xnames = append(xnames, x)
				} else {
					unknown = append(unknown, csm.Component{NID: nid}.Hostname())
				}
			}
		}
	}
	missing, err := waitSubscribed(ctx, cl.WithAPIs(req.APIs), xnames, req.Budget, req.Poll)
	if err != nil {
		return VerifyResult{}, err
	}
	// A node HSM no longer lists cannot be checked: it counts as missing.
	missing = append(missing, unknown...)
	total := len(xnames) + len(unknown)
	res := VerifyResult{Missing: missing[:min(len(missing), MaxMissingInResult)], MissingCount: len(missing)}
	switch {
	case len(missing) == 0:
		res.Outcome = activities.NewOutcome(ctx, "all %d restarted compute nodes are subscribed to HMNFD again", total)
	case len(unknown) > 0:
		res.Outcome = activities.NewOutcome(ctx, "%d of %d restarted compute nodes have no HMNFD subscription (%d of them no longer listed by HSM)", len(missing), total, len(unknown))
	default:
		res.Outcome = activities.NewOutcome(ctx, "after %s, %d of %d restarted compute nodes have no HMNFD subscription", req.Budget, len(missing), total)
	}
	return res, nil
}

// waitSubscribed polls HMNFD until every xname has a subscription or the
// budget runs out (0: one look), and returns those still missing.
func waitSubscribed(ctx context.Context, cl *csm.Client, xnames []string, budget, poll time.Duration) ([]string, error) {
	var missing []string
	_, err := activities.Poll(ctx, api.Timings{Poll: poll}, budget, "HMNFD subscriptions", func(ctx context.Context) (string, bool, error) {
		subs, err := cl.Subscriptions(ctx)
		if err != nil {
			if csm.Retryable(err) {
				return err.Error(), false, nil
			}
			return "", false, activities.CSMError(err)
		}
		// HMNFD lists xnames lower-case; HMNFD 1.8.5 has no
		// SubscriberComponent (Xname reads Subscriber then).
		have := map[string]bool{}
		for _, s := range subs {
			have[strings.ToLower(s.Xname())] = true
		}
		missing = missing[:0]
		for _, x := range xnames {
			if !have[strings.ToLower(x)] {
				missing = append(missing, x)
			}
		}
		return fmt.Sprintf("%d of %d nodes subscribed", len(xnames)-len(missing), len(xnames)), len(missing) == 0, nil
	})
	var appErr *temporal.ApplicationError
	if errors.As(err, &appErr) && appErr.Type() == activities.ErrWaitTimedOut {
		return missing, nil
	}
	return missing, err
}
