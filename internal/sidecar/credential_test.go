package sidecar

import (
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/direktiv/direktiv-authz/internal/config"
	"github.com/direktiv/direktiv-authz/internal/testutil"
)

// TestCredentials runs against one sidecar per data path, in front of the
// recording stand-in, with an upstream API key in its default header
// (Direktiv-Api-Key).
func TestCredentials(t *testing.T) {
	onBothPaths(t, func(t *testing.T, loops string) {
		up := startUpstream(t)
		s, _ := startEnforcer(t, up.URL(), []string{"--event-loops", loops}, config.EnvUpstreamAPIKey+"="+testUpstreamKey)
		viewer := s.mintToken(t, "ns1", "variablesView")
		t.Run("every credential header", func(t *testing.T) { testCredentialHeaders(t, s, up, viewer) })
		t.Run("refused requests", func(t *testing.T) { testCredentialRefusals(t, s, up, viewer) })
		t.Run("the secret never reaches Direktiv", func(t *testing.T) { testSecretNeverForwarded(t, s, up, viewer) })
		t.Run("Connection cannot remove the key", func(t *testing.T) { testConnectionKeepsKey(t, s, up, viewer) })
		t.Run("own endpoints", func(t *testing.T) { testCredentialOwnEndpoints(t, s, viewer) })
	})
}

// send sends one request with the given header lines (name, value pairs)
// on a connection of its own, so that names keep their spelling and
// repeated headers stay repeated.
func (s *sidecar) send(tb testing.TB, method, target string, headers ...string) response {
	tb.Helper()
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s HTTP/1.1\r\nHost: sidecar\r\nConnection: close\r\n", method, target)
	for i := 0; i+1 < len(headers); i += 2 {
		fmt.Fprintf(&b, "%s: %s\r\n", headers[i], headers[i+1])
	}
	b.WriteString("\r\n")
	return rawRequest(tb, s.app.addr(), b.String())
}

// wantForwardedWithKey checks that the upstream received exactly one
// request, with the upstream key as its only credential.
func wantForwardedWithKey(tb testing.TB, up *testutil.Upstream, uri string) {
	tb.Helper()
	got := up.Only(tb)
	if got.URI != uri {
		tb.Fatalf("the upstream received %s, want %s", got.URI, uri)
	}
	if v := got.Header.Values("Direktiv-Api-Key"); len(v) != 1 || v[0] != testUpstreamKey {
		tb.Fatalf("Direktiv-Api-Key upstream: %q, want only the upstream key", v)
	}
	if v := got.Header.Values("Direktiv-Token"); len(v) != 0 {
		tb.Fatalf("Direktiv-Token upstream: %q, want none", v)
	}
	if v := got.Header.Values("Authorization"); len(v) != 0 {
		tb.Fatalf("Authorization upstream: %q, want none", v)
	}
}

func testCredentialHeaders(t *testing.T, s *sidecar, up *testutil.Upstream, viewer string) {
	const path = "/api/v2/namespaces/ns1/variables"
	for _, h := range [][]string{
		{"Direktiv-Api-Key", viewer},
		{"direktiv-api-key", viewer},
		{"DIREKTIV-TOKEN", viewer},
		{"Authorization", "Bearer " + viewer},
		{"authorization", "bearer  " + viewer},
		{"Direktiv-Api-Key", viewer, "Authorization", "Bearer " + viewer, "Direktiv-Token", viewer}, // the same credential thrice
		{"Direktiv-Api-Key", viewer, "Direktiv-Api-Key", viewer},
		{"Direktiv-Api-Key", viewer, "Direktiv-Token", ""}, // an empty one is none
	} {
		t.Run(strings.Join(h[0:1], ""), func(t *testing.T) {
			up.Reset()
			if r := s.send(t, "GET", path, h...); r.status != http.StatusOK {
				t.Fatalf("%q: status %d, want 200: %s", h, r.status, r.body)
			}
			wantForwardedWithKey(t, up, path)
		})
	}
	t.Run("admin token", func(t *testing.T) {
		up.Reset()
		if r := s.send(t, "DELETE", "/api/v2/namespaces/ns2", "Authorization", "Bearer "+testAdminToken); r.status != http.StatusOK {
			t.Fatalf("status %d, want 200: %s", r.status, r.body)
		}
		wantForwardedWithKey(t, up, "/api/v2/namespaces/ns2")
	})
}

func testCredentialRefusals(t *testing.T, s *sidecar, up *testutil.Upstream, viewer string) {
	const path = "/api/v2/namespaces/ns1/variables"
	for _, tt := range []struct {
		name    string
		method  string
		headers []string
		status  int
		code    string
		mention string
	}{
		{"two credentials", "GET", []string{"Direktiv-Api-Key", viewer, "Direktiv-Token", testAdminToken}, 400, "request_data_invalid", "different credentials in its Direktiv-Api-Key and Direktiv-Token headers"},
		{"repeated header, other value", "GET", []string{"Direktiv-Api-Key", viewer, "Direktiv-Api-Key", "other"}, 400, "request_data_invalid", "different credentials"},
		{"bearer without token", "GET", []string{"Authorization", "Bearer"}, 400, "request_data_invalid", "Authorization header is malformed"},
		{"bearer with two tokens", "GET", []string{"Authorization", "Bearer " + viewer + " x"}, 400, "request_data_invalid", "Authorization header is malformed"},
		{"bearer with a comma", "GET", []string{"Authorization", "Bearer " + viewer + ",x"}, 400, "request_data_invalid", "Authorization header is malformed"},
		{"minted token under Basic", "GET", []string{"Authorization", "Basic " + viewer}, 400, "request_data_invalid", "\"Bearer <token>\""},
		{"minted token in another header", "GET", []string{"X-Api-Key", viewer}, 400, "request_data_invalid", "X-Api-Key header carries a token minted"},
		{"minted token in an underscore header", "GET", []string{"Direktiv_Api_Key", viewer}, 400, "request_data_invalid", "header carries a token minted by this sidecar"},
		{"no credential", "GET", nil, 401, "access_token_missing", "needs a credential"},
		{"foreign credential", "GET", []string{"Direktiv-Api-Key", "junk"}, 401, "access_token_invalid", "neither the admin token nor a token this sidecar minted"},
		{"foreign Basic credentials", "GET", []string{"Authorization", "Basic dXNlcjpwYXNz"}, 401, "access_token_invalid", "neither the admin token"},
		{"unknown minted token", "GET", []string{"Direktiv-Api-Key", viewer[:len(viewer)-4] + "AAAA"}, 401, "access_token_invalid", "Direktiv-Api-Key header is malformed"},
		{"missing permission", "POST", []string{"Direktiv-Api-Key", viewer}, 403, "access_denied", "variablesManage"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			up.Reset()
			r := s.send(t, tt.method, path, tt.headers...)
			wantErrorCode(t, r, tt.status, tt.code, tt.mention)
			up.None(t)
		})
	}
}

// testSecretNeverForwarded sends the minted secret in every header name,
// spelling, repetition and position it can take, to routes that are
// allowed, refused and public, and checks every request the upstream
// received.
func testSecretNeverForwarded(t *testing.T, s *sidecar, up *testutil.Upstream, viewer string) {
	up.Reset()
	names := []string{"Direktiv-Api-Key", "direktiv-api-key", "DIREKTIV-API-KEY", "Direktiv-Token", "direktiv-token", "dIrEkTiV-tOkEn", "Direktiv_Token", "X-Direktiv-Token", "Cookie"}
	values := []string{viewer, viewer + " ", "x," + viewer}
	targets := []struct{ method, target string }{
		{"GET", "/api/v2/namespaces/ns1/variables"},  // allowed
		{"POST", "/api/v2/namespaces/ns1/variables"}, // refused
		{"GET", "/api/v2/status"},                    // public, rewritten
		{"GET", "/assets/index.js"},                  // public
		{"POST", "/ns/ns1/endpoint"},                 // public gateway
		{"GET", "/api/namespaces/ns1/vars"},          // v1
	}
	var sent int
	for _, tg := range targets {
		for _, name := range names {
			for _, v := range values {
				s.send(t, tg.method, tg.target, name, v)
				s.send(t, tg.method, tg.target, name, v, "Connection", name) // listed in Connection
				s.send(t, tg.method, tg.target, "X-First", "1", name, v, name, v, "X-Last", "2")
				sent += 3
			}
		}
		for _, h := range [][]string{
			{"Authorization", "Bearer " + viewer},
			{"Authorization", "bearer " + viewer, "Connection", "Authorization"},
			{"Authorization", "Bearer " + viewer, "Authorization", "Bearer " + viewer},
			{"Authorization", "Basic " + viewer},
			{"Authorization", "Bearer " + viewer, "Direktiv-Api-Key", viewer, "Direktiv-Token", viewer, "Connection", "Direktiv-Api-Key, Direktiv-Token, Authorization"},
		} {
			s.send(t, tg.method, tg.target, h...)
			sent++
		}
	}
	reqs := up.Requests()
	if len(reqs) == 0 || len(reqs) >= sent {
		t.Fatalf("the upstream received %d of %d requests; some must pass and some be refused", len(reqs), sent)
	}
	noSecret(t, s, reqs, viewer)
}

// testConnectionKeepsKey: a client listing the key's header (or any
// credential header) in Connection does not remove the key the sidecar
// adds.
func testConnectionKeepsKey(t *testing.T, s *sidecar, up *testutil.Upstream, viewer string) {
	for _, conn := range []string{"Direktiv-Api-Key", "direktiv-api-key, Direktiv-Token", "Authorization"} {
		up.Reset()
		r := s.send(t, "GET", "/api/v2/namespaces/ns1/variables", "Direktiv-Api-Key", viewer, "Connection", conn)
		if r.status != http.StatusOK {
			t.Fatalf("Connection: %s: status %d, want 200: %s", conn, r.status, r.body)
		}
		wantForwardedWithKey(t, up, "/api/v2/namespaces/ns1/variables")
	}
}

// testCredentialOwnEndpoints: the sidecar's own endpoints take every
// credential header too, and keep the v1 error shape.
func testCredentialOwnEndpoints(t *testing.T, s *sidecar, viewer string) {
	for _, h := range [][]string{{"Direktiv-Api-Key", viewer}, {"Authorization", "Bearer " + viewer}, {"Direktiv-Token", viewer}} {
		r := s.send(t, "GET", "/api/namespaces/ns1/auth/token", h...)
		if r.status != http.StatusOK || r.json(t)["namespace"] != "ns1" {
			t.Fatalf("who am I with %s: status %d: %s", h[0], r.status, r.body)
		}
	}
	r := s.send(t, "POST", "/api/namespaces/ns1/auth/token", "Authorization", "Bearer "+testAdminToken, "Direktiv-Api-Key", viewer)
	if r.status != http.StatusBadRequest || r.json(t)["code"] != float64(400) {
		t.Fatalf("mint with two credentials: status %d, want 400 in the v1 shape: %s", r.status, r.body)
	}
	r = s.send(t, "POST", "/api/namespaces/ns1/auth/token", "Content-Type", "application/json", "Content-Length", "0", "Authorization", "Bearer "+testAdminToken)
	if r.status != http.StatusBadRequest {
		t.Fatalf("mint with an empty body as admin through Authorization: status %d, want 400: %s", r.status, r.body)
	}
}
