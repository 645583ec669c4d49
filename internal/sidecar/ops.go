package sidecar

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"

	"github.com/direktiv/direktiv-authz/engine"
	"github.com/direktiv/direktiv-authz/internal/metrics"
	"github.com/direktiv/direktiv-authz/internal/ops"
	"github.com/direktiv/direktiv-authz/internal/tlsreload"
)

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

	l, err := ops.Listen(a.cfg.OpsAddr, m, a.ready, a.log)
	if err != nil {
		return err
	}
	a.ops = l
	return nil
}

// ready is whether this replica should get traffic (the operations
// listener's /readyz): policies loaded and the store answering.
func (a *app) ready(ctx context.Context) error {
	if a.engine.Revision() == "" {
		return errors.New("no policies loaded")
	}
	if err := a.store.Ping(ctx); err != nil {
		return fmt.Errorf("the token store does not answer: %w", err)
	}
	return nil
}
