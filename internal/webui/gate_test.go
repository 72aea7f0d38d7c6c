package webui

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"go.temporal.io/sdk/client"

	"github.com/csmops/etcd-repopulate/internal/api"
	"github.com/csmops/etcd-repopulate/internal/catalog"
	"github.com/csmops/etcd-repopulate/internal/config"
	"github.com/csmops/etcd-repopulate/internal/csm"
	"github.com/csmops/etcd-repopulate/internal/csmemu"
	"github.com/csmops/etcd-repopulate/internal/testenv"
	"github.com/csmops/etcd-repopulate/internal/workerconfig"
)

// computes is the smallest system on which every service has work: HMNFD
// restarts orca on them over real SSH (one sshd serves them all) and they
// are the computes whose root file system is CPS content, so cps waits at
// its first gate.
const computes = 4

// TestRunPageShowsNineServicesAndWaitingGate is issue 4's browser check: a
// real run of all nine services, with the real worker on the simulated
// cluster and the CSM emulator, waits at gate cps-unmount. The run's page
// lists the nine child workflows; the run's and cps's current details show
// the gate waiting and the command that approves it.
func TestRunPageShowsNineServicesAndWaitingGate(t *testing.T) {
	testenv.Chromium(t)
	started := time.Now()
	artifacts, scratch := testenv.Artifacts(t), t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// The build is CPU, the control plane's start mostly waiting: overlap
	// them. Waited for on every path, so that the scratch directory is not
	// removed under go build.
	var cli, workerBin string
	var buildErr error
	building := make(chan struct{})
	go func() {
		defer close(building)
		cli, workerBin, buildErr = testenv.BuildCommands(filepath.Join(scratch, "bin"))
	}()
	t.Cleanup(func() { <-building })
	srv, tc := startTemporal(t, scratch)
	cluster, err := testenv.Cluster(ctx, filepath.Join(scratch, "cluster"), true)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cluster.Stop)
	if <-building; buildErr != nil {
		t.Fatal(buildErr)
	}
	t.Logf("temporal, cluster and binaries ready after %s", time.Since(started).Round(time.Second))
	const queue = "webui-nine"
	testenv.StartWorker(t, testenv.WorkerOptions{BinDir: filepath.Dir(workerBin), LogDir: artifacts, LogFile: filepath.Join(artifacts, "worker.log"),
		Address: srv.Address, Queue: queue, Config: startCSM(t, ctx, scratch), Kubeconfig: cluster.Kubeconfig})
	repopulate := func(args ...string) {
		t.Helper()
		rctx, cancel := context.WithTimeout(ctx, time.Minute)
		defer cancel()
		cmd := exec.CommandContext(rctx, cli, append([]string{"--address", srv.Address, "--task-queue", queue, "--ui-url", srv.UIURL}, args...)...)
		var out, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &stderr
		if err := cmd.Run(); err != nil {
			t.Fatalf("repopulate %s: %v\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), err, out.String(), stderr.String())
		}
	}

	// No snapshot: bos waits at its gate bos-templates first; cps starts
	// once bos is done (it finds its nodes in bos's templates).
	const run = "webui-nine"
	repopulate("start", "--id", run)
	t.Logf("run started after %s", time.Since(started).Round(time.Second))
	waitStatus(t, tc, run, "bos waiting at bos-templates", func(st api.RunStatus) bool {
		return gateState(st, api.GateBOSTemplates) == api.GateWaiting
	})
	repopulate("approve", run, api.GateBOSTemplates, "--note", "webui test")
	// A service that ended otherwise than done ends the wait at once.
	st := waitStatus(t, tc, run, "cps waiting at cps-unmount, the other services done", func(st api.RunStatus) bool {
		waiting := len(st.Services) == len(catalog.Services())
		for _, s := range st.Services {
			switch {
			case s.State.Finished() && s.State != api.Done:
				return true
			case s.Service != api.CPS && s.State != api.Done:
				waiting = false
			}
		}
		return waiting && gateState(st, api.GateCPSUnmount) == api.GateWaiting
	})
	for _, s := range st.Services {
		if s.State.Finished() && s.State != api.Done {
			t.Fatalf("%s: %s %s", s.Service, s.State, s.Message)
		}
	}
	t.Logf("run waiting at its gates after %s", time.Since(started).Round(time.Second))
	desc, err := tc.DescribeWorkflowExecution(ctx, run, "")
	if err != nil {
		t.Fatal(err)
	}
	runID := desc.WorkflowExecutionInfo.Execution.RunId

	// 1. The Relationships tab lists every child by its workflow ID.
	var children []string
	var startedServices []api.Service
	for _, s := range catalog.Services() {
		children = append(children, api.ServiceWorkflowID(run, s))
		startedServices = append(startedServices, s)
	}
	page := render(t, artifacts, "relationships", runPage(srv, run, runID, "relationships"), children...)
	// Each row reads status, type, ID: cps, at its gate, is the one still
	// running.
	lines := visibleLines(page)
	for i, id := range children {
		j := slices.Index(lines, id)
		if j < 0 {
			t.Errorf("relationships: no line %q", id)
			continue
		}
		want := "Completed"
		if startedServices[i] == api.CPS {
			want = "Running"
		}
		if j < 2 || lines[j-2] != want || lines[j-1] != "RepopulateService" {
			t.Errorf("relationships: %s is not shown as %s RepopulateService: %q", id, want, lines[max(j-2, 0):j+1])
		}
	}
	if !adjacent(lines, "Child Count", fmt.Sprint(len(children))) {
		t.Errorf("relationships: no Child Count %d in\n%s", len(children), page.Text)
	}

	// 2. The run's current details: its table of services, then one
	// paragraph per waiting gate with the approve command as a code block
	// (markdown: "Gate **cps-unmount** (cps) is waiting ..." shows bold,
	// without the asterisks).
	approve := fmt.Sprintf("repopulate approve %s %s --note 'TEXT'", run, api.GateCPSUnmount)
	render(t, artifacts, "run-user-metadata", runPage(srv, run, runID, "user-metadata"),
		"Gate cps-unmount (cps) is waiting for approval: shut down 4 compute nodes", approve)

	// 3. The cps child's current details.
	cpsID := api.ServiceWorkflowID(run, api.CPS)
	cpsDesc, err := tc.DescribeWorkflowExecution(ctx, cpsID, "")
	if err != nil {
		t.Fatal(err)
	}
	render(t, artifacts, "cps-user-metadata", runPage(srv, cpsID, cpsDesc.WorkflowExecutionInfo.Execution.RunId, "user-metadata"),
		"Gate cps-unmount is waiting for approval.", approve)

	// Approve every gate, as an operator would with the commands shown, so
	// the run ends done.
	repopulate("approve", run, api.GateCPSUnmount, "--note", "webui test")
	waitStatus(t, tc, run, "cps waiting at cps-reboot", func(st api.RunStatus) bool {
		return gateState(st, api.GateCPSReboot) == api.GateWaiting
	})
	repopulate("approve", run, api.GateCPSReboot, "--note", "webui test")
	wctx, cancelWait := context.WithTimeout(ctx, 2*time.Minute)
	defer cancelWait()
	var report api.Report
	if err := tc.GetWorkflow(wctx, run, "").Get(wctx, &report); err != nil {
		t.Fatal(err)
	}
	if report.State != api.Done {
		t.Errorf("run %s: %s", report.State, report.Message)
	}
	t.Logf("test took %s", time.Since(started).Round(time.Second))
}

// startCSM starts the CSM emulator and an sshd fleet for the computes and
// writes a worker configuration for them.
func startCSM(t *testing.T, ctx context.Context, dir string) config.Config {
	t.Helper()
	// CSM 1.0: BOS templates are in etcd there, so bos has its gate too.
	sys, err := testenv.StartCSM(ctx, dir, testenv.CSMOptions{Release: api.CSM10, ClientSecret: "webui-client-secret", Computes: computes})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sys.Stop)
	// BOS sessions complete on their next read: how long a power step
	// takes is not what this test looks at.
	seedBOSAndCPS(t, sys.Emu)
	// Subscribed already, so HMNFD's verify step passes at once: no stand-in
	// orca has to subscribe again after its restart.
	sys.Emu.SubscribeReadyCompute()
	target := sys.System
	target.Release = api.CSM10
	cfg := workerconfig.Endpoints(target)
	cfg.PollInterval = config.Duration(300 * time.Millisecond)
	workerconfig.HMNFD(cfg).NCNGroups = []string{}
	return cfg
}

// seedBOSAndCPS gives every compute a session template whose root file
// system is CPS content that clients mount, as internal/e2e does, so cps
// has nodes to shut down.
func seedBOSAndCPS(t *testing.T, emu *csmemu.Emulator) {
	t.Helper()
	nodes := make([]string, computes)
	for i := range nodes {
		nodes[i] = fmt.Sprintf("x1000c0s%db0n0", i)
	}
	nodeList, _ := json.Marshal(nodes)
	template := fmt.Sprintf(`{"name":"cos-cps-2.4","description":"COS computes, CPS root","enable_cfs":true,"cfs":{"configuration":"cos-config-2.4"},
		"boot_sets":{"compute":{"path":"s3://boot-images/cos/manifest.json","type":"s3","etag":"abc","kernel_parameters":"console=ttyS0 root=craycps-s3:s3://boot-images/cos/rootfs",
		"node_list":%s,"rootfs_provider":"cpss3","rootfs_provider_passthrough":"dvs:api-gw-service-nmn.local:300:nmn0"}}}`, nodeList)
	if err := emu.SetSessionTemplateJSON("cos-cps-2.4", []byte(template)); err != nil {
		t.Fatal(err)
	}
	emu.SetCPSContents([]csm.CPSContent{{S3Path: "s3://boot-images/cos/rootfs", Etag: "abc"}})
	emu.SetCPSTransports([]csm.CPSTransport{{ReadyForMount: true}})
}

// waitStatus polls the run's status query until cond holds.
func waitStatus(t *testing.T, tc client.Client, run, what string, cond func(api.RunStatus) bool) api.RunStatus {
	t.Helper()
	deadline := time.Now().Add(3 * time.Minute)
	var st api.RunStatus
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		v, err := tc.QueryWorkflow(ctx, run, "", api.StatusQuery)
		cancel()
		if err == nil && v.Get(&st) == nil && cond(st) {
			return st
		}
		time.Sleep(300 * time.Millisecond)
	}
	data, _ := json.MarshalIndent(st, "", "  ")
	t.Fatalf("timed out waiting for %s; last status:\n%s", what, data)
	return st
}

func gateState(st api.RunStatus, name string) api.GateState {
	for _, s := range st.Services {
		for _, g := range s.Gates {
			if g.Name == name {
				return g.State
			}
		}
	}
	return ""
}
