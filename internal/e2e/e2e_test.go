// Package e2e runs the real binaries end to end: repopulate-worker processes
// and the repopulate CLI against a real Temporal dev server and a real
// Kubernetes control plane (etcd, kube-apiserver, kube-controller-manager,
// kwok) seeded like a CSM system.
package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	historypb "go.temporal.io/api/history/v1"
	"go.temporal.io/sdk/client"
	sdktemporal "go.temporal.io/sdk/temporal"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/reflect/protoreflect"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"

	"github.com/csmops/etcd-repopulate/activities"
	"github.com/csmops/etcd-repopulate/internal/api"
	"github.com/csmops/etcd-repopulate/internal/badinput"
	"github.com/csmops/etcd-repopulate/internal/catalog"
	"github.com/csmops/etcd-repopulate/internal/config"
	"github.com/csmops/etcd-repopulate/internal/csmemu"
	"github.com/csmops/etcd-repopulate/internal/devserver"
	"github.com/csmops/etcd-repopulate/internal/kube"
	"github.com/csmops/etcd-repopulate/internal/simcluster"
	"github.com/csmops/etcd-repopulate/internal/sshtest"
	"github.com/csmops/etcd-repopulate/internal/testenv"
	"github.com/csmops/etcd-repopulate/internal/workerconfig"
	"github.com/csmops/etcd-repopulate/procedures/bssrestore"
	"github.com/csmops/etcd-repopulate/procedures/etcdcluster"
)

var (
	scratch  string
	binDir   string
	temporal *devserver.Server
	cluster  *simcluster.Cluster
	tc       client.Client
	emu      *csmemu.Emulator
	fleet    *sshtest.Fleet
	// system is what the worker configurations point at.
	system workerconfig.System
	// testConfig is the worker configuration every test starts from.
	testConfig config.Config
)

// The simulated CSM system: computes nid000001..18 in HSM, two more nodes
// standing for NCNs through the host range, one NCN with a wrong host key
// and one unreachable.
const (
	computeNodes = 18
	ncnGroup     = "nid0000[19-20]-nmn"
	wrongKeyNCN  = "ncn-w003-can.local"
	deadNCN      = "ncn-w004-can.local"
	clientSecret = "e2e-client-secret-6f1c2a"
)

// TestMain starts the system: CSM 1.0, the release with all nine services;
// the cluster's product catalog says so (release: auto), and
// TestNineServicesOnEachRelease starts an emulator of each other release.
func TestMain(m *testing.M) {
	testenv.Main(m, "e2e", testenv.CSMOptions{Release: api.CSM10, ClientSecret: clientSecret, Computes: computeNodes, FleetNodes: computeNodes + 2},
		func(ctx context.Context, s *testenv.Stack) error {
			scratch, binDir, temporal, cluster, tc, emu, fleet, system = s.Scratch, s.BinDir, s.Temporal, s.Cluster, s.Client, s.Emu, s.Fleet, s.System
			if err := cluster.SeedProductCatalog(ctx, simcluster.CatalogVersions[api.CSM10]); err != nil {
				return fmt.Errorf("product catalog: %w", err)
			}
			if err := fleet.AddWrongKeyNode(ctx, wrongKeyNCN); err != nil {
				return err
			}
			if err := fleet.AddUnreachableNode(deadNCN); err != nil {
				return err
			}
			testConfig = workerConfig(fleet, 8, ncnGroup, "ncn-w00[3-4]-can.local")
			return nil
		})
}

// workerConfig is a worker configuration for the emulator and the sshd
// fleet f, with timeouts short enough that a lost worker is noticed in
// seconds, restarting orca in batches of batch nodes on HSM's computes and
// the NCN host ranges ncns.
func workerConfig(f *sshtest.Fleet, batch int, ncns ...string) config.Config {
	s := system
	s.SSHConfig, s.KnownHosts = f.ConfigFile, f.KnownHosts
	c := workerconfig.Short(s, 2*time.Minute)
	h := workerconfig.HMNFD(c)
	h.NCNGroups, h.MaxFailedPercent, h.BatchSize = append([]string{}, ncns...), 20, batch
	return c
}

// testConfigWith is testConfig with change made to a copy.
func testConfigWith(change func(*config.Config)) config.Config {
	c := workerconfig.Clone(testConfig)
	change(&c)
	return c
}

// writeConfig writes the worker configuration c into a file of the test's.
func writeConfig(t *testing.T, c config.Config) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "config.yaml")
	if err := workerconfig.Write(path, c); err != nil {
		t.Fatal(err)
	}
	return path
}

// orcaResubscribes plays the orca daemon for the fleet f.
func orcaResubscribes(ctx context.Context, f *sshtest.Fleet) { testenv.OrcaResubscribes(ctx, emu, f) }

// startWorker runs a repopulate-worker process on its own task queue.
func startWorker(t *testing.T, queue string, config config.Config, kubeconfig string) *testenv.Worker {
	t.Helper()
	return testenv.StartWorker(t, testenv.WorkerOptions{BinDir: binDir, LogDir: scratch, Address: temporal.Address, Queue: queue, Config: config, Kubeconfig: kubeconfig})
}

// repopulate runs the CLI and returns stdout, stderr and the exit code.
func repopulate(t *testing.T, queue string, args ...string) (string, string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	full := append([]string{"--address", temporal.Address, "--task-queue", queue, "--ui-url", temporal.UIURL}, args...)
	cmd := exec.CommandContext(ctx, filepath.Join(binDir, "repopulate"), full...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if exit, ok := err.(*exec.ExitError); ok {
		code = exit.ExitCode()
	} else if err != nil {
		t.Fatalf("repopulate %v: %v", args, err)
	}
	return out.String(), errb.String(), code
}

func fingerprint(t *testing.T) map[string]string {
	t.Helper()
	fp, err := cluster.Fingerprint(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return fp
}

// sameFingerprint fails when an object was created, deleted or re-created
// since before; with versions it also fails when one was modified.
func sameFingerprint(t *testing.T, before map[string]string, what string, versions bool) {
	t.Helper()
	after := fingerprint(t)
	for k, v := range before {
		if !versions {
			v, after[k] = strings.Split(v, "@")[0], strings.Split(after[k], "@")[0]
		}
		if after[k] != v {
			t.Errorf("%s changed %s: %s -> %q", what, k, v, after[k])
		}
	}
	for k := range after {
		if _, ok := before[k]; !ok {
			t.Errorf("%s created %s", what, k)
		}
	}
}

// healthy waits until the seeded system is back to normal between tests.
func healthy(t *testing.T) {
	t.Helper()
	if err := cluster.WaitSeeded(context.Background(), time.Minute); err != nil {
		t.Fatal(err)
	}
}

func uidOf(t *testing.T, kind activities.Kind, name string) types.UID {
	t.Helper()
	ctx := context.Background()
	if kind == activities.JobKind {
		j, err := cluster.Core.BatchV1().Jobs(simcluster.Namespace).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return j.UID
	}
	ec, err := cluster.Dynamic.Resource(kube.EtcdClusterGVR).Namespace(simcluster.Namespace).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return ec.GetUID()
}

func podUIDs(t *testing.T, app string) map[types.UID]bool {
	t.Helper()
	pods, err := cluster.Core.CoreV1().Pods(simcluster.Namespace).List(context.Background(), metav1.ListOptions{LabelSelector: simcluster.NameLabel + "=" + app})
	if err != nil {
		t.Fatal(err)
	}
	out := map[types.UID]bool{}
	for _, p := range pods.Items {
		out[p.UID] = true
	}
	return out
}

func TestEndToEndKubernetesServices(t *testing.T) {
	healthy(t)
	queue := "e2e-full"
	startWorker(t, queue, testConfig, cluster.Kubeconfig)
	ctx := context.Background()
	oldJobs := map[string]types.UID{}
	for _, j := range []string{simcluster.REDSInitJob, simcluster.FASLoaderJob} {
		oldJobs[j] = uidOf(t, activities.JobKind, j)
	}
	oldCluster, _ := cluster.Dynamic.Resource(kube.EtcdClusterGVR).Namespace(simcluster.Namespace).Get(ctx, simcluster.ExternalDNSEtcd, metav1.GetOptions{})
	oldPods := map[string]map[types.UID]bool{}
	for _, app := range []string{"cray-meds", "cray-reds", "cray-crus"} { // HMNFD's pods are not these services
		oldPods[app] = podUIDs(t, app)
	}

	out, stderr, code := repopulate(t, queue, "start", "--services", "bss,fas,meds,reds,externaldns,crus", "--wait", "--id", "e2e-full", "-o", "json")
	if code != 0 {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, out, stderr)
	}
	var report api.Report
	if err := json.Unmarshal([]byte(out), &report); err != nil {
		t.Fatalf("report is not JSON: %v\n%s", err, out)
	}
	if report.State != api.Done || len(report.Services) != 6 {
		t.Fatalf("report: %+v", report)
	}

	for name, old := range oldJobs {
		job, err := cluster.Core.BatchV1().Jobs(simcluster.Namespace).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if job.UID == old || !simcluster.JobComplete(job) {
			t.Errorf("job %s: uid %s (old %s), complete %v", name, job.UID, old, simcluster.JobComplete(job))
		}
		if job.Annotations[kube.RecreatedByAnnotation] != "e2e-full" {
			t.Errorf("job %s not marked as re-created by the run: %v", name, job.Annotations)
		}
	}
	for app, old := range oldPods {
		now := podUIDs(t, app)
		for uid := range old {
			if now[uid] {
				t.Errorf("%s: old pod %s still there", app, uid)
			}
		}
		pods, _ := cluster.Core.CoreV1().Pods(simcluster.Namespace).List(ctx, metav1.ListOptions{LabelSelector: simcluster.NameLabel + "=" + app})
		if simcluster.ReadyPods(pods.Items) != len(old) {
			t.Errorf("%s: %d Ready pods, want %d", app, simcluster.ReadyPods(pods.Items), len(old))
		}
	}
	ec, err := cluster.Dynamic.Resource(kube.EtcdClusterGVR).Namespace(simcluster.Namespace).Get(ctx, simcluster.ExternalDNSEtcd, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	phase, _, _ := unstructured.NestedString(ec.Object, "status", "phase")
	if ec.GetUID() == oldCluster.GetUID() || phase != "Running" || !testenv.EqualJSON(ec.Object["spec"], oldCluster.Object["spec"]) {
		t.Errorf("etcdcluster: uid %s (old %s), phase %q, spec %v (old %v)", ec.GetUID(), oldCluster.GetUID(), phase, ec.Object["spec"], oldCluster.Object["spec"])
	}

	// The text report and status read the same run.
	text, _, code := repopulate(t, queue, "report", "e2e-full")
	if code != 0 || !strings.Contains(text, "Run e2e-full: done") || !strings.Contains(text, "Follow-ups for people") {
		t.Errorf("report exit %d:\n%s", code, text)
	}
	// It ends with the evidence: every service passed its last check.
	evidence := text[max(strings.Index(text, "\nEvidence:"), 0):]
	for _, s := range report.Services {
		if !strings.HasPrefix(evidence, "\nEvidence:") || !regexp.MustCompile(`(?m)^`+string(s.Service)+` +passed +`).MatchString(evidence) {
			t.Errorf("the report's evidence has no passed row for %s:\n%s", s.Service, text)
		}
	}
	if _, _, code := repopulate(t, queue, "status", "e2e-full", "-o", "json"); code != 0 {
		t.Errorf("status exit %d", code)
	}
	// A run ID names one run for good.
	if _, stderr, code := repopulate(t, queue, "start", "--id", "e2e-full", "--services", "meds"); code != 2 || !strings.Contains(stderr, "already used") {
		t.Errorf("duplicate run ID: exit %d: %s", code, stderr)
	}
}

func TestDryRunChangesNothing(t *testing.T) {
	healthy(t)
	queue := "e2e-dry"
	startWorker(t, queue, testConfig, cluster.Kubeconfig)
	before := fingerprint(t)
	out, stderr, code := repopulate(t, queue, "start", "--dry-run", "--wait", "--id", "e2e-dry")
	if code != 0 {
		t.Fatalf("exit %d\n%s\n%s", code, out, stderr)
	}
	for _, want := range []string{
		"would delete Job services/cray-reds-init (uid " + string(uidOf(t, activities.JobKind, simcluster.REDSInitJob)),
		`.spec.template.metadata.labels["batch.kubernetes.io/controller-uid"]`,
		"would delete EtcdCluster services/cray-externaldns-etcd",
		"would delete pods cray-meds-",
		"dry-run: no snapshot given, so a real run would wait here for the templates to be rebuilt by hand",
		"nothing was changed",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("dry-run output lacks %q:\n%s", want, out)
		}
	}
	sameFingerprint(t, before, "dry-run", true)
}

// waitStep polls the run's status until service's step reaches state.
func waitStep(t *testing.T, runID string, service api.Service, step string, state api.State) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for time.Now().Before(deadline) {
		v, err := tc.QueryWorkflow(context.Background(), runID, "", api.StatusQuery)
		if err == nil {
			var st api.RunStatus
			_ = v.Get(&st)
			for _, s := range st.Services {
				for _, p := range s.Steps {
					if s.Service == service && p.Name == step && p.State == state {
						return
					}
				}
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("%s %s never reached %s", service, step, state)
}

func waitRun(t *testing.T, runID string) api.Report {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var report api.Report
	if err := tc.GetWorkflow(ctx, runID, "").Get(ctx, &report); err != nil {
		t.Fatalf("run %s: %v", runID, err)
	}
	return report
}

// TestWorkerKilledBetweenDeleteAndCreate: a finalizer holds the EtcdCluster
// in deletion while the worker is SIGKILLed; the finalizer is then removed so
// the object is gone with no worker alive. A new worker must re-create it
// from the copy in history.
func TestWorkerKilledBetweenDeleteAndCreate(t *testing.T) {
	healthy(t)
	ctx := context.Background()
	ecs := cluster.Dynamic.Resource(kube.EtcdClusterGVR).Namespace(simcluster.Namespace)
	const hold = "e2e.csmops.io/hold"
	patch := fmt.Appendf(nil, `{"metadata":{"finalizers":[%q]}}`, hold)
	if _, err := ecs.Patch(ctx, simcluster.ExternalDNSEtcd, types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	old, _ := ecs.Get(ctx, simcluster.ExternalDNSEtcd, metav1.GetOptions{})

	queue := "e2e-kill-cr"
	first := startWorker(t, queue, testConfig, cluster.Kubeconfig)
	if _, stderr, code := repopulate(t, queue, "start", "--services", "externaldns", "--id", "e2e-kill-cr"); code != 0 {
		t.Fatal(stderr)
	}
	waitStep(t, "e2e-kill-cr", api.ExternalDNS, "delete-etcdcluster", api.Running)
	waitDeleting(t, ctx, ecs, simcluster.ExternalDNSEtcd)
	first.Kill()
	if _, err := ecs.Patch(ctx, simcluster.ExternalDNSEtcd, types.JSONPatchType, []byte(`[{"op":"remove","path":"/metadata/finalizers"}]`), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := ecs.Get(ctx, simcluster.ExternalDNSEtcd, metav1.GetOptions{}); err != nil {
			break // gone, with no worker running
		}
		time.Sleep(50 * time.Millisecond)
	}

	startWorker(t, queue, testConfig, cluster.Kubeconfig)
	report := waitRun(t, "e2e-kill-cr")
	if report.State != api.Done {
		t.Fatalf("report %+v", report)
	}
	now, err := ecs.Get(ctx, simcluster.ExternalDNSEtcd, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("the EtcdCluster was not re-created: %v", err)
	}
	if now.GetUID() == old.GetUID() || !testenv.EqualJSON(now.Object["spec"], old.Object["spec"]) {
		t.Errorf("re-created cluster: uid %s (old %s) spec %v", now.GetUID(), old.GetUID(), now.Object["spec"])
	}
	// The copy in history still had the finalizer; clear it for later tests.
	_, _ = ecs.Patch(ctx, simcluster.ExternalDNSEtcd, types.JSONPatchType, []byte(`[{"op":"remove","path":"/metadata/finalizers"}]`), metav1.PatchOptions{})
	if n := countActivities(t, "e2e-kill-cr/externaldns", "CreateObject"); n != 1 {
		t.Errorf("CreateObject completed %d times, want 1", n)
	}
}

// TestTerminateParentDuringDeleteRecreates: a finalizer holds the
// EtcdCluster in deletion while the parent is terminated (as before a
// reset). The child is asked to cancel, not terminated with it, so once the
// object is gone it creates it again from the copy in history.
func TestTerminateParentDuringDeleteRecreates(t *testing.T) {
	healthy(t)
	ctx := context.Background()
	ecs := cluster.Dynamic.Resource(kube.EtcdClusterGVR).Namespace(simcluster.Namespace)
	const hold = "e2e.csmops.io/hold"
	unhold := func() {
		_, _ = ecs.Patch(ctx, simcluster.ExternalDNSEtcd, types.JSONPatchType, []byte(`[{"op":"remove","path":"/metadata/finalizers"}]`), metav1.PatchOptions{})
	}
	if _, err := ecs.Patch(ctx, simcluster.ExternalDNSEtcd, types.MergePatchType, fmt.Appendf(nil, `{"metadata":{"finalizers":[%q]}}`, hold), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	old, _ := ecs.Get(ctx, simcluster.ExternalDNSEtcd, metav1.GetOptions{})

	queue, id := "e2e-terminate", "e2e-terminate-parent"
	startWorker(t, queue, testConfig, cluster.Kubeconfig)
	if _, stderr, code := repopulate(t, queue, "start", "--services", "externaldns", "--id", id); code != 0 {
		t.Fatal(stderr)
	}
	waitStep(t, id, api.ExternalDNS, "delete-etcdcluster", api.Running)
	waitDeleting(t, ctx, ecs, simcluster.ExternalDNSEtcd)
	if err := tc.TerminateWorkflow(ctx, id, "", "e2e: terminate the parent during the delete"); err != nil {
		t.Fatal(err)
	}
	unhold()

	// The child ends canceled once it has created the object again.
	child := api.ServiceWorkflowID(id, api.ExternalDNS)
	wctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()
	err := tc.GetWorkflow(wctx, child, "").Get(wctx, nil)
	if !sdktemporal.IsCanceledError(err) {
		t.Errorf("child %s ended with %v, want canceled (the parent's close asks it to cancel)", child, err)
	}
	now, err := ecs.Get(ctx, simcluster.ExternalDNSEtcd, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("the EtcdCluster is missing after the parent was terminated during its delete: %v", err)
	}
	// The copy in history still had the finalizer; clear it for later tests.
	unhold()
	if now.GetUID() == old.GetUID() || !testenv.EqualJSON(now.Object["spec"], old.Object["spec"]) {
		t.Errorf("re-created cluster: uid %s (old %s) spec %v", now.GetUID(), old.GetUID(), now.Object["spec"])
	}
	if n := countActivities(t, child, "CreateObject"); n != 1 {
		t.Errorf("CreateObject completed %d times, want 1", n)
	}
}

// waitDeleting waits until the object has a deletion timestamp: the run's
// delete was issued and a finalizer holds it.
func waitDeleting(t *testing.T, ctx context.Context, ri dynamic.ResourceInterface, name string) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		cur, err := ri.Get(ctx, name, metav1.GetOptions{})
		if err == nil && cur.GetDeletionTimestamp() != nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("delete never issued")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestWorkerKilledMidJobWait: kube-controller-manager is frozen so the
// re-created Job gets no pod and cannot finish; the worker is SIGKILLed while
// it waits; a new worker resumes the wait and sees the Job complete once the
// controllers run again. (Freezing kwok instead would stop the node's
// heartbeats and have the node controller mark every pod NotReady.)
func TestWorkerKilledMidJobWait(t *testing.T) {
	healthy(t)
	queue := "e2e-kill-job"
	first := startWorker(t, queue, testConfig, cluster.Kubeconfig)
	if err := cluster.Signal("kube-controller-manager", syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cluster.Signal("kube-controller-manager", syscall.SIGCONT) }()
	if _, stderr, code := repopulate(t, queue, "start", "--services", "fas", "--id", "e2e-kill-job"); code != 0 {
		t.Fatal(stderr)
	}
	waitStep(t, "e2e-kill-job", api.FAS, "wait-job-complete", api.Running)
	time.Sleep(time.Second) // let a heartbeat record the wait's start
	first.Kill()
	created := uidOf(t, activities.JobKind, simcluster.FASLoaderJob)
	startWorker(t, queue, testConfig, cluster.Kubeconfig)
	if err := cluster.Signal("kube-controller-manager", syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	report := waitRun(t, "e2e-kill-job")
	if report.State != api.Done {
		t.Fatalf("report %+v", report)
	}
	job, err := cluster.Core.BatchV1().Jobs(simcluster.Namespace).Get(context.Background(), simcluster.FASLoaderJob, metav1.GetOptions{})
	if err != nil || job.UID != created || !simcluster.JobComplete(job) {
		t.Fatalf("job %s (created %s) complete %v: %v", job.UID, created, simcluster.JobComplete(job), err)
	}
	step := report.Services[0].Steps[3]
	if step.Name != "wait-job-complete" || step.Attempt < 2 {
		t.Errorf("the wait should have been retried by the second worker: %+v", step)
	}
}

// history is a workflow's whole event history.
func history(t *testing.T, workflowID string) []*historypb.HistoryEvent {
	t.Helper()
	iter := tc.GetWorkflowHistory(context.Background(), workflowID, "", false, 0)
	var events []*historypb.HistoryEvent
	for iter.HasNext() {
		ev, err := iter.Next()
		if err != nil {
			t.Fatal(err)
		}
		events = append(events, ev)
	}
	if len(events) == 0 {
		t.Fatalf("empty history for %s", workflowID)
	}
	return events
}

// countActivities counts completed activities of a type in a workflow's history.
func countActivities(t *testing.T, workflowID, activityType string) int {
	t.Helper()
	scheduled := map[int64]string{}
	n := 0
	for _, ev := range history(t, workflowID) {
		if a := ev.GetActivityTaskScheduledEventAttributes(); a != nil {
			scheduled[ev.GetEventId()] = a.GetActivityType().GetName()
		}
		if a := ev.GetActivityTaskCompletedEventAttributes(); a != nil && scheduled[a.GetScheduledEventId()] == activityType {
			n++
		}
	}
	return n
}

// TestBadInputChangesNothing: each kind of bad input gets a message that
// names it and the fix, a non-zero exit, and leaves the cluster untouched.
func TestBadInputChangesNothing(t *testing.T) {
	healthy(t)
	deadKubeconfig := filepath.Join(t.TempDir(), "dead-kubeconfig")
	data, _ := os.ReadFile(cluster.Kubeconfig)
	_ = os.WriteFile(deadKubeconfig, []byte(strings.Replace(string(data), "server: https://127.0.0.1:", "server: https://127.0.0.1:1#", 1)), 0o600)

	wrongSecret := filepath.Join(t.TempDir(), "wrong-secret")
	_ = os.WriteFile(wrongSecret, []byte("not-the-secret\n"), 0o600)
	unreadableKeyConfig := filepath.Join(t.TempDir(), "ssh_config")
	sshConfig, _ := os.ReadFile(fleet.ConfigFile)
	_ = os.WriteFile(unreadableKeyConfig, []byte(strings.ReplaceAll(string(sshConfig), fleet.IdentityFile, "/nonexistent/id_ed25519")), 0o600)
	cases := []struct {
		name       string
		area       string
		input      string // the bad input, for docs/bad-input.md; "" when it is args
		config     config.Config
		kubeconfig string
		before     []string // a CLI command run before the cluster is fingerprinted
		args       []string
		wantCode   int
		want       string
	}{
		{"unknown service", badinput.CLI, "", testConfig, cluster.Kubeconfig, nil, []string{"start", "--services", "bss,dns"}, 2, `unknown service "dns": valid services are ` + catalog.Names()},
		{"job missing", badinput.Cluster, "services.bss.job: cray-reds-init-gone (no such Job)", testConfigWith(func(c *config.Config) {
			config.SettingsOf[*bssrestore.BSSSettings](*c, api.BSS).Job = "cray-reds-init-gone"
		}), cluster.Kubeconfig, nil, []string{"start", "--services", "bss,meds", "--wait"}, 1, "Job services/cray-reds-init-gone not found"},
		{"etcdcluster missing", badinput.Cluster, "services.externaldns.etcdCluster: gone (no such EtcdCluster)", testConfigWith(func(c *config.Config) {
			config.SettingsOf[*etcdcluster.EtcdClusterSettings](*c, api.ExternalDNS).EtcdCluster = "gone"
		}), cluster.Kubeconfig, nil, []string{"start", "--services", "externaldns,reds", "--wait"}, 1, "EtcdCluster services/gone not found"},
		{"API server unreachable", badinput.Cluster, "worker's kubeconfig points at an API server that is down", testConfig, deadKubeconfig, nil, []string{"start", "--services", "meds", "--wait"}, 1, "connection refused"},
		{"no Temporal server", badinput.Remote, "", testConfig, cluster.Kubeconfig, nil, []string{"--address", "127.0.0.1:1", "--dial-timeout", "2s", "start"}, 1, "cannot reach the Temporal server at 127.0.0.1:1"},
		{"unknown run", badinput.Request, "", testConfig, cluster.Kubeconfig, nil, []string{"status", "no-such-run"}, 2, `no run "no-such-run"`},
		{"bad output", badinput.CLI, "", testConfig, cluster.Kubeconfig, nil, []string{"start", "-o", "yaml"}, 2, `--output "yaml": want text or json`},
		// The first run (a dry run, which changes nothing) takes the ID;
		// the second must not start, so meds is not restarted.
		{"duplicate run ID", badinput.Request, "", testConfig, cluster.Kubeconfig, []string{"start", "--dry-run", "--wait", "--services", "meds", "--id", "e2e-bad-dup"}, []string{"start", "--id", "e2e-bad-dup", "--services", "meds"}, 2, `run ID "e2e-bad-dup" is already used`},
		// CSM API and SSH: each fails the preflight, so even meds, which
		// needs neither, is left alone.
		{"bad credentials", badinput.Remote, "csm.clientSecret file holds a wrong secret (token endpoint answers 401)", testConfigWith(func(c *config.Config) { c.CSM.ClientSecret = config.SecretRef{File: wrongSecret} }), cluster.Kubeconfig, nil, []string{"start", "--services", "hmnfd,meds", "--wait"}, 1, `client_id "admin-client"`},
		{"API gateway unreachable", badinput.Remote, "csm.baseURL: https://127.0.0.1:1 (nothing listens)", testConfigWith(func(c *config.Config) { c.CSM.BaseURL = "https://127.0.0.1:1" }), cluster.Kubeconfig, nil, []string{"start", "--services", "crus,meds", "--wait"}, 1, "127.0.0.1:1"},
		{"known_hosts missing", badinput.Config, "ssh.knownHosts: [/nonexistent/known_hosts]", testConfigWith(func(c *config.Config) { c.SSH.KnownHosts = []string{"/nonexistent/known_hosts"} }), cluster.Kubeconfig, nil, []string{"start", "--services", "hmnfd,meds", "--wait"}, 1, "/nonexistent/known_hosts"},
		{"key unreadable", badinput.Config, "ssh.config names IdentityFile /nonexistent/id_ed25519", testConfigWith(func(c *config.Config) { c.SSH.Config = unreadableKeyConfig }), cluster.Kubeconfig, nil, []string{"start", "--services", "hmnfd,meds", "--wait"}, 1, "/nonexistent/id_ed25519"},
		{"empty target set", badinput.Remote, "HSM lists no Ready compute node and services.hmnfd.ncnGroups is empty", testConfigWith(func(c *config.Config) { workerconfig.HMNFD(*c).NCNGroups = []string{} }), cluster.Kubeconfig, nil, []string{"start", "--services", "hmnfd", "--wait"}, 1, "no node to restart orca on"},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			queue := fmt.Sprintf("e2e-bad-%d", i)
			startWorker(t, queue, c.config, c.kubeconfig)
			if c.name == "empty target set" {
				emu.SetComponents(nil)
				defer emu.SetComponents(csmemu.ComputeNodes(computeNodes))
			}
			if c.before != nil {
				if out, stderr, code := repopulate(t, queue, c.before...); code != 0 {
					t.Fatalf("%v: exit %d\n%s\n%s", c.before, code, out, stderr)
				}
			}
			if err := fleet.ResetRestarts(); err != nil {
				t.Fatal(err)
			}
			before := fingerprint(t)
			out, stderr, code := repopulate(t, queue, c.args...)
			if code != c.wantCode || !strings.Contains(out+stderr, c.want) {
				t.Fatalf("exit %d, want %d with %q\nstdout:\n%s\nstderr:\n%s", code, c.wantCode, c.want, out, stderr)
			}
			// Only UIDs: controllers update pod status on their own.
			sameFingerprint(t, before, c.name, false)
			if restarts, _ := fleet.Restarts(); len(restarts) > 0 {
				t.Errorf("nodes were restarted: %v", restarts)
			}
			input := c.input
			if input == "" {
				input = strings.Join(c.args, " ")
			}
			badinput.Record(t, badinput.Case{Area: c.area, Input: input, Message: badinput.Line(out+stderr, c.want), Exit: fmt.Sprint(code),
				Unchanged: "no Job/EtcdCluster/pod deleted or re-created (UIDs unchanged); no node restarted"})
		})
	}
	t.Run("gate decisions on a real run", gateDecisionsOnARealRun)
}

// gateDecisionsOnARealRun: decisions the real workflow must refuse, sent
// from the CLI to a BOS run waiting at its gate and then to the same run
// once it has finished. Each refusal adds no event to the run's history.
func gateDecisionsOnARealRun(t *testing.T) {
	const id, queue = "e2e-bad-gates", "e2e-bad-gates"
	startWorker(t, queue, testConfig, cluster.Kubeconfig)
	if _, stderr, code := repopulate(t, queue, "start", "--services", "bos", "--id", id); code != 0 {
		t.Fatal(stderr)
	}
	waitGate(t, id, api.GateBOSTemplates, api.GateWaiting)
	refused := func(args []string, want, unchanged string) {
		t.Helper()
		before, events := fingerprint(t), len(history(t, id))
		out, stderr, code := repopulate(t, queue, args...)
		if code != 2 || !strings.Contains(out+stderr, want) {
			t.Fatalf("%v: exit %d, want 2 with %q\nstdout:\n%s\nstderr:\n%s", args, code, want, out, stderr)
		}
		if n := len(history(t, id)); n != events {
			t.Errorf("%v: history went from %d to %d events", args, events, n)
		}
		sameFingerprint(t, before, strings.Join(args, " "), false)
		badinput.Record(t, badinput.Case{Area: badinput.Request, Input: strings.Join(args, " "), Message: badinput.Line(out+stderr, want),
			Exit: fmt.Sprint(code), Unchanged: unchanged})
	}
	refused([]string{"approve", "e2e-bad-gates", "bos-tmpl"}, `no gate "bos-tmpl"`,
		"validator refused: no event added to the run's history; no Job/EtcdCluster/pod UID changed")
	if out, stderr, code := repopulate(t, queue, "approve", id, api.GateBOSTemplates); code != 0 {
		t.Fatalf("approve: exit %d\n%s\n%s", code, out, stderr)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	_ = tc.GetWorkflow(ctx, id, "").Get(ctx, nil) // done or failed: either way finished
	if ctx.Err() != nil {
		t.Fatal("the run did not finish after its gate was approved")
	}
	refused([]string{"approve", "e2e-bad-gates", "bos-templates"}, "has already finished",
		"refused by the CLI: no event added to the finished run's history; no Job/EtcdCluster/pod UID changed")
}

// waitGate polls the run's status until gate reaches state.
func waitGate(t *testing.T, runID, gate string, state api.GateState) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for time.Now().Before(deadline) {
		if v, err := tc.QueryWorkflow(context.Background(), runID, "", api.StatusQuery); err == nil {
			var st api.RunStatus
			_ = v.Get(&st)
			for _, s := range st.Services {
				for _, g := range s.Gates {
					if g.Name == gate && g.State == state {
						return
					}
				}
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("gate %s of %s never reached %s", gate, runID, state)
}

// TestWorkerRefusesBadConfig: the worker binary refuses a bad config file
// at start, naming the file, the key and the problem, before it polls.
func TestWorkerRefusesBadConfig(t *testing.T) {
	for i, c := range []struct {
		name, yaml string
		want       []string
	}{
		{"malformed YAML", "services: [", []string{"yaml"}},
		{"unknown key", "services:\n  bss:\n    jobb: x\n", []string{`unknown key "jobb"`}},
		{"negative timeout", "deleteTimeout: -5m\n", []string{"deleteTimeout: must be a positive duration"}},
		{"empty selector", "services:\n  meds:\n    selector: \"\"\n", []string{"services.meds.selector: empty selector would match every pod"}},
		{"bad host range", "services:\n  hmnfd:\n    ncnGroups: [\"ncn-w00[0-4-can.local\"]\n", []string{"services.hmnfd.ncnGroups[0]"}},
		// Every problem is reported at once.
		{"two problems", "services:\n  meds:\n    selector: \"\"\n  hmnfd:\n    ncnGroups: [\"ncn-w00[0-4-can.local\"]\n",
			[]string{"services.meds.selector: empty selector would match every pod", "services.hmnfd.ncnGroups[0]"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg := filepath.Join(t.TempDir(), "worker.yaml")
			_ = os.WriteFile(cfg, []byte(c.yaml), 0o644)
			queue := fmt.Sprintf("e2e-bad-config-%d", i)
			before := fingerprint(t)
			cmd := exec.Command(filepath.Join(binDir, "repopulate-worker"), "--address", temporal.Address, "--task-queue", queue, "--kubeconfig", cluster.Kubeconfig, "--config", cfg)
			out, err := cmd.CombinedOutput()
			exit, ok := err.(*exec.ExitError)
			if !ok || exit.ExitCode() != 1 {
				t.Fatalf("worker with a bad config: %v\n%s", err, out)
			}
			if !strings.Contains(string(out), cfg) {
				t.Errorf("message should name the file %s:\n%s", cfg, out)
			}
			for _, w := range c.want {
				if !strings.Contains(string(out), w) {
					t.Errorf("message should name the key and the problem (%q):\n%s", w, out)
				}
			}
			// Refused before it polled: the queue has never had a poller.
			desc, err := tc.DescribeTaskQueue(context.Background(), queue, enumspb.TASK_QUEUE_TYPE_WORKFLOW)
			if err != nil {
				t.Fatal(err)
			}
			if n := len(desc.GetPollers()); n != 0 {
				t.Errorf("%d pollers on %s: the worker started", n, queue)
			}
			sameFingerprint(t, before, c.name, false)
			if t.Failed() {
				return
			}
			badinput.Record(t, badinput.Case{Area: badinput.Config, Input: c.yaml, Message: strings.TrimSpace(string(out)),
				Exit: fmt.Sprintf("worker exits %d", exit.ExitCode()), Unchanged: "no poller ever on its task queue; no Job/EtcdCluster/pod UID changed"})
		})
	}
}

// TestCancelDuringWait: a run canceled while it waits for the re-created Job
// ends canceled, and the Job it re-created is there.
func TestCancelDuringWait(t *testing.T) {
	healthy(t)
	queue := "e2e-cancel"
	startWorker(t, queue, testConfig, cluster.Kubeconfig)
	if err := cluster.Signal("kube-controller-manager", syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cluster.Signal("kube-controller-manager", syscall.SIGCONT) }()
	old := uidOf(t, activities.JobKind, simcluster.REDSInitJob)
	if _, stderr, code := repopulate(t, queue, "start", "--services", "bss", "--id", "e2e-cancel"); code != 0 {
		t.Fatal(stderr)
	}
	waitStep(t, "e2e-cancel", api.BSS, "wait-job-complete", api.Running)
	if out, stderr, code := repopulate(t, queue, "cancel", "e2e-cancel"); code != 0 || !strings.Contains(out, "cancel requested") {
		t.Fatalf("cancel: exit %d %s %s", code, out, stderr)
	}
	deadline := time.Now().Add(time.Minute)
	for {
		out, stderr, code := repopulate(t, queue, "report", "e2e-cancel")
		if code == 1 {
			if !strings.Contains(out, "Run e2e-cancel: canceled") || !regexp.MustCompile(`wait-job-complete\s+canceled`).MatchString(out) {
				t.Fatalf("report of a canceled run:\n%s\n%s", out, stderr)
			}
			break
		}
		if code != 3 || time.Now().After(deadline) {
			t.Fatalf("report: exit %d\n%s\n%s", code, out, stderr)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if now := uidOf(t, activities.JobKind, simcluster.REDSInitJob); now == old {
		t.Fatal("the job was not re-created")
	}
}

// freshHMNFD forgets earlier restarts and wipes HMNFD's subscriptions, as
// the etcd rebuild does.
func freshHMNFD(t *testing.T, f *sshtest.Fleet) {
	t.Helper()
	if err := f.ResetRestarts(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond) // let orcaResubscribes see the empty log
	emu.ClearSubscriptions()
}

// TestHMNFDAndCRUSEndToEnd: orca is restarted over real SSH on every Ready
// compute node from HSM and on the NCNs of the host ranges, exactly once
// each; a wrong host key and an unreachable node are reported without
// blocking the others; HMNFD has every compute node's subscription again;
// CRUS sessions are followed (one completes, one is stuck) and the CRUS pod
// restarted. No secret reaches workflow history or the worker's log.
func TestHMNFDAndCRUSEndToEnd(t *testing.T) {
	healthy(t)
	freshHMNFD(t, fleet)
	progressing := emu.AddCRUSSession(csmemu.ExampleCRUSSession(), csmemu.CRUSScript(3)...)
	stuckSession := csmemu.ExampleCRUSSession()
	stuckSession.UpgradeID = "5f2e5a3c-0000-4000-8000-000000000001"
	stuck := emu.AddCRUSSession(stuckSession)
	queue := "e2e-hmnfd"
	w := startWorker(t, queue, testConfig, cluster.Kubeconfig)
	out, stderr, code := repopulate(t, queue, "start", "--services", "hmnfd,crus", "--wait", "--id", "e2e-hmnfd", "-o", "json")
	if code != 0 {
		t.Fatalf("exit %d\n%s\n%s", code, out, stderr)
	}
	var report api.Report
	if err := json.Unmarshal([]byte(out), &report); err != nil {
		t.Fatal(err)
	}
	restarts, err := fleet.Restarts()
	if err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= computeNodes+2; i++ {
		if n := restarts[fmt.Sprintf("nid%06d-nmn", i)]; n != 1 {
			t.Errorf("nid%06d-nmn restarted %d times, want exactly once", i, n)
		}
	}
	if len(restarts) != computeNodes+2 {
		t.Errorf("restarts on %d nodes, want %d: %v", len(restarts), computeNodes+2, restarts)
	}
	var h, c api.ServiceStatus
	for _, s := range report.Services {
		switch s.Service {
		case api.HMNFD:
			h = s
		case api.CRUS:
			c = s
		}
	}
	if h.State != api.Done || h.Nodes == nil || *h.Nodes != (api.NodeCounts{Total: computeNodes + 4, OK: computeNodes + 2, Failed: 1, Unreachable: 1}) {
		t.Fatalf("hmnfd: %s %s %+v", h.State, h.Message, h.Nodes)
	}
	problems := map[string]api.NodeProblem{}
	for _, p := range h.NodeProblems {
		problems[p.Host] = p
	}
	if p := problems[wrongKeyNCN]; p.Status != "failed" || !strings.Contains(strings.ToLower(p.Reason), "host key") {
		t.Errorf("wrong host key node: %+v", p)
	}
	if p := problems[deadNCN]; p.Status != "unreachable" {
		t.Errorf("unreachable node: %+v", p)
	}
	if v := h.Steps[len(h.Steps)-1]; v.Name != "verify-subscriptions" || !strings.Contains(v.Message, fmt.Sprintf("all %d restarted compute nodes are subscribed", computeNodes)) {
		t.Errorf("verify: %+v", v)
	}
	if c.State != api.Done || !strings.Contains(strings.Join(c.FollowUps, " "), stuck) || strings.Contains(strings.Join(c.FollowUps, " "), progressing) {
		t.Errorf("crus: %s %s follow-ups %v", c.State, c.Message, c.FollowUps)
	}
	if !strings.Contains(c.Steps[0].Message, "1 stuck") || c.Steps[4].State != api.Done {
		t.Errorf("crus steps: %+v", c.Steps)
	}

	// A restart batch's input, decoded: {"batch":1,"hosts":["nid000001-nmn",...
	if !strings.Contains(historyJSON(t, "e2e-hmnfd/hmnfd"), `"hosts":["nid000001-nmn"`) {
		t.Fatal("decoded payloads missing from the history text: the secret scan would prove nothing")
	}
	assertNoSecrets(t, []string{w.Log}, "e2e-hmnfd", "e2e-hmnfd/hmnfd", "e2e-hmnfd/crus")
}

// assertNoSecrets scans the worker logs and the full JSON histories of the
// workflows (payloads decoded) for the Keycloak client secret, every bearer
// token the emulator issued and the SSH private key: none may appear.
func assertNoSecrets(t *testing.T, logs []string, workflowIDs ...string) {
	t.Helper()
	key, err := os.ReadFile(fleet.IdentityFile)
	if err != nil {
		t.Fatal(err)
	}
	secrets := append([]string{clientSecret, strings.TrimSpace(string(key))}, emu.IssuedTokens()...)
	if len(secrets) < 3 {
		t.Fatal("no token was issued: the scan would prove nothing")
	}
	texts := map[string]string{}
	for _, l := range logs {
		data, _ := os.ReadFile(l)
		texts["worker log "+l] = string(data)
	}
	for _, id := range workflowIDs {
		texts["history of "+id] = historyJSON(t, id)
	}
	for where, text := range texts {
		for _, secret := range secrets {
			if strings.Contains(text, secret) {
				t.Errorf("%s contains a secret (%d chars)", where, len(secret))
			}
		}
	}
}

func historyJSON(t *testing.T, workflowID string) string {
	t.Helper()
	var b strings.Builder
	for _, ev := range history(t, workflowID) {
		data, _ := protojson.Marshal(ev)
		b.Write(data)
		// Payload bytes are base64 in JSON: add them decoded as well.
		appendPayloads(&b, ev.ProtoReflect())
	}
	return b.String()
}

// appendPayloads writes the data of every Payload inside m.
func appendPayloads(b *strings.Builder, m protoreflect.Message) {
	if m.Descriptor().FullName() == "temporal.api.common.v1.Payload" {
		if f := m.Descriptor().Fields().ByName("data"); f != nil {
			b.Write(m.Get(f).Bytes())
		}
		return
	}
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		switch {
		case fd.IsList() && fd.Message() != nil:
			for i := 0; i < v.List().Len(); i++ {
				appendPayloads(b, v.List().Get(i).Message())
			}
		case fd.IsMap() && fd.MapValue().Message() != nil:
			v.Map().Range(func(_ protoreflect.MapKey, mv protoreflect.Value) bool {
				appendPayloads(b, mv.Message())
				return true
			})
		case !fd.IsList() && !fd.IsMap() && fd.Message() != nil:
			appendPayloads(b, v.Message())
		}
		return true
	})
}

// TestWorkerKilledMidFanout: 1,000 nodes behind real sshd, a 1 s stand-in
// restart, batches of 250, four in flight sharing the worker's 64
// connections. The worker is SIGKILLed in the middle of the second batch; a
// new worker finishes. Every node is restarted. Twice: the nodes of batches
// without a recorded result that were in flight (at most the width) or
// finished after the details their batch last sent (heartbeats each
// second, sent at least each second by the worker: about two seconds of
// restarts, the width each second): at most three times the width.
func TestWorkerKilledMidFanout(t *testing.T) {
	const nodes, batch = 1000, 250
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	big, err := sshtest.Start(ctx, sshtest.Options{Dir: filepath.Join(scratch, "fleet1000"), Nodes: nodes, RestartDelay: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer big.Stop()
	emu.SetComponents(csmemu.ComputeNodes(nodes))
	defer emu.SetComponents(csmemu.ComputeNodes(computeNodes))
	emu.ClearSubscriptions()
	go orcaResubscribes(ctx, big)

	// 1,000 sshd handshakes load both cores: give heartbeats more slack.
	cfg := workerConfig(big, batch)
	cfg.HeartbeatTimeout, cfg.SSH.ConnectTimeout, cfg.ActivityAttempts = config.Duration(30*time.Second), config.Duration(30*time.Second), 6
	queue := "e2e-kill-fanout"
	first := startWorker(t, queue, cfg, cluster.Kubeconfig)
	if _, stderr, code := repopulate(t, queue, "start", "--services", "hmnfd", "--id", "e2e-kill-fanout"); code != 0 {
		t.Fatal(stderr)
	}
	// Kill once the first batch is in and the second has been running a while.
	deadline := time.Now().Add(2 * time.Minute)
	for {
		restarts, _ := big.Restarts()
		if len(restarts) >= batch+batch/2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("fan-out did not get going: %d restarts", len(restarts))
		}
		time.Sleep(100 * time.Millisecond)
	}
	first.Kill()
	killedAt, _ := big.Restarts()
	startWorker(t, queue, cfg, cluster.Kubeconfig)
	report := waitRun(t, "e2e-kill-fanout")
	restarts, err := big.Restarts()
	if err != nil {
		t.Fatal(err)
	}
	twice := 0
	for i := 1; i <= nodes; i++ {
		switch n := restarts[fmt.Sprintf("nid%06d-nmn", i)]; {
		case n == 0:
			t.Errorf("nid%06d-nmn never restarted", i)
		case n == 2:
			twice++
		case n > 2:
			t.Errorf("nid%06d-nmn restarted %d times", i, n)
		}
	}
	width := cfg.SSH.Concurrency
	t.Logf("killed after %d nodes; %d nodes restarted twice (limit: 3 x the width %d)", len(killedAt), twice, width)
	if twice > 3*width {
		t.Errorf("%d nodes restarted twice, more than the nodes in flight and two seconds of restarts (3 x %d)", twice, width)
	}
	h := report.Services[0]
	if report.State != api.Done || h.Nodes == nil || h.Nodes.OK != nodes {
		t.Fatalf("report: %s %+v %s %+v", report.State, h.Nodes, h.Message, h.NodeProblems)
	}
	if !strings.Contains(h.Steps[len(h.Steps)-1].Message, fmt.Sprintf("all %d restarted compute nodes are subscribed", nodes)) {
		t.Errorf("verify: %+v", h.Steps[len(h.Steps)-1])
	}
	events := len(history(t, "e2e-kill-fanout/hmnfd"))
	t.Logf("child history: %d events for %d nodes (%.1f per 100 nodes)", events, nodes, float64(events)*100/nodes)
	if events*100 > 10*nodes {
		t.Errorf("history has %d events: more than 10 per 100 nodes", events)
	}
}

// TestBSSDataCheckNeedsBootParametersBack is issue 12's acceptance: a bss
// run whose cray-reds-init Job completes but leaves BSS empty fails its
// data check and says so, in status and in the report's evidence; the
// same run with BSS refilled passes.
func TestBSSDataCheckNeedsBootParametersBack(t *testing.T) {
	healthy(t)
	queue := "e2e-bss-check"
	startWorker(t, queue, testConfig, cluster.Kubeconfig)
	refill := func() {
		if err := emu.SetBootParams(csmemu.DefaultBootParams(emu.Components())); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(refill)

	emu.WipeBSS() // the rebuild; the simulated Job refills nothing
	out, stderr, code := repopulate(t, queue, "start", "--services", "bss", "--wait", "--id", "e2e-bss-empty", "-o", "json")
	if code == 0 {
		t.Fatalf("a run that left BSS empty exited 0:\n%s", out)
	}
	var report api.Report
	if err := json.Unmarshal([]byte(out), &report); err != nil {
		t.Fatalf("report is not JSON: %v\n%s\n%s", err, out, stderr)
	}
	bss := service(report, api.BSS)
	wantFound := fmt.Sprintf("BSS holds no boot parameters for %d of the %d nodes HSM lists", computeNodes, computeNodes)
	steps := bss.Steps
	if bss.State != api.Failed || len(steps) != 5 || steps[3].Name != "wait-job-complete" || steps[3].State != api.Done ||
		steps[4].Name != "data-check" || steps[4].State != api.Failed || !strings.Contains(bss.Message, wantFound) {
		t.Fatalf("bss with BSS empty: %s %q, steps %+v; want the Job complete and the data check failed", bss.State, bss.Message, steps)
	}
	if e := bss.Evidence; e == nil || e.OK || !strings.HasPrefix(e.Found, wantFound+" (x1000c0s0b0n0,") {
		t.Errorf("evidence %+v, want the failed check naming the nodes", e)
	}
	text, _, _ := repopulate(t, queue, "report", "e2e-bss-empty")
	if !regexp.MustCompile(`(?m)^Evidence:\n.*\nbss +FAILED +BSS boot parameters for every node HSM lists +` + regexp.QuoteMeta(wantFound)).MatchString(text) {
		t.Errorf("the report does not end with the failed evidence:\n%s", text)
	}

	refill()
	out, stderr, code = repopulate(t, queue, "start", "--services", "bss", "--wait", "--id", "e2e-bss-refilled", "-o", "json")
	if code != 0 {
		t.Fatalf("with BSS refilled: exit %d\n%s\n%s", code, out, stderr)
	}
	report = api.Report{}
	if err := json.Unmarshal([]byte(out), &report); err != nil {
		t.Fatal(err)
	}
	bss = service(report, api.BSS)
	if e := bss.Evidence; bss.State != api.Done || e == nil || !e.OK || e.Found != fmt.Sprintf("BSS holds boot parameters for all %d nodes HSM lists", computeNodes) {
		t.Errorf("bss with BSS refilled: %s %q, evidence %+v", bss.State, bss.Message, e)
	}
}
