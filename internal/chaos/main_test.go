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
	"testing"
	"time"

	"go.temporal.io/sdk/client"

	"github.com/csmops/etcd-repopulate/internal/api"
	"github.com/csmops/etcd-repopulate/internal/config"
	"github.com/csmops/etcd-repopulate/internal/csm"
	"github.com/csmops/etcd-repopulate/internal/csmemu"
	"github.com/csmops/etcd-repopulate/internal/devserver"
	"github.com/csmops/etcd-repopulate/internal/simcluster"
	"github.com/csmops/etcd-repopulate/internal/sshtest"
	"github.com/csmops/etcd-repopulate/internal/testenv"
	"github.com/csmops/etcd-repopulate/internal/workerconfig"
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
	// workerConfig is the configuration every worker of the suite runs with.
	workerConfig config.Config
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
	testenv.Main(m, "chaos", testenv.CSMOptions{Release: api.CSM10, ClientSecret: clientSecret, Computes: computeNodes, RestartDelay: restartDelay},
		func(ctx context.Context, s *testenv.Stack) error {
			scratch, binDir, temporal, cluster, tc, emu, fleet = s.Scratch, s.BinDir, s.Temporal, s.Cluster, s.Client, s.Emu, s.Fleet
			var err error
			if kubeconfig, err = slowKubeconfig(ctx, cluster.Kubeconfig, scratch, apiDelay); err != nil {
				return fmt.Errorf("slow kubeconfig: %w", err)
			}
			if err := seedCPS(); err != nil {
				return err
			}
			workerConfig = chaosConfig(s.System)
			return nil
		})
}

// seedCPS slows the CSM APIs like the API server and gives the first
// cpsNodes a CPS-booted template.
func seedCPS() error {
	emu.Delay("/apis/", apiDelay, -1)
	emu.SetCPSContents([]csm.CPSContent{{S3Path: "s3://boot-images/k/rootfs", Etag: "e1"}})
	emu.SetCPSTransports([]csm.CPSTransport{{ReadyForMount: true}})
	var cps []string
	for i := range cpsNodes {
		cps = append(cps, fmt.Sprintf("x1000c0s%db0n0", i))
	}
	return emu.SetSessionTemplate(csm.SessionTemplate{Name: "cos", BootSets: map[string]csm.BootSet{
		"compute": {Path: "s3://boot-images/k/manifest.json", Type: "s3", RootfsProvider: "cpss3", NodeList: cps},
	}})
}

// chaosConfig is the worker configuration: timeouts short enough that a
// lost worker is noticed in seconds. activityAttempts allows for several
// kills in one step (at its start, in its middle) on top of a transient
// error. The waits' budgets are long: the controller manager stays frozen
// until every mid-wait kill has happened, minutes on a loaded machine, and
// a wait that times out then would fail the run for the test's own
// reasons. CSM 1.0, the release with all nine services, and a site that
// names its FAS loader Job: the Job procedure is the one with kill points.
func chaosConfig(s workerconfig.System) config.Config {
	s.Release = api.CSM10
	c := workerconfig.Short(s, 8*time.Minute)
	c.ActivityAttempts = 8
	h := workerconfig.HMNFD(c)
	h.NCNGroups, h.MaxFailedPercent, h.BatchSize = []string{}, 0, orcaBatch
	cps := workerconfig.CPS(c)
	cps.ShutdownTimeout, cps.BootTimeout = config.Duration(3*time.Minute), config.Duration(3*time.Minute)
	return c
}
