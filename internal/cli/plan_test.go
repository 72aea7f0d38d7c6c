package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/utils/ptr"

	"github.com/csmops/etcd-repopulate/internal/api"
	"github.com/csmops/etcd-repopulate/internal/badinput"
	"github.com/csmops/etcd-repopulate/internal/csmemu"
	"github.com/csmops/etcd-repopulate/internal/kube"
	"github.com/csmops/etcd-repopulate/internal/plan"
	"github.com/csmops/etcd-repopulate/internal/simcluster"
	"github.com/csmops/etcd-repopulate/internal/snapshot"
	"github.com/csmops/etcd-repopulate/internal/testenv"
)

// The plan tests run against a real API server seeded like CSM 1.0 (the
// catalog's EtcdClusters, the product catalog) with etcd-operator's
// stand-in, started once by the first test that needs it, and an
// in-process emulator serving CSM 1.0's APIs.
var (
	planOnce sync.Once
	planCl   *simcluster.Cluster
	planErr  error
	planStop = func() {}
)

func simulatedCSM10(t *testing.T) *simcluster.Cluster {
	t.Helper()
	if testing.Short() {
		t.Skip("needs a real API server (make tools); make test-unit runs with -short")
	}
	planOnce.Do(func() {
		ctx, cancel := context.WithCancel(context.Background())
		dir := testenv.KeepDir("cli-plan-cluster-")
		c, err := testenv.Cluster(ctx, dir, false)
		if err == nil {
			err = c.SeedObjects(ctx)
		}
		if err == nil {
			err = c.SeedProductCatalog(ctx, simcluster.CatalogVersions[api.CSM10])
		}
		if err == nil {
			go c.RunEtcdOperator(ctx, 0)
			err = waitEtcdRunning(ctx, c)
		}
		planCl, planErr = c, err
		planStop = func() {
			cancel()
			if c != nil {
				c.Stop()
			}
			if err == nil {
				os.RemoveAll(dir)
			}
		}
	})
	if planErr != nil {
		t.Fatalf("start the simulated cluster: %v", planErr)
	}
	return planCl
}

func waitEtcdRunning(ctx context.Context, c *simcluster.Cluster) error {
	deadline := time.Now().Add(30 * time.Second)
	for {
		pending := ""
		for _, name := range simcluster.EtcdClusters() {
			ec, err := c.Dynamic.Resource(kube.EtcdClusterGVR).Namespace(simcluster.Namespace).Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				return err
			}
			if phase, _, _ := unstructured.NestedString(ec.Object, "status", "phase"); phase != "Running" {
				pending = name
			}
		}
		if pending == "" {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("EtcdCluster %s not Running after 30s", pending)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// csm10Gateway is a CSM 1.0 gateway holding data of every kind plan
// counts, and a config file that reaches it.
func csm10Gateway(t *testing.T) (*csmemu.Emulator, string) {
	t.Helper()
	e, cfg := GatewayOf(t, api.CSM10)
	e.SubscribeReadyCompute()
	e.SetFASImages(csmemu.DefaultFASImages())
	e.AddCRUSSession(csmemu.ExampleCRUSSession())
	return e, cfg
}

func runPlanCLI(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var out, errb bytes.Buffer
	code = Execute(ctx, args, Streams{Out: &out, Err: &errb})
	return code, out.String(), errb.String()
}

func planJSON(t *testing.T, args ...string) (planReport, string) {
	t.Helper()
	code, out, errOut := runPlanCLI(t, append(args, "-o", "json")...)
	var rep planReport
	if code != 0 || json.Unmarshal([]byte(out), &rep) != nil {
		t.Fatalf("plan -o json: exit %d\nstdout %s\nstderr %s", code, out, errOut)
	}
	return rep, out
}

func verdicts(rep planReport, v plan.Verdict) []string {
	var out []string
	for _, s := range rep.Services {
		if s.Verdict == v {
			out = append(out, string(s.Service))
		}
	}
	return out
}

// recreate deletes and creates again the EtcdClusters, as a rebuild does:
// they are younger than anything taken before.
func recreate(t *testing.T, c *simcluster.Cluster, names ...string) {
	t.Helper()
	ctx := context.Background()
	ecs := c.Dynamic.Resource(kube.EtcdClusterGVR).Namespace(simcluster.Namespace)
	for _, name := range names {
		if err := ecs.Delete(ctx, name, metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		if _, err := ecs.Create(ctx, simcluster.EtcdClusterObject(name), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
}

// TestPlanNamesTheRebuiltServices: snapshot, then with nothing wiped every
// service is intact or cannot tell with a reason; after a rebuild of BSS's
// and HMNFD's etcd (data wiped, clusters re-created) plan names exactly
// those two and prints the start line for them.
func TestPlanNamesTheRebuiltServices(t *testing.T) {
	cluster := simulatedCSM10(t)
	e, cfg := csm10Gateway(t)
	kc := cluster.Kubeconfig
	dir := filepath.Join(t.TempDir(), "snap")
	if code, _, errOut := runPlanCLI(t, "snapshot", "--out", dir, "--config", cfg, "--kubeconfig", kc); code != 0 {
		t.Fatalf("snapshot: exit %d: %s", code, errOut)
	}
	_, m, err := snapshot.Load(dir)
	if err != nil {
		t.Fatal(err)
	}

	// Nothing wiped.
	rep, out := planJSON(t, "plan", "--snapshot", dir, "--config", cfg, "--kubeconfig", kc)
	if rep.Release.Release != api.CSM10 || rep.Start != "" || len(verdicts(rep, plan.LostData)) != 0 || len(rep.Services) != 9 {
		t.Fatalf("nothing wiped: %s", out)
	}
	for _, s := range rep.Services {
		if s.Reason == "" {
			t.Errorf("%s: %s without a reason", s.Service, s.Verdict)
		}
	}
	if got := verdicts(rep, plan.CannotTell); !slices.Equal(got, []string{"meds"}) {
		t.Errorf("cannot tell for %v; want only meds (whether it keeps etcd data is unconfirmed): %s", got, out)
	}
	code, text, errOut := runPlanCLI(t, "plan", "--snapshot", dir, "--config", cfg, "--kubeconfig", kc)
	if code != 0 || !strings.Contains(text, "nothing to start: no service is known to have lost data") || strings.Contains(text, "repopulate start") ||
		!strings.Contains(text, "unconfirmed (meds): whether MEDS keeps data in etcd is unconfirmed") {
		t.Fatalf("exit %d\n%s\n%s", code, text, errOut)
	}

	// The rebuild of cray-bss-etcd and cray-hmnfd-etcd: after the snapshot's second.
	time.Sleep(time.Until(m.Taken.Add(1100 * time.Millisecond)))
	e.WipeBSS()
	e.WipeHMNFD()
	recreate(t, cluster, "cray-bss-etcd", "cray-hmnfd-etcd")

	rep, out = planJSON(t, "plan", "--snapshot", dir, "--config", cfg, "--kubeconfig", kc)
	if got := verdicts(rep, plan.LostData); !slices.Equal(got, []string{"bss", "hmnfd"}) {
		t.Fatalf("lost data: %v; want bss, hmnfd: %s", got, out)
	}
	want := "repopulate start --services bss,hmnfd --snapshot " + rep.Snapshot
	if rep.Start != want {
		t.Errorf("start line %q; want %q", rep.Start, want)
	}
	code, text, errOut = runPlanCLI(t, "plan", "--snapshot", dir, "--config", cfg, "--kubeconfig", kc)
	t.Logf("after the rebuild:\n%s", text)
	for _, w := range []string{"  " + want + "\n", "BSS boot parameters: 0 now, 4 in the snapshot", "HMNFD subscriptions: 0 now, 2 in the snapshot",
		"EtcdCluster/cray-bss-etcd", "release csm-1.0 (product catalog's highest CSM version is 1.0.11"} {
		if code != 0 || !strings.Contains(text, w) {
			t.Errorf("exit %d, output lacks %q:\n%s\n%s", code, w, text, errOut)
		}
	}
}

// TestPlanCannotReadTheCluster: an identity without get on etcdclusters
// gets each cluster named with the permission it lacks; the services
// whose data was counted are still decided (exit 0). Without --release
// the product catalog cannot be read either: bad input.
func TestPlanCannotReadTheCluster(t *testing.T) {
	cluster := simulatedCSM10(t)
	_, cfg := csm10Gateway(t)
	kc, err := clientcmd.LoadFromFile(cluster.Kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	for _, ai := range kc.AuthInfos {
		ai.Impersonate = "nobody"
	}
	nobody := filepath.Join(t.TempDir(), "nobody.kubeconfig")
	if err := clientcmd.WriteToFile(*kc, nobody); err != nil {
		t.Fatal(err)
	}
	code, out, errOut := runPlanCLI(t, "plan", "--release", "csm-1.0", "--config", cfg, "--kubeconfig", nobody)
	t.Logf("as nobody:\n%s", out)
	want := `cannot read EtcdCluster services/cray-bss-etcd: etcdclusters.etcd.database.coreos.com "cray-bss-etcd" is forbidden: User "nobody" cannot get resource "etcdclusters"`
	if code != 0 || !strings.Contains(out, want) || !strings.Contains(out, "the identity of --kubeconfig needs get on etcdclusters.etcd.database.coreos.com in namespace services") {
		t.Fatalf("exit %d\nstdout %s\nstderr %s", code, out, errOut)
	}
	badinput.Record(t, badinput.Case{Area: badinput.Cluster, Input: "plan with an identity that may not get the EtcdClusters", Message: badinput.Line(out, "cannot read EtcdCluster services/cray-bss-etcd"),
		Exit: fmt.Sprint(code), Unchanged: "plan only reads; services whose data was counted are still decided, the others cannot tell"})

	code, out, errOut = runPlanCLI(t, "plan", "--config", cfg, "--kubeconfig", nobody)
	if code != ExitBadInput || out != "" || !strings.Contains(errOut, "reading ConfigMap services/cray-product-catalog is forbidden") || !strings.Contains(errOut, "or give --release") {
		t.Fatalf("exit %d\nstdout %s\nstderr %s", code, out, errOut)
	}
	badinput.Record(t, badinput.Case{Area: badinput.Cluster, Input: "plan without --release, product catalog not readable", Message: badinput.Line(errOut, "is forbidden"),
		Exit: fmt.Sprint(code), Unchanged: "plan only reads; nothing printed"})
}

// TestPlanCSMUnreachable: every service whose data plan counts cannot
// tell, saying why; the ones the cluster decides are decided. With no
// Kubernetes credentials either, nothing is decided: exit 1.
func TestPlanCSMUnreachable(t *testing.T) {
	cluster := simulatedCSM10(t)
	cfg := CSMConfig(t, "http://127.0.0.1:1")
	// Every cluster was created before --since.
	time.Sleep(1100 * time.Millisecond)
	since := time.Now().UTC().Format(time.RFC3339)
	rep, out := planJSON(t, "plan", "--release", "csm-1.0", "--since", since, "--config", cfg, "--kubeconfig", cluster.Kubeconfig)
	if got := verdicts(rep, plan.CannotTell); !slices.Equal(got, []string{"bos", "bss", "fas", "hmnfd", "meds"}) {
		t.Errorf("cannot tell: %v; want the services whose data is counted, and meds: %s", got, out)
	}
	if got := verdicts(rep, plan.Intact); !slices.Equal(got, []string{"cps", "crus", "externaldns", "reds"}) {
		t.Errorf("intact: %v; want those the cluster decides: %s", got, out)
	}
	for _, s := range rep.Services {
		if s.Service == api.BSS && !strings.Contains(s.Reason, "BSS boot parameters not read:") {
			t.Errorf("bss: %s", s.Reason)
		}
	}
	if !strings.Contains(rep.Release.How, "not confirmed by API probes") {
		t.Errorf("release: %+v", rep.Release)
	}

	t.Setenv("KUBECONFIG", "")
	t.Setenv("KUBERNETES_SERVICE_HOST", "")
	code, text, errOut := runPlanCLI(t, "plan", "--release", "csm-1.0", "--since", since, "--config", cfg)
	if code != ExitFailed || !strings.Contains(errOut, "no service could be decided") || !strings.Contains(text, "no Kubernetes credentials") {
		t.Fatalf("exit %d\nstdout %s\nstderr %s", code, text, errOut)
	}
}

// TestPlanBitnamiEra: from CSM 1.5 the clusters are StatefulSets; one that
// is not there is named as missing; services the release does not have are
// listed apart.
func TestPlanBitnamiEra(t *testing.T) {
	cluster := simulatedCSM10(t)
	e := csmemu.New(csmemu.Options{Release: api.CSM15, Components: csmemu.ComputeNodes(2)})
	base, err := e.Start(false)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	e.SubscribeReadyCompute()
	cfg := CSMConfig(t, base)
	ctx := context.Background()
	lbls := map[string]string{simcluster.NameLabel: "cray-hmnfd-bitnami-etcd"}
	ss := &appsv1.StatefulSet{
		ObjectMeta: metav1.ObjectMeta{Name: "cray-hmnfd-bitnami-etcd", Namespace: simcluster.Namespace},
		Spec: appsv1.StatefulSetSpec{Replicas: ptr.To[int32](3), Selector: &metav1.LabelSelector{MatchLabels: lbls},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: lbls},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "etcd", Image: "registry.local/bitnami/etcd:3.5"}}}}},
	}
	sets := cluster.Core.AppsV1().StatefulSets(simcluster.Namespace)
	created, err := sets.Create(ctx, ss, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sets.Delete(ctx, ss.Name, metav1.DeleteOptions{}) })
	created.Status.Replicas, created.Status.ReadyReplicas = 3, 2
	if _, err := sets.UpdateStatus(ctx, created, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	rep, out := planJSON(t, "plan", "--release", "csm-1.5", "--since", "1h", "--config", cfg, "--kubeconfig", cluster.Kubeconfig)
	byService := map[api.Service]servicePlan{}
	for _, s := range rep.Services {
		byService[s.Service] = s
	}
	hmnfd, bss := byService[api.HMNFD], byService[api.BSS]
	if hmnfd.Cluster.Kind != "StatefulSet" || hmnfd.Cluster.Ready != 2 || hmnfd.Cluster.Size != 3 || hmnfd.Verdict != plan.Intact {
		t.Errorf("hmnfd: %+v", hmnfd)
	}
	// The StatefulSet was created within the hour: rebuilt, but the
	// subscriptions are back.
	if !strings.Contains(hmnfd.Reason, "after --since") || !strings.Contains(hmnfd.Reason, "HMNFD subscriptions: 2") {
		t.Errorf("hmnfd: %s", hmnfd.Reason)
	}
	if !strings.Contains(bss.Cluster.Err, "StatefulSet services/cray-bss-bitnami-etcd not found") {
		t.Errorf("bss: %+v", bss.Cluster)
	}
	var skipped []string
	for _, s := range rep.Skipped {
		skipped = append(skipped, string(s.Service))
	}
	if !slices.Equal(skipped, []string{"cps", "crus", "externaldns", "reds"}) {
		t.Errorf("skipped %v: %s", skipped, out)
	}
}

func TestPlanBadInput(t *testing.T) {
	t.Setenv("KUBECONFIG", "")
	t.Setenv("KUBERNETES_SERVICE_HOST", "")
	cfg := CSMConfig(t, "http://127.0.0.1:1")
	_, csm10 := csm10Gateway(t)
	noURL := filepath.Join(t.TempDir(), "nourl.yaml")
	os.WriteFile(noURL, []byte("release: csm-1.2\n"), 0o600)
	for _, tc := range []struct {
		name, input string
		args        []string
		want        string
	}{
		{"snapshot not one", "plan --snapshot DIR, DIR without manifest.json", []string{"plan", "--snapshot", t.TempDir(), "--config", cfg}, "--snapshot: "},
		{"since garbage", "plan --since yesterday", []string{"plan", "--since", "yesterday", "--config", cfg}, `--since "yesterday": want an RFC 3339 time`},
		{"since future", "plan --since a future time", []string{"plan", "--since", "2999-01-01T00:00:00Z", "--config", cfg}, "is in the future"},
		{"release unknown", "plan --release csm-9", []string{"plan", "--release", "csm-9", "--config", cfg}, "--release: "},
		{"no baseURL", "plan --config FILE, FILE without csm.baseURL", []string{"plan", "--config", noURL}, "csm.baseURL is not set"},
		{"release the APIs contradict", "plan --release csm-1.5 on a gateway that answers like CSM 1.0", []string{"plan", "--release", "csm-1.5", "--config", csm10},
			"--release csm-1.5: release csm-1.5 is configured, but the CSM APIs answer like csm-1.0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, out, errOut := runPlanCLI(t, tc.args...)
			if code != ExitBadInput || out != "" || !strings.Contains(errOut, tc.want) {
				t.Fatalf("exit %d, stdout %q, stderr %q; want 2 and %q", code, out, errOut, tc.want)
			}
			badinput.Record(t, badinput.Case{Area: badinput.CLI, Input: tc.input, Message: badinput.Line(errOut, tc.want),
				Exit: fmt.Sprint(code), Unchanged: "plan only reads; nothing printed"})
		})
	}
}

// TestPlanHelp: --help says what plan reads, that it changes nothing, what
// each verdict means and what to do with the printed line.
func TestPlanHelp(t *testing.T) {
	code, out, _ := runPlanCLI(t, "plan", "--help")
	for _, want := range []string{"plan changes nothing", "lost data    the service needs a run", "intact ", "cannot tell  the evidence does not decide",
		"run it as printed", "Exit codes: 0 the plan was made", "BSS boot parameters, HMNFD subscriptions"} {
		if code != 0 || !strings.Contains(out, want) {
			t.Errorf("help lacks %q:\n%s", want, out)
		}
	}
	if _, root, _ := runPlanCLI(t, "--help"); !strings.Contains(root, "repopulate plan --snapshot DIR") {
		t.Errorf("the root help does not list plan:\n%s", root)
	}
}

func TestParseSince(t *testing.T) {
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	if got, err := parseSince("6h", now); err != nil || !got.Equal(now.Add(-6*time.Hour)) {
		t.Errorf("6h: %v %v", got, err)
	}
	if got, err := parseSince("2026-12-01T08:00:00Z", now); err != nil || got.Hour() != 8 {
		t.Errorf("RFC 3339: %v %v", got, err)
	}
	if _, err := parseSince("-1h", now); err == nil {
		t.Error("a negative duration was accepted")
	}
}
