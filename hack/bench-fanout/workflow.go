package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"syscall"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	historypb "go.temporal.io/api/history/v1"

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
	"github.com/csmops/etcd-repopulate/internal/temporalconn"
	"github.com/csmops/etcd-repopulate/internal/wiring"
	"github.com/csmops/etcd-repopulate/procedures/orca"
	"github.com/csmops/etcd-repopulate/workflows"
)

// workflowBench runs the HMNFD service through Temporal: a dev server and
// the CSM emulator listing the fleet's nodes as Ready computes in this
// process, and the worker in a child process (startChild), so that the
// worker's CPU and peak RSS are that child's wait4 rusage. The dev
// server's and the emulator's CPU are reported apart: on a real system
// they run elsewhere.
type workflowBench struct {
	server *devserver.Server
	emu    *csmemu.Emulator
	client client.Client
	spec   childSpec
}

// temporalBinary is the Temporal CLI that runs the dev server.
var temporalBinary = filepath.Join("bin", "temporal")

func startWorkflowBench(ctx context.Context, dir string, f fleet, nodes, width, batch int, connectTimeout time.Duration) (*workflowBench, error) {
	b := &workflowBench{}
	var err error
	if b.server, err = devserver.Start(ctx, temporalBinary, filepath.Join(dir, "temporal.db"), 0, 0); err != nil {
		return b, err
	}
	b.emu = csmemu.New(csmemu.Options{Components: csmemu.ComputeNodes(nodes)})
	base, err := b.emu.Start(false)
	if err != nil {
		return b, err
	}
	// Orca's re-subscription is not what is measured: subscribe everyone.
	b.emu.SubscribeReadyCompute()
	if b.client, err = client.Dial(client.Options{HostPort: b.server.Address, Logger: quietLogger()}); err != nil {
		return b, err
	}
	b.spec = childSpec{Tool: "worker", ConfigFile: f.configFile(), KnownHosts: f.knownHosts(), Width: width, ConnectTimeout: connectTimeout,
		Temporal: b.server.Address, CSMURL: base, Batch: batch}
	return b, nil
}

func quietLogger() log.Logger {
	return log.NewStructuredLogger(slog.New(slog.NewTextHandler(io.Discard, nil)))
}

// startWorker is the worker child's body: the product's HMNFD worker
// against the parent's dev server and emulator. It returns a stop func.
func startWorker(spec childSpec) (func(), error) {
	cfg := config.Default()
	// The emulator serves one release; release detection would need the
	// product catalog (Kubernetes), which this bench does not run.
	cfg.Release = csmemu.DefaultRelease
	hmnfd := config.SettingsOf[*orca.HMNFDSettings](cfg, api.HMNFD)
	// No NCNs: [] (null would be the release's NCN groups).
	hmnfd.NCNGroups, hmnfd.BatchSize = []string{}, spec.Batch
	cfg.SSH = config.SSH{Config: spec.ConfigFile, KnownHosts: []string{spec.KnownHosts}, Concurrency: spec.Width,
		ConnectTimeout: config.Duration(spec.ConnectTimeout), CommandTimeout: config.Duration(2 * time.Minute)}
	csmClient, err := csm.New(csm.Config{BaseURL: spec.CSMURL, Secret: csm.SecretValue(csmemu.DefaultClientSecret)})
	if err != nil {
		return nil, err
	}
	runner, err := wiring.SSHRunner(cfg.SSH)
	if err != nil {
		return nil, err
	}
	c, err := client.Dial(client.Options{HostPort: spec.Temporal, Logger: quietLogger()})
	if err != nil {
		return nil, err
	}
	w := sdkworker.New(c, api.TaskQueue, sdkworker.Options{})
	workflows.Register(w)
	kube, err := hmnfdKube(hmnfd.Pods.PodSet())
	if err != nil {
		c.Close()
		return nil, err
	}
	workflows.RegisterActivities(w, workflows.Workers{Config: cfg, Kube: kube, CSM: &activities.CSM{Client: csmClient, SSH: runner}})
	if err := w.Start(); err != nil {
		c.Close()
		return nil, err
	}
	return func() { w.Stop(); runner.Close(); c.Close() }, nil
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

// run starts the worker child, makes one HMNFD run, stops the worker and
// reads both workflows' histories from the dev server: the events of the
// hmnfd child per 100 nodes and where the run's wall went.
func (b *workflowBench) run(ctx context.Context, id string) (toolRun, error) {
	var tr toolRun
	c, err := startChild(b.spec)
	if err != nil {
		return tr, err
	}
	if _, err := c.report(); err != nil {
		c.kill()
		return tr, fmt.Errorf("worker child: %w", err)
	}
	// A real worker is long running: start the run once this one polls,
	// so that its first task does not wait for the pollers to connect.
	if err := b.waitPolling(ctx); err != nil {
		c.kill()
		return tr, err
	}
	dev0, err := procCPU(b.server.PID())
	if err != nil {
		c.kill()
		return tr, err
	}
	self0 := rusage(syscall.RUSAGE_SELF)
	start := time.Now()
	report, err := b.execute(ctx, id)
	tr.wall = time.Since(start)
	self1 := rusage(syscall.RUSAGE_SELF)
	dev1, devErr := procCPU(b.server.PID())
	if err != nil {
		c.kill()
		return tr, err
	}
	if _, tr.usage, err = c.finish(); err != nil {
		return tr, fmt.Errorf("worker child: %w", err)
	}
	if devErr != nil {
		return tr, devErr
	}
	h := report.Services[0]
	if h.Nodes == nil {
		return tr, fmt.Errorf("no node counts in the report: %s", h.Message)
	}
	parent, err := b.history(ctx, id)
	if err != nil {
		return tr, err
	}
	hmnfd, err := b.history(ctx, api.ServiceWorkflowID(id, api.HMNFD))
	if err != nil {
		return tr, err
	}
	tr.events = len(hmnfd)
	tr.note = fmt.Sprintf("%d ok, %d failed, %d unreachable; hmnfd child history %d events (%.1f per 100 nodes); outside the worker: dev server CPU %.2fs, emulator+bench CPU %.2fs",
		h.Nodes.OK, h.Nodes.Failed, h.Nodes.Unreachable, len(hmnfd), float64(len(hmnfd))*100/float64(h.Nodes.Total), (dev1 - dev0).Seconds(), (self1 - self0).Seconds())
	ph, hh := readHistory(parent), readHistory(hmnfd)
	first, last, ok := hh.span(api.ActivityRestartOrca)
	if !ok {
		return tr, fmt.Errorf("the hmnfd child's history has no closed %s activity", api.ActivityRestartOrca)
	}
	tr.fanout = last.Sub(first)
	tr.breakdown = []string{
		fmt.Sprintf("ExecuteWorkflow to result %.2fs = %.2fs to the first %s scheduled + %.2fs of %s (first scheduled to last closed) + %.2fs to the result; %d workflow tasks took %.2fs scheduled to completed, %d step-progress signals",
			tr.wall.Seconds(), first.Sub(start).Seconds(), api.ActivityRestartOrca, tr.fanout.Seconds(), api.ActivityRestartOrca, start.Add(tr.wall).Sub(last).Seconds(),
			ph.tasks+hh.tasks, (ph.taskTotal + hh.taskTotal).Seconds(), ph.count("signal ")+hh.count("signal ")),
		"parent " + ph.String(),
		"hmnfd child " + hh.String(),
	}
	return tr, nil
}

// waitPolling waits until the server has seen the worker poll both kinds
// of task of the queue.
func (b *workflowBench) waitPolling(ctx context.Context) error {
	deadline := time.Now().Add(time.Minute)
	for {
		polling := 0
		for _, kind := range []enumspb.TaskQueueType{enumspb.TASK_QUEUE_TYPE_WORKFLOW, enumspb.TASK_QUEUE_TYPE_ACTIVITY} {
			if d, err := b.client.DescribeTaskQueue(ctx, api.TaskQueue, kind); err == nil && len(d.GetPollers()) > 0 {
				polling++
			}
		}
		if polling == 2 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the worker child does not poll task queue %s after a minute", api.TaskQueue)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func (b *workflowBench) execute(ctx context.Context, id string) (api.Report, error) {
	var report api.Report
	run, err := b.client.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: id, TaskQueue: api.TaskQueue}, api.RepopulateWorkflow, api.Request{Services: []string{"hmnfd"}})
	if err != nil {
		return report, err
	}
	if err := run.Get(ctx, &report); err != nil {
		if childErr := b.client.GetWorkflow(ctx, api.ServiceWorkflowID(id, api.HMNFD), "").Get(ctx, nil); childErr != nil {
			return report, fmt.Errorf("%w; the hmnfd run: %v", err, childErr)
		}
		return report, err
	}
	return report, nil
}

// history reads one execution's events.
func (b *workflowBench) history(ctx context.Context, id string) ([]*historypb.HistoryEvent, error) {
	return temporalconn.History(ctx, b.client, id)
}

func (b *workflowBench) stop() {
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
