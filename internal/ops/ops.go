// Package ops is the operations listener (--ops-listen): a plain net/http
// server on a port of its own, for the kubelet and Prometheus, never for
// clients. It serves probes and the metrics; what "ready" means is its
// caller's. It imports metrics, never the sidecar's HTTP layer.
//
//	/healthz  200 while the process runs
//	/readyz   200 when Ready says so; 503 with the reason otherwise, and
//	          from the moment Stopping is called
//	/metrics  Prometheus text format (internal/metrics)
//
// It stays up through the shutdown grace period, so that /readyz can say
// "shutting down", and closes last.
package ops

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/direktiv/direktiv-authz/internal/metrics"
)

// ReadyTimeout bounds the checks of one /readyz.
const ReadyTimeout = 2 * time.Second

// Listener is the operations listener.
type Listener struct {
	ln       net.Listener
	srv      *http.Server
	log      *slog.Logger
	ready    func(context.Context) error
	stopping atomic.Bool
}

// Listen binds addr. ready answers /readyz: nil, or why this replica should
// not get traffic (within ReadyTimeout).
func Listen(addr string, m *metrics.Metrics, ready func(context.Context) error, log *slog.Logger) (*Listener, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("--ops-listen %s: %w", addr, err)
	}
	l := &Listener{ln: ln, log: log, ready: ready}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { text(w, http.StatusOK, "ok") })
	mux.HandleFunc("GET /readyz", l.readyz)
	mux.Handle("GET /metrics", promhttp.InstrumentMetricHandler(m.Registry(), promhttp.HandlerFor(m.Registry(), promhttp.HandlerOpts{
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
		EnableOpenMetrics: false,
	})))
	l.srv = &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	return l, nil
}

// Addr is the listener's address, with the port resolved; "" for a nil
// *Listener (no --ops-listen).
func (l *Listener) Addr() string {
	if l == nil {
		return ""
	}
	return l.ln.Addr().String()
}

// Start serves until Close.
func (l *Listener) Start() {
	if l == nil {
		return
	}
	l.log.Info("operations listener", "addr", l.Addr(), "paths", "/healthz /readyz /metrics")
	go func() {
		if err := l.srv.Serve(l.ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			l.log.Error("operations listener stopped", "err", err)
		}
	}()
}

// Stopping makes /readyz answer 503 "shutting down" from now on.
func (l *Listener) Stopping() {
	if l != nil {
		l.stopping.Store(true)
	}
}

// Close closes the listener, waiting a second at most for answers under
// way; the last step of a shutdown.
func (l *Listener) Close() {
	if l == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if err := l.srv.Shutdown(ctx); err != nil {
		l.srv.Close()
	}
	l.ln.Close() // when Start was never called
}

func (l *Listener) readyz(w http.ResponseWriter, r *http.Request) {
	if l.stopping.Load() {
		text(w, http.StatusServiceUnavailable, "not ready: shutting down")
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), ReadyTimeout)
	defer cancel()
	if err := l.ready(ctx); err != nil {
		text(w, http.StatusServiceUnavailable, "not ready: "+err.Error())
		return
	}
	text(w, http.StatusOK, "ready")
}

func text(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	fmt.Fprintln(w, msg)
}
