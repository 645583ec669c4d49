package sidecar

import (
	"net/http"
	"strings"
	"testing"
)

// wantRateLimited checks a 429: Retry-After in whole seconds and the JSON
// error naming the limit's setting and rate.
func wantRateLimited(tb testing.TB, r response, retryAfter, setting, rate string) {
	tb.Helper()
	wantError(tb, r, http.StatusTooManyRequests, setting)
	if got := r.header.Get("Retry-After"); got != retryAfter {
		tb.Errorf("Retry-After %q, want %q", got, retryAfter)
	}
	if msg := r.json(tb)["message"].(string); !strings.Contains(msg, rate) || strings.Contains(msg, "dkt_") {
		tb.Errorf("message %q does not name the rate %s (or shows a secret)", msg, rate)
	}
}

func TestMintRateLimitPerToken(t *testing.T) {
	const rate = "2/m" // a burst of two, then one every 30 s
	a, srv := startRedisSidecar(t, "--mint-rate-per-token", rate)
	b := startSidecar(t, []string{"--redis-url", srv.URL(), "--mint-rate-per-token", rate})
	mgr := a.mintOK(t, "ns1", testAdminToken, `{"policies":["permissionsManage"]}`)["token"].(string)
	other := a.mintOK(t, "ns1", testAdminToken, `{"policies":["permissionsManage"]}`)["token"].(string)
	body := `{"policies":["permissionsView"]}`

	// Dry runs count against nothing.
	for range 3 {
		if r := a.do(t, "POST", "/api/namespaces/ns1/auth/token?dry_run=true", mgr, body); r.status != http.StatusOK {
			t.Fatalf("dry run: %d %s", r.status, r.body)
		}
	}
	// The limit is shared by both replicas: one mint on each, then neither.
	a.mintOK(t, "ns1", mgr, body)
	b.mintOK(t, "ns1", mgr, body)
	wantRateLimited(t, a.do(t, "POST", "/api/namespaces/ns1/auth/token", mgr, body), "30", "--mint-rate-per-token", rate)
	wantRateLimited(t, b.do(t, "POST", "/api/namespaces/ns1/auth/token", mgr, body), "30", "--mint-rate-per-token", rate)
	// A dry run is still answered.
	if r := a.do(t, "POST", "/api/namespaces/ns1/auth/token?dry_run=true", mgr, body); r.status != http.StatusOK {
		t.Fatalf("dry run while limited: %d %s", r.status, r.body)
	}
	// Another token, and the admin token (limited per namespace only), are not limited.
	a.mintOK(t, "ns1", other, body)
	for range 3 {
		a.mintOK(t, "ns1", testAdminToken, body)
	}

	wantSamples(t, a.scrape(t), map[string]float64{
		`direktiv_authz_mint_rate_limited_total{limit="token"}`:     1,
		`direktiv_authz_mint_rate_limited_total{limit="namespace"}`: 0,
		`direktiv_authz_mints_total{outcome="refused"}`:             1,
		`direktiv_authz_requests_total{code="429",route="mint"}`:    1,
	})
	if !strings.Contains(a.logs.String(), `"status":429`) {
		t.Error("the refused mint is not in the audit trail")
	}
}

func TestMintRateLimitPerNamespace(t *testing.T) {
	const rate = "2/h" // a burst of two, then one every 30 min
	a, srv := startRedisSidecar(t, "--mint-rate-per-namespace", rate)
	b := startSidecar(t, []string{"--redis-url", srv.URL(), "--mint-rate-per-namespace", rate})
	body := `{"policies":["permissionsManage"]}`

	mgr := a.mintOK(t, "ns1", testAdminToken, body)["token"].(string)
	if r := b.do(t, "POST", "/api/namespaces/ns1/auth/token?dry_run=true", testAdminToken, body); r.status != http.StatusOK {
		t.Fatalf("dry run: %d %s", r.status, r.body)
	}
	b.mintOK(t, "ns1", mgr, body)
	// Every caller, the admin token included, on either replica.
	wantRateLimited(t, a.do(t, "POST", "/api/namespaces/ns1/auth/token", testAdminToken, body), "1800", "--mint-rate-per-namespace", rate)
	wantRateLimited(t, b.do(t, "POST", "/api/namespaces/ns1/auth/token", mgr, body), "1800", "--mint-rate-per-namespace", rate)
	// Other namespaces have limits of their own.
	a.mintOK(t, "ns2", testAdminToken, body)
	wantSamples(t, b.scrape(t), map[string]float64{
		`direktiv_authz_mint_rate_limited_total{limit="namespace"}`: 1,
	})
}

// TestMintRateLimitDevMode: the in-memory store limits within the process.
func TestMintRateLimitDevMode(t *testing.T) {
	s := startSidecar(t, []string{"--dev", "--mint-rate-per-namespace", "1/s"})
	s.mintOK(t, "ns1", testAdminToken, `{"policies":["workflowView"]}`)
	wantRateLimited(t, s.do(t, "POST", "/api/namespaces/ns1/auth/token", testAdminToken, `{"policies":["workflowView"]}`), "1", "--mint-rate-per-namespace", "1/s")
}
