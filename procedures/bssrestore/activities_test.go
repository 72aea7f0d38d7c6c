package bssrestore_test

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.temporal.io/sdk/temporal"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"

	"github.com/csmops/etcd-repopulate/activities"
	"github.com/csmops/etcd-repopulate/internal/activitytest"
	"github.com/csmops/etcd-repopulate/internal/api"
	"github.com/csmops/etcd-repopulate/internal/badinput"
	"github.com/csmops/etcd-repopulate/internal/csm"
	"github.com/csmops/etcd-repopulate/internal/csmemu"
	"github.com/csmops/etcd-repopulate/internal/simcluster"
	"github.com/csmops/etcd-repopulate/internal/snapshot"
	"github.com/csmops/etcd-repopulate/internal/testenv"
	"github.com/csmops/etcd-repopulate/procedures/bssrestore"
)

// emu serves a CSM 1.5 emulator whose BSS holds the boot parameters of n
// compute nodes, and returns the activities talking to it over HTTP.
func emu(t *testing.T, n int) (*csmemu.Emulator, *bssrestore.Activities) {
	e, c := activitytest.CSM(t, api.CSM15, csmemu.ComputeNodes(n))
	return e, &bssrestore.Activities{CSM: c}
}

// run executes one activity as Temporal would; details, if not nil, are
// an earlier attempt's heartbeat details.
func run[T any](t *testing.T, a *bssrestore.Activities, fn, arg, details any) (T, error) {
	t.Helper()
	out, _, err := activitytest.Run[T](t, a, fn, arg, details)
	return out, err
}

// saved is what repopulate start carries of e's BSS now.
func saved(t *testing.T, e *csmemu.Emulator) []json.RawMessage {
	t.Helper()
	g, err := snapshot.GroupBootParameters(e.BootParams())
	if err != nil {
		t.Fatal(err)
	}
	return g
}

// hostEntries is e's BSS by host.
func hostEntries(e *csmemu.Emulator) map[string]csm.BootParams {
	out := map[string]csm.BootParams{}
	for _, b := range e.BootParams() {
		if h := b.Host(); h != "" {
			out[h] = b
		}
	}
	return out
}

func TestGroupingCarriesEveryHostOnce(t *testing.T) {
	e, _ := emu(t, 50)
	bs := e.BootParams()
	g := saved(t, e)
	// 50 computes booting the same image: one group.
	if len(g) != 1 {
		t.Fatalf("%d groups for 50 identical compute entries, want 1", len(g))
	}
	back, err := snapshot.UngroupBootParameters(g)
	if err != nil {
		t.Fatal(err)
	}
	var hosts []string
	for _, b := range back {
		hosts = append(hosts, b.Host())
		if !b.Equal(hostEntries(e)[b.Host()]) {
			t.Errorf("host %s: ungrouped %+v differs from BSS's entry", b.Host(), b)
		}
	}
	if len(hosts) != 50 || len(bs) != 52 { // 50 hosts, a kernel and an initrd image entry
		t.Fatalf("%d hosts back of %d BSS entries", len(hosts), len(bs))
	}
	raw, _ := json.Marshal(g)
	full, _ := json.Marshal(bs)
	t.Logf("50 computes: BSS lists %d bytes, grouped %d bytes", len(full), len(raw))
	if len(raw)*10 > len(full) {
		t.Errorf("grouped %d bytes, BSS's list %d: grouping saved less than 90%%", len(raw), len(full))
	}
}

// TestCompareAndRestoreOnlyMissingOrDiffering: the comparison sorts the
// snapshot's hosts into missing, different and equal; the restore writes
// exactly the hosts named, equal to the snapshot, and touches nothing else;
// a retry after it finished writes nothing and still lists them.
func TestCompareAndRestoreOnlyMissingOrDiffering(t *testing.T) {
	e, a := emu(t, 6)
	snap := saved(t, e)
	before := e.BootParams()
	var hosts []string
	for _, b := range before {
		if b.Host() != "" {
			hosts = append(hosts, b.Host())
		}
	}
	// The rebuild left BSS with 3 of the 6 hosts, one of them changed, and
	// a host the snapshot does not know.
	var now []csm.BootParams
	for _, b := range before {
		switch h := b.Host(); h {
		case hosts[0], hosts[1], hosts[2]:
		case hosts[3]:
			b.Params += " changed"
			now = append(now, b)
		default:
			if h != "" {
				now = append(now, b)
			}
		}
	}
	extra := csm.BootParams{Hosts: []string{"x9000c0s0b0n0"}, Kernel: "s3://boot-images/other/kernel", Params: "other"}
	now = append(now, extra)
	if err := e.SetBootParams(now); err != nil {
		t.Fatal(err)
	}
	var acts *bssrestore.Activities
	cmp, err := run[bssrestore.Comparison](t, a, acts.CompareBootParameters, bssrestore.CompareRequest{Saved: snap}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(cmp.Missing, hosts[:3]) || !slices.Equal(cmp.Differing, hosts[3:4]) || cmp.Equal != 2 || cmp.Hosts != 6 {
		t.Fatalf("comparison %+v, want missing %v, differing %v, 2 equal", cmp, hosts[:3], hosts[3:4])
	}
	toWrite := append(slices.Clone(cmp.Missing), cmp.Differing...)
	e.ResetCounters()
	res, err := run[bssrestore.RestoreResult](t, a, acts.RestoreBootParameters, bssrestore.RestoreRequest{Saved: snap, Hosts: toWrite}, nil)
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(res.Written)
	want := slices.Sorted(slices.Values(toWrite))
	if !slices.Equal(res.Written, want) || len(res.AlreadyEqual) != 0 {
		t.Fatalf("written %v (already equal %v), want %v", res.Written, res.AlreadyEqual, want)
	}
	for _, h := range want {
		if !strings.Contains(res.Message, h) {
			t.Errorf("the restore's message does not list %s: %s", h, res.Message)
		}
	}
	// One GET, one PUT for the four hosts that share their parameters.
	if got := e.Requests(csm.PathBSSBootParameters); got != 2 {
		t.Errorf("%d requests to %s, want 2 (a GET and one PUT)", got, csm.PathBSSBootParameters)
	}
	after := hostEntries(e)
	for _, b := range before {
		if h := b.Host(); h != "" && !b.Equal(after[h]) {
			t.Errorf("host %s after the restore: %+v, want the snapshot's %+v", h, after[h], b)
		}
	}
	if !extra.Equal(after[extra.Host()]) {
		t.Errorf("the host the snapshot does not know was changed: %+v", after[extra.Host()])
	}
	// A retry (the first attempt's heartbeat says what it wrote) writes nothing.
	e.ResetCounters()
	again, err := run[bssrestore.RestoreResult](t, a, acts.RestoreBootParameters, bssrestore.RestoreRequest{Saved: snap, Hosts: toWrite}, map[string]any{"written": toWrite})
	if err != nil {
		t.Fatal(err)
	}
	if got := e.Requests(csm.PathBSSBootParameters); got != 1 {
		t.Errorf("retry: %d requests, want 1 GET and no PUT", got)
	}
	if len(again.Written) != len(toWrite) || len(again.AlreadyEqual) != 0 {
		t.Errorf("retry: written %v, already equal %v; want the first attempt's %v", again.Written, again.AlreadyEqual, toWrite)
	}
	if cmp, _ := run[bssrestore.Comparison](t, a, acts.CompareBootParameters, bssrestore.CompareRequest{Saved: snap}, nil); cmp.Equal != 6 {
		t.Errorf("after the restore: %+v, want all 6 equal", cmp)
	}
}

// A host restored by other means between the gate and the restore is left
// alone and reported as such.
func TestRestoreLeavesHostsAlreadyBack(t *testing.T) {
	e, a := emu(t, 2)
	snap := saved(t, e)
	before := e.BootParams()
	var acts *bssrestore.Activities
	hosts := []string{before[2].Host(), before[3].Host()}
	e.ResetCounters()
	res, err := run[bssrestore.RestoreResult](t, a, acts.RestoreBootParameters, bssrestore.RestoreRequest{Saved: snap, Hosts: hosts}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Written) != 0 || !slices.Equal(res.AlreadyEqual, hosts) || e.Requests(csm.PathBSSBootParameters) != 1 {
		t.Fatalf("result %+v with %d requests; want nothing written, both already equal, one GET", res, e.Requests(csm.PathBSSBootParameters))
	}
}

var (
	clusterOnce sync.Once
	cluster     *simcluster.Cluster
	clusterDir  string
	clusterErr  error
)

// kubeCluster starts one real API server for the tests that read CronJobs.
func kubeCluster(t *testing.T) *simcluster.Cluster {
	t.Helper()
	clusterOnce.Do(func() {
		clusterDir = testenv.KeepDir("bssrestore-cluster-")
		cluster, clusterErr = testenv.Cluster(context.Background(), clusterDir, false)
		if clusterErr == nil {
			_, clusterErr = cluster.Core.CoreV1().Namespaces().Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: simcluster.Namespace}}, metav1.CreateOptions{})
		}
	})
	if clusterErr != nil {
		t.Fatalf("start the real control plane: %v", clusterErr)
	}
	return cluster
}

func TestMain(m *testing.M) {
	code := m.Run()
	if cluster != nil {
		cluster.Stop()
		if code == 0 {
			os.RemoveAll(clusterDir)
		}
	}
	os.Exit(code)
}

// snapshotter creates BSS's etcd backup CronJob as the chart does, with
// lastSuccess in its status (zero: none).
func snapshotter(t *testing.T, c *simcluster.Cluster, lastSuccess time.Time) api.ObjectRef {
	t.Helper()
	ctx := context.Background()
	ref := api.ObjectRef{Namespace: simcluster.Namespace, Name: bssrestore.EtcdBackupCronJob(api.BSS)}
	suspend := true // no controller runs here; suspended anyway, it never starts a Job
	cj := &batchv1.CronJob{ObjectMeta: metav1.ObjectMeta{Name: ref.Name, Namespace: ref.Namespace}, Spec: batchv1.CronJobSpec{
		Schedule: "0 */1 * * *", Suspend: &suspend,
		JobTemplate: batchv1.JobTemplateSpec{Spec: batchv1.JobSpec{Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{
			RestartPolicy: corev1.RestartPolicyNever, Containers: []corev1.Container{{Name: "etcd", Image: "registry.local/bitnami/etcd:3.5.9"}}}}}},
	}}
	cjs := c.Core.BatchV1().CronJobs(ref.Namespace)
	_ = cjs.Delete(ctx, ref.Name, metav1.DeleteOptions{})
	created, err := cjs.Create(ctx, cj, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cjs.Delete(context.Background(), ref.Name, metav1.DeleteOptions{}) })
	if !lastSuccess.IsZero() {
		created.Status.LastSuccessfulTime = &metav1.Time{Time: lastSuccess}
		created.Status.LastScheduleTime = &metav1.Time{Time: lastSuccess.Add(-time.Minute)}
		if _, err := cjs.UpdateStatus(ctx, created, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	return ref
}

func kubeActs(cfg *rest.Config) *bssrestore.Activities {
	return &bssrestore.Activities{Kube: activitytest.Kube(cfg)}
}

// TestEtcdBackupAge reads the snapshotter CronJob's last success; a
// missing CronJob is reported, not an error.
func TestEtcdBackupAge(t *testing.T) {
	c := kubeCluster(t)
	var acts *bssrestore.Activities
	when := time.Now().Add(-3 * time.Hour).Truncate(time.Second)
	ref := snapshotter(t, c, when)
	got, err := run[bssrestore.EtcdBackup](t, kubeActs(c.Config), acts.ReadEtcdBackupAge, bssrestore.EtcdBackupRequest{CronJob: ref}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !got.Found || !got.LastSuccess.Equal(when) || !strings.Contains(got.Message, "3h0m0s ago") {
		t.Fatalf("backup %+v, want found, last success %s, 3h ago", got, when)
	}
	none := api.ObjectRef{Namespace: simcluster.Namespace, Name: "cray-bss-bitnami-etcd-snapshotter-absent"}
	got, err = run[bssrestore.EtcdBackup](t, kubeActs(c.Config), acts.ReadEtcdBackupAge, bssrestore.EtcdBackupRequest{CronJob: none}, nil)
	if err != nil || got.Found || !strings.Contains(got.Message, "does not exist") {
		t.Fatalf("absent CronJob: %+v, %v", got, err)
	}
}

// TestEtcdBackupAgeForbidden: a worker that may not read the CronJob gets
// a message naming it and deploy/rbac.yaml; the step reads only.
func TestEtcdBackupAgeForbidden(t *testing.T) {
	c := kubeCluster(t)
	ref := snapshotter(t, c, time.Now())
	nobody := rest.CopyConfig(c.Config)
	nobody.Impersonate = rest.ImpersonationConfig{UserName: "nobody"}
	var acts *bssrestore.Activities
	_, err := run[bssrestore.EtcdBackup](t, kubeActs(nobody), acts.ReadEtcdBackupAge, bssrestore.EtcdBackupRequest{CronJob: ref}, nil)
	var appErr *temporal.ApplicationError
	if !errors.As(err, &appErr) || appErr.Type() != activities.ErrForbidden || !appErr.NonRetryable() {
		t.Fatalf("error %v, want non-retryable %s", err, activities.ErrForbidden)
	}
	for _, want := range []string{"CronJob " + ref.String(), "deploy/rbac.yaml", "cronjobs", "nothing was changed"} {
		if !strings.Contains(appErr.Message(), want) {
			t.Errorf("message does not say %q: %s", want, appErr.Message())
		}
	}
	badinput.Record(t, badinput.Case{Area: badinput.Cluster, Input: "bss on CSM 1.5 with a snapshot: the worker may not read CronJob services/cray-bss-bitnami-etcd-snapshotter (RBAC)",
		Message: appErr.Message(), Exit: "step " + bssrestore.StepEtcdBackupAge + " failed (" + activities.ErrForbidden + ")", Unchanged: "read before gate bss-restore: nothing written to BSS"})
}
