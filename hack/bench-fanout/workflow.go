package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"time"

	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/log"
	sdkworker "go.temporal.io/sdk/worker"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	k8slabels "k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/csmops/etcd-repopulate/activities"
	"github.com/csmops/etcd-repopulate/internal/api"
	"github.com/csmops/etcd-repopulate/internal/config"
	"github.com/csmops/etcd-repopulate/internal/csm"
	"github.com/csmops/etcd-repopulate/internal/csmemu"
	"github.com/csmops/etcd-repopulate/internal/devserver"
	"github.com/csmops/etcd-repopulate/internal/wiring"
	"github.com/csmops/etcd-repopulate/procedures/orca"
	"github.com/csmops/etcd-repopulate/workflows"
)

// workflowBench runs the HMNFD service through Temporal: a dev server, the
// CSM emulator listing the fleet's nodes as Ready computes, and a worker in
// this process, so RUSAGE_SELF covers the workflow, the activities and the
// fan-out (the dev server's own CPU is reported apart).
type workflowBench struct {
	server *devserver.Server
	emu    *csmemu.Emulator
	client client.Client
	worker sdkworker.Worker
}

func startWorkflowBench(ctx context.Context, dir string, f fleet, nodes, width, batch int, connectTimeout time.Duration) (*workflowBench, error) {
	b := &workflowBench{}
	var err error
	if b.server, err = devserver.Start(ctx, filepath.Join("bin", "temporal"), filepath.Join(dir, "temporal.db"), 0, 0); err != nil {
		return nil, err
	}
	b.emu = csmemu.New(csmemu.Options{Components: csmemu.ComputeNodes(nodes)})
	base, err := b.emu.Start(false)
	if err != nil {
		return nil, err
	}
	// Orca's re-subscription is not what is measured: subscribe everyone.
	b.emu.SubscribeReadyCompute()
	cfg := config.Default()
	// The emulator serves one release; release detection would need the
	// product catalog (Kubernetes), which this bench does not run.
	cfg.Release = csmemu.DefaultRelease
	hmnfd := config.SettingsOf[*orca.HMNFDSettings](cfg, api.HMNFD)
	// No NCNs: [] (null would be the release's NCN groups).
	hmnfd.NCNGroups, hmnfd.BatchSize = []string{}, batch
	cfg.SSH = config.SSH{Config: f.configFile(), KnownHosts: []string{f.knownHosts()}, Concurrency: width,
		ConnectTimeout: config.Duration(connectTimeout), CommandTimeout: config.Duration(2 * time.Minute)}
	csmClient, err := csm.New(csm.Config{BaseURL: base, Secret: csm.SecretValue(csmemu.DefaultClientSecret)})
	if err != nil {
		return nil, err
	}
	runner, err := wiring.SSHRunner(cfg.SSH)
	if err != nil {
		return nil, err
	}
	if b.client, err = client.Dial(client.Options{HostPort: b.server.Address, Logger: log.NewStructuredLogger(slog.New(slog.NewTextHandler(io.Discard, nil)))}); err != nil {
		return nil, err
	}
	b.worker = sdkworker.New(b.client, api.TaskQueue, sdkworker.Options{})
	workflows.Register(b.worker)
	kube, err := hmnfdKube(hmnfd.Pods.PodSet())
	if err != nil {
		return nil, err
	}
	workflows.RegisterActivities(b.worker, workflows.Workers{Config: cfg, Kube: kube, CSM: &activities.CSM{Client: csmClient, SSH: runner}})
	return b, b.worker.Start()
}

// hmnfdKube is the Kubernetes API the HMNFD run's preflight reads: HMNFD's
// namespace with one running pod its selector matches. The emulated HMNFD
// reports ready, so the run never restarts it; the Kubernetes side is not
// what this benchmark measures, so client-go's fake clientset stands in.
func hmnfdKube(pods api.PodSet) (*activities.Kube, error) {
	labels, err := k8slabels.ConvertSelectorToLabelsMap(pods.Selector)
	if err != nil {
		return nil, fmt.Errorf("HMNFD pod selector %q: %w", pods.Selector, err)
	}
	core := fake.NewSimpleClientset(
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: pods.Namespace}},
		&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "cray-hmnfd-0", Namespace: pods.Namespace, Labels: labels},
			Status: corev1.PodStatus{Phase: corev1.PodRunning, Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}}}})
	return &activities.Kube{Core: core}, nil
}

// run starts one HMNFD run and waits for its report.
func (b *workflowBench) run(ctx context.Context, id string) (string, error) {
	run, err := b.client.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: id, TaskQueue: api.TaskQueue}, api.RepopulateWorkflow, api.Request{Services: []string{"hmnfd"}})
	if err != nil {
		return "", err
	}
	var report api.Report
	if err := run.Get(ctx, &report); err != nil {
		if childErr := b.client.GetWorkflow(ctx, api.ServiceWorkflowID(id, api.HMNFD), "").Get(ctx, nil); childErr != nil {
			return "", fmt.Errorf("%w; the hmnfd run: %v", err, childErr)
		}
		return "", err
	}
	h := report.Services[0]
	if h.Nodes == nil {
		return "", fmt.Errorf("no node counts in the report: %s", h.Message)
	}
	events := 0
	iter := b.client.GetWorkflowHistory(ctx, api.ServiceWorkflowID(id, api.HMNFD), "", false, 0)
	for iter.HasNext() {
		if _, err := iter.Next(); err != nil {
			return "", err
		}
		events++
	}
	return fmt.Sprintf("%d ok, %d failed, %d unreachable; child history %d events (%.1f per 100 nodes)",
		h.Nodes.OK, h.Nodes.Failed, h.Nodes.Unreachable, events, float64(events)*100/float64(h.Nodes.Total)), nil
}

func (b *workflowBench) stop() {
	if b.worker != nil {
		b.worker.Stop()
	}
	if b.client != nil {
		b.client.Close()
	}
	if b.emu != nil {
		_ = b.emu.Close()
	}
	if b.server != nil {
		b.server.Stop()
	}
}
