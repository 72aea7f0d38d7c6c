package bssrestore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/temporal"

	"github.com/csmops/etcd-repopulate/activities"
	"github.com/csmops/etcd-repopulate/internal/api"
	"github.com/csmops/etcd-repopulate/internal/csm"
	"github.com/csmops/etcd-repopulate/internal/kube"
	"github.com/csmops/etcd-repopulate/internal/snapshot"
	"github.com/csmops/etcd-repopulate/workflows/procedure"
)

// Activities compare and restore BSS boot parameters and read the age of
// BSS's newest etcd backup.
type Activities struct {
	Kube *activities.Kube
	CSM  *activities.CSM
}

func named(k *activities.Kube, c *activities.CSM) map[string]any {
	a := &Activities{Kube: k, CSM: c}
	return map[string]any{
		api.ActivityCompareBootParameters: a.CompareBootParameters,
		api.ActivityReadEtcdBackupAge:     a.ReadEtcdBackupAge,
		api.ActivityRestoreBootParameters: a.RestoreBootParameters,
	}
}

// CompareRequest carries the snapshot's grouped boot parameters
// (api.SnapshotInput.BootParameters).
type CompareRequest struct {
	Saved []json.RawMessage `json:"saved"`
}

// Comparison sorts the snapshot's hosts by what BSS holds for them now.
type Comparison struct {
	activities.Outcome
	// Hosts is how many hosts the snapshot has boot parameters for.
	Hosts int `json:"hosts"`
	// Missing: BSS has no entry for the host; Differing: its entry has
	// another kernel, initrd, params or cloud-init than saved.
	Missing   []string `json:"missing,omitempty"`
	Differing []string `json:"differing,omitempty"`
	Equal     int      `json:"equal"`
}

// CompareBootParameters reads every entry BSS holds and compares each host
// the snapshot saved with BSS's entry for it. It changes nothing.
func (a *Activities) CompareBootParameters(ctx context.Context, req CompareRequest) (Comparison, error) {
	saved, err := saved(req.Saved)
	if err != nil {
		return Comparison{}, err
	}
	cl, err := a.CSM.APIClient()
	if err != nil {
		return Comparison{}, err
	}
	now, err := current(ctx, cl)
	if err != nil {
		return Comparison{}, err
	}
	out := Comparison{Hosts: len(saved)}
	for _, s := range saved {
		switch state(now, s) {
		case missing:
			out.Missing = append(out.Missing, s.Host())
		case differs:
			out.Differing = append(out.Differing, s.Host())
		default:
			out.Equal++
		}
	}
	msg := fmt.Sprintf("BSS holds %d host entries; of the snapshot's %d hosts %d are missing, %d differ, %d are as saved",
		len(now), out.Hosts, len(out.Missing), len(out.Differing), out.Equal)
	if len(out.Missing) > 0 {
		msg += "; missing: " + procedure.Sample(out.Missing, sampleSize)
	}
	if len(out.Differing) > 0 {
		msg += "; different: " + procedure.Sample(out.Differing, sampleSize)
	}
	out.Outcome = activities.NewOutcome(ctx, "%s", msg)
	return out, nil
}

// RestoreRequest names the hosts whose saved entries are written: the ones
// the gate showed as missing or different.
type RestoreRequest struct {
	Saved []json.RawMessage `json:"saved"`
	Hosts []string          `json:"hosts"`
}

// RestoreResult lists the hosts written, and those that BSS already held
// as saved when the restore came to them (restored by other means after
// the comparison), which were left alone.
type RestoreResult struct {
	activities.Outcome
	Written      []string `json:"written,omitempty"`
	AlreadyEqual []string `json:"alreadyEqual,omitempty"`
}

// restoreProgress is kept in heartbeat details, so that a retried restore
// still reports the hosts an earlier attempt wrote (BSS now holds them as
// saved, so the retry does not write them again).
type restoreProgress struct {
	Written []string `json:"written,omitempty"`
}

// ErrBootParametersRefused: BSS refused to store a saved entry.
const ErrBootParametersRefused = "BootParametersRefused"

// RestoreBootParameters writes, for each host in req.Hosts, the snapshot's
// entry, unless BSS holds it as saved by now: one PUT per group of hosts
// with identical parameters (PUT replaces each named host's entry whole,
// so writing again is harmless). Nothing else in BSS is touched.
func (a *Activities) RestoreBootParameters(ctx context.Context, req RestoreRequest) (RestoreResult, error) {
	all, err := saved(req.Saved)
	if err != nil {
		return RestoreResult{}, err
	}
	cl, err := a.CSM.APIClient()
	if err != nil {
		return RestoreResult{}, err
	}
	var p restoreProgress
	if activity.HasHeartbeatDetails(ctx) {
		if err := activity.GetHeartbeatDetails(ctx, &p); err != nil {
			p = restoreProgress{}
		}
	}
	resumed := len(p.Written)
	now, err := current(ctx, cl)
	if err != nil {
		return RestoreResult{}, err
	}
	approved := map[string]bool{}
	for _, h := range req.Hosts {
		approved[h] = true
	}
	// Group the hosts to write by their saved entry: one PUT each.
	var groups []csm.BootParams
	var already []string
	for _, s := range all {
		h := s.Host()
		if !approved[h] {
			continue
		}
		delete(approved, h)
		if state(now, s) == equal {
			if !slices.Contains(p.Written, h) {
				already = append(already, h)
			}
			continue
		}
		i := slices.IndexFunc(groups, func(g csm.BootParams) bool { return sameParams(g, s) })
		if i < 0 {
			g := s
			g.Hosts = nil
			groups, i = append(groups, g), len(groups)
		}
		groups[i].Hosts = append(groups[i].Hosts, h)
	}
	if len(approved) > 0 {
		var unknown []string
		for h := range approved {
			unknown = append(unknown, h)
		}
		slices.Sort(unknown)
		return RestoreResult{}, temporal.NewNonRetryableApplicationError(fmt.Sprintf(
			"hosts %v are not in the snapshot's boot parameters: nothing to write them from; nothing was written", unknown), api.InvalidRequestError, nil)
	}
	for _, g := range groups {
		if err := cl.PutBootParameters(ctx, g); err != nil {
			if csm.KindOf(err) == csm.BadRequest {
				return RestoreResult{}, temporal.NewNonRetryableApplicationError(fmt.Sprintf(
					"BSS refused the snapshot's boot parameters of %v: %v; written before the refusal: %v; fix the entry as the runbook's BSS section says and run bss again",
					g.Hosts, err, p.Written), ErrBootParametersRefused, nil)
			}
			return RestoreResult{}, activities.CSMError(err)
		}
		p.Written = append(p.Written, g.Hosts...)
		activities.RecordHeartbeat(ctx, p)
	}
	msg := fmt.Sprintf("wrote the boot parameters of %d hosts from the snapshot: %s", len(p.Written), joinAll(p.Written))
	if len(already) > 0 {
		msg += fmt.Sprintf("; %d already as saved, left alone: %s", len(already), joinAll(already))
	}
	if resumed > 0 {
		msg += fmt.Sprintf(" (%d written before a retry)", resumed)
	}
	return RestoreResult{Outcome: activities.NewOutcome(ctx, "%s", msg), Written: p.Written, AlreadyEqual: already}, nil
}

// EtcdBackupRequest names the CronJob that backs up BSS's etcd cluster.
type EtcdBackupRequest struct {
	CronJob api.ObjectRef `json:"cronJob"`
}

// EtcdBackup is what the CronJob says of the newest backup.
type EtcdBackup struct {
	activities.Outcome
	CronJob api.ObjectRef `json:"cronJob"`
	// Found: the CronJob exists.
	Found    bool   `json:"found"`
	Schedule string `json:"schedule,omitempty"`
	Suspend  bool   `json:"suspend,omitempty"`
	// LastSuccess is the end of its last successful run; zero: none.
	LastSuccess time.Time `json:"lastSuccess,omitzero"`
}

// Describe says how old the newest backup is at now.
func (b EtcdBackup) Describe(now time.Time) string {
	if !b.Found {
		return fmt.Sprintf("CronJob %s does not exist, so no periodic backup of BSS's etcd cluster is known (the cray-etcd-base chart's disasterRecovery snapshotter; the copies in S3 bucket etcd-backup cannot be read from Kubernetes)", b.CronJob)
	}
	var s string
	if b.LastSuccess.IsZero() {
		s = fmt.Sprintf("CronJob %s (schedule %q) has no successful run on record: there may be no backup to restore from", b.CronJob, b.Schedule)
	} else {
		s = fmt.Sprintf("CronJob %s (schedule %q) last succeeded at %s, %s ago", b.CronJob, b.Schedule, b.LastSuccess.UTC().Format(time.RFC3339), age(now, b.LastSuccess))
	}
	if b.Suspend {
		s += "; the CronJob is suspended"
	}
	return s
}

// Age says in a few words how old the newest backup is at now.
func (b EtcdBackup) Age(now time.Time) string {
	switch {
	case !b.Found:
		return fmt.Sprintf("unknown (no CronJob %s)", b.CronJob)
	case b.LastSuccess.IsZero():
		return fmt.Sprintf("unknown (CronJob %s never succeeded)", b.CronJob)
	}
	return fmt.Sprintf("%s old (CronJob %s)", age(now, b.LastSuccess), b.CronJob)
}

// ReadEtcdBackupAge reads when BSS's etcd cluster was last backed up: the
// last successful run of its snapshotter CronJob. A CronJob that does not
// exist is reported, not an error; one the worker may not read is, before
// anything changes.
func (a *Activities) ReadEtcdBackupAge(ctx context.Context, req EtcdBackupRequest) (EtcdBackup, error) {
	out := EtcdBackup{CronJob: req.CronJob}
	runs, err := a.Kube.Client().CronJobRuns(ctx, req.CronJob)
	var notFound *kube.NotFoundError
	var forbidden *kube.ForbiddenError
	switch {
	case errors.As(err, &notFound):
	case errors.As(err, &forbidden):
		return out, temporal.NewNonRetryableApplicationError(fmt.Sprintf(
			"cannot read CronJob %s, whose last successful run is the newest etcd backup of BSS that gate %s shows: %v; deploy/rbac.yaml grants the worker get on cronjobs (apiGroup batch) in namespace %s: apply it (kubectl apply -f deploy/rbac.yaml) and run bss again; nothing was changed",
			req.CronJob, api.GateBSSRestore, forbidden.Err, req.CronJob.Namespace), activities.ErrForbidden, nil)
	case err != nil:
		return out, activities.KubeError(err)
	default:
		out.Found, out.Schedule, out.Suspend, out.LastSuccess = true, runs.Schedule, runs.Suspend, runs.LastSuccess
	}
	out.Outcome = activities.NewOutcome(ctx, "%s", out.Describe(time.Now()))
	return out, nil
}

// hostState is how BSS holds one saved host.
type hostState int

const (
	equal hostState = iota
	missing
	differs
)

// state compares saved host entry s with BSS's entries now (by host).
func state(now map[string]csm.BootParams, s csm.BootParams) hostState {
	cur, ok := now[s.Host()]
	switch {
	case !ok:
		return missing
	case !sameParams(cur, s):
		return differs
	}
	return equal
}

// sameParams: a and b boot the same way, whatever hosts, MACs or NIDs they name.
func sameParams(a, b csm.BootParams) bool {
	a.Hosts, a.Macs, a.Nids = nil, nil, nil
	b.Hosts, b.Macs, b.Nids = nil, nil, nil
	return a.Equal(b)
}

// current is BSS's host entries now, by host.
func current(ctx context.Context, cl *csm.Client) (map[string]csm.BootParams, error) {
	list, err := cl.BootParameters(ctx)
	if err != nil {
		return nil, activities.CSMError(err)
	}
	out := map[string]csm.BootParams{}
	for _, b := range list {
		for _, h := range b.Hosts {
			e := b
			e.Hosts = []string{h}
			out[h] = e
		}
	}
	return out, nil
}

// saved is the snapshot's entry of each host; a broken one is refused
// before anything is read or written.
func saved(groups []json.RawMessage) ([]csm.BootParams, error) {
	out, err := snapshot.UngroupBootParameters(groups)
	if err != nil {
		return nil, temporal.NewNonRetryableApplicationError(fmt.Sprintf("the run's snapshot input: %v; start the run again from the snapshot directory", err), api.InvalidRequestError, nil)
	}
	return out, nil
}

func joinAll(hosts []string) string {
	if len(hosts) == 0 {
		return "none"
	}
	return strings.Join(hosts, ",")
}
