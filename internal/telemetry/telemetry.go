// Package telemetry is the worker's HTTP endpoint: GET /healthz for
// Kubernetes probes and GET /metrics for Prometheus, fed by the Temporal
// SDK's own metrics (polls, task latencies, failures, worker starts).
package telemetry

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"time"
	"unicode"

	prom "github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/uber-go/tally/v4"
	tallyprom "github.com/uber-go/tally/v4/prometheus"
	"go.temporal.io/sdk/client"
	contribtally "go.temporal.io/sdk/contrib/tally"
	"go.uber.org/zap"
)

// Metrics collects the SDK's metrics in a Prometheus registry of its own
// (with the Go runtime and process collectors).
type Metrics struct {
	// Handler goes into client.Options.MetricsHandler.
	Handler client.MetricsHandler
	http    http.Handler
	scope   io.Closer
}

// NewMetrics builds the registry. flush is how often the SDK's counters
// reach the registry (tally reports on an interval).
func NewMetrics(flush time.Duration) *Metrics {
	reg := prom.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	// Histograms, not tally's default summaries: they add up across workers.
	reporter := tallyprom.NewReporter(tallyprom.Options{Registerer: reg, DefaultTimerType: tallyprom.HistogramTimerType})
	// Prometheus names and label keys allow [a-zA-Z0-9_]; label values allow
	// anything, so values are kept as they are (the contrib's options would
	// report task queue etcd-repopulate as etcd_repopulate).
	sanitize := contribtally.PrometheusSanitizeOptions
	sanitize.ValueCharacters = tally.ValidCharacters{Ranges: []tally.SanitizeRange{{0, unicode.MaxRune}}}
	scope, closer := tally.NewRootScope(tally.ScopeOptions{
		CachedReporter:  reporter,
		Separator:       "_",
		SanitizeOptions: &sanitize,
	}, flush)
	return &Metrics{
		// The naming scope adds _total and _seconds, as Temporal's other SDKs
		// name the same metrics.
		Handler: contribtally.NewMetricsHandler(contribtally.NewPrometheusNamingScope(scope)),
		http:    promhttp.HandlerFor(reg, promhttp.HandlerOpts{}),
		scope:   closer,
	}
}

// Close flushes and stops the reporting loop.
func (m *Metrics) Close() error { return m.scope.Close() }

// Health is the worker's readiness: not ready until the worker has started,
// then ready while its Temporal connection answers.
type Health struct {
	// Timeout bounds one check of the connection; CacheFor is how long its
	// answer is reused, so frequent probes do not each cost a round trip.
	Timeout, CacheFor time.Duration

	mu      sync.Mutex
	check   func(context.Context) error
	reason  string
	checked time.Time
	last    error
}

// NewHealth is not ready ("worker not started").
func NewHealth() *Health {
	return &Health{Timeout: 2 * time.Second, CacheFor: time.Second, reason: "worker not started"}
}

// Ready marks the worker started; check tells whether Temporal answers.
func (h *Health) Ready(check func(context.Context) error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.check, h.checked = check, time.Time{}
}

// NotReady marks the worker not ready for reason (e.g. stopping).
func (h *Health) NotReady(reason string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.check, h.reason = nil, reason
}

// Err is nil when ready, else why not.
func (h *Health) Err(ctx context.Context) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.check == nil {
		return errors.New(h.reason)
	}
	if time.Since(h.checked) < h.CacheFor {
		return h.last
	}
	ctx, cancel := context.WithTimeout(ctx, h.Timeout)
	defer cancel()
	if err := h.check(ctx); err != nil {
		h.last = fmt.Errorf("temporal server not answering: %w", err)
	} else {
		h.last = nil
	}
	h.checked = time.Now()
	return h.last
}

// ServeHTTP answers 200 "ok" or 503 with the reason.
func (h *Health) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	if err := h.Err(r.Context()); err != nil {
		w.WriteHeader(http.StatusServiceUnavailable)
		fmt.Fprintf(w, "not ready: %v\n", err)
		return
	}
	fmt.Fprintln(w, "ok")
}

// Server serves /healthz and /metrics.
type Server struct {
	srv *http.Server
	ln  net.Listener
}

// Serve listens on addr (so a taken port fails here, at start-up) and
// serves in the background.
func Serve(addr string, h *Health, m *Metrics, log *zap.Logger) (*Server, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("--http-address %s: %w", addr, err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /healthz", h)
	mux.Handle("GET /metrics", m.http)
	s := &Server{srv: &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}, ln: ln}
	go func() {
		if err := s.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("http server stopped", zap.Error(err))
		}
	}()
	return s, nil
}

// Addr is the address listened on (the port chosen for ":0").
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Shutdown stops accepting and waits for requests in flight until ctx ends.
func (s *Server) Shutdown(ctx context.Context) error { return s.srv.Shutdown(ctx) }
