// Package sidecar wires the parts of the sidecar together and serves: the
// fasthttp server and its dispatch (own endpoint or forward), the event
// loops' glue, the operations listener, startup and shutdown. The decisions
// are made in the packages it wires (classify, credential, authn, authz,
// tokens, forward); only main imports it.
package sidecar

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"time"

	goredis "github.com/redis/go-redis/v9"
	"github.com/valyala/fasthttp"

	"github.com/direktiv/direktiv-authz/engine"
	"github.com/direktiv/direktiv-authz/internal/answer"
	"github.com/direktiv/direktiv-authz/internal/audit"
	"github.com/direktiv/direktiv-authz/internal/authn"
	"github.com/direktiv/direktiv-authz/internal/authz"
	"github.com/direktiv/direktiv-authz/internal/config"
	"github.com/direktiv/direktiv-authz/internal/forward"
	"github.com/direktiv/direktiv-authz/internal/framing"
	"github.com/direktiv/direktiv-authz/internal/logwriter"
	"github.com/direktiv/direktiv-authz/internal/metrics"
	"github.com/direktiv/direktiv-authz/internal/ops"
	"github.com/direktiv/direktiv-authz/internal/relay"
	"github.com/direktiv/direktiv-authz/internal/tlsreload"
	"github.com/direktiv/direktiv-authz/internal/tokencache"
	"github.com/direktiv/direktiv-authz/internal/tokens"
	"github.com/direktiv/direktiv-authz/store"
	"github.com/direktiv/direktiv-authz/store/redis"
)

// app is the wired sidecar: configuration, store, engine and HTTP server.
type app struct {
	cfg     config.Config
	log     *slog.Logger
	answers answer.Writer // JSON answers and errors, the causes of 5xx logged
	audits  *audit.Log    // audit trail: one line per decision, stable shape
	store   store.Store
	engine  engine.Decider
	watch   func(context.Context) error // hot reload of --policies, nil when embedded
	ln      net.Listener
	server  *fasthttp.Server
	now     func() time.Time
	proxy   *forward.Proxy     // the server's connections to the upstream
	forward *forward.Forwarder // enforces and forwards what the sidecar does not own
	cache   *tokencache.Cache  // recently authenticated token records; nil: none
	authn   *authn.Authenticator
	authz   *authz.Authorizer
	tokens  *tokens.Endpoints // the sidecar's own endpoints

	// The fast path (relay.go): nil when off.
	relay       *relay.Relay
	relayLn     *relayListener // the server's listener: what the relay hands off
	upstreamKey []byte         // cfg.UpstreamKey, for the relay
	// redis is the store when it is Redis; the loops then serve mints
	// (loopMints), its creates made without blocking them
	// (redis.Store.CreateAsync).
	redis     *redis.Store
	loopMints bool

	// Operations (ops.go).
	metrics *metrics.Metrics    // nil without --ops-listen
	ops     *ops.Listener       // nil without --ops-listen
	tlsCert *tlsreload.Reloader // nil: the main listener is plain HTTP
}

// Run starts the sidecar with cfg and serves until ctx is done: the
// process's whole life after its settings are read. Tests start it with
// newApp and serve, on ":0" addresses and in temporary directories.
func Run(ctx context.Context, cfg config.Config, stdout, stderr io.Writer) error {
	// Log and audit lines share one writer that gathers concurrent lines
	// into one write (see logwriter.Writer); closing it, last, writes the rest.
	lw := logwriter.New(stderr)
	defer lw.Close()
	log := slog.New(slog.NewJSONHandler(lw, &slog.HandlerOptions{Level: cfg.Level}))
	// go-redis logs through a package-level logger; route it to slog so
	// that every line on stderr is JSON. Only run sets it: it owns the process.
	goredis.SetLogger(redisLogger{log})
	a, err := newApp(ctx, cfg, log, audit.New(lw), stdout)
	if err != nil {
		return err
	}
	return a.serve(ctx)
}

// newApp opens the store, loads the policies and binds the listener. In dev
// mode without an admin token it generates one and prints it once to stdout.
func newApp(ctx context.Context, cfg config.Config, log *slog.Logger, audits *audit.Log, stdout io.Writer) (*app, error) {
	a := &app{cfg: cfg, log: log, answers: answer.Writer{Log: log}, audits: audits, now: time.Now}
	if cfg.Dev && cfg.AdminToken == "" {
		b := make([]byte, 32)
		if _, err := rand.Read(b); err != nil {
			return nil, fmt.Errorf("generate admin token: %w", err)
		}
		a.cfg.AdminToken = "dka_" + base64.RawURLEncoding.EncodeToString(b)
		fmt.Fprintf(stdout, "dev mode: admin token (shown once, send it as Direktiv-Token):\n\n    %s\n\n", a.cfg.AdminToken)
	}

	eng, err := engine.New(ctx, engine.Options{Dir: cfg.Policies, Logger: log})
	if err != nil {
		return nil, fmt.Errorf("policies: %w", err)
	}
	a.engine = eng
	a.audits.SetRevision(eng.Revision)
	if cfg.Policies != "" {
		a.watch = eng.Watch
	}

	if cfg.RedisURL != "" {
		rs, err := redis.New(ctx, cfg.RedisURL, redis.Options{Logger: log, StartUnavailable: true})
		if err != nil {
			return nil, fmt.Errorf("--redis-url: %w", err)
		}
		a.store = rs
		a.redis = rs
	} else {
		a.store = store.NewMemory()
		log.Warn("dev mode: tokens are kept in memory and lost on exit; pass --redis-url to keep them in Redis")
	}

	a.ln, err = net.Listen("tcp", cfg.Listen)
	if err != nil {
		a.store.Close()
		return nil, fmt.Errorf("--listen %s: %w", cfg.Listen, err)
	}
	a.proxy = forward.NewProxy(a.cfg, log)
	a.cache = tokencache.New(cfg.CacheTTL, tokencache.Size, a.now)
	a.server = a.newServer()
	if err := a.setupOps(eng); err != nil {
		a.ln.Close()
		a.store.Close()
		return nil, err
	}
	a.authn = &authn.Authenticator{Store: a.store, Cache: a.cache, Now: a.now}
	a.authz = &authz.Authorizer{Engine: a.engine, Authn: a.authn, Unsafe: cfg.UnsafeForwardUnauthenticated, UpstreamKey: a.cfg.UpstreamKey != ""}
	a.forward = &forward.Forwarder{Proxy: a.proxy, Authn: a.authn, Authz: a.authz, Metrics: a.metrics, Audits: a.audits,
		Answers: a.answers, AdminToken: a.cfg.AdminToken}
	a.tokens = &tokens.Endpoints{Config: a.cfg, Store: a.store, Engine: a.engine, Authn: a.authn, Authz: a.authz,
		Cache: a.cache, Metrics: a.metrics, Audits: a.audits, Answers: a.answers, Now: a.now}
	if err := a.newRelay(); err != nil {
		a.ln.Close()
		a.store.Close()
		a.ops.Close()
		return nil, err
	}
	return a, nil
}

// streaming is the number of responses of unknown length (event streams)
// being forwarded, by the server and by the relay.
func (a *app) streaming() int {
	n := a.proxy.Streaming()
	if a.relay != nil {
		n += a.relay.Streams()
	}
	return n
}

// addr is the address the sidecar listens on, with the port resolved.
func (a *app) addr() string { return a.ln.Addr().String() }

// serve answers requests until ctx is done, then shuts down gracefully.
func (a *app) serve(ctx context.Context) error {
	loops := 0 // the server accepts every connection
	if a.relay != nil {
		loops = a.relay.Loops()
	}
	a.log.Info("listening", "addr", a.addr(), "upstream", a.cfg.Upstream, "policy_revision", a.engine.Revision(), "dev", a.cfg.Dev, "event_loops", loops)
	if a.cfg.Dev {
		host, port, _ := net.SplitHostPort(a.addr())
		if ip := net.ParseIP(host); ip == nil || ip.IsUnspecified() {
			host = "127.0.0.1"
		}
		a.log.Info("try it: curl -X POST http://" + net.JoinHostPort(host, port) + "/api/namespaces/NS/auth/token -H 'Direktiv-Token: ADMIN' -d '{\"policies\":[\"permissionsManage\"]}'")
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if a.watch != nil {
		go func() {
			if err := a.watch(ctx); err != nil && ctx.Err() == nil {
				a.log.Error("policy watch stopped", "err", err)
			}
		}()
	}
	go a.followRevocations(ctx)
	if a.redis != nil {
		go a.redis.Sweep(ctx, a.tokens.RevocationDone) // removal of revoked subtrees
	}
	a.ops.Start()
	errc := make(chan error, 2)
	if a.relay != nil {
		go func() { errc <- a.server.Serve(framing.Listener(a.relayLn, a.framingOptions())) }()
		go func() {
			if err := a.relay.Serve(); err != nil {
				errc <- err
			}
		}()
	} else {
		go func() { errc <- a.server.Serve(framing.Listener(a.ln, a.framingOptions())) }()
	}
	select {
	case err := <-errc:
		a.ops.Stopping()
		a.store.Close()
		a.ops.Close()
		return err
	case <-ctx.Done():
	}
	// Shutdown: not ready first (the operations listener stays up, so that
	// /readyz says so), then stop accepting, end event streams, let the
	// requests in flight finish within --shutdown-grace, close the store,
	// and the operations listener last.
	a.ops.Stopping()
	a.log.Info("shutting down", "grace", a.cfg.Grace.String())
	shutdown, cancelShutdown := context.WithTimeout(context.Background(), a.cfg.Grace)
	defer cancelShutdown()
	a.proxy.Interrupt() // event streams never end by themselves
	var err error
	if a.relay != nil {
		// The relay first: until it has stopped it may still hand
		// connections to the server.
		err = a.relay.Shutdown(shutdown) // closes a.ln
	}
	if serr := a.server.ShutdownWithContext(shutdown); err == nil {
		err = serr
	}
	if errors.Is(err, context.DeadlineExceeded) {
		// Not a failure of the shutdown: the grace period is the bound.
		a.log.Warn("shutdown grace period over; requests still in flight are cut off", "grace", a.cfg.Grace.String())
		err = nil
	}
	a.proxy.Close()
	if cerr := a.store.Close(); err == nil {
		err = cerr
	}
	a.ops.Close()
	a.log.Info("stopped")
	return err
}

// followRevocations drops revoked tokens from the token cache as every
// replica sharing the store revokes them. Pub/sub keeps no backlog, so a
// notice sent while the subscription is down is lost: the cache TTL
// (--token-cache-ttl, at most a second by default) is the safety net.
func (a *app) followRevocations(ctx context.Context) {
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		start := time.Now()
		err := a.store.Subscribe(ctx, a.cache.Invalidate)
		if ctx.Err() != nil {
			return
		}
		if time.Since(start) > 10*time.Second {
			backoff = 100 * time.Millisecond
		}
		a.log.Warn("revocation subscription lost; retrying", "err", err, "retry_in", backoff.String())
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 5*time.Second)
	}
}
