package sidecar

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/valyala/fasthttp"

	"github.com/direktiv/direktiv-authz/internal/credential"
)

// BenchmarkForward measures one forwarded request through the real server:
// a fasthttp client, the sidecar, and a minimal net/http upstream answering
// a small JSON body, all on loopback; ", server" on the server alone
// (--event-loops off), with the framing check. "minted" adds authentication (token
// cache warm; a Redis lookup once per --token-cache-ttl), the route
// decision and the token swap; "minted, no cache" asks Redis every time.
func BenchmarkForward(b *testing.B) {
	body := []byte(`{"namespace":"ns1","variables":[]}` + "\n")
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Write(body)
	}))
	b.Cleanup(up.Close)

	run := func(b *testing.B, s *sidecar, token string) {
		benchRequests(b, s, http.StatusOK, func(req *fasthttp.Request) {
			req.SetRequestURI("http://" + s.app.addr() + "/api/namespaces/ns1/vars?limit=10")
			if token != "" {
				req.Header.Set(credential.HeaderToken, token)
			}
		})
	}

	b.Run("admin token", func(b *testing.B) {
		s, _ := startEnforcer(b, up.URL, []string{"--log-level", "error"})
		run(b, s, testAdminToken)
	})
	b.Run("admin token, server", func(b *testing.B) {
		s, _ := startEnforcer(b, up.URL, []string{"--log-level", "error", "--event-loops", "off"})
		run(b, s, testAdminToken)
	})
	b.Run("minted", func(b *testing.B) {
		s, _ := startEnforcer(b, up.URL, []string{"--log-level", "error"}, "DIREKTIV_AUTHZ_UPSTREAM_API_KEY="+testUpstreamKey)
		run(b, s, s.mintToken(b, "ns1", "variablesView"))
	})
	b.Run("minted, no cache", func(b *testing.B) {
		s, _ := startEnforcer(b, up.URL, []string{"--log-level", "error", "--token-cache-ttl", "0"}, "DIREKTIV_AUTHZ_UPSTREAM_API_KEY="+testUpstreamKey)
		run(b, s, s.mintToken(b, "ns1", "variablesView"))
	})
}

// benchRequests sends the request setup builds, from parallel goroutines
// over pooled keep-alive connections, b.N times in all, and fails unless
// every answer has status want.
func benchRequests(b *testing.B, s *sidecar, want int, setup func(*fasthttp.Request)) {
	b.Helper()
	c := &fasthttp.HostClient{Addr: s.app.addr(), MaxConns: 1024}
	b.Cleanup(c.CloseIdleConnections)
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		req := fasthttp.AcquireRequest()
		resp := fasthttp.AcquireResponse()
		defer fasthttp.ReleaseRequest(req)
		defer fasthttp.ReleaseResponse(resp)
		setup(req)
		for pb.Next() {
			if err := c.Do(req, resp); err != nil {
				b.Error(err)
				return
			}
			if resp.StatusCode() != want {
				b.Errorf("status %d, want %d: %s", resp.StatusCode(), want, resp.Body())
				return
			}
		}
	})
}
