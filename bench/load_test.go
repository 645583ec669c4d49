//go:build linux

package main

import (
	"context"
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
)

// serve runs handler on a loopback port until the test ends and returns
// its base URL.
func serve(tb testing.TB, handler fasthttp.RequestHandler) string {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	srv := &fasthttp.Server{Handler: handler, CloseOnShutdown: true}
	go func() { _ = srv.Serve(ln) }()
	tb.Cleanup(func() { _ = srv.Shutdown() })
	return "http://" + ln.Addr().String()
}

// startStub runs the bench's stub upstream in-process.
func startStub(tb testing.TB, key string) (*stub, string) {
	tb.Helper()
	s := newStub(key)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = s.serve(ctx, ln); close(done) }()
	tb.Cleanup(func() { cancel(); <-done })
	return s, "http://" + ln.Addr().String()
}

func directKind(token string) []kind {
	return []kind{{name: "direct", weight: 1, method: "GET", uri: "/api/v2/namespaces/bench/instances", token: token, expect: 200}}
}

func mustRun(tb testing.TB, spec loadSpec) *loadResult {
	tb.Helper()
	res, err := runLoad(context.Background(), spec)
	if err != nil {
		tb.Fatal(err)
	}
	return res
}

func TestClosedLoopAgainstStub(t *testing.T) {
	st, base := startStub(t, "upstream-key")
	res := mustRun(t, loadSpec{name: "direct", target: base, kinds: directKind("upstream-key"), conns: 4,
		duration: 300 * time.Millisecond, warmup: 100 * time.Millisecond, timeout: time.Second})
	if res.ok < 50 || res.failed != 0 {
		t.Fatalf("ok %d failed %d (errors %v), want ≥ 50 and 0", res.ok, res.failed, res.errors)
	}
	if res.all.count() != res.ok {
		t.Fatalf("histogram holds %d, want %d", res.all.count(), res.ok)
	}
	// The stub saw the warm-up too, and at most one request per connection
	// after the window closed.
	if seen := st.requests.Load(); seen <= res.ok || st.rejected.Load() != 0 {
		t.Fatalf("stub saw %d requests (%d rejected); the generator recorded %d", seen, st.rejected.Load(), res.ok)
	}
	if res.window < 250*time.Millisecond || res.window > time.Second {
		t.Fatalf("window %v, want about 300ms", res.window)
	}
	var sum int64
	for _, p := range res.timeline {
		sum += p.Requests
	}
	if sum != res.requests() {
		t.Fatalf("timeline holds %d requests, want %d", sum, res.requests())
	}
	if p99 := res.all.quantile(0.99); p99 <= 0 || p99 > time.Second {
		t.Fatalf("p99 %v", p99)
	}
}

func TestClosedLoopExactCount(t *testing.T) {
	_, base := startStub(t, "")
	res := mustRun(t, loadSpec{name: "n", target: base, kinds: directKind(""), conns: 3, n: 200, timeout: time.Second})
	if res.requests() != 200 || res.ok != 200 {
		t.Fatalf("requests %d ok %d, want 200", res.requests(), res.ok)
	}
}

func TestErrorsByStatus(t *testing.T) {
	_, base := startStub(t, "the-key")
	res := mustRun(t, loadSpec{name: "nokey", target: base, kinds: directKind("wrong"), conns: 2, n: 50, timeout: time.Second})
	if res.ok != 0 || res.failed != 50 || res.errors["HTTP 401"] != 50 {
		t.Fatalf("ok %d failed %d errors %v, want 50 × HTTP 401", res.ok, res.failed, res.errors)
	}
	if !strings.Contains(res.samples["HTTP 401"], "upstream API key") {
		t.Fatalf("sample %q does not show the body", res.samples["HTTP 401"])
	}
	if res.throughput() != 0 {
		t.Fatalf("throughput %v counts failures", res.throughput())
	}
}

func TestConnectionRefusedIsAnError(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	base := "http://" + ln.Addr().String()
	ln.Close()
	res := mustRun(t, loadSpec{name: "refused", target: base, kinds: directKind(""), conns: 1, n: 5, timeout: time.Second})
	if res.failed != 5 || res.errors["connection refused"] != 5 {
		t.Fatalf("errors %v, want 5 × connection refused", res.errors)
	}
}

// stallServer answers at once, except for the stallAt-th request, which it
// holds for stall.
func stallServer(tb testing.TB, stallAt int64, stall time.Duration) string {
	var n atomic.Int64
	return serve(tb, func(ctx *fasthttp.RequestCtx) {
		if n.Add(1) == stallAt {
			time.Sleep(stall)
		}
		ctx.SetBodyString("{}")
	})
}

// TestOpenLoopCountsStalls is coordinated omission: one 300 ms stall at
// 400 req/s delays the ~120 requests due during it. Measured from their
// intended send times they show it; a closed loop, measuring from the
// actual send, sees one slow request only.
func TestOpenLoopCountsStalls(t *testing.T) {
	const stall = 300 * time.Millisecond
	open := mustRun(t, loadSpec{name: "open", target: stallServer(t, 30, stall), kinds: directKind(""), conns: 1, rate: 400,
		duration: 500 * time.Millisecond, timeout: 2 * time.Second})
	if open.requests() != 200 || open.failed != 0 {
		t.Fatalf("open loop: %d requests, %d failed; want 200, 0", open.requests(), open.failed)
	}
	if p90 := open.all.quantile(0.90); p90 < 100*time.Millisecond {
		t.Fatalf("open loop p90 %v: the stall is hidden (want ≥ 100ms)", p90)
	}
	if max := open.all.maxValue(); max < stall {
		t.Fatalf("open loop max %v, want ≥ %v", max, stall)
	}
	closed := mustRun(t, loadSpec{name: "closed", target: stallServer(t, 30, stall), kinds: directKind(""), conns: 1, n: 200, timeout: 2 * time.Second})
	if p90 := closed.all.quantile(0.90); p90 > 50*time.Millisecond {
		t.Fatalf("closed loop p90 %v, want the stall to touch one request only", p90)
	}
	if max := closed.all.maxValue(); max < stall {
		t.Fatalf("closed loop max %v, want ≥ %v", max, stall)
	}
}

func TestOpenLoopRate(t *testing.T) {
	_, base := startStub(t, "")
	res := mustRun(t, loadSpec{name: "rate", target: base, kinds: directKind(""), conns: 4, rate: 500,
		duration: 400 * time.Millisecond, warmup: 100 * time.Millisecond, timeout: time.Second})
	// 500/s for 0.4 s measured; the 50 warm-up sends are not recorded.
	if res.requests() != 200 || res.failed != 0 {
		t.Fatalf("requests %d failed %d, want 200 and 0", res.requests(), res.failed)
	}
	if tp := res.throughput(); tp < 400 || tp > 600 {
		t.Fatalf("throughput %.0f/s, want about 500", tp)
	}
}

// A server slower than the schedule, past the hard stop: the sends still
// due are counted as unsent errors, not silently dropped.
func TestOpenLoopUnsentAtHardStop(t *testing.T) {
	base := serve(t, func(ctx *fasthttp.RequestCtx) { time.Sleep(700 * time.Millisecond) })
	res := mustRun(t, loadSpec{name: "slow", target: base, kinds: directKind(""), conns: 1, rate: 100,
		duration: 300 * time.Millisecond, timeout: 200 * time.Millisecond})
	if res.requests() != 30 || res.ok != 0 {
		t.Fatalf("requests %d ok %d, want 30 and 0 (errors %v)", res.requests(), res.ok, res.errors)
	}
	if res.unsent == 0 || res.errors["timeout"] == 0 || res.unsent+res.errors["timeout"] != 30 {
		t.Fatalf("unsent %d, errors %v: want timeouts and unsent adding up to 30", res.unsent, res.errors)
	}
	if res.all.maxValue() < time.Second {
		t.Fatalf("max %v: unsent sends must count the time they waited", res.all.maxValue())
	}
}

func TestSpecValidation(t *testing.T) {
	base := loadSpec{name: "x", target: "http://127.0.0.1:1", kinds: directKind(""), conns: 1, duration: time.Second, timeout: time.Second}
	tests := []struct {
		name string
		edit func(*loadSpec)
	}{
		{"not loopback", func(s *loadSpec) { s.target = "http://10.1.2.3:80" }},
		{"https", func(s *loadSpec) { s.target = "https://127.0.0.1:1" }},
		{"no conns", func(s *loadSpec) { s.conns = 0 }},
		{"too many conns", func(s *loadSpec) { s.conns = maxConns + 1 }},
		{"duration and n", func(s *loadSpec) { s.n = 5 }},
		{"neither duration nor n", func(s *loadSpec) { s.duration = 0 }},
		{"negative rate", func(s *loadSpec) { s.rate = -1 }},
		{"no timeout", func(s *loadSpec) { s.timeout = 0 }},
		{"no kinds", func(s *loadSpec) { s.kinds = nil }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := base
			tt.edit(&s)
			if _, err := runLoad(context.Background(), s); err == nil {
				t.Fatal("accepted")
			}
		})
	}
}

// fakeSidecar answers like the sidecar for the bench's three paths: mint
// with the admin token or a token it minted, forward with a minted token,
// pass without one.
func fakeSidecar(tb testing.TB) string {
	const admin, minted = "admin-secret", "dkt_minted"
	return serve(tb, func(ctx *fasthttp.RequestCtx) {
		tok := string(ctx.Request.Header.Peek(headerToken))
		path := string(ctx.Path())
		switch {
		case path == "/api/namespaces/bench/auth/token" && ctx.IsPost():
			var body struct {
				Policies []string `json:"policies"`
			}
			if json.Unmarshal(ctx.PostBody(), &body) != nil || len(body.Policies) == 0 {
				ctx.SetStatusCode(400)
				return
			}
			if tok != admin && tok != minted {
				ctx.SetStatusCode(401)
				return
			}
			ctx.SetStatusCode(201)
			ctx.SetBodyString(`{"id":"0b1c","token":"` + minted + `"}`)
		case path == "/api/v2/namespaces/bench/instances" && tok == minted:
			ctx.SetBody(stubBody)
		case path == "/assets/index.js" && tok == "":
			ctx.SetBodyString(`{}`)
		default:
			ctx.SetStatusCode(403)
		}
	})
}

// TestRunMixedWritesReports is the command as a user runs it: it mints its
// own caller, sends the blend and writes the JSON and HTML reports.
func TestRunMixedWritesReports(t *testing.T) {
	target := fakeSidecar(t)
	dir := t.TempDir()
	jsonPath, htmlPath := filepath.Join(dir, "r.json"), filepath.Join(dir, "r.html")
	var out strings.Builder
	getenv := func(k string) string { return map[string]string{"BENCH_ADMIN_TOKEN": "admin-secret"}[k] }
	err := run(context.Background(), []string{"-scenario", "mixed", "-target", target, "-c", "3", "-duration", "300ms",
		"-warmup", "50ms", "-mix", "mint=1,forward=8,pass=1", "-json", jsonPath, "-html", htmlPath, "-quiet"}, getenv, &out, &out)
	if err != nil {
		t.Fatalf("run: %v\n%s", err, out.String())
	}
	var rep report
	b, err := os.ReadFile(jsonPath)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &rep); err != nil {
		t.Fatal(err)
	}
	if len(rep.Runs) != 1 {
		t.Fatalf("%d runs in the report", len(rep.Runs))
	}
	r := rep.Runs[0]
	if r.Failed != 0 || r.OK == 0 || r.Throughput <= 0 || r.Latency.P99 <= 0 || r.Latency.P999 < r.Latency.P50 {
		t.Fatalf("run %+v", r)
	}
	names := map[string]int64{}
	for _, k := range r.Kinds {
		names[k.Name] = k.OK
	}
	if len(names) != 3 || names["forward"] <= names["mint"] || names["mint"] == 0 || names["pass"] == 0 {
		t.Fatalf("kinds %v: want all three, forward the most", names)
	}
	if r.Percentiles[len(r.Percentiles)-1][0] != 1 || len(r.Timeline) == 0 {
		t.Fatalf("percentiles or timeline missing")
	}
	html, err := os.ReadFile(htmlPath)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"<svg", "Latency by percentile, closed loop", "Throughput over time", "mixed"} {
		if !strings.Contains(string(html), want) {
			t.Errorf("the HTML report lacks %q", want)
		}
	}
	if strings.Contains(string(html), "admin-secret") || strings.Contains(string(b), "admin-secret") {
		t.Error("a report shows the admin token")
	}
	for _, want := range []string{"p99 ms", "mixed", "forward (weight 8)"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("the text table lacks %q:\n%s", want, out.String())
		}
	}
}

func TestRunRejectsBadFlags(t *testing.T) {
	getenv := func(string) string { return "" }
	for _, args := range [][]string{
		{"-scenario", "nope", "-admin-token", "a"},
		{"-scenario", "forward"}, // no token and no admin token
		{"-mix", "direct=1", "-scenario", "mixed"},
		{"-mint-as", "root"},
		{"-target", "http://192.0.2.1:80", "-scenario", "pass"},
		{"extra"},
	} {
		var out strings.Builder
		if err := run(context.Background(), args, getenv, &out, &out); err == nil {
			t.Errorf("%v: accepted", args)
		}
	}
}

func TestStubChecksTheKey(t *testing.T) {
	st, base := startStub(t, "the-key")
	for _, tt := range []struct {
		token string
		want  int
	}{{"", 200}, {"the-key", 200}, {"dkt_minted", 401}, {"the-key-not", 401}} {
		status, body, err := getStatus(base, "/api/v2/namespaces/bench/instances", tt.token)
		if err != nil || status != tt.want {
			t.Errorf("token %q: HTTP %d %v, want %d", tt.token, status, err, tt.want)
		}
		if status == 200 && body != strings.TrimSpace(string(stubBody)) {
			t.Errorf("token %q: body %q", tt.token, body)
		}
	}
	status, body, err := getStatus(base, "/_bench/stats", "")
	if err != nil || status != 200 {
		t.Fatalf("stats: %d %v", status, err)
	}
	var got stubStats
	if err := json.Unmarshal([]byte(body), &got); err != nil {
		t.Fatal(err)
	}
	if want := (stubStats{Requests: 4, WithKey: 1, NoToken: 1, Rejected: 2}); got != want || st.stats() != want {
		t.Fatalf("stats %+v, want %+v", got, want)
	}
}
