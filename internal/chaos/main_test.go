// Package chaos kills the real repopulate-worker with SIGKILL at every step
// boundary and in the middle of long steps, restarts the Temporal dev
// server mid-run, and checks, against the API server, the CSM emulator and
// the sshd fleet rather than the tool's own report, that nothing was lost
// and no destructive step was done twice.
//
// REPOPULATE_CHAOS=reduced (the default, run by make test) or full (make
// chaos); see docs/chaos.md.
package chaos

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"go.temporal.io/sdk/client"

	"github.com/csmops/etcd-repopulate/internal/api"
	"github.com/csmops/etcd-repopulate/internal/csm"
	"github.com/csmops/etcd-repopulate/internal/csmemu"
	"github.com/csmops/etcd-repopulate/internal/devserver"
	"github.com/csmops/etcd-repopulate/internal/simcluster"
	"github.com/csmops/etcd-repopulate/internal/sshtest"
	"github.com/csmops/etcd-repopulate/internal/testenv"
)

var (
	mode     string
	scratch  string
	binDir   string
	temporal *devserver.Server
	cluster  *simcluster.Cluster
	tc       client.Client
	emu      *csmemu.Emulator
	fleet    *sshtest.Fleet
	config   string
	// kubeconfig is the worker's: through a proxy that slows every request.
	kubeconfig string
)

// The simulated system: computeNodes in HSM, each behind a real sshd whose
// stand-in orca restart takes restartDelay, restarted in batches of
// orcaBatch; the first cpsNodes boot their root file system from CPS.
const (
	computeNodes = 24
	orcaBatch    = 8
	restartDelay = 2 * time.Second
	cpsNodes     = 4
	clientSecret = "chaos-client-secret-3b9e"
)

func TestMain(m *testing.M) {
	switch mode = os.Getenv("REPOPULATE_CHAOS"); mode {
	case "":
		mode = "reduced"
	case "reduced", "full":
	default:
		testenv.Fatalf("REPOPULATE_CHAOS=%q: want reduced or full", mode)
	}
	ctx, cancel := context.WithCancel(context.Background())
	scratch = testenv.KeepDir("chaos-")
	binDir = filepath.Join(scratch, "bin")
	if _, _, err := testenv.BuildCommands(binDir); err != nil {
		testenv.Fatalf("%v", err)
	}
	var err error
	if temporal, err = testenv.Temporal(ctx, scratch); err != nil {
		testenv.Fatalf("%v", err)
	}
	if cluster, err = testenv.Cluster(ctx, filepath.Join(scratch, "cluster"), true); err != nil {
		testenv.Fatalf("start the real control plane: %v", err)
	}
	if tc, err = client.Dial(client.Options{HostPort: temporal.Address}); err != nil {
		testenv.Fatalf("dial temporal: %v", err)
	}
	if kubeconfig, err = slowKubeconfig(ctx, cluster.Kubeconfig, scratch, apiDelay); err != nil {
		testenv.Fatalf("slow kubeconfig: %v", err)
	}
	if err := startCSM(ctx); err != nil {
		testenv.Fatalf("%v", err)
	}
	code := m.Run()
	fleet.Stop()
	_ = emu.Close()
	tc.Close()
	cancel()
	cluster.Stop()
	temporal.Stop()
	if code == 0 {
		os.RemoveAll(scratch)
	} else {
		fmt.Fprintf(os.Stderr, "chaos: logs kept in %s\n", scratch)
	}
	os.Exit(code)
}

// startCSM starts the CSM API emulator with a CPS-booted template and the
// sshd fleet, and writes the worker configuration: timeouts short enough
// that a lost worker is noticed in seconds.
func startCSM(ctx context.Context) error {
	emu = csmemu.New(csmemu.Options{Release: api.CSM10, ClientSecret: clientSecret, Components: csmemu.ComputeNodes(computeNodes)})
	base, err := emu.Start(true)
	if err != nil {
		return err
	}
	ca, err := emu.CAFile(scratch)
	if err != nil {
		return err
	}
	emu.Delay("/apis/", apiDelay, -1)
	emu.SetCPSContents([]csm.CPSContent{{S3Path: "s3://boot-images/k/rootfs", Etag: "e1"}})
	emu.SetCPSTransports([]csm.CPSTransport{{ReadyForMount: true}})
	var cps []string
	for i := range cpsNodes {
		cps = append(cps, fmt.Sprintf("x1000c0s%db0n0", i))
	}
	if err := emu.SetSessionTemplate(csm.SessionTemplate{Name: "cos", BootSets: map[string]csm.BootSet{
		"compute": {Path: "s3://boot-images/k/manifest.json", Type: "s3", RootfsProvider: "cpss3", NodeList: cps},
	}}); err != nil {
		return err
	}
	fleet, err = sshtest.Start(ctx, sshtest.Options{Dir: filepath.Join(scratch, "fleet"), Nodes: computeNodes, RestartDelay: restartDelay})
	if err != nil {
		return err
	}
	secretFile := filepath.Join(scratch, "client-secret")
	if err := os.WriteFile(secretFile, []byte(clientSecret+"\n"), 0o600); err != nil {
		return err
	}
	go testenv.OrcaResubscribes(ctx, emu, fleet)
	// activityAttempts allows for several kills in one step (at its start,
	// in its middle) on top of a transient error. The waits' budgets are
	// long: the controller manager stays frozen until every mid-wait kill
	// has happened, minutes on a loaded machine, and a wait that times out
	// then would fail the run for the test's own reasons.
	// CSM 1.0, the release with all nine services, and a site that names
	// its FAS loader Job: the Job procedure is the one with kill points.
	config = fmt.Sprintf(`release: csm-1.0
pollInterval: 300ms
heartbeatTimeout: 4s
deleteTimeout: 1m
activityAttempts: 8
csm:
  baseURL: %s
  timeout: 1200ms # under a third of heartbeatTimeout (config refuses more)
  caBundle: %s
  clientSecret: {file: %s}
ssh:
  config: %s
  knownHosts: [%s]
  concurrency: 64
  connectTimeout: 5s
  commandTimeout: 30s
services:
  bss: {completeTimeout: 8m}
  fas: {job: cray-fas-loader, completeTimeout: 8m}
  meds: {readyTimeout: 8m}
  reds: {readyTimeout: 8m}
  crus: {readyTimeout: 8m, sessionPoll: 200ms, stuckAfter: 2s}
  externaldns: {runningTimeout: 8m}
  hmnfd: {ncnGroups: [], maxFailedPercent: 0, verifyTimeout: 1m, batchSize: %d}
  cps: {shutdownTimeout: 3m, bootTimeout: 3m}
`, base, ca, secretFile, fleet.ConfigFile, fleet.KnownHosts, orcaBatch)
	return nil
}
