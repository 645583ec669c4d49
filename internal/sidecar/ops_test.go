package sidecar

import (
	"bufio"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/direktiv/direktiv-authz/internal/testutil"
)

// opsGet fetches path from the sidecar's operations listener.
func (s *sidecar) opsGet(tb testing.TB, path string) response {
	tb.Helper()
	if s.app.ops.Addr() == "" {
		tb.Fatal("the sidecar has no operations listener")
	}
	res, err := http.Get("http://" + s.app.ops.Addr() + path)
	if err != nil {
		tb.Fatalf("GET %s: %v", path, err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		tb.Fatal(err)
	}
	return response{status: res.StatusCode, header: res.Header, body: b}
}

// scrape returns every sample of /metrics by series, written as in the
// exposition format: name{label="value",...} with labels sorted by name.
func (s *sidecar) scrape(tb testing.TB) map[string]float64 {
	tb.Helper()
	r := s.opsGet(tb, "/metrics")
	if r.status != http.StatusOK {
		tb.Fatalf("/metrics: %d %s", r.status, r.body)
	}
	out := make(map[string]float64)
	sc := bufio.NewScanner(strings.NewReader(string(r.body)))
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			tb.Fatalf("/metrics line %q: %v", line, err)
		}
		out[line[:i]] = v
	}
	return out
}

// wantSamples fails tb unless every series in want has exactly that value.
func wantSamples(tb testing.TB, got map[string]float64, want map[string]float64) {
	tb.Helper()
	for series, v := range want {
		g, ok := got[series]
		if !ok {
			tb.Errorf("/metrics has no %s", series)
			continue
		}
		if g != v {
			tb.Errorf("%s = %v, want %v", series, g, v)
		}
	}
}

func TestOpsHealthAndReadiness(t *testing.T) {
	s, srv := startRedisSidecar(t)
	if r := s.opsGet(t, "/healthz"); r.status != 200 || string(r.body) != "ok\n" {
		t.Fatalf("/healthz: %d %q", r.status, r.body)
	}
	if r := s.opsGet(t, "/readyz"); r.status != 200 || string(r.body) != "ready\n" {
		t.Fatalf("/readyz: %d %q", r.status, r.body)
	}
	// The operations listener is not the API: nothing else is served there.
	if r := s.opsGet(t, "/api/namespaces/ns1/auth/token"); r.status != http.StatusNotFound {
		t.Errorf("an API path on the operations listener: %d", r.status)
	}

	srv.Stop(t)
	var last response
	testutil.Eventually(t, "/readyz answers 503 once Redis is down", func() bool {
		last = s.opsGet(t, "/readyz")
		return last.status == http.StatusServiceUnavailable
	})
	if !strings.HasPrefix(string(last.body), "not ready: the token store does not answer: ") {
		t.Errorf("/readyz reason %q", last.body)
	}
	if r := s.opsGet(t, "/healthz"); r.status != 200 {
		t.Errorf("/healthz with Redis down: %d, want 200 (the process is alive)", r.status)
	}

	srv.Restart(t)
	testutil.Eventually(t, "/readyz answers 200 once Redis is back", func() bool {
		return s.opsGet(t, "/readyz").status == http.StatusOK
	})

	// Shutdown begins: not ready, whatever Redis says.
	s.app.ops.Stopping()
	if r := s.opsGet(t, "/readyz"); r.status != http.StatusServiceUnavailable || string(r.body) != "not ready: shutting down\n" {
		t.Errorf("/readyz while stopping: %d %q", r.status, r.body)
	}
}

func TestOpsOff(t *testing.T) {
	for _, v := range []string{"off", ""} {
		s := startSidecar(t, []string{"--dev", "--ops-listen", v})
		if s.app.ops.Addr() != "" || s.app.metrics != nil {
			t.Errorf("--ops-listen %q: operations listener %q, metrics %v", v, s.app.ops.Addr(), s.app.metrics != nil)
		}
		s.mintOK(t, "ns1", testAdminToken, `{"policies":["workflowView"]}`)
	}
}

// TestMetrics counts requests under the family classify read, on the
// event loops and on the server alike: minted, forwarded, refused by the
// rules and refused before them.
func TestMetrics(t *testing.T) {
	for _, loops := range []string{"auto", "off"} {
		t.Run("event-loops="+loops, func(t *testing.T) { testMetrics(t, loops) })
	}
}

func testMetrics(t *testing.T, loops string) {
	up := startUpstream(t)
	s, _ := startEnforcer(t, up.URL(), []string{"--token-cache-ttl", "1m", "--event-loops", loops})

	mgr := s.mintOK(t, "ns1", testAdminToken, `{"policies":["permissionsManage"]}`)["token"].(string)
	viewer := s.mintOK(t, "ns1", testAdminToken, `{"policies":["workflowView"]}`)["token"].(string)
	if m := s.mintOK(t, "ns1", mgr, `{"policies":["permissionsView","secretsManage"]}`); len(strs(t, m["dropped"])) != 1 {
		t.Fatalf("want one policy dropped: %v", m)
	}
	if r := s.do(t, "POST", "/api/namespaces/ns1/auth/token", viewer, `{"policies":["workflowView"]}`); r.status != http.StatusForbidden {
		t.Fatalf("mint by a viewer: %d", r.status)
	}
	if r := s.do(t, "POST", "/api/namespaces/ns1/auth/token?dry_run=true", testAdminToken, `{"policies":["workflowView"]}`); r.status != http.StatusOK {
		t.Fatalf("dry run: %d", r.status)
	}
	if r := s.do(t, "GET", "/api/namespaces/ns1/auth/token", mgr, ""); r.status != http.StatusOK {
		t.Fatalf("whoami: %d", r.status)
	}
	if r := s.do(t, "GET", "/api/v2/namespaces/ns1/files/a.yaml", testAdminToken, ""); r.status != http.StatusOK {
		t.Fatalf("forward: %d", r.status)
	}
	if r := s.do(t, "GET", "/api/namespaces/ns1/tree/wf?op=x", testAdminToken, ""); r.status != http.StatusOK {
		t.Fatalf("forward: %d", r.status)
	}
	if r := s.do(t, "GET", "/api/v2/namespaces/ns1/secrets", viewer, ""); r.status != http.StatusForbidden {
		t.Fatalf("secrets by a viewer: %d", r.status)
	}
	if r := s.do(t, "GET", "/api/v2/namespaces/ns1/fil%65s/a.yaml", viewer, ""); r.status != http.StatusBadRequest {
		t.Fatalf("an encoded letter: %d", r.status)
	}

	got := s.scrape(t)
	wantSamples(t, got, map[string]float64{
		`direktiv_authz_mints_total{outcome="granted"}`:     2,
		`direktiv_authz_mints_total{outcome="dropped"}`:     1,
		`direktiv_authz_mints_total{outcome="refused"}`:     1,
		`direktiv_authz_mints_total{outcome="unavailable"}`: 0,

		`direktiv_authz_requests_total{code="201",route="mint"}`:       3,
		`direktiv_authz_requests_total{code="403",route="mint"}`:       1,
		`direktiv_authz_requests_total{code="200",route="mint"}`:       1, // the dry run
		`direktiv_authz_requests_total{code="200",route="tokens"}`:     1,
		`direktiv_authz_requests_total{code="200",route="v2/files"}`:   1,
		`direktiv_authz_requests_total{code="200",route="v1/tree"}`:    1,
		`direktiv_authz_requests_total{code="403",route="v2/secrets"}`: 1,
		`direktiv_authz_requests_total{code="400",route="v2/other"}`:   1,

		// Engine: five mint decisions (the dry run's included) and four
		// route decisions (whoami, the two forwarded requests: the rules
		// are asked for the admin token too, and the viewer's refused one).
		`direktiv_authz_decision_duration_seconds_count{kind="mint"}`:  5,
		`direktiv_authz_decision_duration_seconds_count{kind="route"}`: 4,
		// Store: three tokens stored; the two minted tokens looked up once
		// each, then served from the cache.
		`direktiv_authz_store_duration_seconds_count{op="create"}`: 3,
		`direktiv_authz_store_duration_seconds_count{op="lookup"}`: 2,
		`direktiv_authz_store_errors_total{op="create"}`:           0,
		`direktiv_authz_token_cache_lookups_total{result="miss"}`:  2,
		`direktiv_authz_token_cache_lookups_total{result="hit"}`:   2,

		`direktiv_authz_upstream_duration_seconds_count`:       2,
		`direktiv_authz_upstream_errors_total{kind="timeout"}`: 0,
		`direktiv_authz_upstream_streams`:                      0,

		`direktiv_authz_policy_info{revision="` + s.app.engine.Revision() + `"}`: 1,
		`direktiv_authz_policy_reloads_total{result="ok"}`:                       0,
		`direktiv_authz_policy_reloads_total{result="failed"}`:                   0,
		`direktiv_authz_mint_rate_limited_total{limit="token"}`:                  0,
	})
	for _, series := range []string{"go_goroutines", "process_cpu_seconds_total", "direktiv_authz_token_cache_entries"} {
		if _, ok := got[series]; !ok {
			t.Errorf("/metrics has no %s", series)
		}
	}
	for series := range got {
		if strings.Contains(series, "ns1") || strings.Contains(series, "dkt_") {
			t.Errorf("a namespace or a secret in a label: %s", series)
		}
	}
}

func TestMetricsUpstreamErrors(t *testing.T) {
	s := startSidecar(t, []string{"--dev", "--upstream", "http://" + testutil.ClosedAddr(t)})
	if r := s.do(t, "GET", "/api/version", testAdminToken, ""); r.status != http.StatusBadGateway {
		t.Fatalf("status %d, want 502: %s", r.status, r.body)
	}
	wantSamples(t, s.scrape(t), map[string]float64{
		`direktiv_authz_upstream_errors_total{kind="unreachable"}`:     1,
		`direktiv_authz_upstream_errors_total{kind="broken"}`:          0,
		`direktiv_authz_upstream_duration_seconds_count`:               0,
		`direktiv_authz_requests_total{code="502",route="v1/version"}`: 1,
	})
}

func TestMetricsMintUnavailable(t *testing.T) {
	s, srv := startRedisSidecar(t)
	srv.Stop(t)
	if r := s.do(t, "POST", "/api/namespaces/ns1/auth/token", testAdminToken, `{"policies":["workflowView"]}`); r.status != http.StatusServiceUnavailable {
		t.Fatalf("status %d, want 503", r.status)
	}
	wantSamples(t, s.scrape(t), map[string]float64{
		`direktiv_authz_mints_total{outcome="unavailable"}`: 1,
		`direktiv_authz_store_errors_total{op="create"}`:    1,
	})
}
