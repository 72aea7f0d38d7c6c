// Package bssrestore is the BSS section of the CSM 1.5+ runbook with a
// snapshot: where the runbook restores BSS from its etcd backup, a run
// started with a snapshot that holds BSS boot parameters offers, behind
// gate bss-restore, to write the entries BSS is missing or holds
// differently, and reads them back. Without a snapshot the service is left
// to the runbook's etcd backup restore, as before.
package bssrestore

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/csmops/etcd-repopulate/activities"
	"github.com/csmops/etcd-repopulate/internal/api"
	"github.com/csmops/etcd-repopulate/workflows/procedure"
)

// Steps of restore-bss-from-snapshot, in order (the gate between).
const (
	StepCompare       = "compare-bss"
	StepEtcdBackupAge = "read-etcd-backup-age"
	StepRestore       = "restore-bss"
	StepCheck         = "check-bss-restored"
)

// Error types of the procedure.
const (
	// ErrNoBootParameters: the run has a snapshot, but without BSS boot
	// parameters, on a release where bss restores from it.
	ErrNoBootParameters = "SnapshotWithoutBootParameters"
	// ErrNotRestored: an entry written is not as saved when read back.
	ErrNotRestored = "BootParametersNotRestored"
)

// NotRestoredReason and EtcdBackupFollowUp are what the service says when
// BSS is left to the runbook's etcd backup restore: no snapshot, or the
// restore from the snapshot was not approved.
const (
	NotRestoredReason  = "from CSM 1.5 REDS is gone and BSS is restored from its own etcd backup, a step this worker leaves to a person (or, with a snapshot that holds BSS boot parameters, restores from the snapshot behind gate bss-restore)"
	EtcdBackupFollowUp = "restore BSS from its etcd backup (CSM 1.5+ runbook, BSS section; docs-csm operations/kubernetes/Restore_an_etcd_Cluster_from_a_Backup.md): on a master or worker NCN run /opt/cray/platform-utils/etcd/etcd_restore_rebuild.sh -s cray-bss"
)

// Procedure restores BSS boot parameters from the snapshot behind gate
// bss-restore (CSM 1.5+).
var Procedure = procedure.Procedure{
	Name: api.RestoreBSSFromSnapshot,
	Steps: func(in procedure.Input) []string {
		switch {
		case in.Snapshot == nil:
			return nil
		case !in.Snapshot.BootParametersSaved:
			return []string{StepCompare}
		}
		return []string{StepCompare, StepEtcdBackupAge, api.GateBSSRestore, StepRestore, StepCheck}
	},
	Gates: func(in procedure.Input) []string {
		if in.Snapshot == nil || !in.Snapshot.BootParametersSaved {
			return nil
		}
		return []string{api.GateBSSRestore}
	},
	Run:        restore,
	Needs:      procedure.Needs{CSMAPI: true, Note: note},
	Activities: named,
}

func note(api.APIVersions) string {
	return "with a snapshot holding BSS boot parameters, behind gate " + api.GateBSSRestore + "; without one, follow-up: etcd_restore_rebuild.sh -s cray-bss"
}

// sampleSize is how many hosts the gate lists by name; the compare step's
// result in history has them all.
const sampleSize = 20

func restore(w *procedure.Run, ctx workflow.Context) error {
	plan, snap := w.In.Plan, w.In.Snapshot
	if snap == nil {
		w.Status.State, w.Status.Message = api.Skipped, NotRestoredReason
		w.Status.FollowUps = append(w.Status.FollowUps, EtcdBackupFollowUp)
		return nil
	}
	if !snap.BootParametersSaved {
		msg := fmt.Sprintf("the run's snapshot %s carries no BSS boot parameters (file bss-bootparameters.json): it was taken by a version that did not save them, or repopulate start left them out because the snapshot's API probes pointed to a release before CSM 1.5; nothing was changed. Take a snapshot with this version (repopulate snapshot --out DIR) before the next rebuild, or run bss without --snapshot to leave it to its etcd backup", snap.Dir)
		w.Finish(ctx, StepCompare, api.Failed, msg, 0)
		return temporal.NewNonRetryableApplicationError(msg, ErrNoBootParameters, nil)
	}
	var cmp Comparison
	// One GET and a comparison in memory: a read, not a wait (it sends no heartbeats).
	err := w.Step(ctx, StepCompare, procedure.ReadOptions(plan.Timings), func(ctx workflow.Context) (activities.Outcome, error) {
		err := workflow.ExecuteActivity(ctx, api.ActivityCompareBootParameters, CompareRequest{Saved: snap.BootParameters}).Get(ctx, &cmp)
		return cmp.Outcome, err
	})
	if err != nil {
		return err
	}
	toWrite := append(slices.Clone(cmp.Missing), cmp.Differing...)
	if len(toWrite) == 0 {
		why := fmt.Sprintf("BSS holds all %d hosts' boot parameters as the snapshot saved them: nothing to restore", cmp.Hosts)
		w.Finish(ctx, StepEtcdBackupAge, api.Skipped, why, 0)
		w.SkipGate(ctx, api.GateBSSRestore, why)
		w.Finish(ctx, StepRestore, api.Skipped, why, 0)
		w.Finish(ctx, StepCheck, api.Skipped, why, 0)
		w.Result = why
		return nil
	}
	var backup EtcdBackup
	err = w.Step(ctx, StepEtcdBackupAge, procedure.ReadOptions(plan.Timings), func(ctx workflow.Context) (activities.Outcome, error) {
		err := workflow.ExecuteActivity(ctx, api.ActivityReadEtcdBackupAge, EtcdBackupRequest{CronJob: plan.EtcdBackup}).Get(ctx, &backup)
		return backup.Outcome, err
	})
	if err != nil {
		return err
	}
	now := workflow.Now(ctx)
	// The action is what status and watch print of the gate: it carries
	// both ages; the details (Web UI) add the hosts.
	action := fmt.Sprintf("write the boot parameters of %d hosts (%d missing, %d different) from the snapshot taken %s ago; the newest etcd backup of BSS is %s; nothing else in BSS changes",
		len(toWrite), len(cmp.Missing), len(cmp.Differing), age(now, snap.Taken), backup.Age(now))
	details := gateDetails(cmp, backup, snap, now)
	if w.In.DryRun {
		w.SkipGate(ctx, api.GateBSSRestore, "dry-run: a real run would wait here for approval to "+action)
		w.Finish(ctx, StepRestore, api.Skipped, "dry-run: would "+action, 0)
		w.Finish(ctx, StepCheck, api.Skipped, "dry-run: would read the written entries back", 0)
		return nil
	}
	if err := w.Gate(ctx, api.GateBSSRestore, action, details); err != nil {
		why := "not approved"
		if g := w.FindGate(api.GateBSSRestore); g != nil && g.State == api.GateRejected {
			why = fmt.Sprintf("rejected by %s%s", procedure.OrSomeone(g.By), procedure.NoteSuffix(g.Note))
		}
		msg := fmt.Sprintf("gate %s %s: nothing was written to BSS", api.GateBSSRestore, why)
		w.Record(ctx, StepRestore, api.Skipped, msg, 0)
		w.Record(ctx, StepCheck, api.Skipped, msg, 0)
		w.Status.FollowUps = append(w.Status.FollowUps, EtcdBackupFollowUp)
		var appErr *temporal.ApplicationError
		if errors.As(err, &appErr) && appErr.Type() == procedure.ErrGateRejected {
			// Rejecting is choosing the runbook's etcd backup restore: the
			// service is left to it, as without a snapshot.
			w.Record(ctx, api.GateBSSRestore, api.Skipped, msg, 0)
			w.Status.State, w.Status.Message = api.Skipped, msg+"; "+NotRestoredReason
			return nil
		}
		return err
	}
	var res RestoreResult
	err = w.Step(ctx, StepRestore, procedure.WaitOptions(plan.Timings, plan.Timings.Wait), func(ctx workflow.Context) (activities.Outcome, error) {
		err := workflow.ExecuteActivity(ctx, api.ActivityRestoreBootParameters, RestoreRequest{Saved: snap.BootParameters, Hosts: toWrite}).Get(ctx, &res)
		return res.Outcome, err
	})
	if err != nil {
		return err
	}
	var check Comparison
	return w.Step(ctx, StepCheck, procedure.ReadOptions(plan.Timings), func(ctx workflow.Context) (activities.Outcome, error) {
		err := workflow.ExecuteActivity(ctx, api.ActivityCompareBootParameters, CompareRequest{Saved: snap.BootParameters}).Get(ctx, &check)
		if err != nil {
			return check.Outcome, err
		}
		var wrong []string
		for _, h := range append(slices.Clone(check.Missing), check.Differing...) {
			if slices.Contains(toWrite, h) {
				wrong = append(wrong, h)
			}
		}
		if len(wrong) > 0 {
			return check.Outcome, temporal.NewNonRetryableApplicationError(fmt.Sprintf(
				"read back after the restore, %d of the %d hosts written are not as the snapshot saved them: %s; BSS changed them since, or refused them: look at GET /apis/bss/boot/v1/bootparameters?name=HOST and run bss again",
				len(wrong), len(toWrite), strings.Join(wrong, ",")), ErrNotRestored, nil)
		}
		return activities.Outcome{Message: fmt.Sprintf("read back: all %d hosts written are as the snapshot saved them", len(toWrite)), Attempt: check.Attempt}, nil
	})
}

// gateDetails say what approving writes and how old each source is: the
// snapshot and the newest periodic etcd backup of BSS.
func gateDetails(cmp Comparison, backup EtcdBackup, snap *api.SnapshotInput, now time.Time) string {
	var b strings.Builder
	fmt.Fprintf(&b, "Snapshot %s taken %s (%s ago): %d hosts' boot parameters; BSS now holds %d of them as saved, misses %d and holds %d differently.\n",
		snap.Dir, snap.Taken.UTC().Format(time.RFC3339), age(now, snap.Taken), cmp.Hosts, cmp.Equal, len(cmp.Missing), len(cmp.Differing))
	fmt.Fprintf(&b, "Newest etcd backup of BSS: %s\n", backup.Describe(now))
	fmt.Fprintf(&b, "Approve to write from the snapshot only these entries (each is listed in the report once written):\n")
	if len(cmp.Missing) > 0 {
		fmt.Fprintf(&b, "  missing (%d): %s\n", len(cmp.Missing), procedure.Sample(cmp.Missing, sampleSize))
	}
	if len(cmp.Differing) > 0 {
		fmt.Fprintf(&b, "  different (%d): %s\n", len(cmp.Differing), procedure.Sample(cmp.Differing, sampleSize))
	}
	fmt.Fprintf(&b, "Reject to leave BSS to the runbook's restore from its etcd backup: nothing is written, and the report says how (%s).", EtcdBackupFollowUp)
	return b.String()
}

// age is how long ago t was, to the minute.
func age(now, t time.Time) string {
	if t.IsZero() {
		return "unknown"
	}
	return now.Sub(t).Round(time.Minute).String()
}
