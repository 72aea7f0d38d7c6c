package snapshot_test

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/csmops/etcd-repopulate/internal/api"
	"github.com/csmops/etcd-repopulate/internal/csm"
	"github.com/csmops/etcd-repopulate/internal/csmemu"
	"github.com/csmops/etcd-repopulate/internal/kube"
	"github.com/csmops/etcd-repopulate/internal/simcluster"
	"github.com/csmops/etcd-repopulate/internal/snapshot"
	"github.com/csmops/etcd-repopulate/internal/testenv"
)

// Templates as BOS holds them: one of a tenant, one with members the client
// does not model, one whose boot set names no nodes (invalid).
var templateJSON = []string{
	`{"name":"cos-2.4","description":"COS compute","enable_cfs":true,"cfs":{"configuration":"cos-config-2.4"},
	  "boot_sets":{"compute":{"path":"s3://boot-images/abc/manifest.json","type":"s3","etag":"e1","kernel_parameters":"console=ttyS0",
	  "node_roles_groups":["Compute"],"rootfs_provider":"cpss3","rootfs_provider_passthrough":"dvs:api-gw-service-nmn.local:300:nmn0","arch":"X86",
	  "future_field":{"x":1}}},"owner_note":"kept as is"}`,
	`{"name":"uan-2.4","tenant":"blue","enable_cfs":false,
	  "boot_sets":{"uan":{"path":"s3://boot-images/def/manifest.json","type":"s3","node_list":["x3000c0s19b0n0"]}}}`,
	`{"name":"broken","boot_sets":{"none":{"path":"s3://boot-images/x/manifest.json","type":"s3"}}}`,
}

// emulator is a CSM gateway holding one of each kind of data a rebuild wipes.
func emulator(t *testing.T) (*csmemu.Emulator, *csm.Client) {
	t.Helper()
	// BSS holds the boot parameters of these nodes.
	e := csmemu.New(csmemu.Options{Components: csmemu.ComputeNodes(2)})
	base, err := e.Start(false)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	for _, raw := range templateJSON {
		var tmpl csm.SessionTemplate
		if err := json.Unmarshal([]byte(raw), &tmpl); err != nil {
			t.Fatal(err)
		}
		if err := e.SetSessionTemplate(tmpl); err != nil {
			t.Fatal(err)
		}
	}
	e.Subscribe("x1000c0s1b0n0")
	e.Subscribe("x1000c0s0b0n0")
	other := csmemu.OrcaSubscription("x1000c0s0b0n0")
	other.Subscriber, other.SubscriberAgent = "hbtd@x1000c0s0b0n0", "hbtd"
	e.SetSubscriptions(append(e.Subscriptions(), other))
	e.SetFASImages(csmemu.DefaultFASImages())
	e.SetFASActions([]csm.FASAction{
		{ActionID: "a-running", State: "running", Command: csm.FASCommand{Version: "latest", Tag: "default", OverrideDryrun: true, Description: "BMC update"}},
		{ActionID: "a-done", State: "completed"},
		{ActionID: "a-new", State: "new"},
	})
	e.AddCRUSSession(csmemu.ExampleCRUSSession())
	c, err := csm.New(csm.Config{BaseURL: base, Secret: csm.SecretValue(csmemu.DefaultClientSecret), Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return e, c
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return c
}

func semantic(t *testing.T, b []byte) any {
	t.Helper()
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatalf("%v: %s", err, b)
	}
	return v
}

// TestTakeAndLoadAgainstEmulatorAndAPIServer takes a snapshot from the
// emulator and a real kube-apiserver and loads it back.
func TestTakeAndLoadAgainstEmulatorAndAPIServer(t *testing.T) {
	c := ctx(t)
	cluster, err := testenv.Cluster(c, filepath.Join(t.TempDir(), "cluster"), false)
	if err != nil {
		t.Fatal(err)
	}
	defer cluster.Stop()
	if _, err := cluster.Core.CoreV1().Namespaces().Create(c, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: simcluster.Namespace}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := cluster.InstallEtcdClusterCRD(c); err != nil {
		t.Fatal(err)
	}
	etcd := cluster.Dynamic.Resource(kube.EtcdClusterGVR).Namespace(simcluster.Namespace)
	if _, err := etcd.Create(c, simcluster.ExternalDNSEtcdCluster(), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	e, cl := emulator(t)
	dir := filepath.Join(t.TempDir(), "snap")
	m, err := snapshot.Take(c, snapshot.Sources{CSM: cl, Kube: cluster.Dynamic, ExternalDNS: api.ObjectRef{Namespace: simcluster.Namespace, Name: simcluster.ExternalDNSEtcd}}, dir)
	if err != nil {
		t.Fatal(err)
	}
	counts := map[string]int{}
	for _, p := range m.Parts {
		counts[p.Name] = p.Count
		if p.File == "" || len(p.SHA256) != 64 {
			t.Errorf("part %+v not saved", p)
		}
	}
	want := map[string]int{snapshot.PartSessionTemplates: 3, snapshot.PartEtcdCluster: 1, snapshot.PartFASImages: 3, snapshot.PartFASActions: 2, snapshot.PartCRUSSessions: 1, snapshot.PartSubscriptions: 3,
		snapshot.PartBootParameters: 4} // BSS: the kernel and initrd image entries, two nodes
	if !reflect.DeepEqual(counts, want) {
		t.Errorf("counts %v, want %v", counts, want)
	}
	if m.CSMBaseURL != e.URL() || m.Taken.IsZero() || m.ToolVersion == "" {
		t.Errorf("manifest %+v", m)
	}

	// The EtcdCluster is the API server's own JSON, as kubectl get -o json gives it.
	obj, err := etcd.Get(c, simcluster.ExternalDNSEtcd, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	live, _ := obj.MarshalJSON()
	saved, err := os.ReadFile(filepath.Join(dir, snapshot.PartEtcdCluster+".json"))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(semantic(t, saved), semantic(t, live)) {
		t.Errorf("saved EtcdCluster differs from the API server's:\n%s\n%s", saved, live)
	}
	if !strings.Contains(string(saved), `"resourceVersion"`) {
		t.Error("saved EtcdCluster lacks metadata.resourceVersion: not the server's JSON")
	}

	// No secret and no token is written anywhere.
	secrets := append(e.IssuedTokens(), csmemu.DefaultClientSecret)
	if len(secrets) < 2 {
		t.Fatal("no token was issued")
	}
	files, _ := os.ReadDir(dir)
	for _, f := range files {
		b, _ := os.ReadFile(filepath.Join(dir, f.Name()))
		for _, s := range secrets {
			if strings.Contains(string(b), s) {
				t.Errorf("%s holds a secret", f.Name())
			}
		}
	}

	in, m2, err := snapshot.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(m, m2) {
		t.Errorf("manifest read back differs:\n%+v\n%+v", m, m2)
	}
	if in.Dir != dir || !in.Taken.Equal(m.Taken) {
		t.Errorf("dir %q taken %v", in.Dir, in.Taken)
	}
	if len(in.SessionTemplates) != 3 {
		t.Fatalf("%d templates", len(in.SessionTemplates))
	}
	for _, raw := range in.SessionTemplates {
		var head struct{ Name, Tenant string }
		json.Unmarshal(raw, &head)
		var bos []byte
		if head.Tenant == "" {
			bos, _ = e.SessionTemplateJSON(head.Name)
		} else {
			bos = []byte(templateJSON[1])
		}
		if !reflect.DeepEqual(semantic(t, raw), semantic(t, bos)) {
			t.Errorf("template %s:\nsaved %s\nBOS   %s", head.Name, raw, bos)
		}
	}
	if want := []string{"x1000c0s0b0n0", "x1000c0s1b0n0"}; !slices.Equal(in.SubscribedXnames, want) {
		t.Errorf("xnames %v, want %v", in.SubscribedXnames, want)
	}
	wantFAS := []api.SavedFASAction{
		{ActionID: "a-running", State: "running", Command: "BMC update, version latest, tag default, overrideDryrun"},
		{ActionID: "a-new", State: "new", Command: "dry run"},
	}
	if !reflect.DeepEqual(in.FASActions, wantFAS) {
		t.Errorf("FAS actions %+v, want %+v", in.FASActions, wantFAS)
	}
}

// TestTakeWithoutKubeOrCRUS notes what it could not save and still loads.
func TestTakeWithoutKubeOrCRUS(t *testing.T) {
	e, cl := emulator(t)
	e.DisableCRUS()
	dir := filepath.Join(t.TempDir(), "snap")
	m, err := snapshot.Take(ctx(t), snapshot.Sources{CSM: cl, ExternalDNS: api.ObjectRef{Namespace: "services", Name: "cray-externaldns-etcd"}}, dir)
	if err != nil {
		t.Fatal(err)
	}
	for name, note := range map[string]string{snapshot.PartEtcdCluster: "no Kubernetes credentials", snapshot.PartCRUSSessions: "CRUS is not installed"} {
		p, ok := m.Part(name)
		if !ok || p.File != "" || !strings.Contains(p.Note, note) {
			t.Errorf("part %s: %+v, want a note %q", name, p, note)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, snapshot.PartEtcdCluster+".json")); err == nil {
		t.Error("EtcdCluster file written without a Kubernetes client")
	}
	if _, _, err := snapshot.Load(dir); err != nil {
		t.Fatal(err)
	}
}

// TestLoadRefusesChangedFiles: a changed, missing or miscounted file is
// named and the snapshot refused.
func TestLoadRefusesChangedFiles(t *testing.T) {
	_, cl := emulator(t)
	dir := filepath.Join(t.TempDir(), "snap")
	if _, err := snapshot.Take(ctx(t), snapshot.Sources{CSM: cl}, dir); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, snapshot.PartSessionTemplates+".json")
	orig, _ := os.ReadFile(file)
	for _, tc := range []struct {
		name   string
		change func()
		want   string
	}{
		{"edited", func() { os.WriteFile(file, []byte(strings.Replace(string(orig), "cos-2.4", "cos-2.5", 1)), 0o640) }, file + ": the checksum does not match manifest.json"},
		{"missing", func() { os.Remove(file) }, file + " is missing, so its checksum does not match manifest.json"},
		{"no manifest", func() { os.Rename(filepath.Join(dir, snapshot.ManifestFile), filepath.Join(dir, "m")) }, "no manifest.json"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.change()
			_, _, err := snapshot.Load(dir)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Load: %v, want an error containing %q", err, tc.want)
			}
			os.WriteFile(file, orig, 0o640)
			os.Rename(filepath.Join(dir, "m"), filepath.Join(dir, snapshot.ManifestFile))
			if _, _, err := snapshot.Load(dir); err != nil {
				t.Fatalf("restored snapshot does not load: %v", err)
			}
		})
	}
	// A manifest whose count was edited is refused too.
	mf := filepath.Join(dir, snapshot.ManifestFile)
	mb, _ := os.ReadFile(mf)
	var m snapshot.Manifest
	json.Unmarshal(mb, &m)
	m.Parts[0].Count++
	mb, _ = json.Marshal(m)
	os.WriteFile(mf, mb, 0o640)
	if _, _, err := snapshot.Load(dir); err == nil || !strings.Contains(err.Error(), "holds 3 items, manifest.json says 4") {
		t.Fatalf("Load with an edited count: %v", err)
	}
}

// TestNeverOverwritesSilently: a non-empty dir is refused; TakeOver
// replaces it only when the new snapshot is complete.
func TestNeverOverwritesSilently(t *testing.T) {
	e, cl := emulator(t)
	src := snapshot.Sources{CSM: cl}
	dir := filepath.Join(t.TempDir(), "snap")
	first, err := snapshot.Take(ctx(t), src, dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := snapshot.Take(ctx(t), src, dir); err == nil || !strings.Contains(err.Error(), "already holds a snapshot") || !strings.Contains(err.Error(), "--force") {
		t.Fatalf("second Take: %v, want a refusal naming --force", err)
	}
	// A failed TakeOver leaves the old snapshot as it was.
	e.Fail(csm.PathHMNFDSubscriptions, 403, -1)
	if _, err := snapshot.TakeOver(ctx(t), src, dir); err == nil || !strings.Contains(err.Error(), "HMNFD subscriptions") {
		t.Fatalf("TakeOver with HMNFD forbidden: %v", err)
	}
	if _, m, err := snapshot.Load(dir); err != nil || !reflect.DeepEqual(m, first) {
		t.Fatalf("old snapshot changed by a failed TakeOver: %v", err)
	}
	e.ClearFaults()
	e.ClearSessionTemplates()
	second, err := snapshot.TakeOver(ctx(t), src, dir)
	if err != nil {
		t.Fatal(err)
	}
	if p, _ := second.Part(snapshot.PartSessionTemplates); p.Count != 0 {
		t.Errorf("TakeOver kept the old templates: %+v", p)
	}
	assertNoLeftovers(t, filepath.Dir(dir), "snap")
}

// TestInterruptedTakeLeavesNothing cancels a Take half-way.
func TestInterruptedTakeLeavesNothing(t *testing.T) {
	e, cl := emulator(t)
	e.Delay(csm.PathCRUSSession, 10*time.Second, 1)
	c, cancel := context.WithCancel(context.Background())
	time.AfterFunc(500*time.Millisecond, cancel)
	parent := t.TempDir()
	dir := filepath.Join(parent, "snap")
	if _, err := snapshot.Take(c, snapshot.Sources{CSM: cl}, dir); err == nil {
		t.Fatal("interrupted Take succeeded")
	}
	if e.Requests(csm.PathFASActions) != 1 {
		t.Fatal("Take did not get as far as CRUS: the test interrupts nothing")
	}
	assertNoLeftovers(t, parent, "")
}

func assertNoLeftovers(t *testing.T, parent, keep string) {
	t.Helper()
	entries, _ := os.ReadDir(parent)
	for _, en := range entries {
		if en.Name() != keep {
			t.Errorf("left behind: %s", en.Name())
		}
	}
}

// TestCheckSizeNamesTheLargePart: an input too large for a workflow start
// is refused with the part that makes it large.
func TestCheckSizeNamesTheLargePart(t *testing.T) {
	in := &api.SnapshotInput{Dir: "/snap", SubscribedXnames: []string{"x1000c0s0b0n0"}}
	if err := snapshot.CheckSize(in); err != nil {
		t.Fatal(err)
	}
	big := json.RawMessage(`{"name":"t","description":"` + strings.Repeat("x", 4000) + `"}`)
	for range 500 {
		in.SessionTemplates = append(in.SessionTemplates, big)
	}
	err := snapshot.CheckSize(in)
	if err == nil || !strings.Contains(err.Error(), "500 BOS session templates take 1.9 MiB") {
		t.Fatalf("CheckSize: %v", err)
	}
}

// TestTakeReadsThroughTheReleaseAPIs: on CSM 1.0 (BOS 1.7, HMNFD 1.8.5)
// the snapshot probes the gateway, reads the templates through BOS v1 and
// the subscriptions through /hmi/v1, records the versions, and finds the
// subscribed xnames from Subscriber alone. On CSM 1.3 it reads v2.
func TestTakeReadsThroughTheReleaseAPIs(t *testing.T) {
	for _, rel := range []api.Release{api.CSM10, api.CSM13} {
		e := csmemu.New(csmemu.Options{Release: rel})
		base, err := e.Start(false)
		if err != nil {
			t.Fatal(err)
		}
		defer e.Close()
		tmpl := csm.SessionTemplate{Name: "cos-1", BootSets: map[string]csm.BootSet{"compute": {Path: "s3://x/manifest.json", Type: "s3", NodeList: []string{"x1000c0s0b0n0"}}}}
		if err := e.SetSessionTemplate(tmpl); err != nil {
			t.Fatal(err)
		}
		e.Subscribe("x1000c0s1b0n0")
		cl, err := csm.New(csm.Config{BaseURL: base, Secret: csm.SecretValue(csmemu.DefaultClientSecret), Timeout: 5 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		dir := filepath.Join(t.TempDir(), "snap")
		m, err := snapshot.Take(ctx(t), snapshot.Sources{CSM: cl}, dir)
		if err != nil {
			t.Fatalf("%s: %v", rel, err)
		}
		if m.APIs != rel.APIs() || m.Probes == nil {
			t.Errorf("%s: manifest APIs %+v probes %+v, want %+v", rel, m.APIs, m.Probes, rel.APIs())
		}
		v1 := rel.APIs().BOSVersion() == api.APIv1
		if got := e.Requests(csm.PathBOSv1SessionTemplate) > 0; got != v1 {
			t.Errorf("%s: templates read through BOS v1: %v, want %v", rel, got, v1)
		}
		in, lm, err := snapshot.Load(dir)
		if err != nil {
			t.Fatal(err)
		}
		if in.APIs != rel.APIs() || lm.APIs != rel.APIs() || len(in.SessionTemplates) != 1 || !slices.Equal(in.SubscribedXnames, []string{"x1000c0s1b0n0"}) {
			t.Errorf("%s: loaded APIs %+v, %d templates, xnames %v", rel, in.APIs, len(in.SessionTemplates), in.SubscribedXnames)
		}
	}
}

// TestBootParametersSavedAndReloaded: the snapshot keeps every entry BSS
// listed; after the rebuild empties BSS they read back equal, checked
// against the manifest; a changed file is refused by Load (start
// --snapshot) and LoadBootParameters alike.
func TestBootParametersSavedAndReloaded(t *testing.T) {
	e, cl := emulator(t)
	want := e.BootParams()
	dir := filepath.Join(t.TempDir(), "snap")
	if _, err := snapshot.Take(ctx(t), snapshot.Sources{CSM: cl}, dir); err != nil {
		t.Fatal(err)
	}
	e.WipeBSS()
	got, m, err := snapshot.LoadBootParameters(dir)
	if err != nil {
		t.Fatal(err)
	}
	if p, _ := m.Part(snapshot.PartBootParameters); p.File != snapshot.PartBootParameters+".json" || p.Count != len(want) {
		t.Errorf("manifest part %+v", p)
	}
	if len(got) != len(want) || len(want) != 4 {
		t.Fatalf("reloaded %d entries, BSS listed %d (want 4)", len(got), len(want))
	}
	for i := range want {
		if !got[i].Equal(want[i]) {
			t.Errorf("entry %d: reloaded %+v, BSS listed %+v", i, got[i], want[i])
		}
	}
	if got[2].Host() != "x1000c0s0b0n0" || !strings.HasPrefix(got[2].Kernel, "s3://boot-images/") || len(got[2].CloudInit) == 0 {
		t.Errorf("node entry %+v", got[2])
	}
	// A run carries a digest per host (start --snapshot), not the entries.
	in, _, err := snapshot.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(in.BootParamDigests) != 2 || in.BootParamDigests["x1000c0s0b0n0"] != want[2].Digest() || in.BootParamDigests["x1000c0s1b0n0"] != want[3].Digest() {
		t.Errorf("digests %v, want one per node entry", in.BootParamDigests)
	}
	if in.FASImages == nil {
		t.Errorf("FAS image count not loaded")
	}

	file := filepath.Join(dir, snapshot.PartBootParameters+".json")
	orig, _ := os.ReadFile(file)
	os.WriteFile(file, []byte(strings.Replace(string(orig), "x1000c0s1b0n0", "x1000c0s7b0n0", 1)), 0o640)
	want2 := file + ": the checksum does not match manifest.json"
	if _, _, err := snapshot.LoadBootParameters(dir); err == nil || !strings.Contains(err.Error(), want2) {
		t.Errorf("LoadBootParameters of a changed file: %v, want %q", err, want2)
	}
	if _, _, err := snapshot.Load(dir); err == nil || !strings.Contains(err.Error(), want2) {
		t.Errorf("Load of a changed BSS file: %v, want %q", err, want2)
	}
}

// TestSnapshotWithoutBootParametersStillLoads: a snapshot written before
// BSS was saved (same format, no bss-bootparameters part) loads for a run;
// asking it for boot parameters says what to do instead.
func TestSnapshotWithoutBootParametersStillLoads(t *testing.T) {
	_, cl := emulator(t)
	dir := filepath.Join(t.TempDir(), "snap")
	if _, err := snapshot.Take(ctx(t), snapshot.Sources{CSM: cl}, dir); err != nil {
		t.Fatal(err)
	}
	mf := filepath.Join(dir, snapshot.ManifestFile)
	mb, _ := os.ReadFile(mf)
	var m snapshot.Manifest
	if err := json.Unmarshal(mb, &m); err != nil {
		t.Fatal(err)
	}
	m.Parts = slices.DeleteFunc(m.Parts, func(p snapshot.Part) bool { return p.Name == snapshot.PartBootParameters })
	mb, _ = json.MarshalIndent(m, "", "  ")
	os.WriteFile(mf, mb, 0o640)
	os.Remove(filepath.Join(dir, snapshot.PartBootParameters+".json"))

	in, _, err := snapshot.Load(dir)
	if err != nil {
		t.Fatalf("a snapshot without BSS does not load: %v", err)
	}
	if len(in.SessionTemplates) != 3 || len(in.SubscribedXnames) != 2 {
		t.Errorf("input %+v", in)
	}
	_, _, err = snapshot.LoadBootParameters(dir)
	if !errors.Is(err, snapshot.ErrNoBootParameters) || !strings.Contains(err.Error(), "restore BSS as the runbook says (from its etcd backup on CSM 1.5 and later), or take a new snapshot") {
		t.Errorf("LoadBootParameters without BSS: %v", err)
	}
}
