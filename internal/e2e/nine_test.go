package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/csmops/etcd-repopulate/internal/api"
	"github.com/csmops/etcd-repopulate/internal/catalog"
	"github.com/csmops/etcd-repopulate/internal/config"
	"github.com/csmops/etcd-repopulate/internal/csm"
	"github.com/csmops/etcd-repopulate/internal/testenv"
	"github.com/csmops/etcd-repopulate/internal/workerconfig"
)

// cpsNodes are the computes whose root file system is CPS content (nid 1-4).
var cpsNodes = []string{"x1000c0s0b0n0", "x1000c0s1b0n0", "x1000c0s2b0n0", "x1000c0s3b0n0"}

// seedBOSAndCPS gives the emulator what a CSM system has before its etcd
// clusters are rebuilt: session templates (one boots the CPS-rooted
// computes), CPS content mounted by clients, and BOS sessions that take a
// few polls to move nodes.
func seedBOSAndCPS(t *testing.T) {
	t.Helper()
	emu.ClearSessionTemplates()
	nodeList, _ := json.Marshal(cpsNodes)
	templates := map[string]string{
		"cos-cps-2.4": fmt.Sprintf(`{"name":"cos-cps-2.4","description":"COS computes, CPS root","enable_cfs":true,"cfs":{"configuration":"cos-config-2.4"},
			"boot_sets":{"compute":{"path":"s3://boot-images/cos/manifest.json","type":"s3","etag":"abc","kernel_parameters":"console=ttyS0 root=craycps-s3:s3://boot-images/cos/rootfs",
			"node_list":%s,"rootfs_provider":"cpss3","rootfs_provider_passthrough":"dvs:api-gw-service-nmn.local:300:nmn0"}}}`, nodeList),
		"uan-2.4": `{"name":"uan-2.4","description":"UANs","enable_cfs":false,
			"boot_sets":{"uan":{"path":"s3://boot-images/uan/manifest.json","type":"s3","etag":"def","kernel_parameters":"console=ttyS0",
			"node_roles_groups":["Application"],"rootfs_provider":"sbps"}}}`,
	}
	for name, raw := range templates {
		if err := emu.SetSessionTemplateJSON(name, []byte(raw)); err != nil {
			t.Fatalf("seed template %s: %v", name, err)
		}
	}
	emu.SetCPSContents([]csm.CPSContent{{S3Path: "s3://boot-images/cos/rootfs", Etag: "abc"}})
	emu.SetCPSTransports([]csm.CPSTransport{{ReadyForMount: true}})
	emu.SetBOSTiming(300 * time.Millisecond)
}

// TestAllNineServicesWithGatesAndSnapshot is issue 4's acceptance run: a
// snapshot is taken, the rebuild wipes BOS templates and HMNFD
// subscriptions, and a run of all nine services restores them. CPS waits at
// both gates; each is approved from the CLI, with the worker SIGKILLed and
// replaced between them. The restored templates equal the snapshot.
func TestAllNineServicesWithGatesAndSnapshot(t *testing.T) {
	healthy(t)
	freshHMNFD(t, fleet)
	seedBOSAndCPS(t)
	emu.SubscribeReadyCompute()
	queue := "e2e-nine"
	cfgPath := writeConfig(t, testConfig)

	// Before the rebuild: the snapshot.
	snapDir := filepath.Join(t.TempDir(), "snapshot")
	out, stderr, code := repopulate(t, queue, "snapshot", "--out", snapDir, "--config", cfgPath, "--kubeconfig", cluster.Kubeconfig)
	if code != 0 {
		t.Fatalf("snapshot: exit %d\n%s\n%s", code, out, stderr)
	}
	var saved []json.RawMessage
	readJSON(t, filepath.Join(snapDir, "bos-sessiontemplates.json"), &saved)
	if len(saved) != 2 {
		t.Fatalf("snapshot holds %d templates, want 2", len(saved))
	}

	// The rebuild wipes what etcd held.
	emu.ClearSessionTemplates()
	emu.ClearSubscriptions()

	w := startWorker(t, queue, testConfig, cluster.Kubeconfig)
	const run = "e2e-nine"
	out, stderr, code = repopulate(t, queue, "start", "--id", run, "--snapshot", snapDir)
	if code != 0 {
		t.Fatalf("start: exit %d\n%s\n%s", code, out, stderr)
	}

	// cps waits for hmnfd: the computes cps powers off must not count as
	// hmnfd failures, so HMNFD has found its Ready computes (and compared
	// them with the snapshot) before cps powers any off.
	st := waitFor(t, run, "hmnfd done and gate cps-unmount waiting", func(st api.RunStatus) bool {
		return service(st, api.HMNFD).State == api.Done && gate(st, api.GateCPSUnmount).State == api.GateWaiting
	})
	g := gate(st, api.GateCPSUnmount)
	if !strings.Contains(g.Action, "shut down 4 compute nodes") || g.ApproveCommand != "repopulate approve e2e-nine cps-unmount --note 'TEXT'" {
		t.Errorf("gate cps-unmount shows %+v", g)
	}
	out, stderr, code = repopulate(t, queue, "approve", run, api.GateCPSUnmount, "--note", "computes drained")
	if code != 0 {
		t.Fatalf("approve cps-unmount: exit %d\n%s\n%s", code, out, stderr)
	}

	waitFor(t, run, "cps nodes Off and gate cps-reboot waiting", func(st api.RunStatus) bool {
		return gate(st, api.GateCPSReboot).State == api.GateWaiting
	})
	for _, c := range emu.Components() {
		if contains(cpsNodes, c.ID) && c.State != "Off" {
			t.Errorf("%s is %s at gate cps-reboot, want Off", c.ID, c.State)
		}
	}
	// The worker dies while the gate waits; a new one takes over.
	w.Kill()
	w2 := startWorker(t, queue, testConfig, cluster.Kubeconfig)
	out, stderr, code = repopulate(t, queue, "approve", run, api.GateCPSReboot, "--note", "cps etcd healthy")
	if code != 0 {
		t.Fatalf("approve cps-reboot: exit %d\n%s\n%s", code, out, stderr)
	}
	// Approving again is refused and changes nothing.
	out, stderr, code = repopulate(t, queue, "approve", run, api.GateCPSReboot)
	if code != 2 || !strings.Contains(stderr, "is not waiting") {
		t.Errorf("second approval: exit %d\n%s\n%s", code, out, stderr)
	}

	report := waitRun(t, run)
	if report.State != api.Done || len(report.Services) != len(catalog.Services()) {
		t.Fatalf("run %s (%s) with %d services", report.State, report.Message, len(report.Services))
	}
	for _, s := range report.Services {
		if s.State != api.Done {
			t.Errorf("%s: %s %s", s.Service, s.State, s.Message)
		}
	}
	cps := service(report, api.CPS)
	for i, want := range []string{"computes drained", "cps etcd healthy"} {
		if g := cps.Gates[i]; g.State != api.GateApproved || g.Note != want || g.By == "" {
			t.Errorf("gate %s in the report: %+v", g.Name, g)
		}
	}
	var shutdowns, boots int
	for _, s := range emu.BOSSessions() {
		switch s.Operation {
		case "shutdown":
			shutdowns++
		case "boot":
			boots++
		}
	}
	if shutdowns != 1 || boots != 1 {
		t.Errorf("BOS sessions: %d shutdown, %d boot; want exactly one each", shutdowns, boots)
	}
	for _, c := range emu.Components() {
		if contains(cpsNodes, c.ID) && c.State != "Ready" {
			t.Errorf("%s is %s after the run, want Ready", c.ID, c.State)
		}
	}
	// BOS: every template is back, equal to the snapshot.
	for _, raw := range saved {
		var want struct {
			Name string `json:"name"`
		}
		_ = json.Unmarshal(raw, &want)
		got, ok := emu.SessionTemplateJSON(want.Name)
		if !ok {
			t.Errorf("template %s not restored", want.Name)
			continue
		}
		var gotV, wantV any
		_ = json.Unmarshal(got, &gotV)
		_ = json.Unmarshal(raw, &wantV)
		if !testenv.EqualJSON(gotV, wantV) {
			t.Errorf("template %s restored as\n%s\nwant\n%s", want.Name, got, raw)
		}
	}
	hmnfd := service(report, api.HMNFD)
	if last := hmnfd.Steps[len(hmnfd.Steps)-1]; last.State != api.Done || !strings.Contains(last.Message, fmt.Sprintf("all %d nodes subscribed in the snapshot", computeNodes)) {
		t.Errorf("hmnfd comparison with the snapshot: %+v", last)
	}
	// No secret in any of the ten histories or either worker's log.
	ids := []string{run}
	for _, s := range catalog.Services() {
		ids = append(ids, api.ServiceWorkflowID(run, s))
	}
	assertNoSecrets(t, []string{w.Log, w2.Log}, ids...)
	// The text report ends with the gates' record.
	out, _, _ = repopulate(t, queue, "report", run)
	if !strings.Contains(out, "cps-reboot (cps) approved by") || !strings.Contains(out, "snapshot "+snapDir) {
		t.Errorf("text report lacks the approvals or the snapshot:\n%s", out)
	}
}

func readJSON(t *testing.T, path string, v any) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

// waitFor polls the run's status until cond holds (or two minutes pass).
func waitFor(t *testing.T, runID, what string, cond func(api.RunStatus) bool) api.RunStatus {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	var st api.RunStatus
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		v, err := tc.QueryWorkflow(ctx, runID, "", api.StatusQuery)
		cancel()
		if err == nil && v.Get(&st) == nil && cond(st) {
			return st
		}
		time.Sleep(200 * time.Millisecond)
	}
	data, _ := json.MarshalIndent(st, "", "  ")
	t.Fatalf("timed out waiting for %s; last status:\n%s", what, data)
	return st
}

func service(st api.RunStatus, s api.Service) api.ServiceStatus {
	for _, ss := range st.Services {
		if ss.Service == s {
			return ss
		}
	}
	return api.ServiceStatus{}
}

func gate(st api.RunStatus, name string) api.GateStatus {
	for _, s := range st.Services {
		for _, g := range s.Gates {
			if g.Name == name {
				return g
			}
		}
	}
	return api.GateStatus{}
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// TestFASLoaderThroughTheAPI: the FAS loader is an API call, not a Job,
// unless a site's config names a Job that exists. FAS answers 429 while another load runs; the step waits
// and asks again, starts exactly one run and follows it to its end.
func TestFASLoaderThroughTheAPI(t *testing.T) {
	queue := "e2e-fas-api"
	before := len(emu.FASLoaderRuns())
	emu.SetFASLoaderBusy(2)
	// No Job named: the loader API, on every release.
	startWorker(t, queue, testConfigWith(func(c *config.Config) { workerconfig.FAS(*c).Job = "" }), cluster.Kubeconfig)
	out, stderr, code := repopulate(t, queue, "start", "--services", "fas", "--wait", "--id", "e2e-fas-api", "-o", "json")
	if code != 0 {
		t.Fatalf("exit %d\n%s\n%s", code, out, stderr)
	}
	var report api.Report
	if err := json.Unmarshal([]byte(out), &report); err != nil {
		t.Fatal(err)
	}
	runs := emu.FASLoaderRuns()[before:]
	if len(runs) != 1 {
		t.Fatalf("loader runs started: %v, want exactly one", runs)
	}
	fas := service(report, api.FAS)
	if fas.State != api.Done || len(fas.Steps) != 3 || fas.Steps[0].Name != "start-fas-loader" || fas.Steps[2].Name != "data-check" {
		t.Fatalf("fas: %s %s %+v", fas.State, fas.Message, fas.Steps)
	}
	if !strings.Contains(fas.Steps[0].Message, "started loader run "+runs[0]) {
		t.Errorf("start step: %q", fas.Steps[0].Message)
	}
	if !strings.Contains(fas.Steps[1].Message, "loader run "+runs[0]+": ") || !strings.Contains(fas.Steps[1].Message, "images loaded") {
		t.Errorf("wait step should end with the run's own output: %q", fas.Steps[1].Message)
	}
	if e := fas.Evidence; e == nil || !e.OK || !strings.Contains(e.Found, "loader run "+runs[0]+" logged no error") {
		t.Errorf("fas evidence %+v, want the images counted and the run's log read", e)
	}
	if n := emu.Requests("/apis/fas/v1/loader/nexus"); n < 3 {
		t.Errorf("%d POSTs to the loader, want the two 429s and the accepted one", n)
	}
}
