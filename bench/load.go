//go:build linux

package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/valyala/fasthttp"
)

// headerToken is the header Direktiv 0.9 and later read their API key from,
// and the sidecar minted tokens and the key it sends upstream.
const headerToken = "Direktiv-Api-Key"

// kind is one type of request a run sends, and what counts as its success.
type kind struct {
	name   string
	weight int    // share in a mixed run
	method string // GET, POST
	uri    string // path and query, as sent
	token  string // Direktiv-Api-Key value; "" sends none
	body   []byte
	expect int    // the status that counts as success
	want   []byte // the body must contain this; nil for no check
}

// loadSpec is one run of the load generator.
type loadSpec struct {
	name     string
	scenario string
	target   string // base URL, http://127.0.0.1:port
	kinds    []kind
	conns    int           // connections (and workers)
	rate     float64       // intended requests per second; 0 is a closed loop
	duration time.Duration // measured time; 0 when n is set
	n        int64         // measured requests; 0 when duration is set
	warmup   time.Duration // sent before measuring, not recorded
	timeout  time.Duration // per request
	limit    time.Duration // hard cap on the whole run, warm-up included
	progress io.Writer     // progress bar; nil for none

	// onMeasure, if set, is called once when the warm-up ends and the
	// measured window starts (compare reads each process's CPU time then);
	// runLoad returns only after it has returned.
	onMeasure func()
}

// Bounds on a run, so that a typo cannot start an endless or absurd load.
const (
	maxConns    = 10_000
	maxRate     = 1_000_000
	maxDuration = time.Hour
	maxRequests = 1_000_000_000
)

func (s *loadSpec) validate() error {
	if len(s.kinds) == 0 {
		return errors.New("no request kinds to send")
	}
	if s.conns < 1 || s.conns > maxConns {
		return fmt.Errorf("-c %d: want 1..%d connections", s.conns, maxConns)
	}
	if s.rate < 0 || s.rate > maxRate || math.IsNaN(s.rate) {
		return fmt.Errorf("-rate %v: want 0 (closed loop) or up to %d requests/s", s.rate, maxRate)
	}
	if (s.duration > 0) == (s.n > 0) {
		return errors.New("set exactly one of -duration and -n")
	}
	if s.duration < 0 || s.duration > maxDuration {
		return fmt.Errorf("-duration %v: want up to %v", s.duration, maxDuration)
	}
	if s.n < 0 || s.n > maxRequests {
		return fmt.Errorf("-n %d: want up to %d", s.n, maxRequests)
	}
	if s.warmup < 0 || s.warmup > maxDuration {
		return fmt.Errorf("-warmup %v: want 0 up to %v", s.warmup, maxDuration)
	}
	if s.timeout <= 0 || s.timeout > time.Minute {
		return fmt.Errorf("-timeout %v: want more than 0 and up to 1m", s.timeout)
	}
	if s.limit <= 0 {
		s.limit = s.warmup + s.duration + s.timeout + time.Second
		if s.n > 0 {
			s.limit = 10 * time.Minute
		}
	}
	_, err := loopbackHostPort(s.target)
	return err
}

// loopbackHostPort checks that a base URL is plain HTTP on a loopback
// address and returns its host:port.
func loopbackHostPort(base string) (string, error) {
	u, err := url.Parse(base)
	if err != nil || u.Scheme != "http" || u.Host == "" {
		return "", fmt.Errorf("%q: want an http://127.0.0.1:PORT base URL", base)
	}
	hp := u.Host
	if u.Port() == "" {
		hp = net.JoinHostPort(u.Hostname(), "80")
	}
	if err := requireLoopback(hp); err != nil {
		return "", err
	}
	return hp, nil
}

// kindStats is one kind's share of a run's results.
type kindStats struct {
	hist   *histogram
	ok     int64
	failed int64
}

// loadResult is what a run measured. Only requests of the measured window
// are in it: warm-up requests are sent but not recorded.
type loadResult struct {
	spec        loadSpec
	started     time.Time     // start of the measured window (end of warm-up)
	window      time.Duration // measured window: to the last measured completion
	all         *histogram
	kinds       []kindStats
	ok          int64
	failed      int64
	errors      map[string]int64  // by status ("HTTP 401") or transport error ("timeout")
	samples     map[string]string // one example per error key: a body or message
	unsent      int64             // open loop: intended sends the generator never made before its hard stop
	timeline    []timePoint
	interrupted bool
}

// timePoint is one tick of the throughput-over-time series.
type timePoint struct {
	T        float64 `json:"t_s"` // seconds since the measured window started, at the tick's end
	Requests int64   `json:"requests"`
	Errors   int64   `json:"errors"`
	Rate     float64 `json:"req_per_s"`
	MeanMs   float64 `json:"mean_ms"`
	MaxMs    float64 `json:"max_ms"`
}

func (r *loadResult) requests() int64 { return r.ok + r.failed }

// throughput is successful responses per second of the measured window.
func (r *loadResult) throughput() float64 {
	if r.window <= 0 {
		return 0
	}
	return float64(r.ok) / r.window.Seconds()
}

// timeline counts completions per tick with atomics shared by all workers.
type timeline struct {
	start time.Time
	tick  time.Duration
	slots []tlSlot
}

type tlSlot struct{ count, errs, latSum, latMax atomic.Int64 }

func newTimeline(start time.Time, span time.Duration) *timeline {
	tick := time.Second
	if span > 0 && span < 10*time.Second {
		tick = max(span/10, 50*time.Millisecond)
	}
	n := int(span/tick) + 2
	if span <= 0 {
		n = int(10*time.Minute/tick) + 2
	}
	return &timeline{start: start, tick: tick, slots: make([]tlSlot, n)}
}

func (t *timeline) add(end time.Time, lat time.Duration, failed bool) {
	i := int(end.Sub(t.start) / t.tick)
	i = min(max(i, 0), len(t.slots)-1)
	s := &t.slots[i]
	s.count.Add(1)
	if failed {
		s.errs.Add(1)
	}
	s.latSum.Add(int64(lat))
	for {
		m := s.latMax.Load()
		if int64(lat) <= m || s.latMax.CompareAndSwap(m, int64(lat)) {
			break
		}
	}
}

// points turns the slots up to the window's end into a series.
func (t *timeline) points(window time.Duration) []timePoint {
	n := int(math.Ceil(float64(window) / float64(t.tick)))
	n = min(max(n, 1), len(t.slots))
	out := make([]timePoint, 0, n)
	for i := 0; i < n; i++ {
		s := &t.slots[i]
		c := s.count.Load()
		p := timePoint{T: float64(i+1) * t.tick.Seconds(), Requests: c, Errors: s.errs.Load()}
		span := t.tick
		if i == n-1 && window > 0 {
			if rest := window - time.Duration(i)*t.tick; rest > 0 && rest < t.tick {
				span = rest
				p.T = window.Seconds()
			}
		}
		p.Rate = float64(c) / span.Seconds()
		if c > 0 {
			p.MeanMs = float64(s.latSum.Load()) / float64(c) / 1e6
			p.MaxMs = float64(s.latMax.Load()) / 1e6
		}
		out = append(out, p)
	}
	return out
}

// worker is one connection's sender. Each keeps its own histograms and
// counters; they are merged when the run ends.
type worker struct {
	hc      *fasthttp.HostClient
	kinds   []kind
	reqs    []*fasthttp.Request
	resp    *fasthttp.Response
	rng     *rand.Rand
	cum     []int // cumulative weights
	stats   []kindStats
	errors  map[string]int64
	samples map[string]string
	lastEnd time.Time
	unsent  []time.Time // open loop: intended times claimed but never sent
}

func newWorker(hc *fasthttp.HostClient, base string, kinds []kind, seed uint64) *worker {
	w := &worker{hc: hc, kinds: kinds, resp: fasthttp.AcquireResponse(), rng: rand.New(rand.NewPCG(seed, 0x9e3779b97f4a7c15)),
		errors: map[string]int64{}, samples: map[string]string{}}
	total := 0
	for _, k := range kinds {
		req := fasthttp.AcquireRequest()
		req.URI().DisablePathNormalizing = true
		req.SetRequestURI(base + k.uri)
		req.Header.SetMethod(k.method)
		if k.token != "" {
			req.Header.Set(headerToken, k.token)
		}
		if k.body != nil {
			req.Header.SetContentType("application/json")
			req.SetBody(k.body)
		}
		w.reqs = append(w.reqs, req)
		total += max(k.weight, 0)
		w.cum = append(w.cum, total)
		w.stats = append(w.stats, kindStats{hist: newHistogram()})
	}
	return w
}

func (w *worker) release() {
	for _, r := range w.reqs {
		fasthttp.ReleaseRequest(r)
	}
	fasthttp.ReleaseResponse(w.resp)
}

// pick chooses the next kind by weight.
func (w *worker) pick() int {
	if len(w.kinds) == 1 {
		return 0
	}
	x := w.rng.IntN(w.cum[len(w.cum)-1])
	for i, c := range w.cum {
		if x < c {
			return i
		}
	}
	return len(w.cum) - 1
}

// send makes one request of kind i; ok reports success, key names a failure.
func (w *worker) send(i int) (ok bool, key, sample string) {
	w.resp.Reset()
	err := w.hc.Do(w.reqs[i], w.resp)
	if err != nil {
		key = classify(err)
		return false, key, err.Error()
	}
	k := &w.kinds[i]
	status := w.resp.StatusCode()
	body := w.resp.Body()
	if status == k.expect && (k.want == nil || bytes.Contains(body, k.want)) {
		return true, "", ""
	}
	key = fmt.Sprintf("HTTP %d", status)
	if status == k.expect {
		key = fmt.Sprintf("HTTP %d without %q", status, k.want)
	}
	if len(body) > 300 {
		body = body[:300]
	}
	return false, key, strings.TrimSpace(string(body))
}

func (w *worker) record(i int, lat time.Duration, end time.Time, ok bool, key, sample string, sh *sharedState) {
	st := &w.stats[i]
	st.hist.record(lat)
	if ok {
		st.ok++
	} else {
		st.failed++
		w.errors[key]++
		if _, seen := w.samples[key]; !seen {
			w.samples[key] = sample
		}
		sh.failed.Add(1)
	}
	if end.After(w.lastEnd) {
		w.lastEnd = end
	}
	sh.tl.add(end, lat, !ok)
	sh.measured.Add(1)
}

// classify names a transport error for the error table.
func classify(err error) string {
	var ne net.Error
	switch {
	case errors.Is(err, fasthttp.ErrTimeout), errors.Is(err, fasthttp.ErrDialTimeout), errors.As(err, &ne) && ne.Timeout(), os.IsTimeout(err):
		return "timeout"
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection refused"
	case errors.Is(err, fasthttp.ErrConnectionClosed), errors.Is(err, syscall.ECONNRESET), errors.Is(err, io.EOF), errors.Is(err, syscall.EPIPE):
		return "connection closed"
	case errors.Is(err, fasthttp.ErrNoFreeConns):
		return "no free connection"
	default:
		return "transport error"
	}
}

// sharedState is what the workers and the progress bar share.
type sharedState struct {
	tl       *timeline
	sent     atomic.Int64 // every completion, warm-up included
	measured atomic.Int64
	failed   atomic.Int64
}

// runLoad runs one load and returns what it measured. A closed loop keeps
// spec.conns requests in flight and measures each from its send. An open
// loop sends at spec.rate on a fixed schedule and measures each request from
// its intended send time, so a stall in the server shows as the latency of
// every request that should have been sent during it (no coordinated
// omission). It stops at spec.limit whatever happens.
func runLoad(ctx context.Context, spec loadSpec) (*loadResult, error) {
	if err := spec.validate(); err != nil {
		return nil, err
	}
	hostport, _ := loopbackHostPort(spec.target)
	base := strings.TrimRight(spec.target, "/")
	hc := &fasthttp.HostClient{
		Addr:                      hostport,
		Name:                      "direktiv-authz-bench",
		MaxConns:                  spec.conns,
		MaxIdemponentCallAttempts: 1,
		RetryIfErr:                func(*fasthttp.Request, int, error) (bool, bool) { return false, false },
		ReadTimeout:               spec.timeout,
		WriteTimeout:              spec.timeout,
		MaxConnWaitTimeout:        spec.timeout,
		MaxIdleConnDuration:       time.Minute,
		DisablePathNormalizing:    true,
	}
	defer hc.CloseIdleConnections()

	start := time.Now()
	hardStop := start.Add(spec.limit)
	var warmEnd, planEnd time.Time
	var warmSlots, totalSlots int64
	interval := 0.0 // open loop: seconds between intended sends
	if spec.rate > 0 {
		interval = 1 / spec.rate
		warmSlots = int64(spec.warmup.Seconds() * spec.rate)
		if spec.n > 0 {
			totalSlots = warmSlots + spec.n
		} else {
			totalSlots = warmSlots + int64(spec.duration.Seconds()*spec.rate)
		}
		at := func(i int64) time.Time { return start.Add(time.Duration(float64(i) * interval * float64(time.Second))) }
		warmEnd, planEnd = at(warmSlots), at(totalSlots)
		if s := planEnd.Add(max(spec.timeout, time.Second)); s.Before(hardStop) {
			hardStop = s
		}
	} else {
		warmEnd = start.Add(spec.warmup)
		if spec.duration > 0 {
			planEnd = warmEnd.Add(spec.duration)
		}
	}
	span := spec.duration
	if spec.rate > 0 {
		span = planEnd.Sub(warmEnd)
	}
	sh := &sharedState{tl: newTimeline(warmEnd, span)}

	runCtx, cancel := context.WithDeadline(ctx, hardStop)
	defer cancel()
	var (
		wg      sync.WaitGroup
		tickets atomic.Int64 // closed loop with -n: measured sends claimed
		slots   atomic.Int64 // open loop: next schedule slot
	)
	workers := make([]*worker, spec.conns)
	for i := range workers {
		workers[i] = newWorker(hc, base, spec.kinds, uint64(i+1))
	}
	if spec.onMeasure != nil {
		measured := make(chan struct{})
		t := time.AfterFunc(time.Until(warmEnd), func() {
			defer close(measured)
			spec.onMeasure()
		})
		defer func() {
			if !t.Stop() {
				<-measured
			}
		}()
	}
	stopBar := startProgress(spec, sh, start, warmEnd, planEnd)
	for _, w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if spec.rate > 0 {
				w.openLoop(runCtx, sh, &slots, totalSlots, warmSlots, start, interval, hardStop)
			} else {
				w.closedLoop(runCtx, sh, &tickets, spec.n, warmEnd, planEnd, hardStop)
			}
		}()
	}
	wg.Wait()
	stopTime := time.Now()
	stopBar()

	res := &loadResult{spec: spec, started: warmEnd, all: newHistogram(), errors: map[string]int64{}, samples: map[string]string{},
		kinds: make([]kindStats, len(spec.kinds)), interrupted: ctx.Err() != nil}
	for i := range res.kinds {
		res.kinds[i].hist = newHistogram()
	}
	var lastEnd time.Time
	for _, w := range workers {
		for i, st := range w.stats {
			res.kinds[i].hist.merge(st.hist)
			res.kinds[i].ok += st.ok
			res.kinds[i].failed += st.failed
			res.all.merge(st.hist)
			res.ok += st.ok
			res.failed += st.failed
		}
		for k, v := range w.errors {
			res.errors[k] += v
			if _, ok := res.samples[k]; !ok {
				res.samples[k] = w.samples[k]
			}
		}
		if w.lastEnd.After(lastEnd) {
			lastEnd = w.lastEnd
		}
		// Open loop: a claimed slot the worker gave up on at the hard stop
		// was due but never sent. Its latency is at least the wait so far.
		for _, intended := range w.unsent {
			res.recordUnsent(stopTime.Sub(intended))
		}
		w.release()
	}
	if spec.rate > 0 && !res.interrupted {
		for i := max(slots.Load(), warmSlots); i < totalSlots; i++ {
			intended := start.Add(time.Duration(float64(i) * interval * float64(time.Second)))
			res.recordUnsent(stopTime.Sub(intended))
		}
	}
	if !lastEnd.IsZero() {
		res.window = lastEnd.Sub(warmEnd)
	}
	if spec.duration > 0 && spec.rate == 0 && res.window < spec.duration && !res.interrupted && res.requests() > 0 {
		res.window = spec.duration // every worker stalled at the end: the window still ran its length
	}
	res.timeline = sh.tl.points(res.window)
	return res, nil
}

// recordUnsent counts an intended send the generator never made.
func (r *loadResult) recordUnsent(lat time.Duration) {
	const key = "unsent (generator fell behind the schedule)"
	r.unsent++
	r.failed++
	r.errors[key]++
	r.samples[key] = "the run hit its hard stop with these sends still due; their latency is recorded as the time they had waited"
	r.all.record(lat)
	if len(r.kinds) == 1 {
		r.kinds[0].hist.record(lat)
		r.kinds[0].failed++
	}
}

func (w *worker) closedLoop(ctx context.Context, sh *sharedState, tickets *atomic.Int64, n int64, warmEnd, planEnd, hardStop time.Time) {
	for ctx.Err() == nil {
		begin := time.Now()
		if !begin.Before(hardStop) {
			return
		}
		measured := !begin.Before(warmEnd)
		if measured {
			if n > 0 {
				if tickets.Add(1) > n {
					return
				}
			} else if !begin.Before(planEnd) {
				return
			}
		}
		i := w.pick()
		ok, key, sample := w.send(i)
		end := time.Now()
		sh.sent.Add(1)
		if measured {
			w.record(i, end.Sub(begin), end, ok, key, sample, sh)
		}
	}
}

func (w *worker) openLoop(ctx context.Context, sh *sharedState, slots *atomic.Int64, total, warm int64, start time.Time, interval float64, hardStop time.Time) {
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for ctx.Err() == nil {
		slot := slots.Add(1) - 1
		if slot >= total {
			return
		}
		intended := start.Add(time.Duration(float64(slot) * interval * float64(time.Second)))
		now := time.Now()
		if d := intended.Sub(now); d > 0 {
			timer.Reset(d)
			select {
			case <-ctx.Done():
			case <-timer.C:
			}
		}
		if !time.Now().Before(hardStop) {
			if slot >= warm {
				w.unsent = append(w.unsent, intended) // due, never sent: the schedule ran past the hard stop
			}
			return
		}
		if ctx.Err() != nil {
			return // interrupted
		}
		i := w.pick()
		ok, key, sample := w.send(i)
		end := time.Now()
		sh.sent.Add(1)
		if slot >= warm {
			w.record(i, end.Sub(intended), end, ok, key, sample, sh)
		}
	}
}

// startProgress draws a progress bar on spec.progress until the returned
// function is called; it draws nothing when spec.progress is nil.
// Hand-written: a progress-bar library counts items, where a run's progress
// is requests or time and its line carries the phase, the rate and errors.
func startProgress(spec loadSpec, sh *sharedState, start, warmEnd, planEnd time.Time) (stop func()) {
	if spec.progress == nil {
		return func() {}
	}
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		tick := time.NewTicker(200 * time.Millisecond)
		defer tick.Stop()
		lastT, lastN := start, int64(0)
		rate := 0.0
		draw := func(final bool) {
			now := time.Now()
			n := sh.sent.Load()
			if dt := now.Sub(lastT).Seconds(); dt > 0.15 {
				rate = float64(n-lastN) / dt
				lastT, lastN = now, n
			}
			frac := 0.0
			switch {
			case final:
				frac = 1
			case spec.n > 0:
				frac = float64(sh.measured.Load()) / float64(spec.n)
			case !planEnd.IsZero():
				frac = now.Sub(start).Seconds() / planEnd.Sub(start).Seconds()
			}
			frac = min(max(frac, 0), 1)
			const width = 28
			fill := int(frac * width)
			bar := strings.Repeat("=", fill) + strings.Repeat(" ", width-fill)
			if fill < width {
				bar = bar[:fill] + ">" + bar[fill+1:]
			}
			phase := "measure"
			if now.Before(warmEnd) && !final {
				phase = "warm-up"
			}
			fmt.Fprintf(spec.progress, "\r\033[K%-22s [%s] %3.0f%% %s %5.1fs %9.0f req/s  errors %d",
				truncate(spec.name, 22), bar, frac*100, phase, now.Sub(start).Seconds(), rate, sh.failed.Load())
			if final {
				fmt.Fprint(spec.progress, "\r\033[K")
			}
		}
		for {
			select {
			case <-done:
				draw(true)
				return
			case <-tick.C:
				draw(false)
			}
		}
	}()
	return func() { close(done); <-finished }
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n-1] + "…"
}
