package sidecar

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/direktiv/direktiv-authz/internal/config"
	"github.com/direktiv/direktiv-authz/internal/testutil"
)

// TestDirektiv runs the checks of the sidecar in front of a Direktiv v0.10
// (the stand-in answers in its shapes) with the default settings: safe by
// default, Direktiv's error shape, its web UI with a namespace token, and
// namespace tokens kept in their namespace.
func TestDirektiv(t *testing.T) {
	onBothPaths(t, func(t *testing.T, loops string) {
		up := startUpstream(t)
		s, _ := startEnforcer(t, up.URL(), []string{"--event-loops", loops}, config.EnvUpstreamAPIKey+"="+testUpstreamKey)
		t.Run("safe by default", func(t *testing.T) { testSafeByDefault(t, s, up) })
		t.Run("web UI with a namespace token", func(t *testing.T) { testWebUI(t, s, up) })
		t.Run("variables of another namespace", func(t *testing.T) { testVariableNamespace(t, s, up) })
		t.Run("log query parameters", func(t *testing.T) { testLogParams(t, s, up) })
	})
}

func testSafeByDefault(t *testing.T, s *sidecar, up *testutil.Upstream) {
	for _, tt := range []struct{ method, target string }{
		{"DELETE", "/api/v2/namespaces/ns1"},
		{"POST", "/api/v2/namespaces/ns1/variables"},
		{"GET", "/api/v2/namespaces"},
		{"GET", "/api/v2/namespaces/ns1/gateway/consumers"},
		{"GET", "/ns/ns1/consumers"},
		{"GET", "/ns/ns1/some/path/consumers"},
		{"GET", "/api/namespaces/ns1/tree/wf?op=execute"},
	} {
		up.Reset()
		r := s.send(t, tt.method, tt.target)
		if strings.HasPrefix(tt.target, "/api/namespaces/") {
			if r.status != http.StatusUnauthorized || r.json(t)["code"] != float64(401) {
				t.Fatalf("%s %s: %d %s, want 401 in the v1 shape", tt.method, tt.target, r.status, r.body)
			}
		} else {
			wantErrorCode(t, r, http.StatusUnauthorized, "access_token_missing", "needs a credential")
		}
		up.None(t)
	}
	// Public by default: the UI's files, the status, the public gateway.
	for _, tt := range []struct{ method, target string }{
		{"GET", "/"},
		{"GET", "/assets/index-abc.js"},
		{"GET", "/n/ns1/explorer/tree"},
		{"GET", "/api/v2/status"},
		{"POST", "/ns/ns1/my-endpoint"},
		{"GET", "/ns/ns1/a/b?x=1"},
	} {
		up.Reset()
		r := s.send(t, tt.method, tt.target, "Authorization", "Basic dXNlcjpwYXNz")
		if r.status != http.StatusOK {
			t.Fatalf("%s %s: %d %s, want 200 (public)", tt.method, tt.target, r.status, r.body)
		}
		got := up.Only(t)
		if got.URI != tt.target || got.Header.Get("Authorization") != "Basic dXNlcjpwYXNz" || got.Header.Get("Direktiv-Api-Key") != "" {
			t.Fatalf("%s %s: upstream got %s with Authorization %q and Direktiv-Api-Key %q; want the client's own credential, no key",
				tt.method, tt.target, got.URI, got.Header.Get("Authorization"), got.Header.Get("Direktiv-Api-Key"))
		}
	}
	// The consumers of the gateway need secretsView or the admin token.
	secrets := s.mintToken(t, "ns1", "secretsView")
	up.Reset()
	if r := s.send(t, "GET", "/ns/ns1/consumers", "Direktiv-Api-Key", secrets); r.status != http.StatusOK {
		t.Fatalf("consumers with secretsView: %d %s", r.status, r.body)
	}
	wantForwardedWithKey(t, up, "/ns/ns1/consumers")
	viewer := s.mintToken(t, "ns1", "variablesView")
	wantErrorCode(t, s.send(t, "GET", "/ns/ns1/consumers", "Direktiv-Api-Key", viewer), http.StatusForbidden, "access_denied", "secretsView")
	// A route no rule covers is refused, even to a token holding much.
	wantErrorCode(t, s.send(t, "GET", "/api/v2/namespaces/ns1/bogus", "Direktiv-Api-Key", secrets), http.StatusForbidden, "access_denied", "no route rule covers")
}

// testWebUI walks what Direktiv's web UI does with a namespace token.
func testWebUI(t *testing.T, s *sidecar, up *testutil.Upstream) {
	viewer := s.mintToken(t, "ns1", "variablesView")
	// The UI asks for a key when the status says so.
	up.Reset()
	r := s.send(t, "GET", "/api/v2/status", "Accept-Encoding", "gzip, br")
	var status struct {
		Data map[string]any `json:"data"`
	}
	if r.status != http.StatusOK || json.Unmarshal(r.body, &status) != nil || status.Data["requiresAuth"] != true || status.Data["version"] != "dev2" || status.Data["isEnterprise"] != false {
		t.Fatalf("status: %d %s, want Direktiv's with requiresAuth true", r.status, r.body)
	}
	// The answer is read and rewritten, so it is asked for uncompressed.
	if got := up.Only(t); got.URI != "/api/v2/status" || got.Header.Get("Accept-Encoding") != "" {
		t.Fatalf("the upstream got %s with Accept-Encoding %q, want none", got.URI, got.Header.Get("Accept-Encoding"))
	}
	// It tests a key with the namespace list: a namespace token sees its own.
	up.Reset()
	r = s.send(t, "GET", "/api/v2/namespaces", "direktiv-api-key", viewer)
	var list struct {
		Data []map[string]any `json:"data"`
	}
	if r.status != http.StatusOK || json.Unmarshal(r.body, &list) != nil || len(list.Data) != 1 || list.Data[0]["name"] != "ns1" || list.Data[0]["isSystemNamespace"] != false {
		t.Fatalf("namespace list for a ns1 token: %d %s, want only ns1", r.status, r.body)
	}
	wantForwardedWithKey(t, up, "/api/v2/namespaces")
	// The admin sees Direktiv's list as it is.
	r = s.send(t, "GET", "/api/v2/namespaces", "direktiv-api-key", testAdminToken)
	if r.status != http.StatusOK || json.Unmarshal(r.body, &list) != nil || len(list.Data) != 2 {
		t.Fatalf("namespace list for the admin: %d %s, want both", r.status, r.body)
	}
	// No key, or a bad one: rejected (the UI asks again).
	wantErrorCode(t, s.send(t, "GET", "/api/v2/namespaces"), http.StatusUnauthorized, "access_token_missing", "needs a credential")
	wantErrorCode(t, s.send(t, "GET", "/api/v2/namespaces", "direktiv-api-key", "wrong"), http.StatusUnauthorized, "access_token_invalid", "neither the admin token")
	// The pages the token allows load, others show Direktiv's message.
	for _, tt := range []struct {
		target string
		status int
	}{
		{"/api/v2/namespaces/ns1", 200},
		{"/api/v2/namespaces/ns1/notifications", 200},
		{"/api/v2/namespaces/ns1/variables", 200},
		{"/api/v2/namespaces/ns1/secrets", 403},
		{"/api/v2/namespaces/ns1/files/", 403},
		{"/api/v2/namespaces/ns2/variables", 403}, // the last namespace, remembered
	} {
		up.Reset()
		r := s.send(t, "GET", tt.target, "direktiv-api-key", viewer)
		if r.status != tt.status {
			t.Fatalf("GET %s: %d %s, want %d", tt.target, r.status, r.body, tt.status)
		}
		if tt.status == 200 {
			wantForwardedWithKey(t, up, tt.target)
		} else {
			wantErrorCode(t, r, tt.status, "access_denied", "")
			up.None(t)
		}
	}
}

// testVariableNamespace: Direktiv looks variables up by id alone; the
// sidecar checks the namespace first.
func testVariableNamespace(t *testing.T, s *sidecar, up *testutil.Upstream) {
	view := s.mintToken(t, "ns1", "variablesView")
	manage := s.mintToken(t, "ns1", "variablesManage")
	for _, tt := range []struct {
		name, method, target, token string
		status                      int
	}{
		{"own namespace variable", "GET", "/api/v2/namespaces/ns1/variables/" + varNS1, view, 200},
		{"own namespace variable, raw", "GET", "/api/v2/namespaces/ns1/variables/" + varNS1 + "?raw=true", view, 200},
		{"own instance's variable", "GET", "/api/v2/namespaces/ns1/variables/" + varInstNS1, view, 200},
		{"other namespace's variable", "GET", "/api/v2/namespaces/ns1/variables/" + varNS2, view, 404},
		{"other namespace's variable, patched", "PATCH", "/api/v2/namespaces/ns1/variables/" + varNS2, manage, 404},
		{"other namespace's variable, deleted", "DELETE", "/api/v2/namespaces/ns1/variables/" + varNS2, manage, 404},
		{"other namespace's workflow variable", "GET", "/api/v2/namespaces/ns1/variables/" + varWfNS2, view, 404},
		{"other namespace's instance variable", "GET", "/api/v2/namespaces/ns1/variables/" + varInstNS2, view, 404},
		{"unknown variable", "GET", "/api/v2/namespaces/ns1/variables/99999999-9999-4999-8999-999999999999", view, 404},
		{"bulk delete with a foreign id", "DELETE", "/api/v2/namespaces/ns1/variables?ids=" + varNS1 + "," + varNS2, manage, 404},
		{"bulk delete of its own", "DELETE", "/api/v2/namespaces/ns1/variables?ids=" + varNS1 + "," + varInstNS1, manage, 200},
		{"another namespace's instance's variables", "GET", "/api/v2/namespaces/ns1/variables?instanceId=" + instNS2, view, 404},
		{"its instance's variables", "GET", "/api/v2/namespaces/ns1/variables?instanceId=" + instNS1, view, 200},
	} {
		t.Run(tt.name, func(t *testing.T) {
			up.Reset()
			r := s.send(t, tt.method, tt.target, "Direktiv-Api-Key", tt.token)
			if r.status != tt.status {
				t.Fatalf("%d %s, want %d", r.status, r.body, tt.status)
			}
			// The sidecar's own lookups carry no X-Forwarded-For; the
			// forwarded request does.
			reqs := up.Requests()
			forwarded := 0
			for _, req := range reqs {
				if req.Header.Get("X-Forwarded-For") != "" {
					forwarded++
					if req.Method != tt.method || req.URI != tt.target {
						t.Fatalf("forwarded %s %s, want %s %s", req.Method, req.URI, tt.method, tt.target)
					}
				}
			}
			if want := map[bool]int{true: 1, false: 0}[tt.status == 200]; forwarded != want || len(reqs)-forwarded < 1 {
				t.Fatalf("forwarded %d times, want %d, after at least one lookup (the upstream got %d requests)", forwarded, want, len(reqs))
			}
			for _, req := range reqs {
				if req.Header.Get("Direktiv-Api-Key") != testUpstreamKey {
					t.Fatalf("%s %s went upstream without the upstream key", req.Method, req.URI)
				}
			}
			if tt.status == 404 {
				wantErrorCode(t, r, 404, "resource_not_found", "is not found in namespace ns1")
			}
		})
	}
	// The admin is not checked: one request, as sent.
	up.Reset()
	if r := s.send(t, "GET", "/api/v2/namespaces/ns1/variables/"+varNS2, "Direktiv-Api-Key", testAdminToken); r.status != 200 {
		t.Fatalf("admin: %d %s", r.status, r.body)
	}
	wantForwardedWithKey(t, up, "/api/v2/namespaces/ns1/variables/"+varNS2)
}

// testLogParams: the log query parameters Direktiv pastes into its log
// backend's query unescaped are taken only in their documented shapes.
func testLogParams(t *testing.T, s *sidecar, up *testutil.Upstream) {
	logs := s.mintToken(t, "ns1", "instancesView")
	for _, q := range []string{
		"limit=100",
		"instance=" + instNS1,
		"after=2026-12-06T01:16:52.633823Z&direction=desc",
		"before=2026-12-06T01:16:52.633823000Z&first=10",
	} {
		up.Reset()
		if r := s.send(t, "GET", "/api/v2/namespaces/ns1/logs?"+q, "Direktiv-Api-Key", logs); r.status != 200 {
			t.Fatalf("logs?%s: %d %s, want 200", q, r.status, r.body)
		}
		wantForwardedWithKey(t, up, "/api/v2/namespaces/ns1/logs?"+q)
	}
	for _, tt := range []struct{ query, param string }{
		{"limit=10%20%7C%20delete", "limit"},
		{"after=2026-01-01T00:00:00Z%20%7C%20x", "after"},
		{"instance=abc%20or%20namespace:=ns2", "instance"},
		{"route=/x%22%20or%201", "route"},
		{"last=1&last=x", "last"},
	} {
		for _, token := range []string{logs, testAdminToken} {
			up.Reset()
			r := s.send(t, "GET", "/api/v2/namespaces/ns1/logs/subscribe?"+tt.query, "Direktiv-Api-Key", token)
			wantErrorCode(t, r, http.StatusBadRequest, "request_data_invalid", tt.param)
			up.None(t)
		}
	}
}

// TestDirektivSettings covers the settings for other Direktiv versions and
// the unsafe pass-through.
func TestDirektivSettings(t *testing.T) {
	up := startUpstream(t)
	t.Run("key header for Direktiv 0.8", func(t *testing.T) {
		s, _ := startEnforcer(t, up.URL(), []string{"--upstream-api-key-header", "Direktiv-Token"}, config.EnvUpstreamAPIKey+"="+testUpstreamKey)
		viewer := s.mintToken(t, "ns1", "variablesView")
		up.Reset()
		if r := s.send(t, "GET", "/api/namespaces/ns1/vars", "Direktiv-Api-Key", viewer); r.status != 200 {
			t.Fatalf("%d %s", r.status, r.body)
		}
		got := up.Only(t)
		if v := got.Header.Values("Direktiv-Token"); len(v) != 1 || v[0] != testUpstreamKey || got.Header.Get("Direktiv-Api-Key") != "" {
			t.Fatalf("upstream headers %v, want the key in Direktiv-Token only", got.Header)
		}
	})
	t.Run("unsafe pass-through", func(t *testing.T) {
		s, _ := startEnforcer(t, up.URL(), []string{"--unsafe-forward-unauthenticated"}, config.EnvUpstreamAPIKey+"="+testUpstreamKey)
		viewer := s.mintToken(t, "ns1", "variablesView")
		up.Reset()
		if r := s.send(t, "DELETE", "/api/v2/namespaces/ns1", "Direktiv-Api-Key", "direktivs-own-key"); r.status != 200 {
			t.Fatalf("foreign key: %d %s, want 200 (passed through)", r.status, r.body)
		}
		if got := up.Only(t); got.Header.Get("Direktiv-Api-Key") != "direktivs-own-key" {
			t.Fatalf("upstream got %q, want the client's key unchanged", got.Header.Get("Direktiv-Api-Key"))
		}
		// Minted tokens are still enforced.
		wantErrorCode(t, s.send(t, "POST", "/api/v2/namespaces/ns1/variables", "Direktiv-Api-Key", viewer), 403, "access_denied", "variablesManage")
		up.None(t)
	})
	t.Run("contradictions stop start-up", func(t *testing.T) {
		for _, args := range [][]string{
			{"--strict=false"},
			{"--strict", "--unsafe-forward-unauthenticated"},
			{"--upstream-api-key-header", "Bad Header"},
			{"--upstream-api-key-header", "Connection"},
		} {
			if _, err := config.Parse(append([]string{"--dev"}, args...), nil, &testutil.SyncBuffer{}); err == nil {
				t.Fatalf("%q: no error", args)
			}
		}
		for _, args := range [][]string{{"--strict"}, {"--unsafe-forward-unauthenticated"}} {
			if _, err := config.Parse(append([]string{"--dev"}, args...), nil, &testutil.SyncBuffer{}); err != nil {
				t.Fatalf("%q: %v", args, err)
			}
		}
	})
}

// TestDirektivLastEventID: Direktiv's log stream reads the Last-Event-ID
// header into its log backend's query as it reads lastEventId; the rules
// check it as that parameter, on both data paths.
func TestDirektivLastEventID(t *testing.T) {
	onBothPaths(t, func(t *testing.T, loops string) {
		up := startUpstream(t)
		s, _ := startEnforcer(t, up.URL(), []string{"--event-loops", loops}, config.EnvUpstreamAPIKey+"="+testUpstreamKey)
		logs := s.mintToken(t, "ns1", "instancesView")
		const path = "/api/v2/namespaces/ns1/logs/subscribe"
		wantErrorCode(t, s.send(t, "GET", path, "Direktiv-Api-Key", logs, "Last-Event-ID", "2026-01-01T00:00:00Z | delete"), http.StatusBadRequest, "request_data_invalid", "lastEventId")
		wantErrorCode(t, s.send(t, "GET", path, "Direktiv-Api-Key", testAdminToken, "last-event-id", "x"), http.StatusBadRequest, "request_data_invalid", "lastEventId")
		up.None(t)
		if r := s.send(t, "GET", path, "Direktiv-Api-Key", logs, "Last-Event-ID", "2026-12-06T01:16:52.633823000Z"); r.status != http.StatusOK {
			t.Fatalf("a timestamp: %d %s", r.status, r.body)
		}
		if got := up.Only(t); got.Header.Get("Last-Event-ID") != "2026-12-06T01:16:52.633823000Z" {
			t.Fatalf("upstream got Last-Event-ID %q", got.Header.Get("Last-Event-ID"))
		}
	})
}
