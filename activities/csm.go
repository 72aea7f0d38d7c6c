package activities

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/temporal"
	"k8s.io/client-go/kubernetes"

	"github.com/csmops/etcd-repopulate/internal/api"
	"github.com/csmops/etcd-repopulate/internal/catalog"
	"github.com/csmops/etcd-repopulate/internal/csm"
	"github.com/csmops/etcd-repopulate/internal/hostrange"
	"github.com/csmops/etcd-repopulate/internal/sshfan"
)

// CSM performs the steps that talk to CSM services through the API gateway
// and to nodes over SSH. Credentials stay in the worker: the token, the
// client secret and SSH keys are never activity arguments or results.
type CSM struct {
	// Client is nil when the worker has no csm.baseURL; ClientErr says why
	// it could not be built otherwise.
	Client    *csm.Client
	ClientErr error
	// SSH is nil when the SSH settings are unusable; SSHErr says why.
	SSH    *sshfan.Runner
	SSHErr error
	// Release is the worker's release setting; Core reads the product
	// catalog when it is auto (DetectRelease).
	Release api.Release
	Core    kubernetes.Interface
}

// Non-retryable error types of the CSM steps.
const (
	ErrCSMNotConfigured = "CSMNotConfigured"
	ErrSSHNotConfigured = "SSHNotConfigured"
	ErrEmptyTargets     = "EmptyTargetSet"
	ErrBadHostRange     = "BadHostRange"
	ErrTooManyFailed    = "TooManyNodesFailed"
)

func (c *CSM) client() (*csm.Client, error) {
	if c.Client != nil {
		return c.Client, nil
	}
	msg := "the CSM API gateway is not configured: set csm.baseURL (and csm.clientSecret) in the worker config"
	if c.ClientErr != nil {
		msg = fmt.Sprintf("the CSM API client could not be set up: %v", c.ClientErr)
	}
	return nil, temporal.NewNonRetryableApplicationError(msg, ErrCSMNotConfigured, nil)
}

func (c *CSM) ssh() (*sshfan.Runner, error) {
	if c.SSH != nil {
		return c.SSH, nil
	}
	msg := "SSH to nodes is not configured: set ssh.knownHosts and keys in the worker config"
	if c.SSHErr != nil {
		msg = fmt.Sprintf("SSH to nodes cannot be used: %v", c.SSHErr)
	}
	return nil, temporal.NewNonRetryableApplicationError(msg, ErrSSHNotConfigured, nil)
}

// csmError makes errors a retry cannot fix non-retryable, typed by kind.
func csmError(err error) error {
	if err == nil || csm.Retryable(err) {
		return err
	}
	return temporal.NewNonRetryableApplicationError(err.Error(), "CSM"+string(csm.KindOf(err)), nil)
}

// CSMPreflightRequest names the plans that need the API or SSH.
type CSMPreflightRequest struct {
	Plans []api.ServicePlan `json:"plans"`
}

// CheckAccess checks, before anything changes, that the API gateway accepts
// the worker's credentials and that SSH is usable, for the plans that need
// them. CRUS not installed is not a problem here: its service skips itself.
func (c *CSM) CheckAccess(ctx context.Context, req CSMPreflightRequest) (Outcome, error) {
	var needAPI, needSSH []string
	for _, p := range req.Plans {
		needs := catalog.NeedsOf(p.Procedure)
		if needs.CSMAPI {
			needAPI = append(needAPI, string(p.Service))
		}
		if needs.SSH {
			needSSH = append(needSSH, string(p.Service))
		}
		if p.HMNFD == nil {
			continue
		}
		for _, g := range p.HMNFD.NCNGroups {
			if _, err := hostrange.Expand(g); err != nil {
				return Outcome{}, temporal.NewNonRetryableApplicationError(fmt.Sprintf("%s: NCN group: %v", p.Service, err), ErrBadHostRange, nil)
			}
		}
	}
	var problems []string
	if len(needAPI) > 0 {
		if cl, err := c.client(); err != nil {
			problems = append(problems, fmt.Sprintf("%s: %s", strings.Join(needAPI, ", "), errorText(err)))
		} else if err := cl.Authenticate(ctx); err != nil {
			if csm.Retryable(err) {
				return Outcome{}, err
			}
			problems = append(problems, fmt.Sprintf("%s: %v", strings.Join(needAPI, ", "), err))
		}
	}
	if len(needSSH) > 0 {
		if _, err := c.ssh(); err != nil {
			problems = append(problems, fmt.Sprintf("%s: %s", strings.Join(needSSH, ", "), errorText(err)))
		}
	}
	if len(problems) > 0 {
		return Outcome{}, temporal.NewNonRetryableApplicationError(
			"preflight found problems, nothing was changed:\n  "+strings.Join(problems, "\n  "), ErrPreflight, nil)
	}
	return outcome(ctx, "CSM API and SSH ready for %d services", len(req.Plans)), nil
}

func errorText(err error) string {
	var appErr *temporal.ApplicationError
	if errors.As(err, &appErr) {
		return appErr.Message()
	}
	return err.Error()
}

// CRUSCheckRequest follows CRUS sessions.
type CRUSCheckRequest struct {
	Plan api.CRUSPlan `json:"plan"`
	// Budget bounds the whole follow, across retries.
	Budget time.Duration `json:"budget"`
}

// CRUSSessionState is where one session ended up.
type CRUSSessionState struct {
	UpgradeID   string   `json:"upgradeId"`
	State       string   `json:"state"`
	Completed   bool     `json:"completed"`
	Stuck       bool     `json:"stuck,omitempty"`
	LastMessage []string `json:"lastMessages,omitempty"`
}

// CRUSCheck is the outcome of following the sessions.
type CRUSCheck struct {
	// NotInstalled: the CRUS API answered 404; the service is skipped.
	NotInstalled bool               `json:"notInstalled,omitempty"`
	Sessions     []CRUSSessionState `json:"sessions"`
	Outcome
}

// crusProgress is kept in heartbeat details: when each unfinished session
// last changed, so a retried follow keeps counting towards "stuck".
type crusProgress struct {
	Since   time.Time            `json:"since"`
	Changed map[string]time.Time `json:"changed"`
	Seen    map[string]string    `json:"seen"`
}

// CheckCRUSSessions lists the CRUS sessions and follows each unfinished one
// until it completes or stops progressing (same state, no new message) for
// StuckAfter, which is reported, not waited out.
func (c *CSM) CheckCRUSSessions(ctx context.Context, req CRUSCheckRequest) (CRUSCheck, error) {
	cl, err := c.client()
	if err != nil {
		return CRUSCheck{}, err
	}
	progress := crusProgress{Since: time.Now(), Changed: map[string]time.Time{}, Seen: map[string]string{}}
	if activity.HasHeartbeatDetails(ctx) {
		var prev crusProgress
		if activity.GetHeartbeatDetails(ctx, &prev) == nil && prev.Changed != nil {
			progress = prev
		}
	}
	for {
		sessions, err := cl.CRUSSessions(ctx)
		if csm.KindOf(err) == csm.NotFound {
			return CRUSCheck{NotInstalled: true, Outcome: outcome(ctx, "CRUS is not installed (the API answered 404)")}, nil
		}
		if err != nil {
			return CRUSCheck{}, csmError(err)
		}
		now := time.Now()
		var out []CRUSSessionState
		waiting := 0
		for _, s := range sessions {
			st := CRUSSessionState{UpgradeID: s.UpgradeID, State: s.State, Completed: s.Completed, LastMessage: lastN(s.Messages, 3)}
			if !s.Completed {
				key := fmt.Sprintf("%s/%d", s.State, len(s.Messages))
				if progress.Seen[s.UpgradeID] != key {
					progress.Seen[s.UpgradeID], progress.Changed[s.UpgradeID] = key, now
				}
				if now.Sub(progress.Changed[s.UpgradeID]) >= req.Plan.StuckAfter {
					st.Stuck = true
				} else {
					waiting++
				}
			}
			out = append(out, st)
		}
		if waiting == 0 || now.Sub(progress.Since) > req.Budget {
			return summariseCRUS(ctx, out, waiting), nil
		}
		recordHeartbeat(ctx, progress)
		select {
		case <-ctx.Done():
			return CRUSCheck{}, ctx.Err()
		case <-time.After(req.Plan.Poll):
		}
	}
}

func summariseCRUS(ctx context.Context, sessions []CRUSSessionState, waiting int) CRUSCheck {
	var done, stuck []string
	for _, s := range sessions {
		switch {
		case s.Completed:
			done = append(done, s.UpgradeID)
		case s.Stuck:
			stuck = append(stuck, fmt.Sprintf("%s (%s: %s)", s.UpgradeID, s.State, strings.Join(s.LastMessage, " / ")))
		}
	}
	msg := fmt.Sprintf("%d CRUS sessions, %d completed", len(sessions), len(done))
	if len(stuck) > 0 {
		msg += fmt.Sprintf(", %d stuck: %s", len(stuck), strings.Join(stuck, "; "))
	}
	if waiting > 0 {
		msg += fmt.Sprintf(", %d still progressing when the wait ended", waiting)
	}
	return CRUSCheck{Sessions: sessions, Outcome: outcome(ctx, "%s", msg)}
}

func lastN(s []string, n int) []string {
	if len(s) <= n {
		return s
	}
	return s[len(s)-n:]
}

// CRUSConfirmRequest names the sessions that must be visible again.
type CRUSConfirmRequest struct {
	UpgradeIDs []string      `json:"upgradeIds"`
	Budget     time.Duration `json:"budget"`
	Poll       time.Duration `json:"poll"`
}

// ConfirmCRUSSessions waits until the restarted CRUS lists every session it
// listed before the restart.
func (c *CSM) ConfirmCRUSSessions(ctx context.Context, req CRUSConfirmRequest) (Outcome, error) {
	cl, err := c.client()
	if err != nil {
		return Outcome{}, err
	}
	msg, err := poll(ctx, api.Timings{Poll: req.Poll}, req.Budget, "CRUS to list its sessions again", func(ctx context.Context) (string, bool, error) {
		sessions, err := cl.CRUSSessions(ctx)
		if err != nil {
			if csm.Retryable(err) || csm.KindOf(err) == csm.NotFound {
				return fmt.Sprintf("CRUS not answering yet: %v", err), false, nil // the pod is starting
			}
			return "", false, csmError(err)
		}
		seen := map[string]bool{}
		for _, s := range sessions {
			seen[s.UpgradeID] = true
		}
		var missing []string
		for _, id := range req.UpgradeIDs {
			if !seen[id] {
				missing = append(missing, id)
			}
		}
		if len(missing) > 0 {
			return fmt.Sprintf("%d of %d sessions listed; missing %s", len(req.UpgradeIDs)-len(missing), len(req.UpgradeIDs), strings.Join(missing, ", ")), false, nil
		}
		return fmt.Sprintf("all %d sessions listed again", len(req.UpgradeIDs)), true, nil
	})
	if err != nil {
		return Outcome{}, err
	}
	return outcome(ctx, "%s", msg), nil
}

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
	NCNs          []string     `json:"ncns,omitempty"`
	Outcome
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
func (c *CSM) DiscoverOrcaTargets(ctx context.Context, req OrcaTargetsRequest) (OrcaTargets, error) {
	cl, err := c.client()
	if err != nil {
		return OrcaTargets{}, err
	}
	computes, err := cl.ReadyComputeNodes(ctx)
	if err != nil {
		return OrcaTargets{}, csmError(err)
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
			return OrcaTargets{}, temporal.NewNonRetryableApplicationError(err.Error(), ErrBadHostRange, nil)
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
	res.Outcome = outcome(ctx, "%d Ready compute nodes from HSM and %d NCNs from %s", len(res.ComputeXnames), len(res.NCNs), strings.Join(req.NCNGroups, " "))
	return res, nil
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
	Outcome
}

// MaxReasonBytes bounds one node's failure reason, so that a batch of
// 1,000 failed nodes (services.hmnfd.batchSize's maximum) stays well under
// 256 KiB as activity result and heartbeat details.
const MaxReasonBytes = 160

// clip shortens s to at most n bytes, on a rune boundary, marking the cut.
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	cut := n - len("…")
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
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
func (c *CSM) RestartOrca(ctx context.Context, req RestartBatch) (BatchResult, error) {
	runner, err := c.ssh()
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
				recordHeartbeat(ctx, snapshot)
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
					Reason: clip(fmt.Sprintf("none of the units %s is on this node (systemctl exit 5 for each): %s", strings.Join(units, ", "), r.Reason), MaxReasonBytes)})
			default:
				progress.Problems = append(progress.Problems, api.NodeProblem{Host: r.Host, Status: string(r.Status), Reason: clip(r.Reason, MaxReasonBytes)})
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
		recordHeartbeat(ctx, progress)
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
	return BatchResult{OK: progress.OK, Problems: progress.Problems, Restarted: progress.Restarted, Outcome: outcome(ctx, "%s", msg)}, nil
}

// HMNFDReadyRequest bounds waiting for HMNFD to be ready; Budget 0 asks once.
type HMNFDReadyRequest struct {
	Budget time.Duration `json:"budget"`
	Poll   time.Duration `json:"poll"`
}

// HMNFDReadiness is whether HMNFD said it is ready.
type HMNFDReadiness struct {
	Ready bool `json:"ready"`
	Outcome
}

// CheckHMNFDReady asks HMNFD whether it is ready. After an etcd wipe HMNFD
// stays not-ready (and has lost its own HSM subscription) until its process
// restarts (csm-specs/observed), so orca's re-subscriptions would go nowhere.
// With a budget it waits until HMNFD is ready and fails when it never is.
func (c *CSM) CheckHMNFDReady(ctx context.Context, req HMNFDReadyRequest) (HMNFDReadiness, error) {
	cl, err := c.client()
	if err != nil {
		return HMNFDReadiness{}, err
	}
	if req.Budget <= 0 {
		ready, err := cl.HMNFDReady(ctx)
		if err != nil {
			return HMNFDReadiness{}, csmError(err)
		}
		if ready {
			return HMNFDReadiness{Ready: true, Outcome: outcome(ctx, "HMNFD reports ready")}, nil
		}
		return HMNFDReadiness{Outcome: outcome(ctx, "HMNFD reports not ready (as it does after an etcd rebuild until its process restarts)")}, nil
	}
	msg, err := poll(ctx, api.Timings{Poll: req.Poll}, req.Budget, "HMNFD to report ready", func(ctx context.Context) (string, bool, error) {
		ready, err := cl.HMNFDReady(ctx)
		switch {
		case err != nil && (csm.Retryable(err) || csm.KindOf(err) == csm.NotFound):
			return fmt.Sprintf("HMNFD not answering yet: %v", err), false, nil // its pods are starting
		case err != nil:
			return "", false, csmError(err)
		case !ready:
			return "HMNFD reports not ready", false, nil
		}
		return "HMNFD reports ready", true, nil
	})
	if err != nil {
		return HMNFDReadiness{}, err
	}
	return HMNFDReadiness{Ready: true, Outcome: outcome(ctx, "%s", msg)}, nil
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
	Outcome
}

// VerifySubscriptions polls HMNFD until every restarted compute node has a
// subscription again, or the budget runs out; the ones still missing are
// returned, not treated as an error, so the report can list them.
func (c *CSM) VerifySubscriptions(ctx context.Context, req VerifyRequest) (VerifyResult, error) {
	cl, err := c.client()
	if err != nil {
		return VerifyResult{}, err
	}
	cl = cl.WithAPIs(req.APIs)
	var missing []string
	_, err = poll(ctx, api.Timings{Poll: req.Poll}, req.Budget, "HMNFD subscriptions", func(ctx context.Context) (string, bool, error) {
		subs, err := cl.Subscriptions(ctx)
		if err != nil {
			if csm.Retryable(err) {
				return err.Error(), false, nil
			}
			return "", false, csmError(err)
		}
		// HMNFD lists xnames lower-case; HMNFD 1.8.5 has no
		// SubscriberComponent (Xname reads Subscriber then).
		have := map[string]bool{}
		for _, s := range subs {
			have[strings.ToLower(s.Xname())] = true
		}
		missing = missing[:0]
		for _, x := range req.Xnames {
			if !have[strings.ToLower(x)] {
				missing = append(missing, x)
			}
		}
		return fmt.Sprintf("%d of %d nodes subscribed", len(req.Xnames)-len(missing), len(req.Xnames)), len(missing) == 0, nil
	})
	var appErr *temporal.ApplicationError
	if errors.As(err, &appErr) && appErr.Type() == ErrWaitTimedOut {
		return VerifyResult{Missing: missing, Outcome: outcome(ctx, "after %s, %d of %d restarted compute nodes have no HMNFD subscription", req.Budget, len(missing), len(req.Xnames))}, nil
	}
	if err != nil {
		return VerifyResult{}, err
	}
	return VerifyResult{Outcome: outcome(ctx, "all %d restarted compute nodes are subscribed to HMNFD again", len(req.Xnames))}, nil
}

// FASLoaderRequest bounds the loader run.
type FASLoaderRequest struct {
	Budget time.Duration `json:"budget"`
	Poll   time.Duration `json:"poll"`
	// LoaderRunID is the run StartFASLoader started, for WaitFASLoader to follow.
	LoaderRunID string `json:"loaderRunId,omitempty"`
}

// FASLoaderStarted is the loader run this step started (or adopted).
type FASLoaderStarted struct {
	LoaderRunID string `json:"loaderRunId"`
	Outcome
}

// fasStartProgress is StartFASLoader's heartbeat detail: the wait's start
// and the loader runs FAS listed before this step's first POST, recorded
// before the POST is sent.
type fasStartProgress struct {
	Since      time.Time `json:"since"`
	Last       string    `json:"last,omitempty"`
	RunsBefore []string  `json:"runsBefore"`
}

// StartFASLoader asks FAS to load firmware images from Nexus (`cray fas
// loader nexus create`; the loader API exists on every CSM release). While
// FAS answers 429 (a loader is already running) it waits and asks again.
//
// It is idempotent: the runs FAS lists before the first POST are kept in
// the heartbeat details, and a retry whose earlier attempt may have
// started a run and lost the answer (a reset, a gateway timeout) adopts a
// run that is not among them instead of starting a second Nexus load. A
// run someone else started meanwhile is adopted too: it is also a Nexus
// load made after the rebuild, which is what this step is for.
func (c *CSM) StartFASLoader(ctx context.Context, req FASLoaderRequest) (FASLoaderStarted, error) {
	cl, err := c.client()
	if err != nil {
		return FASLoaderStarted{}, err
	}
	p := fasStartProgress{Since: time.Now()}
	if activity.HasHeartbeatDetails(ctx) {
		var prev fasStartProgress
		if activity.GetHeartbeatDetails(ctx, &prev) == nil && prev.RunsBefore != nil {
			p = prev
		}
	}
	if p.RunsBefore != nil {
		st, err := cl.FASLoaderStatus(ctx)
		if err != nil {
			return FASLoaderStarted{}, csmError(err)
		}
		var started []string
		for _, id := range st.LoaderRunList {
			if !slices.Contains(p.RunsBefore, id) {
				started = append(started, id)
			}
		}
		if len(started) > 0 {
			msg := fmt.Sprintf("adopted loader run %s, started after this step's first request (an earlier attempt's answer was lost)", started[0])
			if len(started) > 1 {
				msg += fmt.Sprintf("; %d other runs started since: %s", len(started)-1, strings.Join(started[1:], ", "))
			}
			return FASLoaderStarted{LoaderRunID: started[0], Outcome: outcome(ctx, "%s", msg)}, nil
		}
	} else {
		st, err := cl.FASLoaderStatus(ctx)
		if err != nil {
			return FASLoaderStarted{}, csmError(err)
		}
		p.RunsBefore = append([]string{}, st.LoaderRunList...)
	}
	interval := req.Poll
	if interval <= 0 {
		interval = 2 * time.Second
	}
	for {
		// Recorded before every POST: a retry must know the list.
		recordHeartbeat(ctx, p)
		id, err := cl.FASLoadNexus(ctx)
		switch {
		case err == nil:
			return FASLoaderStarted{LoaderRunID: id, Outcome: outcome(ctx, "started loader run %s", id)}, nil
		case csm.KindOf(err) != csm.Busy:
			return FASLoaderStarted{}, csmError(err)
		}
		p.Last = "FAS loader busy with another run (429)"
		if time.Since(p.Since) > req.Budget {
			return FASLoaderStarted{}, temporal.NewNonRetryableApplicationError(
				fmt.Sprintf("timed out after %s waiting for the FAS loader to accept a run: %s", req.Budget, p.Last), ErrWaitTimedOut, nil)
		}
		select {
		case <-ctx.Done():
			return FASLoaderStarted{}, ctx.Err()
		case <-time.After(interval):
		}
	}
}

// WaitFASLoader waits until the loader is no longer busy and reports the
// run's output.
func (c *CSM) WaitFASLoader(ctx context.Context, req FASLoaderRequest) (Outcome, error) {
	cl, err := c.client()
	if err != nil {
		return Outcome{}, err
	}
	msg, err := poll(ctx, api.Timings{Poll: req.Poll}, req.Budget, "the FAS loader to finish", func(ctx context.Context) (string, bool, error) {
		st, err := cl.FASLoaderStatus(ctx)
		if err != nil {
			if csm.Retryable(err) {
				return err.Error(), false, nil
			}
			return "", false, csmError(err)
		}
		if st.Busy() {
			return "loader busy", false, nil
		}
		images, err := cl.FASImages(ctx)
		if err != nil {
			return "", false, csmError(err)
		}
		msg := fmt.Sprintf("loader ready; FAS lists %d images", len(images))
		if req.LoaderRunID != "" {
			// The run's own output says what it loaded (or why it did not).
			run, err := cl.FASLoaderRun(ctx, req.LoaderRunID)
			if err != nil {
				return "", false, csmError(err)
			}
			if n := len(run.LoaderRunOutput); n > 0 {
				msg += fmt.Sprintf("; loader run %s: %s", req.LoaderRunID, run.LoaderRunOutput[n-1])
			}
		}
		return msg, true, nil
	})
	if err != nil {
		return Outcome{}, err
	}
	return outcome(ctx, "%s", msg), nil
}
