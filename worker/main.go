// Command repopulate-worker runs the etcd-repopulate workflows and the
// activities that carry out the runbook's steps.
package main

import (
	"context"
	"fmt"
	"os"

	"github.com/spf13/cobra"
	"go.uber.org/zap"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"

	"github.com/csmops/etcd-repopulate/activities"
	"github.com/csmops/etcd-repopulate/internal/config"
	"github.com/csmops/etcd-repopulate/internal/logging"
	"github.com/csmops/etcd-repopulate/internal/temporalconn"
	"github.com/csmops/etcd-repopulate/internal/wiring"
	"github.com/csmops/etcd-repopulate/workflows"

	sdkworker "go.temporal.io/sdk/worker"
)

type options struct {
	conn       temporalconn.Options
	kubeconfig string
	context    string
	configFile string
	logLevel   string
	logFormat  string
}

func main() {
	if err := newCommand().Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "repopulate-worker:", err)
		os.Exit(1)
	}
}

func newCommand() *cobra.Command {
	var o options
	cmd := &cobra.Command{
		Use:   "repopulate-worker",
		Short: "Run the etcd-repopulate workflows and activities",
		Long: `repopulate-worker polls a Temporal task queue and carries out the runbook
"Repopulate Data in etcd Clusters When Rebuilding Them": it re-runs the
cray-reds-init and cray-fas-loader Jobs (or the FAS loader API), restarts the
MEDS, REDS and CRUS pods (following CRUS sessions first), re-creates the
External DNS EtcdCluster and restarts the orca daemon on compute nodes and
NCNs over SSH, each step durable and retried.

Kubernetes credentials: --kubeconfig (or KUBECONFIG), else the pod's
in-cluster service account. Names, namespaces, selectors, timeouts, the CSM
API gateway (csm.baseURL, csm.clientSecret) and SSH settings (ssh.config,
ssh.knownHosts) come from --config (YAML, docs/configuration.md); without it
the runbook's (CSM 1.0) defaults apply. Secrets are read by the worker and
never enter workflow history.
Stops gracefully on SIGINT or SIGTERM.`,
		Args:          cobra.NoArgs,
		SilenceUsage:  true,
		SilenceErrors: true,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return run(cmd.Context(), o)
		},
	}
	o.conn.AddFlags(cmd.Flags())
	cmd.Flags().StringVar(&o.kubeconfig, "kubeconfig", "", "kubeconfig file (default: $KUBECONFIG, else in-cluster config)")
	cmd.Flags().StringVar(&o.context, "context", "", "kubeconfig context (default: the file's current context)")
	cmd.Flags().StringVar(&o.configFile, "config", "", "YAML configuration file (default: the runbook's names and timeouts)")
	cmd.Flags().StringVar(&o.logLevel, "log-level", "info", "debug, info, warn or error")
	cmd.Flags().StringVar(&o.logFormat, "log-format", "json", "json (production) or console")
	return cmd
}

func run(ctx context.Context, o options) error {
	log, err := logging.New(os.Stderr, o.logLevel, o.logFormat)
	if err != nil {
		return err
	}
	defer func() { _ = log.Sync() }()

	cfg, err := config.Load(o.configFile)
	if err != nil {
		return err
	}
	restConfig, err := wiring.KubeConfig(o.kubeconfig, o.context)
	if err != nil {
		return err
	}
	core, err := kubernetes.NewForConfig(restConfig)
	if err != nil {
		return fmt.Errorf("kubernetes client: %w", err)
	}
	dyn, err := dynamic.NewForConfig(restConfig)
	if err != nil {
		return fmt.Errorf("kubernetes dynamic client: %w", err)
	}
	if v, err := core.Discovery().ServerVersion(); err != nil {
		// Not fatal: runs fail their preflight with the reason, and the
		// worker picks up once the API server is back.
		log.Warn("kubernetes API server not reachable now", zap.String("host", restConfig.Host), zap.Error(err))
	} else {
		log.Info("kubernetes API server", zap.String("host", restConfig.Host), zap.String("version", v.GitVersion))
	}

	tlog := logging.NewTemporal(log)
	c, err := o.conn.Dial(ctx, tlog)
	if err != nil {
		return err
	}
	defer c.Close()

	w := sdkworker.New(c, o.conn.TaskQueue, sdkworker.Options{})
	workflows.Register(w)
	w.RegisterActivity(&activities.Kube{Config: cfg, Core: core, Dynamic: dyn})
	csmActs := &activities.CSM{}
	csmActs.Client, csmActs.ClientErr = wiring.CSMClient(cfg.CSM, core)
	if csmActs.ClientErr != nil {
		log.Warn("CSM API client unusable; runs of hmnfd, crus and fas (API) will fail their preflight", zap.Error(csmActs.ClientErr))
	}
	csmActs.SSH, csmActs.SSHErr = wiring.SSHRunner(cfg.SSH)
	if csmActs.SSHErr != nil {
		log.Warn("SSH to nodes unusable; runs of hmnfd will fail their preflight", zap.Error(csmActs.SSHErr))
	} else {
		defer csmActs.SSH.Close()
	}
	w.RegisterActivity(csmActs)

	log.Info("worker started", zap.String("address", o.conn.Address), zap.String("namespace", o.conn.Namespace), zap.String("taskQueue", o.conn.TaskQueue))
	if err := w.Run(sdkworker.InterruptCh()); err != nil {
		return fmt.Errorf("worker: %w", err)
	}
	log.Info("worker stopped")
	return nil
}
