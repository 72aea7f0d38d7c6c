// Command simcluster runs the simulated CSM control plane for the demo: real
// etcd, kube-apiserver, kube-controller-manager and kwok on loopback, seeded
// like a CSM system, with a stand-in etcd-operator. It writes the kubeconfig
// path to --kubeconfig-out once the system is healthy and runs until SIGTERM.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/csmops/etcd-repopulate/internal/simcluster"
)

func main() {
	bin := flag.String("bin", "bin", "directory with etcd, kube-apiserver, kube-controller-manager, kwok (make tools)")
	dir := flag.String("dir", ".demo/cluster", "directory for certificates, data, logs and the kubeconfig")
	out := flag.String("kubeconfig-out", "", "file to write the kubeconfig path to when ready")
	delay := flag.Duration("operator-delay", 2*time.Second, "how long the stand-in etcd-operator takes to report a new EtcdCluster Running")
	var lat simcluster.Latencies
	flag.DurationVar(&lat.PodReady, "pod-ready-delay", 0, "how long a new pod stays Pending before it is Ready (kwok stage delay; 0: at once)")
	flag.DurationVar(&lat.JobRun, "job-delay", 0, "how long a Job's pod runs once Ready before it completes (0: at once)")
	jobDelays := flag.String("job-delay-for", "", "per-Job run times overriding -job-delay, e.g. cray-fas-loader=8s,cray-reds-init=4s")
	flag.Parse()
	var err error
	if lat.JobRunFor, err = parseJobDelays(*jobDelays); err != nil {
		fmt.Fprintln(os.Stderr, "simcluster: -job-delay-for:", err)
		os.Exit(2)
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, *bin, *dir, *out, *delay, lat); err != nil {
		fmt.Fprintln(os.Stderr, "simcluster:", err)
		os.Exit(1)
	}
}

// parseJobDelays reads "job=duration,job=duration".
func parseJobDelays(list string) (map[string]time.Duration, error) {
	out := map[string]time.Duration{}
	for _, item := range strings.Split(list, ",") {
		if item = strings.TrimSpace(item); item == "" {
			continue
		}
		name, value, ok := strings.Cut(item, "=")
		d, err := time.ParseDuration(value)
		if !ok || name == "" || err != nil || d < 0 {
			return nil, fmt.Errorf("%q is not JOB=DURATION (e.g. cray-fas-loader=8s)", item)
		}
		out[name] = d
	}
	return out, nil
}

func run(ctx context.Context, bin, dir, out string, delay time.Duration, lat simcluster.Latencies) error {
	if err := os.RemoveAll(dir); err != nil {
		return err
	}
	c, err := simcluster.Start(ctx, simcluster.Options{BinDir: bin, Dir: dir, Controllers: true, Latencies: lat})
	if err != nil {
		return err
	}
	defer c.Stop()
	go c.RunEtcdOperator(ctx, delay)
	if err := c.Seed(ctx); err != nil {
		return fmt.Errorf("seed: %w", err)
	}
	fmt.Printf("simulated CSM control plane ready: KUBECONFIG=%s\n", c.Kubeconfig)
	if out != "" {
		if err := os.WriteFile(out, []byte(c.Kubeconfig+"\n"), 0o644); err != nil {
			return err
		}
	}
	<-ctx.Done()
	return nil
}
