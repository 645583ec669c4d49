package sidecar

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
	"github.com/direktiv/direktiv-authz/internal/apierror"
	"github.com/direktiv/direktiv-authz/internal/audit"
	"github.com/direktiv/direktiv-authz/internal/classify"
	"github.com/direktiv/direktiv-authz/store"
)

// metrics are the sidecar's Prometheus metrics, served on the operations
// listener's /metrics. Each app has its own registry (several apps share a
// test process). Every label value comes from a small fixed set: route
// families, status codes, outcomes; never a namespace, a token id or a path.
//
// The hot path pays a few atomic adds and two clock reads per request: the
// vectors are resolved to their children once (requests lazily, per route
// family and status), so no label is hashed per request. A nil *metrics (no
// --ops-listen) records nothing.
type metrics struct {
	reg *prometheus.Registry

	requests     *prometheus.CounterVec
	requestsByRS [classify.NumFamilies][numCodes]atomic.Pointer[counterRef]

	mints       [numOutcomes]prometheus.Counter
	rateLimited map[string]prometheus.Counter // by store scope

	decideMint, decideRoute prometheus.Observer

	storeOps    *prometheus.HistogramVec
	storeErrors *prometheus.CounterVec

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

// newMetrics registers every metric of a; eng (may be nil) adds the policy
// reload counters.
func newMetrics(a *app, eng *engine.Engine) *metrics {
	const ns = "direktiv_authz"
	m := &metrics{reg: prometheus.NewRegistry()}
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

	if c := a.cache; c != nil {
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
	if a.proxy != nil {
		m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: ns, Name: "upstream_streams",
			Help: "Responses of unknown length (event streams) being forwarded.",
		}, func() float64 { return float64(a.streaming()) }))
	}
	m.reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
		Namespace: ns, Name: "relay_handoffs_total",
		Help: "Connections the event loops handed to the server (see README, Forwarding); 0 with --event-loops off.",
	}, func() float64 {
		if a.relay == nil {
			return 0
		}
		return float64(a.relay.Handoffs())
	}))
	m.reg.MustRegister(policyCollector{a: a, eng: eng})
	if r := a.tlsCert; r != nil {
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
	a   *app
	eng *engine.Engine
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
	ch <- prometheus.MustNewConstMetric(policyInfoDesc, prometheus.GaugeValue, 1, c.a.engine.Revision())
	if c.eng != nil {
		ok, failed := c.eng.Reloads()
		ch <- prometheus.MustNewConstMetric(policyReloadsDesc, prometheus.CounterValue, float64(ok), "ok")
		ch <- prometheus.MustNewConstMetric(policyReloadsDesc, prometheus.CounterValue, float64(failed), "failed")
	}
}

// request counts an answer by the route family classify read and its
// status.
func (m *metrics) request(f classify.Family, code int) {
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

// mintOutcome counts a finished mint request (not a dry run).
func (m *metrics) mintOutcome(ev *audit.Event) {
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

func (m *metrics) mintRateLimited(scope string) {
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

// mono is a monotonic clock reading, for durations.
func mono() time.Duration { return time.Since(clockOrigin) }

// clock is mono, or 0 without metrics (no clock read at all).
func (m *metrics) clock() time.Duration {
	if m == nil {
		return 0
	}
	return mono()
}

// upstreamDone records one exchange with the upstream that started at start
// (a clock reading) and ended with err (nil: response headers received).
func (m *metrics) upstreamDone(start time.Duration, err error) {
	if m == nil {
		return
	}
	if err == nil {
		m.upstream.Observe((mono() - start).Seconds())
		return
	}
	var ae *apierror.Error
	if !errors.As(err, &ae) {
		m.upstreamErrors[upstreamBroken].Inc()
		return
	}
	var de *dialError
	switch {
	case ae.Code == apierror.BadRequest:
		// Not sent: the request target is not a path.
	case errors.Is(ae.Err, fasthttp.ErrNoFreeConns):
		m.upstreamErrors[upstreamBusy].Inc()
	case isTimeout(ae.Err):
		m.upstreamErrors[upstreamTimeout].Inc()
	case errors.As(ae.Err, &de):
		m.upstreamErrors[upstreamUnreachable].Inc()
	default:
		m.upstreamErrors[upstreamBroken].Inc()
	}
}

// timedDecider times the engine's decisions.
type timedDecider struct {
	decider
	mint, route prometheus.Observer
}

func (d timedDecider) Mint(ctx context.Context, in engine.MintInput) (engine.MintDecision, error) {
	start := mono()
	dec, err := d.decider.Mint(ctx, in)
	d.mint.Observe((mono() - start).Seconds())
	return dec, err
}

func (d timedDecider) Route(ctx context.Context, in engine.RouteInput) (engine.RouteDecision, error) {
	start := mono()
	dec, err := d.decider.Route(ctx, in)
	d.route.Observe((mono() - start).Seconds())
	return dec, err
}

// timedStore times the token store's calls and counts its failures.
type timedStore struct {
	tokenStore
	lookup, create, list, revoke             prometheus.Observer
	lookupErr, createErr, listErr, revokeErr prometheus.Counter
}

func newTimedStore(s tokenStore, m *metrics) timedStore {
	return timedStore{
		tokenStore: s,
		lookup:     m.storeOps.WithLabelValues("lookup"),
		create:     m.storeOps.WithLabelValues("create"),
		list:       m.storeOps.WithLabelValues("list"),
		revoke:     m.storeOps.WithLabelValues("revoke"),
		lookupErr:  m.storeErrors.WithLabelValues("lookup"),
		createErr:  m.storeErrors.WithLabelValues("create"),
		listErr:    m.storeErrors.WithLabelValues("list"),
		revokeErr:  m.storeErrors.WithLabelValues("revoke"),
	}
}

func observeStore(start time.Duration, err error, h prometheus.Observer, errs prometheus.Counter) {
	h.Observe((mono() - start).Seconds())
	if err != nil && errors.Is(err, store.ErrUnavailable) {
		errs.Inc()
	}
}

func (s timedStore) CreateLimited(ctx context.Context, t store.Token, l store.Limit) error {
	start := mono()
	err := s.tokenStore.CreateLimited(ctx, t, l)
	observeStore(start, err, s.create, s.createErr)
	return err
}

func (s timedStore) Lookup(ctx context.Context, namespace, id string) (store.Token, error) {
	start := mono()
	t, err := s.tokenStore.Lookup(ctx, namespace, id)
	observeStore(start, err, s.lookup, s.lookupErr)
	return t, err
}

func (s timedStore) List(ctx context.Context, namespace, after string, limit int) ([]store.Token, string, error) {
	start := mono()
	toks, next, err := s.tokenStore.List(ctx, namespace, after, limit)
	observeStore(start, err, s.list, s.listErr)
	return toks, next, err
}

func (s timedStore) Revoke(ctx context.Context, namespace, id string) (store.Revocation, error) {
	start := mono()
	rv, err := s.tokenStore.Revoke(ctx, namespace, id)
	observeStore(start, err, s.revoke, s.revokeErr)
	return rv, err
}

// revokedTokens counts n revoked tokens.
func (m *metrics) revokedTokens(n int) {
	if m != nil {
		m.revoked.Add(float64(n))
	}
}
