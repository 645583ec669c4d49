package sidecar

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/direktiv/direktiv-authz/internal/testutil"
)

// TestRelayOwnEndpointsKeepForwardingConnections, with the in-memory dev
// store, where the loops do not serve mints themselves (with Redis they do:
// relay_mint_test.go): a connection that has forwarded before stays on the
// event loops when it mints (the mint is served off the loop: no handoff);
// one that starts with a mint is handed to the server for good. Either way
// each request gets its status, and each mint its secret.
func TestRelayOwnEndpointsKeepForwardingConnections(t *testing.T) {
	up := startUpstream(t)
	s := startForwarder(t, up)
	mint := rawMint(mintTarget("ns1"), testAdminToken, `{"policies":["variablesView"]}`)
	forward := "GET /api/version HTTP/1.1\r\nHost: x\r\nDirektiv-Token: " + testAdminToken + "\r\n\r\n"

	for _, tc := range []struct {
		name     string
		requests []string
		want     []int
		handoffs uint64
	}{
		{"forward, mint, forward", []string{forward, mint, forward}, []int{200, 201, 200}, 0},
		{"mint first", []string{mint, forward, mint}, []int{201, 200, 201}, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := s.app.relay.Handoffs()
			c := dialRaw(t, s.app.addr())
			for i, req := range tc.requests {
				r := c.roundTrip(t, req)
				if r.status != tc.want[i] {
					t.Fatalf("request %d: status %d, want %d: %s", i, r.status, tc.want[i], r.body)
				}
				if tc.want[i] == 201 && !strings.Contains(string(r.body), `"token":"dkt_`) {
					t.Fatalf("request %d: no token in %s", i, r.body)
				}
			}
			if got := s.app.relay.Handoffs() - before; got != tc.handoffs {
				t.Errorf("%d connections handed to the server, want %d", got, tc.handoffs)
			}
		})
	}
}

// TestRelayDotSegments: a path with a "." or ".." segment is answered 400
// on both paths, whoever sends it (engine.Route: such a path could reach a
// route other than the one it names), and never forwarded.
func TestRelayDotSegments(t *testing.T) {
	up := startUpstream(t)
	s := startForwarder(t, up)
	for _, tc := range []struct{ target, token string }{
		{"/api/./version", ""},
		{"/api/namespaces/ns1/../ns2/vars", testAdminToken},
		{"/api/v2/namespaces/ns1/files/../../../../etc", "some-direktiv-token"},
	} {
		t.Run(tc.target, func(t *testing.T) {
			up.Reset()
			req := "GET " + tc.target + " HTTP/1.1\r\nHost: x\r\n"
			if tc.token != "" {
				req += "Direktiv-Token: " + tc.token + "\r\n"
			}
			r := rawRequest(t, s.app.addr(), req+"\r\n")
			if r.status != http.StatusBadRequest {
				t.Errorf("status %d, want 400 as the server answers", r.status)
			}
			up.None(t)
		})
	}
}

// TestRelayResponseHeaders: responses carry Server: direktiv-authz and a
// Date on both paths: forwarded ones, public routes, and the sidecar's own
// failure answers (502/503/504).
func TestRelayResponseHeaders(t *testing.T) {
	up := startUpstream(t)
	s := startForwarder(t, up)
	const req = "GET /api/version HTTP/1.1\r\nHost: x\r\nDirektiv-Token: " + testAdminToken + "\r\n\r\n"
	r := rawRequest(t, s.app.addr(), req)
	if r.status != 200 || r.header.Get("Server") != "direktiv-authz" {
		t.Errorf("forwarded: status %d, Server %q; want Server: direktiv-authz", r.status, r.header.Get("Server"))
	}
	// A public route, without a credential, too.
	r = rawRequest(t, s.app.addr(), "GET /test/x HTTP/1.1\r\nHost: x\r\n\r\n")
	if r.status != 200 || r.header.Get("Server") != "direktiv-authz" {
		t.Errorf("forwarded (public): status %d, Server %q; want Server: direktiv-authz", r.status, r.header.Get("Server"))
	}
	down := startSidecar(t, []string{"--dev", "--upstream", "http://" + testutil.ClosedAddr(t)})
	r = rawRequest(t, down.app.addr(), req)
	if r.status != 502 || r.header.Get("Date") == "" || r.header.Get("Server") != "direktiv-authz" {
		t.Errorf("502: status %d, Date %q, Server %q", r.status, r.header.Get("Date"), r.header.Get("Server"))
	}
}

// TestRelayPipelinedMintedTokens: pipelined on one connection, with the
// token cache off (every minted token waits for a lookup off the loop):
// allowed requests go upstream with the API key in place of the minted
// token (or of the admin token); refusals (another token's, another
// namespace, a missing permission, no credential) are answered in order
// and never reach the upstream; the note of one request's lookup never
// decides another's.
func TestRelayPipelinedMintedTokens(t *testing.T) {
	up := startUpstream(t)
	s, _ := startEnforcer(t, up.URL(), []string{"--token-cache-ttl", "0"}, "DIREKTIV_AUTHZ_UPSTREAM_API_KEY="+testUpstreamKey)
	if s.app.relay == nil {
		t.Fatal("the relay is off")
	}
	tokA := s.mintToken(t, "ns1", "variablesView")
	tokB := s.mintToken(t, "ns2", "variablesView", "variablesManage")
	up.Reset()
	type step struct {
		method, target, token string
		status                int
	}
	steps := []step{
		{"GET", "/api/namespaces/ns1/vars?i=1", tokA, 200},
		{"DELETE", "/api/namespaces/ns1/vars/x", tokA, 403},
		{"GET", "/api/namespaces/ns2/vars?i=3", tokA, 403},
		{"DELETE", "/api/namespaces/ns1/vars/y", tokB, 403},
		{"DELETE", "/api/namespaces/ns2/vars/z", tokB, 200},
		{"HEAD", "/api/namespaces/ns2/vars?i=6", tokA, 403},
		{"GET", "/api/version", testAdminToken, 200},
		{"GET", "/api/version", "", 401},
		{"GET", "/api/namespaces/ns1/vars?i=9", tokA, 200},
	}
	var b strings.Builder
	for _, st := range steps {
		b.WriteString(st.method + " " + st.target + " HTTP/1.1\r\nHost: x\r\n")
		if st.token != "" {
			b.WriteString("Direktiv-Token: " + st.token + "\r\n")
		}
		b.WriteString("\r\n")
	}
	c, err := net.Dial("tcp", s.app.addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	io.WriteString(c, b.String())
	br := bufio.NewReader(c)
	var want []string
	for i, st := range steps {
		resp, err := http.ReadResponse(br, &http.Request{Method: st.method})
		if err != nil {
			t.Fatalf("response %d: %v", i, err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != st.status {
			t.Errorf("%s %s: status %d, want %d", st.method, st.target, resp.StatusCode, st.status)
		}
		if st.status == 200 {
			want = append(want, st.method+" "+st.target)
		}
	}
	reqs := up.Requests()
	var got []string
	for _, r := range reqs {
		got = append(got, r.Method+" "+r.URI)
		wantOnlyKey(t, r)
	}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Fatalf("the upstream got %q, want %q", got, want)
	}
	noSecret(t, s, reqs, tokA)
	noSecret(t, s, reqs, tokB)
}
