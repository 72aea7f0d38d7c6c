package e2e

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/csmops/etcd-repopulate/internal/api"
	"github.com/csmops/etcd-repopulate/internal/csm"
	"github.com/csmops/etcd-repopulate/internal/simcluster"
	"github.com/csmops/etcd-repopulate/procedures/bssrestore"
)

// etcdBackupCronJob creates BSS's etcd backup CronJob as the cray-etcd
// chart does on CSM 1.5 (suspended: nothing runs it here), its last run
// successful at last.
func etcdBackupCronJob(t *testing.T, last time.Time) {
	t.Helper()
	ctx := context.Background()
	cjs := cluster.Core.BatchV1().CronJobs(simcluster.Namespace)
	suspend := true
	cj, err := cjs.Create(ctx, &batchv1.CronJob{ObjectMeta: metav1.ObjectMeta{Name: bssrestore.EtcdBackupCronJob(api.BSS)}, Spec: batchv1.CronJobSpec{
		Schedule: "0 */1 * * *", Suspend: &suspend,
		JobTemplate: batchv1.JobTemplateSpec{Spec: batchv1.JobSpec{Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{
			RestartPolicy: corev1.RestartPolicyNever, Containers: []corev1.Container{{Name: "etcd", Image: "registry.local/bitnami/etcd:3.5.9"}}}}}},
	}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cjs.Delete(context.Background(), cj.Name, metav1.DeleteOptions{}) })
	cj.Status.LastSuccessfulTime = &metav1.Time{Time: last}
	if _, err := cjs.UpdateStatus(ctx, cj, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// TestBSSRestoreGateOnCSM15 is issue 12's BSS restore acceptance on the
// real parts (worker and CLI binaries, Temporal, API server, CSM 1.5
// emulator): after a rebuild that wiped BSS, a bss run from a snapshot
// waits at gate bss-restore with the snapshot's and the etcd backup's
// ages; rejected, nothing is written; approved, every entry is written,
// equal to the snapshot, and the report lists each host.
func TestBSSRestoreGateOnCSM15(t *testing.T) {
	healthy(t)
	e, cfg := releaseEmulator(t, api.CSM15)
	setCatalog(t, simcluster.CatalogVersions[api.CSM15])
	etcdBackupCronJob(t, time.Now().Add(-2*time.Hour))
	queue := "e2e-bss-restore"
	cfgPath := writeConfig(t, cfg)
	snapDir := filepath.Join(t.TempDir(), "snapshot")
	if out, stderr, code := repopulate(t, queue, "snapshot", "--out", snapDir, "--config", cfgPath, "--kubeconfig", cluster.Kubeconfig); code != 0 {
		t.Fatalf("snapshot: exit %d\n%s\n%s", code, out, stderr)
	}
	before := map[string]csm.BootParams{}
	for _, b := range e.BootParams() {
		if h := b.Host(); h != "" {
			before[h] = b
		}
	}
	if len(before) != computeNodes {
		t.Fatalf("BSS holds %d hosts before the rebuild, want %d", len(before), computeNodes)
	}
	startWorker(t, queue, cfg, cluster.Kubeconfig)

	for _, decision := range []api.Decision{api.Reject, api.Approve} {
		e.WipeBSS() // the rebuild
		run := "e2e-bss-restore-" + string(decision)
		if out, stderr, code := repopulate(t, queue, "start", "--id", run, "--services", "bss", "--snapshot", snapDir); code != 0 {
			t.Fatalf("start: exit %d\n%s\n%s", code, out, stderr)
		}
		waitGate(t, run, api.GateBSSRestore, api.GateWaiting)
		status, _, _ := repopulate(t, queue, "status", run)
		for _, want := range []string{"bss-restore (bss): write the boot parameters of 18 hosts (18 missing, 0 different) from the snapshot taken", "the newest etcd backup of BSS is 2h0m0s old (CronJob services/cray-bss-bitnami-etcd-snapshotter)", "missing: x", snapDir} {
			if !strings.Contains(status, want) {
				t.Errorf("%s: status at the gate does not say %q:\n%s", decision, want, status)
			}
		}
		e.ResetCounters()
		args := []string{string(decision), run, api.GateBSSRestore}
		if decision == api.Reject {
			args = append(args, "--reason", "restoring from the etcd backup instead")
		} else {
			args = append(args, "--note", "snapshot newer than the backup")
		}
		if out, stderr, code := repopulate(t, queue, args...); code != 0 {
			t.Fatalf("%s: exit %d\n%s\n%s", decision, code, out, stderr)
		}
		report := waitRun(t, run)
		bss := service(report, api.BSS)
		text, _, _ := repopulate(t, queue, "report", run)
		if decision == api.Reject {
			if bss.State != api.Skipped || !strings.Contains(strings.Join(bss.FollowUps, " "), "etcd_restore_rebuild.sh -s cray-bss") {
				t.Errorf("rejected: %+v", bss)
			}
			if n := len(e.BootParams()); n != 0 || e.Requests(csm.PathBSSBootParameters) != 0 {
				t.Errorf("rejected: BSS holds %d entries, %d requests after the decision; want nothing written", n, e.Requests(csm.PathBSSBootParameters))
			}
			continue
		}
		if bss.State != api.Done {
			t.Fatalf("approved: %+v", bss)
		}
		after := map[string]csm.BootParams{}
		for _, b := range e.BootParams() {
			if h := b.Host(); h != "" {
				after[h] = b
			}
		}
		for h, b := range before {
			if !b.Equal(after[h]) {
				t.Errorf("approved: host %s holds %+v, want the snapshot's %+v", h, after[h], b)
			}
			if !strings.Contains(text, h) {
				t.Errorf("approved: the report does not list %s", h)
			}
		}
		if len(after) != len(before) {
			t.Errorf("approved: BSS holds %d hosts, want %d", len(after), len(before))
		}
	}
}
