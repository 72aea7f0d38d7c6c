package telemetry_test

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/worker"
	"go.uber.org/zap"

	"github.com/csmops/etcd-repopulate/internal/logging"
	"github.com/csmops/etcd-repopulate/internal/telemetry"
	"github.com/csmops/etcd-repopulate/internal/testenv"
)

// TestHealthAndMetrics: /healthz follows the worker's start and a real
// Temporal server going away; /metrics carries the SDK's metrics.
func TestHealthAndMetrics(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	srv, err := testenv.Temporal(ctx, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Stop)

	metrics := telemetry.NewMetrics(100 * time.Millisecond)
	defer metrics.Close()
	health := telemetry.NewHealth()
	hs, err := telemetry.Serve("127.0.0.1:0", health, metrics, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	defer hs.Shutdown(context.Background())
	base := "http://" + hs.Addr()

	if code, body := get(t, base+"/healthz"); code != http.StatusServiceUnavailable || body != "not ready: worker not started\n" {
		t.Fatalf("before start: %d %q", code, body)
	}

	c, err := client.Dial(client.Options{HostPort: srv.Address, MetricsHandler: metrics.Handler, Logger: logging.NewTemporal(zap.NewNop())})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	w := worker.New(c, "telemetry-test", worker.Options{})
	w.RegisterActivityWithOptions(func(context.Context) error { return nil }, activity.RegisterOptions{Name: "noop"})
	if err := w.Start(); err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	health.Ready(func(ctx context.Context) error {
		_, err := c.CheckHealth(ctx, &client.CheckHealthRequest{})
		return err
	})

	if code, body := get(t, base+"/healthz"); code != http.StatusOK || body != "ok\n" {
		t.Fatalf("started: %d %q", code, body)
	}
	waitFor(t, 10*time.Second, func() (bool, string) {
		_, body := get(t, base+"/metrics")
		return strings.Contains(body, "temporal_worker_start_total{") && strings.Contains(body, `task_queue="telemetry-test"`), body
	})

	srv.Stop()
	waitFor(t, 15*time.Second, func() (bool, string) {
		code, body := get(t, base+"/healthz")
		return code == http.StatusServiceUnavailable && strings.HasPrefix(body, "not ready: temporal server not answering: "), body
	})
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

func waitFor(t *testing.T, limit time.Duration, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for {
		ok, last := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("not after %v; last answer:\n%s", limit, last)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
