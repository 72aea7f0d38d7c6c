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
	"syscall"
	"time"

	"github.com/csmops/etcd-repopulate/internal/simcluster"
)

func main() {
	bin := flag.String("bin", "bin", "directory with etcd, kube-apiserver, kube-controller-manager, kwok (make tools)")
	dir := flag.String("dir", ".demo/cluster", "directory for certificates, data, logs and the kubeconfig")
	out := flag.String("kubeconfig-out", "", "file to write the kubeconfig path to when ready")
	delay := flag.Duration("operator-delay", 2*time.Second, "how long the stand-in etcd-operator takes to report a new EtcdCluster Running")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, *bin, *dir, *out, *delay); err != nil {
		fmt.Fprintln(os.Stderr, "simcluster:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, bin, dir, out string, delay time.Duration) error {
	if err := os.RemoveAll(dir); err != nil {
		return err
	}
	c, err := simcluster.Start(ctx, simcluster.Options{BinDir: bin, Dir: dir, Controllers: true})
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
