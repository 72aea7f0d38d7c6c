// Command repopulate-worker runs the etcd-repopulate workflows and the
// activities that carry out the runbook's steps.
package main

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/spf13/cobra"
	"go.temporal.io/sdk/client"
	"go.uber.org/zap"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"

	"github.com/csmops/etcd-repopulate/activities"
	"github.com/csmops/etcd-repopulate/internal/catalog"
	"github.com/csmops/etcd-repopulate/internal/config"
	"github.com/csmops/etcd-repopulate/internal/logging"
	"github.com/csmops/etcd-repopulate/internal/telemetry"
	"github.com/csmops/etcd-repopulate/internal/temporalconn"
	"github.com/csmops/etcd-repopulate/internal/wiring"
	"github.com/csmops/etcd-repopulate/workflows"

	sdkworker "go.temporal.io/sdk/worker"
)

type options struct {
	conn        temporalconn.Options
	httpAddress string
	kubeconfig  string
	context     string
	configFile  string
	logLevel    string
	logFormat   string
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
"Repopulate Data in etcd Clusters When Rebuilding Them" for the CSM release it
detects (release: auto) or is given (services a release lacks are skipped),
each step durable and retried:

` + catalog.ServicesHelp() + `

Kubernetes credentials: --kubeconfig (or KUBECONFIG), else the pod's
in-cluster service account. Names, namespaces, selectors, timeouts, the CSM
API gateway (csm.baseURL, csm.clientSecret) and SSH settings (ssh.config,
ssh.knownHosts) come from --config (YAML, docs/configuration.md); without it
the defaults apply (docs/configuration.md, docs/csm-releases.md). Secrets are read by the worker and
never enter workflow history.
Temporal TLS and mTLS: --tls, --tls-ca, --tls-cert/--tls-key,
--tls-server-name, --api-key (docs/production-temporal.md).
--http-address serves GET /healthz (200 once the worker has started and
Temporal answers, else 503 and the reason) and GET /metrics (Prometheus,
the Temporal SDK's metrics). Stops gracefully on SIGINT or SIGTERM.`,
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
	cmd.Flags().StringVar(&o.httpAddress, "http-address", ":8080", "listen address for GET /healthz and /metrics; empty disables")
	return cmd
}

func run(ctx context.Context, o options) error {
	log, err := logging.New(os.Stderr, o.logLevel, o.logFormat)
	if err != nil {
		return err
	}
	defer func() { _ = log.Sync() }()

	// Bad input (TLS files, configuration, kubeconfig) is reported before
	// anything listens or dials.
	if err := o.conn.Validate(); err != nil {
		return err
	}
	cfg, err := config.Load(o.configFile)
	if err != nil {
		return err
	}
	restConfig, err := wiring.KubeConfig(o.kubeconfig, o.context)
	if err != nil {
		return err
	}
	health := telemetry.NewHealth()
	if o.httpAddress != "" {
		// Started before connecting, so probes get "worker not started"
		// rather than no answer while the worker connects.
		metrics := telemetry.NewMetrics(time.Second)
		defer metrics.Close()
		o.conn.MetricsHandler = metrics.Handler
		srv, err := telemetry.Serve(o.httpAddress, health, metrics, log)
		if err != nil {
			return err
		}
		defer func() {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_ = srv.Shutdown(ctx)
		}()
		log.Info("serving /healthz and /metrics", zap.String("address", srv.Addr()))
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

	fatal := make(chan error, 1)
	w := sdkworker.New(c, o.conn.TaskQueue, sdkworker.Options{
		// The SDK sends heartbeat details at most every 0.8 heartbeatTimeout
		// by default (24 s at 30 s). A RestartOrca batch retried after a
		// worker is lost redoes the nodes its last sent details lack, and
		// several batches run at once: details sent each second keep that
		// to about the nodes in flight.
		MaxHeartbeatThrottleInterval: time.Second,
		OnFatalError: func(err error) {
			select {
			case fatal <- err:
			default: // the first one is enough to stop
			}
		},
	})
	kubeActs := &activities.Kube{Core: core, Dynamic: dyn}
	for _, w := range cfg.Warnings {
		log.Warn("config file: " + w)
	}
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
	workflows.Register(w)
	workflows.RegisterActivities(w, workflows.Workers{Config: cfg, Kube: kubeActs, CSM: csmActs})

	if err := w.Start(); err != nil {
		return fmt.Errorf("worker: %w", err)
	}
	health.Ready(func(ctx context.Context) error {
		_, err := c.CheckHealth(ctx, &client.CheckHealthRequest{})
		return err
	})
	log.Info("worker started", zap.String("address", o.conn.Address), zap.String("namespace", o.conn.Namespace),
		zap.String("taskQueue", o.conn.TaskQueue), zap.Bool("tls", o.conn.TLSEnabled()), zap.Bool("mTLS", o.conn.TLSCert != ""))
	var runErr error
	select {
	case s := <-sdkworker.InterruptCh():
		log.Info("stopping", zap.Any("signal", s))
	case err := <-fatal:
		runErr = fmt.Errorf("worker: %w", err)
	}
	health.NotReady("worker stopping")
	w.Stop()
	log.Info("worker stopped")
	return runErr
}
