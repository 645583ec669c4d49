// Package metrics is the sidecar's Prometheus registry: requests by route
// family and status, mints by outcome, decision, store and upstream times,
// and gauges read at scrape time. Every label value comes from a small fixed
// set. It imports the lower packages (classify, audit, the store, the
// engine, relay's failure kinds), never the HTTP layer.
package metrics

import (
	"context"
	"errors"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/valyala/fasthttp"

	"github.com/direktiv/direktiv-authz/engine"
	"github.com/direktiv/direktiv-authz/internal/audit"
	"github.com/direktiv/direktiv-authz/internal/classify"
	"github.com/direktiv/direktiv-authz/internal/relay"
	"github.com/direktiv/direktiv-authz/internal/tlsreload"
	"github.com/direktiv/direktiv-authz/internal/tokencache"
	"github.com/direktiv/direktiv-authz/store"
)

// Metrics are the sidecar's Prometheus metrics, served on the operations
// listener's /metrics. Each sidecar has its own registry (several share a
// test process). Every label value comes from a small fixed set: route
// families, status codes, outcomes; never a namespace, a token id or a path.
//
// The hot path pays a few atomic adds and two clock reads per request: the
// vectors are resolved to their children once (requests lazily, per route
// family and status), so no label is hashed per request. A nil *Metrics (no
// --ops-listen) records nothing.
type Metrics struct {
	reg *prometheus.Registry

	requests     *prometheus.CounterVec
	requestsByRS [classify.NumFamilies][numCodes]atomic.Pointer[counterRef]

	mints       [numOutcomes]prometheus.Counter
	rateLimited map[string]prometheus.Counter // by store scope

	decideMint, decideRoute prometheus.Observer

	storeOps    *prometheus.HistogramVec
	storeErrors *prometheus.CounterVec
	creates     prometheus.Observer // storeOps' and storeErrors' create children
	createErrs  prometheus.Counter

	upstream       prometheus.Observer
	upstreamErrors [numUpstreamErrors]prometheus.Counter

	revoked prometheus.Counter // tokens revoked, descendants included
}

type counterRef struct{ c prometheus.Counter }

// Mint outcomes: direktiv_authz_mints_total{outcome}.
const (
	outcomeGranted     = iota // stored with every policy asked for
	outcomeDropped            // stored, some policies dropped
	outcomeRefused            // 4xx: bad request, unauthenticated, forbidden, rate limited, ...
	outcomeUnavailable        // 5xx: the store or the engine could not answer
	numOutcomes
)

var outcomeNames = [numOutcomes]string{"granted", "dropped", "refused", "unavailable"}

// Upstream errors: direktiv_authz_upstream_errors_total{kind}.
const (
	upstreamUnreachable = iota // cannot connect (502)
	upstreamTimeout            // no connection or no answer in time (504)
	upstreamBusy               // every connection busy (503)
	upstreamBroken             // the exchange broke off (502)
	numUpstreamErrors
)

var upstreamErrorNames = [numUpstreamErrors]string{"unreachable", "timeout", "busy", "broken"}

// Status codes resolved ahead: 100 to 599; others go through the vector.
const (
	minCode  = 100
	numCodes = 500
)

// Histogram buckets, in seconds.
var (
	decisionBuckets = []float64{.000005, .00001, .000025, .00005, .0001, .00025, .0005, .001, .0025, .005, .01, .05}
	storeBuckets    = []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5}
	upstreamBuckets = []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60}
)

// Sources are what the gauges and counters read at scrape time; each may be
// nil (zero), which leaves its metrics out.
type Sources struct {
	Cache    *tokencache.Cache          // token_cache_*
	Streams  func() int                 // upstream_streams: responses of unknown length being forwarded
	Handoffs func() uint64              // relay_handoffs_total; nil: 0 (the event loops are off)
	Revision func() string              // policy_info
	Reloads  func() (ok, failed uint64) // policy_reloads_total; nil: the policies are embedded
	TLS      *tlsreload.Reloader        // tls_cert_*
}

// New registers every metric.
func New(src Sources) *Metrics {
	const ns = "direktiv_authz"
	m := &Metrics{reg: prometheus.NewRegistry()}
	m.reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	m.requests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: ns, Name: "requests_total",
		Help: "Requests answered on the main listener, by route family (mint, tokens, v1/<resource>, v2/<resource>, other) and status code.",
	}, []string{"route", "code"})
	mints := prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: ns, Name: "mints_total",
		Help: "Mint requests (dry runs excluded) by outcome: granted, dropped (granted with some policies dropped), refused (4xx), unavailable (5xx).",
	}, []string{"outcome"})
	for i, name := range outcomeNames {
		m.mints[i] = mints.WithLabelValues(name)
	}
	limited := prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: ns, Name: "mint_rate_limited_total",
		Help: "Mints refused with 429 by a rate limit, by limit: token or namespace.",
	}, []string{"limit"})
	m.rateLimited = map[string]prometheus.Counter{
		store.ScopeToken:     limited.WithLabelValues(store.ScopeToken),
		store.ScopeNamespace: limited.WithLabelValues(store.ScopeNamespace),
	}
	decisions := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: ns, Name: "decision_duration_seconds",
		Help:    "Time the policy engine took to decide, by kind: mint or route.",
		Buckets: decisionBuckets,
	}, []string{"kind"})
	m.decideMint, m.decideRoute = decisions.WithLabelValues("mint"), decisions.WithLabelValues("route")
	m.storeOps = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: ns, Name: "store_duration_seconds",
		Help:    "Time the token store took to answer, by operation: lookup, create, list, revoke (errors included).",
		Buckets: storeBuckets,
	}, []string{"op"})
	m.storeErrors = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: ns, Name: "store_errors_total",
		Help: "Token store calls that failed because the store did not answer, by operation.",
	}, []string{"op"})
	for _, op := range []string{"lookup", "create", "list", "revoke"} {
		m.storeOps.WithLabelValues(op)
		m.storeErrors.WithLabelValues(op)
	}
	m.creates, m.createErrs = m.storeOps.WithLabelValues("create"), m.storeErrors.WithLabelValues("create")
	upstream := prometheus.NewHistogram(prometheus.HistogramOpts{
		Namespace: ns, Name: "upstream_duration_seconds",
		Help:    "Time from forwarding a request to the upstream's response headers (bodies stream afterwards).",
		Buckets: upstreamBuckets,
	})
	m.upstream = upstream
	upErrs := prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: ns, Name: "upstream_errors_total",
		Help: "Forwarded requests that got no answer from the upstream, by kind: unreachable, timeout, busy (every connection in use), broken.",
	}, []string{"kind"})
	for i, name := range upstreamErrorNames {
		m.upstreamErrors[i] = upErrs.WithLabelValues(name)
	}
	revoked := prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: ns, Name: "revoked_tokens_total",
		Help: "Tokens revoked, descendants included: counted by the replica that answered the revoke, or that completed the background removal of the descendants.",
	})
	m.revoked = revoked
	m.reg.MustRegister(m.requests, mints, limited, decisions, m.storeOps, m.storeErrors, upstream, upErrs, revoked)

	if c := src.Cache; c != nil {
		cache := func(result string, n func() uint64) prometheus.Collector {
			return prometheus.NewCounterFunc(prometheus.CounterOpts{
				Namespace: ns, Name: "token_cache_lookups_total",
				Help:        "Token authentications answered from the in-process token cache (hit) or not (miss).",
				ConstLabels: prometheus.Labels{"result": result},
			}, func() float64 { return float64(n()) })
		}
		hits := func() uint64 { h, _ := c.Lookups(); return h }
		misses := func() uint64 { _, m := c.Lookups(); return m }
		m.reg.MustRegister(cache("hit", hits), cache("miss", misses))
		m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: ns, Name: "token_cache_entries",
			Help: "Token records in the in-process cache.",
		}, func() float64 { return float64(c.Len()) }))
	}
	if streams := src.Streams; streams != nil {
		m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: ns, Name: "upstream_streams",
			Help: "Responses of unknown length (event streams) being forwarded.",
		}, func() float64 { return float64(streams()) }))
	}
	m.reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
		Namespace: ns, Name: "relay_handoffs_total",
		Help: "Connections the event loops handed to the server (see README, Forwarding); 0 with --event-loops off.",
	}, func() float64 {
		if src.Handoffs == nil {
			return 0
		}
		return float64(src.Handoffs())
	}))
	m.reg.MustRegister(policyCollector{revision: src.Revision, reloads: src.Reloads})
	if r := src.TLS; r != nil {
		m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: ns, Name: "tls_cert_not_after_seconds",
			Help: "When the certificate served on the main listener expires, in unix seconds.",
		}, r.NotAfter))
		m.reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
			Namespace: ns, Name: "tls_cert_reload_failures_total",
			Help: "Changes of the certificate files that did not load (the previous certificate stayed).",
		}, func() float64 { return float64(r.Failures()) }))
	}
	return m
}

// policyCollector reports the policy revision and reload counts as they are
// at scrape time.
type policyCollector struct {
	revision func() string
	reloads  func() (ok, failed uint64)
}

var (
	policyInfoDesc = prometheus.NewDesc("direktiv_authz_policy_info",
		"The policy revision in force (label revision), always 1.", []string{"revision"}, nil)
	policyReloadsDesc = prometheus.NewDesc("direktiv_authz_policy_reloads_total",
		"Reloads of the policy directory: ok (the rules were replaced) or failed (refused; the previous rules stayed).", []string{"result"}, nil)
)

func (c policyCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- policyInfoDesc
	ch <- policyReloadsDesc
}

func (c policyCollector) Collect(ch chan<- prometheus.Metric) {
	if c.revision != nil {
		ch <- prometheus.MustNewConstMetric(policyInfoDesc, prometheus.GaugeValue, 1, c.revision())
	}
	if c.reloads != nil {
		ok, failed := c.reloads()
		ch <- prometheus.MustNewConstMetric(policyReloadsDesc, prometheus.CounterValue, float64(ok), "ok")
		ch <- prometheus.MustNewConstMetric(policyReloadsDesc, prometheus.CounterValue, float64(failed), "failed")
	}
}

// Registry is where the metrics are registered, for /metrics.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// Request counts an answer by the route family classify read and its
// status.
func (m *Metrics) Request(f classify.Family, code int) {
	if m == nil {
		return
	}
	if code < minCode || code >= minCode+numCodes {
		m.requests.WithLabelValues(f.String(), strconv.Itoa(code)).Inc()
		return
	}
	slot := &m.requestsByRS[f][code-minCode]
	ref := slot.Load()
	if ref == nil {
		ref = &counterRef{m.requests.WithLabelValues(f.String(), strconv.Itoa(code))}
		slot.Store(ref) // a racing store resolves the same child
	}
	ref.c.Inc()
}

// MintOutcome counts a finished mint request (not a dry run).
func (m *Metrics) MintOutcome(ev *audit.Event) {
	if m == nil || ev.Action != "mint" {
		return
	}
	switch {
	case ev.Status == fasthttp.StatusCreated && len(ev.Dropped) > 0:
		m.mints[outcomeDropped].Inc()
	case ev.Status == fasthttp.StatusCreated:
		m.mints[outcomeGranted].Inc()
	case ev.Status >= 500:
		m.mints[outcomeUnavailable].Inc()
	default:
		m.mints[outcomeRefused].Inc()
	}
}

// MintRateLimited counts a mint refused by the limit of scope
// (store.ScopeToken or store.ScopeNamespace).
func (m *Metrics) MintRateLimited(scope string) {
	if m == nil {
		return
	}
	if c := m.rateLimited[scope]; c != nil {
		c.Inc()
	}
}

// clockOrigin is what mono measures from: time.Since of a fixed time reads
// only the monotonic clock, at about half the cost of time.Now.
var clockOrigin = time.Now()

// Mono is a monotonic clock reading, for durations.
func Mono() time.Duration { return time.Since(clockOrigin) }

// Clock is Mono, or 0 without metrics (no clock read at all).
func (m *Metrics) Clock() time.Duration {
	if m == nil {
		return 0
	}
	return Mono()
}

// UpstreamDone records one exchange with the upstream that started at start
// (a Clock reading) and ended with f: relay.NoFailure when its response
// head arrived, else how it failed. The event loops and the server classify
// failures alike, as relay.Failure.
func (m *Metrics) UpstreamDone(start time.Duration, f relay.Failure) {
	if m != nil {
		m.UpstreamTook(Mono()-start, f)
	}
}

// UpstreamTook is UpstreamDone for an exchange that took d.
func (m *Metrics) UpstreamTook(d time.Duration, f relay.Failure) {
	if m == nil {
		return
	}
	switch f {
	case relay.NoFailure:
		m.upstream.Observe(d.Seconds())
	case relay.Unreachable:
		m.upstreamErrors[upstreamUnreachable].Inc()
	case relay.DialTimeout, relay.Timeout:
		m.upstreamErrors[upstreamTimeout].Inc()
	case relay.Busy:
		m.upstreamErrors[upstreamBusy].Inc()
	default:
		m.upstreamErrors[upstreamBroken].Inc()
	}
}

// TimeDecider is d with its decisions timed.
func (m *Metrics) TimeDecider(d engine.Decider) engine.Decider {
	return timedDecider{Decider: d, mint: m.decideMint, route: m.decideRoute}
}

// timedDecider times the engine's decisions.
type timedDecider struct {
	engine.Decider
	mint, route prometheus.Observer
}

func (d timedDecider) Mint(ctx context.Context, in engine.MintInput) (engine.MintDecision, error) {
	start := Mono()
	dec, err := d.Decider.Mint(ctx, in)
	d.mint.Observe((Mono() - start).Seconds())
	return dec, err
}

func (d timedDecider) Route(ctx context.Context, in engine.RouteInput) (engine.RouteDecision, error) {
	start := Mono()
	dec, err := d.Decider.Route(ctx, in)
	d.route.Observe((Mono() - start).Seconds())
	return dec, err
}

// timedStore times the token store's calls and counts its failures.
type timedStore struct {
	store.Store
	lookup, create, list, revoke             prometheus.Observer
	lookupErr, createErr, listErr, revokeErr prometheus.Counter
}

// TimeStore is s with its calls timed and its failures counted.
func (m *Metrics) TimeStore(s store.Store) store.Store {
	return timedStore{
		Store:     s,
		lookup:    m.storeOps.WithLabelValues("lookup"),
		create:    m.storeOps.WithLabelValues("create"),
		list:      m.storeOps.WithLabelValues("list"),
		revoke:    m.storeOps.WithLabelValues("revoke"),
		lookupErr: m.storeErrors.WithLabelValues("lookup"),
		createErr: m.storeErrors.WithLabelValues("create"),
		listErr:   m.storeErrors.WithLabelValues("list"),
		revokeErr: m.storeErrors.WithLabelValues("revoke"),
	}
}

func observeStore(start time.Duration, err error, h prometheus.Observer, errs prometheus.Counter) {
	h.Observe((Mono() - start).Seconds())
	if err != nil && errors.Is(err, store.ErrUnavailable) {
		errs.Inc()
	}
}

func (s timedStore) CreateLimited(ctx context.Context, t store.Token, l store.Limit) error {
	start := Mono()
	err := s.Store.CreateLimited(ctx, t, l)
	observeStore(start, err, s.create, s.createErr)
	return err
}

func (s timedStore) Lookup(ctx context.Context, namespace, id string) (store.Token, error) {
	start := Mono()
	t, err := s.Store.Lookup(ctx, namespace, id)
	observeStore(start, err, s.lookup, s.lookupErr)
	return t, err
}

func (s timedStore) List(ctx context.Context, namespace, after string, limit int) ([]store.Token, string, error) {
	start := Mono()
	toks, next, err := s.Store.List(ctx, namespace, after, limit)
	observeStore(start, err, s.list, s.listErr)
	return toks, next, err
}

func (s timedStore) Revoke(ctx context.Context, namespace, id string) (store.Revocation, error) {
	start := Mono()
	rv, err := s.Store.Revoke(ctx, namespace, id)
	observeStore(start, err, s.revoke, s.revokeErr)
	return rv, err
}

// RevokedTokens counts n revoked tokens.
func (m *Metrics) RevokedTokens(n int) {
	if m != nil {
		m.revoked.Add(float64(n))
	}
}

// CreateDone records a create made outside TimeStore's wrapper (the event
// loops' redis.Store.CreateAsync) that started at start (a Mono reading).
func (m *Metrics) CreateDone(start time.Duration, err error) {
	if m == nil {
		return
	}
	observeStore(start, err, m.creates, m.createErrs)
}
