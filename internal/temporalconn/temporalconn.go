// Package temporalconn holds the Temporal connection flags both binaries
// share and dials with an error that says what to do when nobody answers.
package temporalconn

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/spf13/pflag"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/log"

	"github.com/csmops/etcd-repopulate/internal/api"
)

// Options are the connection settings.
type Options struct {
	Address   string
	Namespace string
	TaskQueue string
	// DialTimeout bounds the first contact with the frontend.
	DialTimeout time.Duration
}

// AddFlags registers --address, --namespace, --task-queue and --dial-timeout,
// with defaults from TEMPORAL_ADDRESS and TEMPORAL_NAMESPACE.
func (o *Options) AddFlags(fs *pflag.FlagSet) {
	fs.StringVar(&o.Address, "address", envOr("TEMPORAL_ADDRESS", "127.0.0.1:7233"), "Temporal frontend host:port (env TEMPORAL_ADDRESS)")
	fs.StringVar(&o.Namespace, "namespace", envOr("TEMPORAL_NAMESPACE", "default"), "Temporal namespace (env TEMPORAL_NAMESPACE)")
	fs.StringVar(&o.TaskQueue, "task-queue", api.TaskQueue, "task queue the worker polls")
	fs.DurationVar(&o.DialTimeout, "dial-timeout", 10*time.Second, "how long to try reaching the Temporal frontend")
}

// Dial connects and checks that the frontend answers.
func (o Options) Dial(ctx context.Context, logger log.Logger) (client.Client, error) {
	ctx, cancel := context.WithTimeout(ctx, o.DialTimeout)
	defer cancel()
	c, err := client.DialContext(ctx, client.Options{HostPort: o.Address, Namespace: o.Namespace, Logger: logger})
	if err != nil {
		return nil, fmt.Errorf("cannot reach the Temporal server at %s (namespace %q): %v\n"+
			"start one (make demo starts a local dev server) or point --address / TEMPORAL_ADDRESS at it", o.Address, o.Namespace, err)
	}
	return c, nil
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}
