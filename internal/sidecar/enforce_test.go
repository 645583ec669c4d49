package sidecar

import (
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/direktiv/direktiv-authz/internal/secret"
	"github.com/direktiv/direktiv-authz/internal/testutil"
	"github.com/direktiv/direktiv-authz/policies"
)

// testUpstreamKey is Direktiv's API key as the enforcement tests configure it.
const testUpstreamKey = "direktiv-api-key-abcdef"

// startEnforcer starts a redis-server and a sidecar storing tokens in it and
// forwarding to the upstream at upstreamURL, with environ added to its
// environment.
func startEnforcer(tb testing.TB, upstreamURL string, args []string, environ ...string) (*sidecar, *testutil.RedisServer) {
	tb.Helper()
	srv := testutil.StartRedis(tb)
	args = append([]string{"--redis-url", srv.URL(), "--upstream", upstreamURL}, args...)
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
func noSecret(tb testing.TB, s *sidecar, reqs []testutil.Request, tok string) {
	tb.Helper()
	for _, r := range reqs {
		if strings.Contains(r.URI, tok) || strings.Contains(r.Body, tok) {
			tb.Errorf("the upstream received the minted secret in %s %s", r.Method, r.URI)
		}
		for name, vs := range r.Header {
			for _, v := range vs {
				if strings.Contains(v, tok) || strings.Contains(v, strings.TrimPrefix(tok, secret.Prefix)) {
					tb.Errorf("the upstream received the minted secret in %s", name)
				}
			}
		}
	}
	if strings.Contains(s.logs.String(), tok) || strings.Contains(s.logs.String(), strings.TrimPrefix(tok, secret.Prefix)) {
		tb.Error("the minted secret appears in the log")
	}
}

// enforcer is a sidecar storing in a redis-server and forwarding to a
// recording upstream.
type enforcer struct {
	s     *sidecar
	up    *testutil.Upstream
	redis *testutil.RedisServer
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
	s, srv := startEnforcer(t, up.URL(), []string{"--event-loops", loops}, "DIREKTIV_AUTHZ_UPSTREAM_API_KEY="+testUpstreamKey)
	e := enforcer{s: s, up: up, redis: srv}
	for _, tc := range []struct {
		name string
		fn   func(*testing.T, enforcer)
	}{
		{"token swap", testEnforceTokenSwap},
		{"routes", testEnforceRoutes},
		{"credentials other than a minted token", testEnforceOtherCredentials},
		{"deleted token refused within the cache ttl", testCacheDeletedTokenRefusedWithinTTL},
	} {
		up.Reset()
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
	got := up.Only(t)
	if got.URI != "/api/namespaces/ns1/vars?limit=5" || got.Header.Get("X-Other") != "1" {
		t.Errorf("upstream got %s %v", got.URI, got.Header)
	}
	wantOnlyKey(t, got)

	// Refused requests and a forged secret leave no trace of a secret either.
	forged := tok[:len(tok)-8] + "AAAAAAAA"
	s.do(t, "DELETE", "/api/namespaces/ns1/vars/x", tok, "")
	s.do(t, "GET", "/api/namespaces/ns1/vars", forged, "")
	noSecret(t, s, append(up.Requests(), got), tok)
	noSecret(t, s, nil, forged)
	up.None(t)
}

// wantOnlyKey fails the test unless the upstream request got carries the
// upstream API key in Direktiv-Api-Key (--upstream-api-key-header's
// default) and no other credential header.
func wantOnlyKey(tb testing.TB, got testutil.Request) {
	tb.Helper()
	if v := got.Header.Values("Direktiv-Api-Key"); len(v) != 1 || v[0] != testUpstreamKey {
		tb.Errorf("upstream got Direktiv-Api-Key %q for %s %s, want exactly the API key", v, got.Method, got.URI)
	}
	for _, name := range []string{"Direktiv-Token", "Authorization"} {
		if v, ok := got.Header[name]; ok {
			tb.Errorf("upstream got %s %q for %s %s, want none", name, v, got.Method, got.URI)
		}
	}
}

// wantNoCredential fails the test if the upstream request got carries any
// credential header.
func wantNoCredential(tb testing.TB, got testutil.Request) {
	tb.Helper()
	for _, name := range []string{"Direktiv-Api-Key", "Direktiv-Token", "Authorization"} {
		if v, ok := got.Header[name]; ok {
			tb.Errorf("upstream got %s %q for %s %s, want no credential", name, v, got.Method, got.URI)
		}
	}
}

// TestEnforceNoUpstreamKey: without an upstream key the minted token is
// removed and nothing is put in its place; the admin token passes as sent.
func TestEnforceNoUpstreamKey(t *testing.T) {
	up := startUpstream(t)
	s, _ := startEnforcer(t, up.URL(), nil)
	tok := s.mintToken(t, "ns1", "variablesView")
	if r := s.do(t, "GET", "/api/namespaces/ns1/vars", tok, ""); r.status != http.StatusOK {
		t.Fatalf("status %d: %s", r.status, r.body)
	}
	got := up.Only(t)
	wantNoCredential(t, got)
	noSecret(t, s, []testutil.Request{got}, tok)

	if r := s.do(t, "GET", "/api/namespaces/ns1/vars", testAdminToken, ""); r.status != http.StatusOK {
		t.Fatalf("admin token: status %d: %s", r.status, r.body)
	}
	got = up.Only(t)
	if v := got.Header.Values("Direktiv-Token"); len(v) != 1 || v[0] != testAdminToken {
		t.Errorf("admin token: upstream got Direktiv-Token %q, want it as sent", v)
	}
	if v, ok := got.Header["Direktiv-Api-Key"]; ok {
		t.Errorf("admin token: upstream got Direktiv-Api-Key %q, want none", v)
	}
}

func testEnforceRoutes(t *testing.T, e enforcer) {
	s, up := e.s, e.up
	tok := s.mintToken(t, "ns1", "explorerView", "workflowExecute", "variablesView", "secretsManage", "instancesView")

	const ok = http.StatusOK
	const public = -http.StatusOK // allowed, as a public route: forwarded without the minted token and without the key
	cases := []struct {
		method, target string
		status         int
		mention        string // in the refusal's message
	}{
		// v1 tree operations
		{"GET", "/api/namespaces/ns1/tree/wf.yaml", ok, ""},
		{"POST", "/api/namespaces/ns1/tree/wf.yaml?op=execute", ok, ""},
		{"GET", "/api/namespaces/ns1/tree/a%20b.yaml?op=execute&x=1", ok, ""},
		{"GET", "//api/namespaces/ns1/tree/a.yaml", 400, "empty segment"},
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
		{"PATCH", "/api/v2/namespaces/ns1/variables/" + varNS1, 403, "needs the variablesManage policy"},
		{"PATCH", "/api/v2/namespaces/ns1/variables/v1", 400, "must be a UUID"}, // Direktiv v0.10 names variables by UUID
		{"GET", "/api/v2/namespaces/ns1/services", 403, "needs the servicesView policy"},
		// outside any namespace
		{"GET", "/api/version", ok, ""},
		{"GET", "/api/v2/status", public, ""},
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
		{"GET", "/api/v2/namespaces/ns1/no-such-thing", 403, "no route rule covers"},
		// outside /api/ and /ns/: the web UI's files, public
		{"GET", "/metrics", public, ""},
		// paths the sidecar will not guess at
		{"GET", "/api/namespaces/ns1/tree/a/%2e%2e/b", 400, "not accepted"},
	}
	for _, c := range cases {
		t.Run(c.method+" "+c.target, func(t *testing.T) {
			up.Reset()
			r := rawRequest(t, s.app.addr(), c.method+" "+c.target+" HTTP/1.1\r\nHost: x\r\nDirektiv-Token: "+tok+"\r\nContent-Length: 0\r\n\r\n")
			if c.status != ok && c.status != public {
				wantError(t, r, c.status, c.mention)
				up.None(t)
				return
			}
			if r.status != ok {
				t.Fatalf("status %d, want 200: %s", r.status, r.body)
			}
			got := up.Only(t)
			if got.Method != c.method || got.URI != c.target {
				t.Errorf("upstream got %s %s", got.Method, got.URI)
			}
			if c.status == public {
				wantNoCredential(t, got)
			} else {
				wantOnlyKey(t, got)
			}
		})
	}
	noSecret(t, s, nil, tok)

	// Each refusal is audited, naming the token by id.
	sec, err := secret.Parse(tok)
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

// testEnforceOtherCredentials: safe by default. Only the admin token (and a
// valid minted token) passes to a protected route, with its credential
// replaced by the upstream key; no credential, or one that is neither, is a
// 401 in the shape of the path, and nothing reaches the upstream. A public
// route passes whatever the credential: one that is not minted as sent, a
// minted one (valid or not) removed.
func testEnforceOtherCredentials(t *testing.T, e enforcer) {
	s, up := e.s, e.up
	unknown, err := secret.New("ns1") // well-formed, never stored
	if err != nil {
		t.Fatal(err)
	}
	const (
		needs   = "needs a credential: send the admin token or a token minted by this sidecar in Direktiv-Api-Key, Direktiv-Token or Authorization: Bearer"
		foreign = "the credential in the Direktiv-Token header is neither the admin token nor a token this sidecar minted"
	)
	cases := []struct {
		name, token string
		status      int
		code        string // Direktiv's name for the refusal
		mention     string
	}{
		{"admin token", testAdminToken, http.StatusOK, "", ""},
		{"Direktiv's own API key", testUpstreamKey, http.StatusUnauthorized, "access_token_invalid", foreign},
		{"some other token", "not-a-token-we-know", http.StatusUnauthorized, "access_token_invalid", foreign},
		{"no token", "", http.StatusUnauthorized, "access_token_missing", "POST /api/v2/namespaces " + needs},
		{"malformed minted token", secret.Prefix + "garbage", http.StatusUnauthorized, "access_token_invalid", "the token in the Direktiv-Token header is malformed"},
		{"unknown minted token", unknown.Token, http.StatusUnauthorized, "access_token_invalid", "the token in the Direktiv-Token header is unknown, expired or revoked"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			up.Reset()
			// An admin-only route.
			r := s.do(t, "POST", "/api/v2/namespaces", c.token, `{"name":"x"}`)
			if c.status != http.StatusOK {
				wantErrorCode(t, r, c.status, c.code, c.mention)
				if strings.Contains(string(r.body), "strict") {
					t.Errorf("the refusal speaks of a strict mode: %s", r.body)
				}
				up.None(t)
			} else {
				if r.status != http.StatusOK {
					t.Fatalf("status %d: %s", r.status, r.body)
				}
				got := up.Only(t)
				wantOnlyKey(t, got)
				if got.Body != `{"name":"x"}` {
					t.Errorf("upstream got body %q", got.Body)
				}
			}

			// A public route passes, whatever the credential.
			up.Reset()
			if r := s.do(t, "GET", "/api/v2/status", c.token, ""); r.status != http.StatusOK {
				t.Fatalf("public route: status %d: %s", r.status, r.body)
			}
			got := up.Only(t)
			if strings.HasPrefix(c.token, secret.Prefix) {
				wantNoCredential(t, got) // a minted token, valid or not, is removed
				return
			}
			if v := got.Header.Values("Direktiv-Token"); (c.token == "" && len(v) != 0) || (c.token != "" && (len(v) != 1 || v[0] != c.token)) {
				t.Errorf("public route: upstream got Direktiv-Token %q, want %q unchanged", v, c.token)
			}
			if v, ok := got.Header["Direktiv-Api-Key"]; ok {
				t.Errorf("public route: upstream got Direktiv-Api-Key %q, want no key added", v)
			}
		})
	}

	t.Run("two tokens, one minted", func(t *testing.T) {
		up.Reset()
		tok := s.mintToken(t, "ns1", "variablesView")
		r := rawRequest(t, s.app.addr(), "GET /api/namespaces/ns1/vars HTTP/1.1\r\nHost: x\r\nDirektiv-Token: "+testAdminToken+"\r\nDirektiv-Token: "+tok+"\r\n\r\n")
		wantError(t, r, http.StatusBadRequest, "the request carries different credentials in its Direktiv-Token and Direktiv-Token headers")
		up.None(t)
	})
}

// TestEnforceStrictFlag: --strict, once needed to refuse what is neither
// the admin token nor a minted token, is the default now and stays
// accepted (as DIREKTIV_AUTHZ_STRICT=true): it changes nothing.
func TestEnforceStrictFlag(t *testing.T) {
	onBothPaths(t, testEnforceStrictFlagOn)
}

func testEnforceStrictFlagOn(t *testing.T, loops string) {
	up := startUpstream(t)
	s, _ := startEnforcer(t, up.URL(), []string{"--strict", "--event-loops", loops}, "DIREKTIV_AUTHZ_UPSTREAM_API_KEY="+testUpstreamKey, "DIREKTIV_AUTHZ_STRICT=true")
	tok := s.mintToken(t, "ns1", "variablesView")
	cases := []struct {
		name, token string
		status      int
		code        string
		mention     string
	}{
		{"admin token", testAdminToken, http.StatusOK, "", ""},
		{"minted token", tok, http.StatusOK, "", ""},
		{"Direktiv's own API key", testUpstreamKey, http.StatusUnauthorized, "", "neither the admin token nor a token this sidecar minted"},
		{"some other token", "not-a-token-we-know", http.StatusUnauthorized, "", "neither the admin token nor a token this sidecar minted"},
		{"no token", "", http.StatusUnauthorized, "", "GET /api/namespaces/ns1/vars needs a credential"},
		{"malformed minted token", secret.Prefix + "garbage", http.StatusUnauthorized, "", "malformed"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			up.Reset()
			r := s.do(t, "GET", "/api/namespaces/ns1/vars", c.token, "")
			if c.status != http.StatusOK {
				wantError(t, r, c.status, c.mention) // a v1 path: the v1 shape
				if strings.Contains(string(r.body), "strict") {
					t.Errorf("the refusal speaks of a strict mode: %s", r.body)
				}
				up.None(t)
				return
			}
			if r.status != http.StatusOK {
				t.Fatalf("status %d: %s", r.status, r.body)
			}
			wantOnlyKey(t, up.Only(t))
		})
	}
}

// TestEnforceUnsafeForwardUnauthenticated: the old pass-through. A request
// without a minted token is forwarded unchanged and unasked, its credential
// (the admin token included) as sent; minted tokens are enforced as ever.
func TestEnforceUnsafeForwardUnauthenticated(t *testing.T) {
	onBothPaths(t, func(t *testing.T, loops string) {
		up := startUpstream(t)
		s, _ := startEnforcer(t, up.URL(), []string{"--unsafe-forward-unauthenticated", "--event-loops", loops}, "DIREKTIV_AUTHZ_UPSTREAM_API_KEY="+testUpstreamKey)
		if s.app.cfg.Strict || !s.app.cfg.UnsafeForwardUnauthenticated {
			t.Fatalf("Strict %v, UnsafeForwardUnauthenticated %v", s.app.cfg.Strict, s.app.cfg.UnsafeForwardUnauthenticated)
		}
		unknown, err := secret.New("ns1") // well-formed, never stored
		if err != nil {
			t.Fatal(err)
		}
		tok := s.mintToken(t, "ns1", "variablesView")
		cases := []struct {
			name, token string
			status      int
			mention     string
		}{
			{"admin token", testAdminToken, http.StatusOK, ""},
			{"Direktiv's own API key", testUpstreamKey, http.StatusOK, ""},
			{"some other token", "not-a-token-we-know", http.StatusOK, ""},
			{"no token", "", http.StatusOK, ""},
			{"malformed minted token", secret.Prefix + "garbage", http.StatusUnauthorized, "malformed"},
			{"unknown minted token", unknown.Token, http.StatusUnauthorized, "unknown, expired or revoked"},
			{"minted token on an admin-only route", tok, http.StatusForbidden, "needs the admin token"},
		}
		for _, c := range cases {
			t.Run(c.name, func(t *testing.T) {
				up.Reset()
				// An admin-only route: what passes unchanged is Direktiv's to judge.
				r := s.do(t, "POST", "/api/v2/namespaces", c.token, `{"name":"x"}`)
				if c.status != http.StatusOK {
					wantError(t, r, c.status, c.mention)
					up.None(t)
					return
				}
				if r.status != http.StatusOK {
					t.Fatalf("status %d: %s", r.status, r.body)
				}
				got := up.Only(t)
				if v := got.Header.Values("Direktiv-Token"); (c.token == "" && len(v) != 0) || (c.token != "" && (len(v) != 1 || v[0] != c.token)) {
					t.Errorf("upstream got Direktiv-Token %q, want %q unchanged", v, c.token)
				}
				if v, ok := got.Header["Direktiv-Api-Key"]; ok {
					t.Errorf("upstream got Direktiv-Api-Key %q, want nothing added", v)
				}
				if got.Body != `{"name":"x"}` {
					t.Errorf("upstream got body %q", got.Body)
				}
			})
		}
		t.Run("minted token on an allowed route", func(t *testing.T) {
			up.Reset()
			if r := s.do(t, "GET", "/api/namespaces/ns1/vars", tok, ""); r.status != http.StatusOK {
				t.Fatalf("status %d: %s", r.status, r.body)
			}
			got := up.Only(t)
			wantOnlyKey(t, got)
			noSecret(t, s, []testutil.Request{got}, tok)
		})
		t.Run("two tokens, one minted", func(t *testing.T) {
			up.Reset()
			r := rawRequest(t, s.app.addr(), "GET /api/namespaces/ns1/vars HTTP/1.1\r\nHost: x\r\nDirektiv-Token: "+testAdminToken+"\r\nDirektiv-Token: "+tok+"\r\n\r\n")
			wantError(t, r, http.StatusBadRequest, "different credentials in its Direktiv-Token and Direktiv-Token headers")
			up.None(t)
		})
	})
}

func TestEnforceFailClosed(t *testing.T) {
	up := startUpstream(t)
	s, srv := startEnforcer(t, up.URL(), nil)
	used := s.mintToken(t, "ns1", "variablesView")
	fresh := s.mintToken(t, "ns1", "variablesView")
	if r := s.do(t, "GET", "/api/namespaces/ns1/vars", used, ""); r.status != http.StatusOK {
		t.Fatalf("status %d: %s", r.status, r.body)
	}
	cachedAt := time.Now()
	up.Only(t)

	srv.Stop(t)
	r := s.do(t, "GET", "/api/namespaces/ns1/vars", fresh, "")
	wantError(t, r, http.StatusServiceUnavailable, "token store is unavailable")
	// The cached record outlives the store by at most --token-cache-ttl.
	time.Sleep(time.Second - time.Since(cachedAt) + 50*time.Millisecond)
	r = s.do(t, "GET", "/api/namespaces/ns1/vars", used, "")
	wantError(t, r, http.StatusServiceUnavailable, "token store is unavailable")
	up.None(t)

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
	s, _ := startEnforcer(t, up.URL(), []string{"--policies", dir})
	tok := s.mintToken(t, "ns1", "variablesView")
	r := s.do(t, "PROPFIND", "/api/namespaces/ns1/vars", tok, "")
	wantError(t, r, http.StatusServiceUnavailable, "policy engine")
	up.None(t)
	if r := s.do(t, "GET", "/api/namespaces/ns1/vars", tok, ""); r.status != http.StatusOK {
		t.Errorf("GET: status %d: %s", r.status, r.body)
	}
}

// A refused request is decided once, on either path: one route decision
// and one audit line, and nothing reaches the upstream. (The loops once
// decided a refusal again off the loop, to answer it.)
func TestRefusalDecidedOnce(t *testing.T) {
	onBothPaths(t, func(t *testing.T, loops string) {
		up := startUpstream(t)
		s, _ := startEnforcer(t, up.URL(), []string{"--event-loops", loops})
		tok := s.mintToken(t, "ns1", "variablesView")
		// Warm the token cache, so that the refusal below is decided at
		// once (a lookup first would be a Wait, not a decision).
		if r := s.do(t, "GET", "/api/v2/namespaces/ns1/variables", tok, ""); r.status != http.StatusOK {
			t.Fatalf("allowed request: %d %s", r.status, r.body)
		}
		up.Reset()
		before := s.scrape(t)
		denies := strings.Count(s.logs.String(), `"decision":"deny"`)
		r := s.do(t, "DELETE", "/api/v2/namespaces/ns1/files/wf.yaml", tok, "")
		wantError(t, r, http.StatusForbidden, "needs the explorerManage policy")
		after := s.scrape(t)
		const key = `direktiv_authz_decision_duration_seconds_count{kind="route"}`
		if n := after[key] - before[key]; n != 1 {
			t.Errorf("%v route decisions for one refused request, want 1", n)
		}
		if n := strings.Count(s.logs.String(), `"decision":"deny"`) - denies; n != 1 {
			t.Errorf("%d audit lines denying it, want 1", n)
		}
		up.None(t)
	})
}
