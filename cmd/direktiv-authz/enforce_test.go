package main

import (
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/direktiv/direktiv-authz/policies"
	"github.com/direktiv/direktiv-authz/store"
	"github.com/direktiv/direktiv-authz/store/redistest"
)

// testUpstreamKey is Direktiv's API key as the enforcement tests configure it.
const testUpstreamKey = "direktiv-api-key-abcdef"

// startEnforcer starts a redis-server and a sidecar storing tokens in it and
// forwarding to up, with environ added to its environment.
func startEnforcer(tb testing.TB, up *upstream, args []string, environ ...string) (*sidecar, *redistest.Server) {
	tb.Helper()
	srv := redistest.Start(tb)
	args = append([]string{"--redis-url", srv.URL(), "--upstream", up.URL()}, args...)
	return startSidecar(tb, args, environ...), srv
}

// mintToken mints a token in ns holding policies and returns its secret.
func (s *sidecar) mintToken(tb testing.TB, ns string, policies ...string) string {
	tb.Helper()
	m := s.mintOK(tb, ns, testAdminToken, `{"description":"test","policies":["`+strings.Join(policies, `","`)+`"],"expires":"P1D"}`)
	return m["token"].(string)
}

// noSecret fails the test if the secret appears in any header the upstream
// received or in the sidecar's log.
func noSecret(tb testing.TB, s *sidecar, reqs []recorded, secret string) {
	tb.Helper()
	for _, r := range reqs {
		if strings.Contains(r.URI, secret) || strings.Contains(string(r.Body), secret) {
			tb.Errorf("the upstream received the minted secret in %s %s", r.Method, r.URI)
		}
		for name, vs := range r.Header {
			for _, v := range vs {
				if strings.Contains(v, secret) || strings.Contains(v, strings.TrimPrefix(secret, store.SecretPrefix)) {
					tb.Errorf("the upstream received the minted secret in %s", name)
				}
			}
		}
	}
	if strings.Contains(s.logs.String(), secret) || strings.Contains(s.logs.String(), strings.TrimPrefix(secret, store.SecretPrefix)) {
		tb.Error("the minted secret appears in the log")
	}
}

// enforcer is a sidecar storing in a redis-server and forwarding to a
// recording upstream.
type enforcer struct {
	s     *sidecar
	up    *upstream
	redis *redistest.Server
}

// TestEnforce runs the enforcement tests that need no settings of their own
// against one sidecar (with an upstream API key and the default token
// cache), as starting one loads and tests the policies; once on each data
// path: the event loops, and the server alone (--event-loops off).
func TestEnforce(t *testing.T) {
	onBothPaths(t, testEnforceOn)
}

func testEnforceOn(t *testing.T, loops string) {
	up := startUpstream(t)
	s, srv := startEnforcer(t, up, []string{"--event-loops", loops}, "DIREKTIV_AUTHZ_UPSTREAM_API_KEY="+testUpstreamKey)
	e := enforcer{s: s, up: up, redis: srv}
	for _, tc := range []struct {
		name string
		fn   func(*testing.T, enforcer)
	}{
		{"token swap", testEnforceTokenSwap},
		{"routes", testEnforceRoutes},
		{"pass through", testEnforcePassThrough},
		{"deleted token refused within the cache ttl", testCacheDeletedTokenRefusedWithinTTL},
	} {
		up.reset()
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, e) })
	}
}

func testEnforceTokenSwap(t *testing.T, e enforcer) {
	s, up := e.s, e.up
	tok := s.mintToken(t, "ns1", "variablesView")

	// The header name in lower case, as some clients send it.
	r := rawRequest(t, s.app.addr(), "GET /api/namespaces/ns1/vars?limit=5 HTTP/1.1\r\nHost: x\r\ndirektiv-token: "+tok+"\r\nX-Other: 1\r\n\r\n")
	if r.status != http.StatusOK {
		t.Fatalf("status %d: %s", r.status, r.body)
	}
	got := up.only(t)
	if got.URI != "/api/namespaces/ns1/vars?limit=5" || got.Header.Get("X-Other") != "1" {
		t.Errorf("upstream got %s %v", got.URI, got.Header)
	}
	if v := got.Header.Values("Direktiv-Token"); len(v) != 1 || v[0] != testUpstreamKey {
		t.Errorf("upstream got Direktiv-Token %q, want exactly the API key", v)
	}

	// Refused requests and a forged secret leave no trace of a secret either.
	forged := tok[:len(tok)-8] + "AAAAAAAA"
	s.do(t, "DELETE", "/api/namespaces/ns1/vars/x", tok, "")
	s.do(t, "GET", "/api/namespaces/ns1/vars", forged, "")
	noSecret(t, s, append(up.requests(), got), tok)
	noSecret(t, s, nil, forged)
	up.none(t)
}

// TestEnforceNoUpstreamKey: without an upstream key the minted token is
// removed and nothing is put in its place.
func TestEnforceNoUpstreamKey(t *testing.T) {
	up := startUpstream(t)
	s, _ := startEnforcer(t, up, nil)
	tok := s.mintToken(t, "ns1", "variablesView")
	if r := s.do(t, "GET", "/api/namespaces/ns1/vars", tok, ""); r.status != http.StatusOK {
		t.Fatalf("status %d: %s", r.status, r.body)
	}
	got := up.only(t)
	if v, ok := got.Header["Direktiv-Token"]; ok {
		t.Errorf("upstream got Direktiv-Token %q, want none", v)
	}
	noSecret(t, s, []recorded{got}, tok)
}

func testEnforceRoutes(t *testing.T, e enforcer) {
	s, up := e.s, e.up
	tok := s.mintToken(t, "ns1", "explorerView", "workflowExecute", "variablesView", "secretsManage", "instancesView")

	const ok = http.StatusOK
	cases := []struct {
		method, target string
		status         int
		mention        string // in the refusal's message
	}{
		// v1 tree operations
		{"GET", "/api/namespaces/ns1/tree/wf.yaml", ok, ""},
		{"POST", "/api/namespaces/ns1/tree/wf.yaml?op=execute", ok, ""},
		{"GET", "//api/namespaces/ns1/tree/a%20b.yaml?op=execute&x=1", ok, ""},
		{"GET", "/api/namespaces/ns1/tree/wf.yaml?op=wait&ctype=application%2Fjson", ok, ""},
		{"PUT", "/api/namespaces/ns1/tree/wf.yaml?op=create-workflow", 403, "needs the workflowManage policy"},
		{"POST", "/api/namespaces/ns1/tree/dir?op=create-directory", 403, "needs the explorerManage policy"},
		{"POST", "/api/namespaces/ns1/tree/wf.yaml?op=set-var&var=x", 403, "needs the variablesManage policy"},
		{"GET", "/api/namespaces/ns1/tree/wf.yaml?op=no-such-op", 403, "no route rule covers"},
		{"GET", "/api/namespaces/ns1/tree/wf.yaml?op=%zz", 400, "percent-encoding"},
		// v1 vars, secrets, instances
		{"GET", "/api/namespaces/ns1/vars", ok, ""},
		{"POST", "/api/namespaces/ns1/vars/x", 403, "needs the variablesManage policy"},
		{"GET", "/api/namespaces/ns1/secrets", ok, ""},
		{"PUT", "/api/namespaces/ns1/secrets/s1", ok, ""},
		{"GET", "/api/namespaces/ns1/instances", ok, ""},
		{"GET", "/api/namespaces/ns1/instances/0b7d/vars", ok, ""},
		{"POST", "/api/namespaces/ns1/instances/0b7d/cancel", 403, "needs the instancesManage policy"},
		// v2 files, instances, variables
		{"GET", "/api/v2/namespaces/ns1/files/wf.yaml", ok, ""},
		{"DELETE", "/api/v2/namespaces/ns1/files/wf.yaml", 403, "needs the explorerManage policy"},
		{"GET", "/api/v2/namespaces/ns1/instances?limit=10", ok, ""},
		{"POST", "/api/v2/namespaces/ns1/instances?path=wf.yaml", ok, ""},
		{"GET", "/api/v2/namespaces/ns1/variables", ok, ""},
		{"PATCH", "/api/v2/namespaces/ns1/variables/v1", 403, "needs the variablesManage policy"},
		{"GET", "/api/v2/namespaces/ns1/services", 403, "needs the servicesView policy"},
		// outside any namespace
		{"GET", "/api/version", ok, ""},
		{"GET", "/api/v2/status", ok, ""},
		{"GET", "/api/namespaces/ns1", ok, ""},
		{"DELETE", "/api/namespaces/ns1", 403, "needs the deleteNamespace policy"},
		// admin only
		{"PUT", "/api/namespaces/newns", 403, "needs the admin token"},
		{"POST", "/api/v2/namespaces", 403, "needs the admin token"},
		{"GET", "/api/namespaces", 403, "needs the admin token"},
		// another namespace
		{"GET", "/api/namespaces/ns2/vars", 403, `cannot be used in namespace "ns2"`},
		{"POST", "/api/namespaces/ns2/tree/wf.yaml?op=execute", 403, `cannot be used in namespace "ns2"`},
		{"GET", "/api/v2/namespaces/ns2/files/wf.yaml", 403, `cannot be used in namespace "ns2"`},
		// unknown routes
		{"GET", "/api/no-such-thing/x", 403, "no route rule covers"},
		{"GET", "/metrics", 403, "no route rule covers"},
		// paths the sidecar will not guess at
		{"GET", "/api/namespaces/ns1/tree/a/%2e%2e/b", 400, "not accepted"},
	}
	for _, c := range cases {
		t.Run(c.method+" "+c.target, func(t *testing.T) {
			up.reset()
			r := rawRequest(t, s.app.addr(), c.method+" "+c.target+" HTTP/1.1\r\nHost: x\r\nDirektiv-Token: "+tok+"\r\nContent-Length: 0\r\n\r\n")
			if c.status != ok {
				wantError(t, r, c.status, c.mention)
				up.none(t)
				return
			}
			if r.status != ok {
				t.Fatalf("status %d, want 200: %s", r.status, r.body)
			}
			got := up.only(t)
			if got.Method != c.method || got.URI != c.target || got.Header.Get("Direktiv-Token") != testUpstreamKey {
				t.Errorf("upstream got %s %s with token %q", got.Method, got.URI, got.Header.Get("Direktiv-Token"))
			}
		})
	}
	noSecret(t, s, nil, tok)

	// Each refusal is audited, naming the token by id.
	sec, err := store.ParseSecret(tok)
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, l := range strings.Split(s.logs.String(), "\n") {
		var m map[string]any
		if json.Unmarshal([]byte(l), &m) != nil || m["log"] != "audit" || m["path"] != "/api/namespaces/ns2/vars" {
			continue
		}
		found = true
		if m["action"] != "forward" || m["namespace"] != "ns2" || m["decision"] != "deny" || m["status"] != float64(403) || m["caller"] != sec.ID || m["method"] != "GET" ||
			!strings.Contains(m["reason"].(string), `cannot be used in namespace "ns2"`) {
			t.Errorf("audit line %s", l)
		}
	}
	if !found {
		t.Error("no audit line for the refused GET /api/namespaces/ns2/vars")
	}
}

func testEnforcePassThrough(t *testing.T, e enforcer) {
	s, up := e.s, e.up
	unknown, err := store.NewSecret("ns1") // well-formed, never stored
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name, token string
		status      int
		mention     string
	}{
		{"admin token", testAdminToken, http.StatusOK, ""},
		{"Direktiv's own API key", testUpstreamKey, http.StatusOK, ""},
		{"some other token", "not-a-token-we-know", http.StatusOK, ""},
		{"no token", "", http.StatusOK, ""},
		{"malformed minted token", store.SecretPrefix + "garbage", http.StatusUnauthorized, "malformed"},
		{"unknown minted token", unknown.Token, http.StatusUnauthorized, "unknown, expired or revoked"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			up.reset()
			// An admin-only route: what passes unchanged is Direktiv's to judge.
			r := s.do(t, "POST", "/api/v2/namespaces", c.token, `{"name":"x"}`)
			if c.status != http.StatusOK {
				wantError(t, r, c.status, c.mention)
				up.none(t)
				return
			}
			if r.status != http.StatusOK {
				t.Fatalf("status %d: %s", r.status, r.body)
			}
			got := up.only(t)
			if v := got.Header.Values("Direktiv-Token"); (c.token == "" && len(v) != 0) || (c.token != "" && (len(v) != 1 || v[0] != c.token)) {
				t.Errorf("upstream got Direktiv-Token %q, want %q unchanged", v, c.token)
			}
			if string(got.Body) != `{"name":"x"}` {
				t.Errorf("upstream got body %q", got.Body)
			}
		})
	}

	t.Run("two tokens, one minted", func(t *testing.T) {
		up.reset()
		tok := s.mintToken(t, "ns1", "variablesView")
		r := rawRequest(t, s.app.addr(), "GET /api/namespaces/ns1/vars HTTP/1.1\r\nHost: x\r\nDirektiv-Token: "+testAdminToken+"\r\nDirektiv-Token: "+tok+"\r\n\r\n")
		wantError(t, r, http.StatusBadRequest, "send exactly one")
		up.none(t)
	})
}

func TestEnforceStrict(t *testing.T) {
	onBothPaths(t, testEnforceStrictOn)
}

func testEnforceStrictOn(t *testing.T, loops string) {
	up := startUpstream(t)
	s, _ := startEnforcer(t, up, []string{"--strict", "--event-loops", loops}, "DIREKTIV_AUTHZ_UPSTREAM_API_KEY="+testUpstreamKey)
	tok := s.mintToken(t, "ns1", "variablesView")
	cases := []struct {
		name, token string
		status      int
		upstreamGot string
	}{
		{"admin token", testAdminToken, http.StatusOK, testAdminToken},
		{"minted token", tok, http.StatusOK, testUpstreamKey},
		{"Direktiv's own API key", testUpstreamKey, http.StatusUnauthorized, ""},
		{"some other token", "not-a-token-we-know", http.StatusUnauthorized, ""},
		{"no token", "", http.StatusUnauthorized, ""},
		{"malformed minted token", store.SecretPrefix + "garbage", http.StatusUnauthorized, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			up.reset()
			r := s.do(t, "GET", "/api/namespaces/ns1/vars", c.token, "")
			if c.status != http.StatusOK {
				mention := "strict mode"
				if strings.HasPrefix(c.token, store.SecretPrefix) {
					mention = "malformed"
				}
				wantError(t, r, c.status, mention)
				up.none(t)
				return
			}
			if r.status != http.StatusOK {
				t.Fatalf("status %d: %s", r.status, r.body)
			}
			if v := up.only(t).Header.Values("Direktiv-Token"); len(v) != 1 || v[0] != c.upstreamGot {
				t.Errorf("upstream got Direktiv-Token %q", v)
			}
		})
	}
}

func TestEnforceFailClosed(t *testing.T) {
	up := startUpstream(t)
	s, srv := startEnforcer(t, up, nil)
	used := s.mintToken(t, "ns1", "variablesView")
	fresh := s.mintToken(t, "ns1", "variablesView")
	if r := s.do(t, "GET", "/api/namespaces/ns1/vars", used, ""); r.status != http.StatusOK {
		t.Fatalf("status %d: %s", r.status, r.body)
	}
	cachedAt := time.Now()
	up.only(t)

	srv.Stop(t)
	r := s.do(t, "GET", "/api/namespaces/ns1/vars", fresh, "")
	wantError(t, r, http.StatusServiceUnavailable, "token store is unavailable")
	// The cached record outlives the store by at most --token-cache-ttl.
	time.Sleep(time.Second - time.Since(cachedAt) + 50*time.Millisecond)
	r = s.do(t, "GET", "/api/namespaces/ns1/vars", used, "")
	wantError(t, r, http.StatusServiceUnavailable, "token store is unavailable")
	up.none(t)

	// Tokens the store never sees still pass.
	if r := s.do(t, "GET", "/api/namespaces/ns1/vars", testAdminToken, ""); r.status != http.StatusOK {
		t.Errorf("admin token with the store down: status %d", r.status)
	}
}

// TestEnforceEngineFailure runs rules whose route decision breaks for one
// method: a minted token's request with it is refused with 503, unsent.
func TestEnforceEngineFailure(t *testing.T) {
	dir := t.TempDir()
	entries, err := policies.FS.ReadDir(".")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		b, err := policies.FS.ReadFile(e.Name())
		if err != nil {
			t.Fatal(err)
		}
		src := string(b)
		if e.Name() == "routes.rego" {
			// The rule decision becomes decision_rules; decision answers a
			// string, not a decision, for PROPFIND and defers otherwise.
			const head = "\ndecision := "
			if strings.Count(src, head) != 1 {
				t.Fatalf("routes.rego has %d %q, want one to rename", strings.Count(src, head), head)
			}
			src = strings.Replace(src, head, "\ndecision_rules := ", 1) + `
decision := "broken" if input.method == "PROPFIND"

decision := decision_rules if input.method != "PROPFIND"
`
		}
		if err := os.WriteFile(filepath.Join(dir, e.Name()), []byte(src), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	up := startUpstream(t)
	s, _ := startEnforcer(t, up, []string{"--policies", dir})
	tok := s.mintToken(t, "ns1", "variablesView")
	r := s.do(t, "PROPFIND", "/api/namespaces/ns1/vars", tok, "")
	wantError(t, r, http.StatusServiceUnavailable, "policy engine")
	up.none(t)
	if r := s.do(t, "GET", "/api/namespaces/ns1/vars", tok, ""); r.status != http.StatusOK {
		t.Errorf("GET: status %d: %s", r.status, r.body)
	}
}

func TestRouteNamespace(t *testing.T) {
	for path, want := range map[string]string{
		"/api/namespaces/ns1/tree/a.yaml": "ns1",
		"//api/namespaces/ns1":            "ns1",
		"/api/v2/namespaces/ns2/files/x":  "ns2",
		"/api/v2/namespaces":              "",
		"/api/version":                    "",
		"/api/namespaces/%zz/vars":        "",
	} {
		if got := routeNamespace([]byte(path)); got != want {
			t.Errorf("routeNamespace(%q) = %q, want %q", path, got, want)
		}
	}
}
