package sidecar

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/direktiv/direktiv-authz/engine"
	"github.com/direktiv/direktiv-authz/internal/metrics"
	"github.com/direktiv/direktiv-authz/internal/tlsreload"
)

// The operations listener (--ops-listen) is a plain net/http server on a
// port of its own, for the kubelet and Prometheus, never for clients:
//
//	/healthz  200 while the process runs
//	/readyz   200 when Redis answers and policies are loaded; 503 with the
//	          reason otherwise, and from the moment shutdown starts
//	/metrics  Prometheus text format (see metrics.go)
//
// It stays up through the shutdown grace period, so that /readyz can say
// "shutting down", and closes last.

// readyTimeout bounds the store ping of one /readyz.
const readyTimeout = 2 * time.Second

// setupOps wires what newApp needs beyond the core: TLS on the main
// listener, the metrics (timing the store and the engine) and
// the operations listener. On error the caller closes a.ln and a.store.
func (a *app) setupOps(eng *engine.Engine) error {
	if a.cfg.TLSCertFile != "" {
		r, err := tlsreload.New(a.cfg.TLSCertFile, a.cfg.TLSKeyFile, a.log)
		if err != nil {
			return err
		}
		a.tlsCert = r
		a.ln = tls.NewListener(a.ln, r.Config())
	}
	if a.cfg.OpsAddr == "" {
		return nil
	}
	src := metrics.Sources{
		Cache:    a.cache,
		Streams:  a.streaming,
		Revision: func() string { return a.engine.Revision() },
		Handoffs: func() uint64 {
			if a.relay == nil {
				return 0
			}
			return a.relay.Handoffs()
		},
		TLS: a.tlsCert,
	}
	if eng != nil {
		src.Reloads = eng.Reloads
	}
	m := metrics.New(src)
	a.metrics = m
	a.store = m.TimeStore(a.store)
	a.engine = m.TimeDecider(a.engine)

	ln, err := net.Listen("tcp", a.cfg.OpsAddr)
	if err != nil {
		return fmt.Errorf("--ops-listen %s: %w", a.cfg.OpsAddr, err)
	}
	a.opsLn = ln
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { opsText(w, http.StatusOK, "ok") })
	mux.HandleFunc("GET /readyz", a.readyz)
	mux.Handle("GET /metrics", promhttp.InstrumentMetricHandler(m.Registry(), promhttp.HandlerFor(m.Registry(), promhttp.HandlerOpts{
		ErrorLog:          slog.NewLogLogger(a.log.Handler(), slog.LevelWarn),
		EnableOpenMetrics: false,
	})))
	a.ops = &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(a.log.Handler(), slog.LevelWarn),
	}
	return nil
}

// opsAddr is the address of the operations listener, with the port
// resolved; "" when there is none.
func (a *app) opsAddr() string {
	if a.opsLn == nil {
		return ""
	}
	return a.opsLn.Addr().String()
}

// readyz answers whether this replica should get traffic.
func (a *app) readyz(w http.ResponseWriter, r *http.Request) {
	if a.stopping.Load() {
		opsText(w, http.StatusServiceUnavailable, "not ready: shutting down")
		return
	}
	if a.engine.Revision() == "" {
		opsText(w, http.StatusServiceUnavailable, "not ready: no policies loaded")
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), readyTimeout)
	defer cancel()
	if err := a.store.Ping(ctx); err != nil {
		opsText(w, http.StatusServiceUnavailable, "not ready: the token store does not answer: "+err.Error())
		return
	}
	opsText(w, http.StatusOK, "ready")
}

func opsText(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	fmt.Fprintln(w, msg)
}

// startOps serves the operations listener, if any, until stopOps.
func (a *app) startOps() {
	if a.ops == nil {
		return
	}
	a.log.Info("operations listener", "addr", a.opsAddr(), "paths", "/healthz /readyz /metrics")
	go func() {
		if err := a.ops.Serve(a.opsLn); err != nil && !errors.Is(err, http.ErrServerClosed) {
			a.log.Error("operations listener stopped", "err", err)
		}
	}()
}

// stopOps closes the operations listener; the last step of a shutdown.
func (a *app) stopOps() {
	if a.ops == nil {
		if a.opsLn != nil {
			a.opsLn.Close()
		}
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if err := a.ops.Shutdown(ctx); err != nil {
		a.ops.Close()
	}
}
