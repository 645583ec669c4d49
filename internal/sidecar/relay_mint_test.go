package sidecar

// Mints served on the event loops (relayHandler.mint, app.answerMint: the
// create made through redis.Store.CreateAsync), against the same mints
// served by the fasthttp server (--event-loops off): statuses, response
// heads and bodies, stored records, audit lines and metrics must match,
// and a client that only mints must never be handed off.

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/direktiv/direktiv-authz/internal/secret"
	"github.com/direktiv/direktiv-authz/internal/testutil"
	"github.com/direktiv/direktiv-authz/internal/tokens"
	"github.com/direktiv/direktiv-authz/store"
	"github.com/direktiv/direktiv-authz/store/redis"
)

// startMintSidecar starts a redis-server and a sidecar storing in it with
// --event-loops loops, and checks that the loops serve mints ("auto") or
// that there are no loops ("off").
func startMintSidecar(t *testing.T, loops string, args ...string) (*sidecar, *testutil.RedisServer) {
	t.Helper()
	srv := testutil.StartRedis(t)
	return startMintSidecarOn(t, srv.URL(), loops, args...), srv
}

func startMintSidecarOn(t *testing.T, redisURL, loops string, args ...string) *sidecar {
	t.Helper()
	s := startSidecar(t, append([]string{"--redis-url", redisURL, "--event-loops", loops}, args...))
	switch loops {
	case "off":
		if s.app.relay != nil || s.app.loopMints {
			t.Fatalf("--event-loops off: relay %v, loops serve mints %v", s.app.relay != nil, s.app.loopMints)
		}
	default:
		if s.app.relay == nil || !s.app.loopMints {
			t.Fatalf("--event-loops %s: relay %v, loops serve mints %v; want both", loops, s.app.relay != nil, s.app.loopMints)
		}
	}
	return s
}

// rawConn is a keep-alive client connection written and read byte for
// byte.
type rawConn struct {
	c  net.Conn
	br *bufio.Reader
}

func dialRaw(t *testing.T, addr string) *rawConn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(20 * time.Second))
	return &rawConn{c: c, br: bufio.NewReader(c)}
}

// local is the client's address as the sidecar sees it.
func (rc *rawConn) local() string { return rc.c.LocalAddr().String() }

func (rc *rawConn) roundTrip(t *testing.T, req string) rawResponse {
	t.Helper()
	if _, err := io.WriteString(rc.c, req); err != nil {
		t.Fatal(err)
	}
	return rc.read(t)
}

func (rc *rawConn) read(t *testing.T) rawResponse {
	t.Helper()
	return readRawResponse(t, rc.br)
}

// rawResponse is a response as read off the wire.
type rawResponse struct {
	response
	head string // status line and header lines, each ending in CRLF
}

// readRawResponse reads one response with a Content-Length body (every
// answer of the sidecar's own has one).
func readRawResponse(t *testing.T, br *bufio.Reader) rawResponse {
	t.Helper()
	r := rawResponse{response: response{header: http.Header{}}}
	var head strings.Builder
	for i := 0; ; i++ {
		line, err := br.ReadString('\n')
		if err != nil {
			t.Fatalf("reading a response head (%q so far): %v", head.String(), err)
		}
		if line == "\r\n" {
			break
		}
		if !strings.HasSuffix(line, "\r\n") {
			t.Fatalf("header line %q does not end in CRLF", line)
		}
		head.WriteString(line)
		line = strings.TrimSuffix(line, "\r\n")
		if i == 0 {
			f := strings.SplitN(line, " ", 3)
			if len(f) < 2 || f[0] != "HTTP/1.1" {
				t.Fatalf("status line %q", line)
			}
			r.status, _ = strconv.Atoi(f[1])
			continue
		}
		name, value, ok := strings.Cut(line, ":")
		if !ok {
			t.Fatalf("header line %q", line)
		}
		r.header.Add(name, strings.TrimSpace(value))
	}
	r.head = head.String()
	if te := r.header.Get("Transfer-Encoding"); te != "" {
		t.Fatalf("Transfer-Encoding %q on an answer of the sidecar's own: %s", te, r.head)
	}
	n, err := strconv.Atoi(r.header.Get("Content-Length"))
	if err != nil || len(r.header.Values("Content-Length")) != 1 {
		t.Fatalf("Content-Length %q: %s", r.header.Values("Content-Length"), r.head)
	}
	r.body = make([]byte, n)
	if _, err := io.ReadFull(br, r.body); err != nil {
		t.Fatalf("reading a %d byte body: %v", n, err)
	}
	return r
}

// rawMint is a mint request as a client writes it; extra are header
// lines.
func rawMint(target, token, body string, extra ...string) string {
	var b strings.Builder
	b.WriteString("POST " + target + " HTTP/1.1\r\nHost: sidecar\r\n")
	if token != "" {
		b.WriteString("Direktiv-Token: " + token + "\r\n")
	}
	for _, h := range extra {
		b.WriteString(h + "\r\n")
	}
	fmt.Fprintf(&b, "Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
	return b.String()
}

func mintTarget(ns string) string { return "/api/namespaces/" + ns + "/auth/token" }

// wantHeaders checks the headers every answer of the sidecar's own carries.
func wantHeaders(t *testing.T, what string, r rawResponse) {
	t.Helper()
	if got := r.header.Get("Content-Type"); got != "application/json" {
		t.Errorf("%s: Content-Type %q, want application/json", what, got)
	}
	if got := r.header.Get("Cache-Control"); got != "no-store" {
		t.Errorf("%s: Cache-Control %q, want no-store", what, got)
	}
	if got := r.header.Values("Server"); len(got) != 1 || got[0] != "direktiv-authz" {
		t.Errorf("%s: Server %q, want direktiv-authz once", what, got)
	}
	date, err := http.ParseTime(r.header.Get("Date"))
	if err != nil || len(r.header.Values("Date")) != 1 {
		t.Errorf("%s: Date %q: %v", what, r.header.Values("Date"), err)
	} else if d := time.Since(date); d < -2*time.Second || d > 10*time.Second {
		t.Errorf("%s: Date %s is %s off", what, date, d)
	}
	if cl := r.header.Get("Content-Length"); cl != strconv.Itoa(len(r.body)) {
		t.Errorf("%s: Content-Length %s, body %d bytes", what, cl, len(r.body))
	}
	if len(r.body) == 0 || r.body[len(r.body)-1] != '\n' {
		t.Errorf("%s: body does not end in a newline: %q", what, r.body)
	}
}

// wantErrorBody checks a JSON error answer: exactly code and message.
func wantErrorBody(t *testing.T, what string, r rawResponse, status int, mention string) {
	t.Helper()
	if r.status != status {
		t.Errorf("%s: status %d, want %d: %s", what, r.status, status, r.body)
		return
	}
	m := r.json(t)
	if len(m) != 2 {
		t.Errorf("%s: error body has fields %v, want code and message", what, slices.Sorted(maps.Keys(m)))
	}
	if code, _ := m["code"].(float64); int(code) != status {
		t.Errorf("%s: code %v, want %d", what, m["code"], status)
	}
	if msg, _ := m["message"].(string); msg == "" || !strings.Contains(msg, mention) {
		t.Errorf("%s: message %q does not mention %q", what, m["message"], mention)
	}
}

// wantPending checks that c has no answer yet: a test that pauses Redis
// to act while a mint is under way must act while it is.
func wantPending(t *testing.T, c net.Conn, what string) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	var b [1]byte
	n, err := c.Read(b[:])
	if ne, ok := err.(net.Error); n != 0 || !ok || !ne.Timeout() {
		t.Fatalf("%s: read %d bytes, %v; want no answer yet (Redis is paused)", what, n, err)
	}
	c.SetReadDeadline(time.Time{})
}

// auditLines returns the audit lines the sidecar has written, raw.
func auditLines(s *sidecar) []string {
	var out []string
	for line := range strings.SplitSeq(s.logs.String(), "\n") {
		if strings.Contains(line, `"log":"audit"`) {
			out = append(out, line)
		}
	}
	return out
}

func decodeLine(t *testing.T, line string) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(line), &m); err != nil {
		t.Fatalf("audit line %q: %v", line, err)
	}
	return m
}

// normalizer replaces what differs between two runs of the same requests
// (ids, secrets, hashes, times, client ports) by placeholders; ids and
// secrets are numbered in order of first appearance, so that the same
// sequence of requests normalizes to the same text.
type normalizer struct {
	ids, secrets map[string]string
}

var (
	reSecret    = regexp.MustCompile(`dkt_[A-Za-z0-9_-]+`)
	reUUID      = regexp.MustCompile(`[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}`)
	reHash      = regexp.MustCompile(`[0-9a-f]{64}`)
	reTime      = regexp.MustCompile(`\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)`)
	reDate      = regexp.MustCompile(`(?m)^Date: [^\r\n]*`)
	reAuditTime = regexp.MustCompile(`^\{"time":"[^"]*"`)
	reClient    = regexp.MustCompile(`"client":"[^"]*"`)
)

func newNormalizer() *normalizer {
	return &normalizer{ids: map[string]string{}, secrets: map[string]string{}}
}

func (n *normalizer) apply(s string) string {
	label := func(m map[string]string, prefix string) func(string) string {
		return func(v string) string {
			if l, ok := m[v]; ok {
				return l
			}
			l := fmt.Sprintf("<%s%d>", prefix, len(m)+1)
			m[v] = l
			return l
		}
	}
	s = reSecret.ReplaceAllStringFunc(s, label(n.secrets, "secret"))
	s = reUUID.ReplaceAllStringFunc(s, label(n.ids, "id"))
	s = reHash.ReplaceAllString(s, "<hash>")
	s = reAuditTime.ReplaceAllString(s, `{"time":"<now>"`)
	s = reTime.ReplaceAllString(s, "<time>")
	s = reDate.ReplaceAllString(s, "Date: <date>")
	return reClient.ReplaceAllString(s, `"client":"<client>"`)
}

// redisClient is a client of the test's own for the Redis at addr; it
// speaks RESP3, so that it is not mistaken for the loops' connections
// (RESP2) in CLIENT LIST.
func redisClient(t *testing.T, addr string, o goredis.Options) *goredis.Client {
	t.Helper()
	o.Addr = addr
	o.Protocol = 3
	c := goredis.NewClient(&o)
	t.Cleanup(func() { c.Close() })
	return c
}

// recordKey is the Redis key of a token record (store/redis.go).
func recordKey(ns, id string) string { return redis.DefaultPrefix + ":{" + ns + "}:tok:" + id }

// mintStep is one request of the parity sequence.
type mintStep struct {
	name    string
	ns      string
	query   string
	caller  string // "admin", "" (no token), a label of a token minted before, or "=value"
	body    string
	extra   []string
	status  int
	mention string // in the error message
	keep    string // 201: the label to keep the new token under

	// 201 and 200: what is granted and dropped, and how many warnings.
	policies, dropped []string
	warnings          int
	parent            string // 201: the label of the minting token
	before            bool   // refused before the caller is authenticated: no caller audited
}

// parityRun is what one path answered, for comparison with the other.
type parityRun struct {
	transcript []string
}

// TestRelayMintParity runs the same mints on both data paths against a real
// Redis and compares everything a client, an auditor and Prometheus see:
// statuses and response heads byte for byte (Date aside), bodies, stored
// records and audit lines with ids, secrets and times replaced, and the
// metrics. On the loops nothing is handed off to the server but the body
// too large for them.
func TestRelayMintParity(t *testing.T) {
	runs := map[string]*parityRun{}
	onBothPaths(t, func(t *testing.T, loops string) {
		runs[loops] = testMintParityOn(t, loops)
	})
	loop, server := runs["auto"], runs["off"]
	if loop == nil || server == nil || t.Failed() {
		return
	}
	if len(loop.transcript) != len(server.transcript) {
		t.Errorf("transcripts of %d and %d entries", len(loop.transcript), len(server.transcript))
	}
	for i := range min(len(loop.transcript), len(server.transcript)) {
		if loop.transcript[i] != server.transcript[i] {
			t.Errorf("entry %d differs:\nevent loops: %s\nserver:      %s", i, loop.transcript[i], server.transcript[i])
		}
	}
}

func testMintParityOn(t *testing.T, loops string) *parityRun {
	s, srv := startMintSidecar(t, loops, "--token-cache-ttl", "1m")
	run := &parityRun{}
	norm := newNormalizer()
	rdb := redisClient(t, srv.Addr(), goredis.Options{})
	ctx := context.Background()

	secrets := map[string]string{"admin": testAdminToken}
	ids := map[string]string{}
	minted := map[string]map[string]any{} // label: the 201 body
	var order []string                    // labels, in minting order

	steps := []mintStep{
		{name: "admin mints a manager", ns: "ns1", caller: "admin", body: `{"description":"mgr","policies":["permissionsManage","workflowView","instancesView"],"expires":"P7D"}`,
			status: 201, keep: "mgr", policies: []string{"instancesView", "permissionsManage", "workflowView"}},
		{name: "admin mints a viewer", ns: "ns1", caller: "admin", body: `{"policies":["workflowView"],"expires":"P1D"}`,
			status: 201, keep: "viewer", policies: []string{"workflowView"}},
		{name: "admin mints a token to revoke", ns: "ns1", caller: "admin", body: `{"description":"victim","policies":["workflowView"]}`,
			status: 201, keep: "victim", policies: []string{"workflowView"}},
		{name: "manager mints, not cached (a Wait), one dropped, clamped", ns: "ns1", caller: "mgr", body: `{"description":"child","policies":["workflowView","secretsManage"],"expires":"P30D"}`,
			status: 201, keep: "child", policies: []string{"workflowView"}, dropped: []string{"secretsManage"}, warnings: 1, parent: "mgr"},
		{name: "manager mints, cached", ns: "ns1", caller: "mgr", body: `{"description":"unicode \u00e9\u2028<&>","policies":["instancesView"],"expires":"PT1H"}`,
			status: 201, keep: "child2", policies: []string{"instancesView"}, parent: "mgr"},
		{name: "dry run", ns: "ns1", query: "?dry_run=true", caller: "admin", body: `{"policies":["workflowView","eventsSend"],"expires":"P2D"}`,
			status: 200, policies: []string{"eventsSend", "workflowView"}},
		{name: "bad dry_run value", ns: "ns1", query: "?dry_run=maybe", caller: "admin", body: `{"policies":["workflowView"]}`,
			status: 400, mention: `dry_run "maybe": want true or false`, before: true},
		{name: "bad body", ns: "ns1", caller: "admin", body: `{"policies":["workflowView"`, status: 400, mention: "the JSON ends early"},
		{name: "unknown field", ns: "ns1", caller: "admin", body: `{"policies":["workflowView"],"ttl":"P1D"}`, status: 400, mention: `unknown field "ttl"`},
		{name: "no token", ns: "ns1", caller: "", body: `{"policies":["workflowView"]}`, status: 401, mention: "no credential: send the admin token or a namespace token in"},
		{name: "unknown token", ns: "ns1", caller: "=something-else", body: `{"policies":["workflowView"]}`, status: 401, mention: "neither the admin token"},
		{name: "malformed token", ns: "ns1", caller: "forged", body: `{"policies":["workflowView"]}`, status: 401, mention: "malformed"},
		{name: "revoked token (a Wait, not found)", ns: "ns1", caller: "victim", body: `{"policies":["workflowView"]}`, status: 401, mention: "unknown, expired or revoked"},
		{name: "viewer may not mint (a Wait)", ns: "ns1", caller: "viewer", body: `{"policies":["workflowView"]}`, status: 403, mention: "permissionsManage"},
		{name: "manager in another namespace", ns: "ns2", caller: "mgr", body: `{"policies":["workflowView"]}`, status: 403},
		{name: "manager asks for what it does not hold", ns: "ns1", caller: "mgr", body: `{"policies":["secretsManage"]}`, status: 403, mention: "secretsManage"},
	}

	c := dialRaw(t, s.app.addr())
	for i, st := range steps {
		if st.name == "malformed token" {
			v := secrets["viewer"]
			forged := v[:len(v)-2] + "AA"
			if forged == v {
				forged = v[:len(v)-2] + "BB"
			}
			secrets["forged"] = forged
		}
		if st.name == "revoked token (a Wait, not found)" {
			// Revoked in the store directly (no request on the client's
			// connection, no cache entry: it was never used).
			if _, err := s.app.redis.Revoke(ctx, "ns1", ids["victim"]); err != nil {
				t.Fatal(err)
			}
		}
		token := secrets[st.caller]
		if v, ok := strings.CutPrefix(st.caller, "="); ok {
			token = v
		}
		auditBefore := len(auditLines(s))
		r := c.roundTrip(t, rawMint(mintTarget(st.ns)+st.query, token, st.body, st.extra...))
		what := fmt.Sprintf("step %d (%s)", i, st.name)
		wantHeaders(t, what, r)
		if r.status != st.status {
			t.Fatalf("%s: status %d, want %d: %s", what, r.status, st.status, r.body)
		}
		if r.header.Get("Connection") != "" || r.header.Get("Retry-After") != "" {
			t.Errorf("%s: Connection %q, Retry-After %q; want neither", what, r.header.Get("Connection"), r.header.Get("Retry-After"))
		}
		var m map[string]any
		switch st.status {
		case 201, 200:
			m = r.json(t)
			want := []string{"created", "description", "dropped", "expires", "id", "namespace", "policies", "token", "warnings"}
			if st.status == 200 {
				want = []string{"created", "description", "dropped", "dry_run", "expires", "namespace", "policies", "warnings"}
				if m["dry_run"] != true {
					t.Errorf("%s: dry_run %v", what, m["dry_run"])
				}
			}
			if got := slices.Sorted(maps.Keys(m)); !slices.Equal(got, want) {
				t.Errorf("%s: fields %v, want %v", what, got, want)
			}
			if m["namespace"] != st.ns {
				t.Errorf("%s: namespace %v", what, m["namespace"])
			}
			if got := strs(t, m["policies"]); !slices.Equal(got, st.policies) {
				t.Errorf("%s: policies %v, want %v", what, got, st.policies)
			}
			if got := strs(t, m["dropped"]); !slices.Equal(got, st.dropped) {
				t.Errorf("%s: dropped %v, want %v", what, got, st.dropped)
			}
			if got := strs(t, m["warnings"]); len(got) != st.warnings {
				t.Errorf("%s: warnings %v, want %d", what, got, st.warnings)
			}
			if st.keep != "" {
				tok, _ := m["token"].(string)
				sec, err := secret.Parse(tok)
				if err != nil || sec.ID != m["id"] || sec.Namespace != st.ns {
					t.Fatalf("%s: token %q does not parse to %v/%v: %v", what, tok, st.ns, m["id"], err)
				}
				secrets[st.keep], ids[st.keep], minted[st.keep] = tok, sec.ID, m
				order = append(order, st.keep)
			}
		default:
			wantErrorBody(t, what, r, st.status, st.mention)
		}
		if st.status == 201 && st.parent != "" {
			if w := strs(t, m["warnings"]); st.warnings == 1 && len(w) == 1 && (!strings.Contains(w[0], "outlive") || m["expires"] != minted[st.parent]["expires"]) {
				t.Errorf("%s: warnings %v, expires %v; want clamped to the parent's %v", what, w, m["expires"], minted[st.parent]["expires"])
			}
		}
		run.transcript = append(run.transcript, norm.apply(fmt.Sprintf("%s: %s\n%s", st.name, r.head, r.body)))

		// One audit line per request, written before the answer.
		lines := auditLines(s)
		if len(lines) != auditBefore+1 {
			t.Fatalf("%s: %d audit lines written, want 1", what, len(lines)-auditBefore)
		}
		a := decodeLine(t, lines[len(lines)-1])
		wantAction, wantDecision := "mint", "deny"
		if st.status == 200 {
			wantAction = "dry_run"
		}
		if st.status < 300 {
			wantDecision = "allow"
		}
		wantCaller := ""
		switch {
		case st.before:
		case st.caller == "admin":
			wantCaller = "admin"
		case ids[st.caller] != "" && st.status != 401:
			wantCaller = ids[st.caller]
		}
		wantToken := ""
		if st.status == 201 {
			wantToken = ids[st.keep]
		}
		if a["action"] != wantAction || a["namespace"] != st.ns || a["caller"] != wantCaller || a["decision"] != wantDecision ||
			a["status"] != float64(st.status) || a["token"] != wantToken || a["client"] != c.local() {
			t.Errorf("%s: audit line %s; want action %s, namespace %s, caller %q, decision %s, status %d, token %q, client %s",
				what, lines[len(lines)-1], wantAction, st.ns, wantCaller, wantDecision, st.status, wantToken, c.local())
		}
		if st.status >= 400 {
			if msg := r.json(t)["message"]; a["reason"] != msg {
				t.Errorf("%s: audit reason %q, answered %q", what, a["reason"], msg)
			}
		}
		if strings.Contains(lines[len(lines)-1], "dkt_") {
			t.Errorf("%s: a secret in the audit line", what)
		}
		run.transcript = append(run.transcript, norm.apply("audit "+lines[len(lines)-1]))
	}

	// Metrics, before anything else asks the store.
	handoffs := `direktiv_authz_relay_handoffs_total`
	got := s.scrape(t)
	wantSamples(t, got, map[string]float64{
		`direktiv_authz_mints_total{outcome="granted"}`:     4,
		`direktiv_authz_mints_total{outcome="dropped"}`:     1,
		`direktiv_authz_mints_total{outcome="refused"}`:     10,
		`direktiv_authz_mints_total{outcome="unavailable"}`: 0,

		`direktiv_authz_requests_total{code="201",route="mint"}`: 5,
		`direktiv_authz_requests_total{code="200",route="mint"}`: 1,
		`direktiv_authz_requests_total{code="400",route="mint"}`: 3,
		`direktiv_authz_requests_total{code="401",route="mint"}`: 4,
		`direktiv_authz_requests_total{code="403",route="mint"}`: 3,

		`direktiv_authz_store_duration_seconds_count{op="create"}`: 5,
		`direktiv_authz_store_errors_total{op="create"}`:           0,
		// The manager, the revoked token and the viewer, each looked up once.
		`direktiv_authz_store_duration_seconds_count{op="lookup"}`: 3,
		// Once per request with a minted token that parses: misses for the
		// manager's first, the revoked token and the viewer; hits for the
		// manager's three others.
		`direktiv_authz_token_cache_lookups_total{result="miss"}`: 3,
		`direktiv_authz_token_cache_lookups_total{result="hit"}`:  3,
		// Every request that got to the rules: the five stored, the dry run
		// and the three refused by them.
		`direktiv_authz_decision_duration_seconds_count{kind="mint"}`: 9,

		`direktiv_authz_mint_rate_limited_total{limit="token"}`:     0,
		`direktiv_authz_mint_rate_limited_total{limit="namespace"}`: 0,
		handoffs: 0,
	})
	for _, code := range []string{"404", "405", "413", "429", "500", "503"} {
		if v := got[`direktiv_authz_requests_total{code="`+code+`",route="mint"}`]; v != 0 {
			t.Errorf("requests_total %s for mints: %v", code, v)
		}
	}
	if s.app.relay != nil && s.app.relay.Handoffs() != 0 {
		t.Errorf("%d connections handed off", s.app.relay.Handoffs())
	}

	// Stored state: the records as Redis holds them.
	keys, err := rdb.Keys(ctx, "*:tok:*").Result()
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != 4 {
		t.Errorf("%d records stored, want 4 (the revoked one gone, the dry run none): %v", len(keys), keys)
	}
	for _, label := range order {
		id, m := ids[label], minted[label]
		raw, err := rdb.Get(ctx, recordKey("ns1", id)).Result()
		if label == "victim" {
			if err != goredis.Nil {
				t.Errorf("the revoked record is still there: %q %v", raw, err)
			}
			run.transcript = append(run.transcript, norm.apply("record "+label+": none"))
			continue
		}
		if err != nil {
			t.Fatalf("record of %s: %v", label, err)
		}
		rec, err := store.DecodeRecord([]byte(raw), "ns1", id)
		if err != nil {
			t.Fatal(err)
		}
		text, _ := json.Marshal(rec)
		run.transcript = append(run.transcript, norm.apply("record "+label+": "+string(text)))
		sec, _ := secret.Parse(secrets[label])
		created, _ := time.Parse(time.RFC3339, m["created"].(string))
		expires, _ := time.Parse(time.RFC3339, m["expires"].(string))
		wantParent := ""
		if label == "child" || label == "child2" {
			wantParent = ids["mgr"]
		}
		if rec.ID != id || rec.Namespace != "ns1" || rec.Description != m["description"] || !slices.Equal(rec.Policies, strs(t, m["policies"])) ||
			rec.Parent != wantParent || rec.Hash != sec.Hash() || rec.Revision != s.app.engine.Revision() ||
			!rec.Created.Truncate(time.Second).Equal(created) || !rec.Expires.Equal(expires) {
			t.Errorf("record of %s: %s; answered %v", label, raw, m)
		}
		if strings.Contains(raw, secrets[label]) {
			t.Errorf("record of %s holds its secret", label)
		}
		at, err := rdb.PExpireTime(ctx, recordKey("ns1", id)).Result()
		if err != nil || at.Milliseconds() != expires.UnixMilli() {
			t.Errorf("record of %s expires at %d ms (%v), want %d", label, at.Milliseconds(), err, expires.UnixMilli())
		}
		// What the app's store reads back is what was answered.
		back, err := s.app.redis.Lookup(ctx, "ns1", id)
		if err != nil || back.Hash != sec.Hash() {
			t.Errorf("Lookup of %s: %v %v", label, back, err)
		}
	}
	if kids, err := rdb.HGet(ctx, redis.DefaultPrefix+":{ns1}:kn", ids["mgr"]).Int(); err != nil || kids != 2 {
		t.Errorf("the manager's children %d (%v), want 2: child and child2", kids, err)
	}
	// The index lists every live token, in the order stored.
	listed, _, err := s.app.redis.List(ctx, "ns1", "", 100)
	if err != nil || len(listed) != 4 {
		t.Errorf("List = %d tokens, %v; want the 4 live ones", len(listed), err)
	}

	// A body too large for the loops: they hand the connection to the
	// server, which answers 413.
	big := dialRaw(t, s.app.addr())
	body := `{"description":"` + strings.Repeat("x", 300<<10) + `","policies":["workflowView"]}`
	werr := make(chan error, 1)
	go func() { _, err := io.WriteString(big.c, rawMint(mintTarget("ns1"), testAdminToken, body)); werr <- err }()
	r := big.read(t)
	if err := <-werr; err != nil {
		t.Fatalf("sending the large body: %v", err)
	}
	wantHeaders(t, "too large", r)
	wantErrorBody(t, "too large", r, 413, "exceeds 65536 bytes")
	run.transcript = append(run.transcript, norm.apply("too large: "+r.head+"\n"+string(r.body)))
	lines := auditLines(s)
	run.transcript = append(run.transcript, norm.apply("audit "+lines[len(lines)-1]))
	if a := decodeLine(t, lines[len(lines)-1]); a["status"] != float64(413) || a["caller"] != "admin" || a["client"] != big.local() {
		t.Errorf("audit line of the 413: %s", lines[len(lines)-1])
	}
	wantHandoffs := 0.0
	if loops != "off" {
		wantHandoffs = 1
	}
	wantSamples(t, s.scrape(t), map[string]float64{
		`direktiv_authz_requests_total{code="413",route="mint"}`: 1,
		`direktiv_authz_mints_total{outcome="refused"}`:          11,
		handoffs: wantHandoffs,
	})

	run.transcript = append(run.transcript, testMintRateLimitsOn(t, loops, norm)...)
	return run
}

// testMintRateLimitsOn: 429 with Retry-After from either limit, on one
// keep-alive connection that is never handed off.
func testMintRateLimitsOn(t *testing.T, loops string, norm *normalizer) []string {
	s, _ := startMintSidecar(t, loops, "--mint-rate-per-token", "1/h", "--mint-rate-per-namespace", "3/h")
	c := dialRaw(t, s.app.addr())
	var transcript []string
	do := func(what, target, token, body string, status int) rawResponse {
		t.Helper()
		r := c.roundTrip(t, rawMint(target, token, body))
		wantHeaders(t, what, r)
		if r.status != status {
			t.Fatalf("%s: status %d, want %d: %s", what, r.status, status, r.body)
		}
		lines := auditLines(s)
		transcript = append(transcript, norm.apply(what+": "+r.head+"\n"+string(r.body)), norm.apply("audit "+lines[len(lines)-1]))
		return r
	}
	// The manager outlives its children (the default expiry, P30D), so no
	// child is clamped to it: with equal expiries a child is clamped only
	// when its second differs from the manager's, which the two paths may
	// not share.
	mgr := do("rate: admin mints a manager", mintTarget("ns1"), testAdminToken, `{"policies":["permissionsManage","workflowView"],"expires":"P60D"}`, 201).json(t)["token"].(string)
	do("rate: the manager's first", mintTarget("ns1"), mgr, `{"policies":["workflowView"]}`, 201)
	r := do("rate: the manager's second", mintTarget("ns1"), mgr, `{"policies":["workflowView"]}`, 429)
	wantErrorBody(t, "token limit", r, 429, "the minting token's mint rate limit of 1/h is exceeded (--mint-rate-per-token)")
	if got := r.header.Get("Retry-After"); got != "3600" {
		t.Errorf("token limit: Retry-After %q, want 3600", got)
	}
	do("rate: admin's second", mintTarget("ns1"), testAdminToken, `{"policies":["workflowView"]}`, 201)
	r = do("rate: admin's third", mintTarget("ns1"), testAdminToken, `{"policies":["workflowView"]}`, 429)
	wantErrorBody(t, "namespace limit", r, 429, "the namespace's mint rate limit of 3/h is exceeded (--mint-rate-per-namespace)")
	if got := r.header.Get("Retry-After"); got != "1200" {
		t.Errorf("namespace limit: Retry-After %q, want 1200", got)
	}
	do("rate: a dry run is not limited", mintTarget("ns1")+"?dry_run=true", mgr, `{"policies":["workflowView"]}`, 200)
	do("rate: another namespace", mintTarget("ns2"), testAdminToken, `{"policies":["workflowView"]}`, 201)

	lines := auditLines(s)
	n429 := 0
	for _, l := range lines {
		if strings.Contains(l, `"status":429`) {
			n429++
			if !strings.Contains(l, `"decision":"deny"`) || !strings.Contains(l, "mint rate limit") {
				t.Errorf("audit line of a 429: %s", l)
			}
		}
	}
	if n429 != 2 {
		t.Errorf("%d audit lines with status 429, want 2", n429)
	}
	wantSamples(t, s.scrape(t), map[string]float64{
		`direktiv_authz_mint_rate_limited_total{limit="token"}`:     1,
		`direktiv_authz_mint_rate_limited_total{limit="namespace"}`: 1,
		`direktiv_authz_requests_total{code="429",route="mint"}`:    2,
		`direktiv_authz_requests_total{code="201",route="mint"}`:    4,
		`direktiv_authz_mints_total{outcome="refused"}`:             2,
		`direktiv_authz_mints_total{outcome="granted"}`:             4,
		// Both refused creates reached Redis: the limits are checked there.
		`direktiv_authz_store_duration_seconds_count{op="create"}`: 6,
		`direktiv_authz_relay_handoffs_total`:                      0,
	})
	return transcript
}

func sameSet(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	sort.Strings(a)
	sort.Strings(b)
	return slices.Equal(a, b)
}

// unavailableBody is the answer when Redis refuses the connection (nothing
// reached it); timedOutBody when it took a command and did not answer (it
// may still run it).
const (
	unavailableBody = `{"code":503,"message":"the token store is unavailable; nothing was changed, try again later"}` + "\n"
	timedOutBody    = `{"code":503,"message":"the token store did not answer in time; a change asked for may have been made, try again later"}` + "\n"
)

// TestRelayMintFailsClosed: with Redis killed, or hung, a mint answers 503
// (the JSON error, no audit line, outcome unavailable) within the Redis
// timeouts, on the same keep-alive connection; once Redis is back the same
// sidecar mints again.
func TestRelayMintFailsClosed(t *testing.T) {
	onBothPaths(t, func(t *testing.T, loops string) {
		srv := testutil.StartRedis(t)
		// Short timeouts: the store's client fails a create after them,
		// on both paths.
		s := startMintSidecarOn(t, srv.URL()+"?dial_timeout=300ms&read_timeout=300ms&max_retries=0", loops)
		c := dialRaw(t, s.app.addr())
		const body = `{"policies":["permissionsView"]}`
		mint := func(token string) (rawResponse, time.Duration) {
			t.Helper()
			start := time.Now()
			r := c.roundTrip(t, rawMint(mintTarget("ns1"), token, body))
			return r, time.Since(start)
		}
		r, _ := mint(testAdminToken)
		if r.status != 201 {
			t.Fatalf("mint: %d %s", r.status, r.body)
		}
		r = c.roundTrip(t, rawMint(mintTarget("ns1"), testAdminToken, `{"policies":["permissionsManage"]}`))
		if r.status != 201 {
			t.Fatalf("mint: %d %s", r.status, r.body)
		}
		mgr := r.json(t)["token"].(string)

		// Killed.
		srv.Stop(t)
		audits := len(auditLines(s))
		for _, caller := range []struct{ name, token string }{{"admin", testAdminToken}, {"minted, not cached", mgr}} {
			r, took := mint(caller.token)
			wantHeaders(t, "killed: "+caller.name, r)
			if r.status != 503 || string(r.body) != unavailableBody {
				t.Errorf("killed, %s: %d %q, want 503 %q", caller.name, r.status, r.body, unavailableBody)
			}
			if took > 2*time.Second {
				t.Errorf("killed, %s: answered after %s", caller.name, took)
			}
		}
		if n := len(auditLines(s)) - audits; n != 0 {
			t.Errorf("%d audit lines for mints the store did not answer, want none: %q", n, auditLines(s)[audits:])
		}
		if !strings.Contains(s.logs.String(), `"msg":"request failed","method":"POST","path":"/api/namespaces/ns1/auth/token","status":503`) {
			t.Errorf("no error line for the 503s in the log")
		}
		wantSamples(t, s.scrape(t), map[string]float64{
			`direktiv_authz_mints_total{outcome="unavailable"}`:        2,
			`direktiv_authz_mints_total{outcome="granted"}`:            2,
			`direktiv_authz_requests_total{code="503",route="mint"}`:   2,
			`direktiv_authz_store_errors_total{op="create"}`:           1, // the admin's; the manager's lookup failed first
			`direktiv_authz_store_errors_total{op="lookup"}`:           1,
			`direktiv_authz_store_duration_seconds_count{op="create"}`: 3,
		})

		// Back, empty (no persistence) and without the script: the next
		// mint on the same connection is stored.
		srv.Restart(t)
		r = mintEventually(t, c, loops, rawMint(mintTarget("ns1"), testAdminToken, `{"policies":["permissionsManage"]}`))
		mgr2 := r.json(t)["token"].(string)
		if r, _ := mint(mgr2); r.status != 201 {
			t.Fatalf("a minted caller after the restart: %d %s", r.status, r.body)
		}

		// Hung: no answer within the read timeout.
		srv.Pause(t)
		audits = len(auditLines(s))
		r, took := mint(testAdminToken)
		srv.Resume(t)
		wantHeaders(t, "paused", r)
		if r.status != 503 || string(r.body) != timedOutBody {
			t.Errorf("paused: %d %q, want 503 %q", r.status, r.body, timedOutBody)
		}
		if took < 250*time.Millisecond || took > 3*time.Second {
			t.Errorf("paused: answered after %s; want after the 300ms read timeout, within 3s", took)
		}
		if n := len(auditLines(s)) - audits; n != 0 {
			t.Errorf("%d audit lines for the unanswered mint, want none", n)
		}
		r = mintEventually(t, c, loops, rawMint(mintTarget("ns1"), testAdminToken, body))
		if r.status != 201 {
			t.Fatalf("after Resume: %d %s", r.status, r.body)
		}
		wantSamples(t, s.scrape(t), map[string]float64{
			`direktiv_authz_mints_total{outcome="unavailable"}`:      3,
			`direktiv_authz_requests_total{code="503",route="mint"}`: 3,
			`direktiv_authz_store_errors_total{op="create"}`:         2,
			`direktiv_authz_relay_handoffs_total`:                    0,
		})
		for _, l := range auditLines(s) {
			if strings.Contains(l, `"status":503`) {
				t.Errorf("an audit line for a 503: %s", l)
			}
		}
	})
}

// mintEventually sends req on c until it is stored: on the loops the very
// first try must be (their connection is dialled afresh); the server's pool
// may hold a connection that broke, which fails one command.
func mintEventually(t *testing.T, c *rawConn, loops, req string) rawResponse {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for try := 0; ; try++ {
		r := c.roundTrip(t, req)
		if r.status == 201 {
			return r
		}
		if loops != "off" || time.Now().After(deadline) {
			t.Fatalf("try %d after Redis came back: %d %s", try, r.status, r.body)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestRelayMintNoScript: Redis lost the create script (SCRIPT FLUSH, as
// after a restart or failover): the next mint gets NOSCRIPT, sends the
// script itself (EVAL) and is stored; the ones after use EVALSHA again.
func TestRelayMintNoScript(t *testing.T) {
	onBothPaths(t, func(t *testing.T, loops string) {
		s, srv := startMintSidecar(t, loops)
		rdb := redisClient(t, srv.Addr(), goredis.Options{})
		ctx := context.Background()
		c := dialRaw(t, s.app.addr())
		mgrResp := c.roundTrip(t, rawMint(mintTarget("ns1"), testAdminToken, `{"policies":["permissionsManage","workflowView"]}`))
		if mgrResp.status != 201 {
			t.Fatalf("mint: %d %s", mgrResp.status, mgrResp.body)
		}
		mgr := mgrResp.json(t)["token"].(string)
		if err := rdb.ScriptFlush(ctx).Err(); err != nil {
			t.Fatal(err)
		}
		mon := startMonitor(t, srv.Addr())
		var got []map[string]any
		for _, token := range []string{testAdminToken, mgr, testAdminToken} {
			r := c.roundTrip(t, rawMint(mintTarget("ns1"), token, `{"policies":["workflowView"]}`))
			wantHeaders(t, "after SCRIPT FLUSH", r)
			if r.status != 201 {
				t.Fatalf("after SCRIPT FLUSH: %d %s", r.status, r.body)
			}
			got = append(got, r.json(t))
		}
		cmds := mon.stop(t)
		var names []string
		for _, l := range cmds {
			_, cmd, _ := strings.Cut(l, `] "`)
			name, _, _ := strings.Cut(cmd, `"`)
			names = append(names, strings.ToLower(name))
		}
		// The manager's lookup is a script too (redis.Store.Lookup).
		if want := []string{"evalsha", "eval", "evalsha", "eval", "evalsha", "evalsha"}; !slices.Equal(names, want) {
			t.Errorf("commands %q, want %q:\n%s", names, want, strings.Join(cmds, "\n"))
		}
		for i, m := range got {
			sec, _ := secret.Parse(m["token"].(string))
			rec, err := s.app.redis.Lookup(ctx, "ns1", sec.ID)
			if err != nil || rec.Hash != sec.Hash() {
				t.Errorf("token %d after SCRIPT FLUSH not stored: %v %v", i, rec, err)
			}
		}
		wantSamples(t, s.scrape(t), map[string]float64{
			`direktiv_authz_mints_total{outcome="granted"}`:            4,
			`direktiv_authz_store_duration_seconds_count{op="create"}`: 4,
			`direktiv_authz_store_errors_total{op="create"}`:           0,
			`direktiv_authz_relay_handoffs_total`:                      0,
		})
		if n := strings.Count(strings.Join(auditLines(s), "\n"), `"decision":"allow","status":201`); n != 4 {
			t.Errorf("%d audit lines of stored mints, want 4", n)
		}
	})
}

// TestRelayMintPipelined: mints written in one TCP write are answered in
// order, one of them waiting for its caller's record, and the connection
// closes after the one that asks for it.
func TestRelayMintPipelined(t *testing.T) {
	onBothPaths(t, func(t *testing.T, loops string) {
		s, _ := startMintSidecar(t, loops, "--token-cache-ttl", "0")
		c := dialRaw(t, s.app.addr())
		r := c.roundTrip(t, rawMint(mintTarget("ns1"), testAdminToken, `{"policies":["permissionsManage","workflowView"]}`))
		if r.status != 201 {
			t.Fatalf("mint: %d %s", r.status, r.body)
		}
		mgr := r.json(t)["token"].(string)

		// Two in one write first, then five.
		two := rawMint(mintTarget("ns1"), testAdminToken, `{"description":"one","policies":["workflowView"]}`) +
			rawMint(mintTarget("ns1"), testAdminToken, `{"description":"two","policies":["workflowView"]}`)
		if _, err := io.WriteString(c.c, two); err != nil {
			t.Fatal(err)
		}
		seen := map[string]bool{}
		for _, desc := range []string{"one", "two"} {
			r := c.read(t)
			wantHeaders(t, desc, r)
			m := r.json(t)
			if r.status != 201 || m["description"] != desc || seen[m["id"].(string)] {
				t.Fatalf("pipelined %s: %d %s", desc, r.status, r.body)
			}
			seen[m["id"].(string)] = true
		}
		steps := []struct {
			req    string
			status int
			desc   string
		}{
			{rawMint(mintTarget("ns1"), testAdminToken, `{"description":"three","policies":["workflowView"]}`), 201, "three"},
			{rawMint(mintTarget("ns1"), mgr, `{"description":"four","policies":["workflowView"]}`), 201, "four"},
			{rawMint(mintTarget("ns1"), testAdminToken, `{"description":"five","policies":["nope"]}`), 400, ""},
			{rawMint(mintTarget("ns1")+"?dry_run=1", mgr, `{"description":"six","policies":["workflowView"]}`), 200, "six"},
			{rawMint(mintTarget("ns1"), mgr, `{"description":"seven","policies":["workflowView"]}`, "Connection: close"), 201, "seven"},
		}
		var all strings.Builder
		for _, st := range steps {
			all.WriteString(st.req)
		}
		if _, err := io.WriteString(c.c, all.String()); err != nil {
			t.Fatal(err)
		}
		for i, st := range steps {
			r := c.read(t)
			wantHeaders(t, fmt.Sprint("pipelined ", i), r)
			if r.status != st.status {
				t.Fatalf("pipelined %d: %d %s, want %d", i, r.status, r.body, st.status)
			}
			if m := r.json(t); st.desc != "" && m["description"] != st.desc {
				t.Fatalf("pipelined %d: answer of %v, want %s's", i, m["description"], st.desc)
			}
			if last := i == len(steps)-1; last != (r.header.Get("Connection") == "close") {
				t.Errorf("pipelined %d: Connection %q", i, r.header.Get("Connection"))
			}
		}
		if n, err := c.br.Read(make([]byte, 1)); n != 0 || err != io.EOF {
			t.Errorf("after Connection: close: read %d, %v; want EOF", n, err)
		}
		wantSamples(t, s.scrape(t), map[string]float64{
			`direktiv_authz_mints_total{outcome="granted"}`:          6,
			`direktiv_authz_requests_total{code="201",route="mint"}`: 6,
			`direktiv_authz_requests_total{code="200",route="mint"}`: 1,
			`direktiv_authz_requests_total{code="400",route="mint"}`: 1,
			// The cache is off: each of the manager's three is looked up.
			`direktiv_authz_store_duration_seconds_count{op="lookup"}`: 3,
			`direktiv_authz_relay_handoffs_total`:                      0,
		})
	})
}

// TestRelayMintClientGoesAway: a client that sends a mint and closes before
// the answer (Redis held with CLIENT PAUSE meanwhile) does not undo it: the
// token is stored, audited and counted, and the sidecar serves on. On the
// server, the handler runs to its end whatever the client does.
func TestRelayMintClientGoesAway(t *testing.T) {
	onBothPaths(t, func(t *testing.T, loops string) {
		s, srv := startMintSidecar(t, loops, "--token-cache-ttl", "0")
		rdb := redisClient(t, srv.Addr(), goredis.Options{})
		ctx := context.Background()
		mgr := s.mintOK(t, "ns1", testAdminToken, `{"policies":["permissionsManage","workflowView"]}`)["token"].(string)
		mgrSec, _ := secret.Parse(mgr)
		stored := 1.0
		for i, tc := range []struct {
			name, token, caller string
			flush               bool // SCRIPT FLUSH first: the create is sent twice (EVALSHA, then EVAL)
		}{
			{name: "admin, the create in flight", token: testAdminToken, caller: "admin"},
			{name: "minted, its lookup in flight", token: mgr, caller: mgrSec.ID},
			{name: "admin, the script lost", token: testAdminToken, caller: "admin", flush: true},
		} {
			t.Run(tc.name, func(t *testing.T) {
				if tc.flush {
					if err := rdb.ScriptFlush(ctx).Err(); err != nil {
						t.Fatal(err)
					}
				}
				before, _ := rdb.Keys(ctx, "*:tok:*").Result()
				audits := len(auditLines(s))
				if err := rdb.ClientPause(ctx, 400*time.Millisecond).Err(); err != nil {
					t.Fatal(err)
				}
				desc := fmt.Sprintf("gone-%d", i)
				c, err := net.Dial("tcp", s.app.addr())
				if err != nil {
					t.Fatal(err)
				}
				io.WriteString(c, rawMint(mintTarget("ns1"), tc.token, `{"description":"`+desc+`","policies":["workflowView"]}`))
				time.Sleep(100 * time.Millisecond)
				wantPending(t, c, "the mint before the client goes")
				c.Close()

				var line string
				testutil.Eventually(t, "the mint of a client gone is audited", func() bool {
					lines := auditLines(s)
					if len(lines) > audits {
						line = lines[audits]
						return true
					}
					return false
				})
				a := decodeLine(t, line)
				id, _ := a["token"].(string)
				if a["action"] != "mint" || a["decision"] != "allow" || a["status"] != float64(201) || a["caller"] != tc.caller || id == "" {
					t.Fatalf("audit line %s", line)
				}
				if n := len(auditLines(s)) - audits; n != 1 {
					t.Errorf("%d audit lines, want 1", n)
				}
				rec, err := s.app.redis.Lookup(ctx, "ns1", id)
				if err != nil || rec.Description != desc {
					t.Errorf("record %s: %+v %v", id, rec, err)
				}
				after, _ := rdb.Keys(ctx, "*:tok:*").Result()
				if len(after) != len(before)+1 {
					t.Errorf("%d records, want %d", len(after), len(before)+1)
				}
				stored++
				wantSamples(t, s.scrape(t), map[string]float64{
					`direktiv_authz_mints_total{outcome="granted"}`:          stored,
					`direktiv_authz_requests_total{code="201",route="mint"}`: stored,
				})
				// Serving on.
				s.mintOK(t, "ns1", tc.token, `{"policies":["workflowView"]}`)
				stored++
			})
		}
	})
}

// TestRelayMintConcurrent: 20 clients minting 20 times each on keep-alive
// connections, half by the admin token and half by a minted token whose
// record is looked up for every mint (--token-cache-ttl 0, a Wait each):
// every mint is stored once under an id of its own, listed by the API, and
// no connection is handed off.
func TestRelayMintConcurrent(t *testing.T) {
	const clients, mints = 20, 20
	s, srv := startMintSidecar(t, "auto", "--token-cache-ttl", "0")
	mgr := s.mintOK(t, "ns1", testAdminToken, `{"policies":["permissionsManage","workflowView"],"expires":"P1D"}`)
	mgrTok := mgr["token"].(string)
	var mu sync.Mutex
	ids := map[string]string{} // id: description
	var wg sync.WaitGroup
	errs := make(chan error, clients)
	for g := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			token := testAdminToken
			if g%2 == 1 {
				token = mgrTok
			}
			c, err := net.Dial("tcp", s.app.addr())
			if err != nil {
				errs <- err
				return
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(20 * time.Second))
			br := bufio.NewReader(c)
			for i := range mints {
				desc := fmt.Sprintf("g%02d-m%02d", g, i)
				if _, err := io.WriteString(c, rawMint(mintTarget("ns1"), token, `{"description":"`+desc+`","policies":["workflowView"]}`)); err != nil {
					errs <- err
					return
				}
				res, err := http.ReadResponse(br, nil)
				if err != nil {
					errs <- fmt.Errorf("%s: %w", desc, err)
					return
				}
				var m map[string]any
				err = json.NewDecoder(res.Body).Decode(&m)
				res.Body.Close()
				if err != nil || res.StatusCode != 201 || m["description"] != desc {
					errs <- fmt.Errorf("%s: %d %v %v", desc, res.StatusCode, m, err)
					return
				}
				mu.Lock()
				id := m["id"].(string)
				if prev, ok := ids[id]; ok {
					mu.Unlock()
					errs <- fmt.Errorf("id %s given to %s and %s", id, prev, desc)
					return
				}
				ids[id] = desc
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if t.Failed() {
		return
	}
	if len(ids) != clients*mints {
		t.Fatalf("%d distinct ids, want %d", len(ids), clients*mints)
	}
	wantSamples(t, s.scrape(t), map[string]float64{
		`direktiv_authz_mints_total{outcome="granted"}`:            clients*mints + 1,
		`direktiv_authz_requests_total{code="201",route="mint"}`:   clients*mints + 1,
		`direktiv_authz_store_duration_seconds_count{op="create"}`: clients*mints + 1,
		`direktiv_authz_store_duration_seconds_count{op="lookup"}`: clients / 2 * mints,
		`direktiv_authz_relay_handoffs_total`:                      0,
	})
	if n := len(auditLines(s)); n != clients*mints+1 {
		t.Errorf("%d audit lines, want %d", n, clients*mints+1)
	}

	// The index holds them all, as the API lists them.
	r := s.do(t, "GET", "/api/namespaces/ns1/auth/tokens?limit=1000", testAdminToken, "")
	if r.status != 200 {
		t.Fatalf("list: %d %s", r.status, r.body)
	}
	var list struct {
		Tokens []tokens.View `json:"tokens"`
		Next   string        `json:"next"`
	}
	if err := json.Unmarshal(r.body, &list); err != nil {
		t.Fatal(err)
	}
	if len(list.Tokens) != clients*mints+1 || list.Next != "" {
		t.Fatalf("listed %d tokens (next %q), want %d", len(list.Tokens), list.Next, clients*mints+1)
	}
	for _, tv := range list.Tokens {
		if tv.ID == mgr["id"] {
			continue
		}
		if want, ok := ids[tv.ID]; !ok || tv.Description != want {
			t.Errorf("listed %s %q, minted as %q", tv.ID, tv.Description, want)
		}
	}
	rdb := redisClient(t, srv.Addr(), goredis.Options{})
	if n, err := rdb.XLen(context.Background(), redis.DefaultPrefix+":{ns1}:ix").Result(); err != nil || n != clients*mints+1 {
		t.Errorf("index holds %d (%v), want %d", n, err, clients*mints+1)
	}
}

// mintManagerAndChild mints on one keep-alive connection a manager token
// with the admin token, then a token by that manager, in ns1, and returns
// both answers.
func mintManagerAndChild(t *testing.T, s *sidecar) (mgr, child map[string]any) {
	t.Helper()
	c := dialRaw(t, s.app.addr())
	r := c.roundTrip(t, rawMint(mintTarget("ns1"), testAdminToken, `{"policies":["permissionsManage","workflowView"]}`))
	if r.status != 201 {
		t.Fatalf("mint: %d %s", r.status, r.body)
	}
	mgr = r.json(t)
	r = c.roundTrip(t, rawMint(mintTarget("ns1"), mgr["token"].(string), `{"policies":["workflowView"]}`))
	if r.status != 201 {
		t.Fatalf("mint by the minted token: %d %s", r.status, r.body)
	}
	return mgr, r.json(t)
}

// TestRelayMintRedisAuth: a Redis with a password (or an ACL user) and a
// database other than 0: the creates of the mints the loops serve go
// through the store's client, authenticated and on that database, and the
// tokens land there.
func TestRelayMintRedisAuth(t *testing.T) {
	srv := testutil.StartRedis(t)
	ctx := context.Background()
	setup := redisClient(t, srv.Addr(), goredis.Options{})
	if err := setup.Do(ctx, "ACL", "SETUSER", "minter", "on", ">minter-pw", "~*", "&*", "+@all").Err(); err != nil {
		t.Fatal(err)
	}
	if err := setup.ConfigSet(ctx, "requirepass", "default-pw").Err(); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, url, user, password string
		db                        int
	}{
		{"password, db 3", "redis://:default-pw@" + srv.Addr() + "/3", "", "default-pw", 3},
		{"user and password, db 5", "redis://minter:minter-pw@" + srv.Addr() + "/5", "minter", "minter-pw", 5},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := startMintSidecarOn(t, tc.url, "auto")
			mgr, child := mintManagerAndChild(t, s)
			wantSamples(t, s.scrape(t), map[string]float64{`direktiv_authz_relay_handoffs_total`: 0})

			rdb := redisClient(t, srv.Addr(), goredis.Options{Username: tc.user, Password: tc.password, DB: tc.db})
			for _, m := range []map[string]any{mgr, child} {
				if _, err := rdb.Get(ctx, recordKey("ns1", m["id"].(string))).Result(); err != nil {
					t.Errorf("record %v in db %d: %v", m["id"], tc.db, err)
				}
			}
			db0 := redisClient(t, srv.Addr(), goredis.Options{Password: "default-pw"})
			if keys, err := db0.Keys(ctx, "*").Result(); err != nil || len(keys) != 0 {
				t.Errorf("db 0 holds %v (%v), want nothing", keys, err)
			}
			// The creates came on the store's connections, authenticated
			// as the URL's user, on the URL's database.
			list, err := rdb.ClientList(ctx).Result()
			if err != nil {
				t.Fatal(err)
			}
			user := tc.user
			if user == "" {
				user = "default"
			}
			found := false
			for l := range strings.SplitSeq(list, "\n") {
				f := " " + l + " "
				if strings.Contains(f, " cmd=evalsha ") {
					found = true
					if !strings.Contains(f, fmt.Sprintf(" db=%d ", tc.db)) || !strings.Contains(f, " user="+user+" ") {
						t.Errorf("a connection creating tokens: %s; want db=%d user=%s", l, tc.db, user)
					}
				}
			}
			if !found {
				t.Errorf("no connection sent EVALSHA:\n%s", list)
			}
		})
	}
	t.Run("wrong password", func(t *testing.T) {
		s := startMintSidecarOn(t, "redis://:wrong-pw@"+srv.Addr()+"/3", "auto")
		c := dialRaw(t, s.app.addr())
		start := time.Now()
		r := c.roundTrip(t, rawMint(mintTarget("ns1"), testAdminToken, `{"policies":["workflowView"]}`))
		if r.status != 503 || string(r.body) != unavailableBody {
			t.Errorf("mint: %d %q, want 503 %q", r.status, r.body, unavailableBody)
		}
		if d := time.Since(start); d > 3*time.Second {
			t.Errorf("answered after %s", d)
		}
		wantSamples(t, s.scrape(t), map[string]float64{
			`direktiv_authz_mints_total{outcome="unavailable"}`: 1,
			`direktiv_authz_relay_handoffs_total`:               0,
		})
	})
}

// TestRelayMintEveryRedisForm: the loops serve mints with Redis Cluster and
// with Sentinel and wait_replicas, as with a standalone Redis: the mint and
// a mint by the minted token are stored, the client is never handed off to
// the server, and the records are read back through the store.
func TestRelayMintEveryRedisForm(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a Redis Cluster and a Sentinel set")
	}
	forms := []struct {
		name string
		url  func(t *testing.T) string
	}{
		{"cluster", func(t *testing.T) string { return testutil.StartRedisCluster(t).URL() }},
		{"sentinel, wait_replicas=1", func(t *testing.T) string {
			sen := testutil.StartRedisSentinelWith(t, testutil.RedisSentinelOptions{Replicas: 1})
			return sen.URL() + "?wait_replicas=1&wait_timeout=1s&read_timeout=2s"
		}},
	}
	for _, form := range forms {
		t.Run(form.name, func(t *testing.T) {
			s := startMintSidecarOn(t, form.url(t), "auto")
			mgr, child := mintManagerAndChild(t, s)
			for _, m := range []map[string]any{mgr, child} {
				sec, err := secret.Parse(m["token"].(string))
				if err != nil {
					t.Fatal(err)
				}
				rec, err := s.app.redis.Lookup(context.Background(), "ns1", sec.ID)
				if err != nil || rec.Hash != sec.Hash() {
					t.Errorf("token %v not stored: %+v, %v", m["id"], rec, err)
				}
			}
			wantSamples(t, s.scrape(t), map[string]float64{
				`direktiv_authz_mints_total{outcome="granted"}`:            2,
				`direktiv_authz_store_duration_seconds_count{op="create"}`: 2,
				`direktiv_authz_relay_handoffs_total`:                      0,
			})
		})
	}
}

// rawChunkedMint is a mint whose body is chunked: the loops hand such a
// request (and its connection) to the server.
func rawChunkedMint(target, token, body string) string {
	return "POST " + target + " HTTP/1.1\r\nHost: sidecar\r\nDirektiv-Token: " + token +
		"\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n" +
		fmt.Sprintf("%x\r\n%s\r\n0\r\n\r\n", len(body), body)
}

// TestRelayMintAnsweredAtOnceThenHandoff: a mint the loop answers at once
// (a dry run, or any refusal: no create to make) pipelined with a request
// the loop hands to the server (a chunked body) gets its own answer first,
// and the handed-off request the server's.
func TestRelayMintAnsweredAtOnceThenHandoff(t *testing.T) {
	onBothPaths(t, func(t *testing.T, loops string) {
		s, _ := startMintSidecar(t, loops)
		for _, first := range []struct {
			name   string
			req    string
			status int
		}{
			{"dry run", rawMint(mintTarget("ns1")+"?dry_run=true", testAdminToken, `{"description":"dry","policies":["workflowView"]}`), 200},
			{"refused", rawMint(mintTarget("ns1"), testAdminToken, `{"policies":[]}`), 400},
		} {
			t.Run(first.name, func(t *testing.T) {
				var handoffs uint64
				if s.app.relay != nil {
					handoffs = s.app.relay.Handoffs()
				}
				c := dialRaw(t, s.app.addr())
				c.c.SetDeadline(time.Now().Add(5 * time.Second))
				if _, err := io.WriteString(c.c, first.req+rawChunkedMint(mintTarget("ns1"), testAdminToken, `{"description":"chunked","policies":["workflowView"]}`)); err != nil {
					t.Fatal(err)
				}
				r1 := c.read(t)
				if r1.status != first.status {
					t.Fatalf("first answer: %d %s, want %d (the pipelined second request's answer came instead)", r1.status, r1.body, first.status)
				}
				r2 := c.read(t)
				if r2.status != 201 || !strings.Contains(string(r2.body), `"description":"chunked"`) {
					t.Fatalf("second answer: %d %s", r2.status, r2.body)
				}
				// The case is the one above only if the chunked request was
				// handed to the server.
				if s.app.relay != nil {
					if got := s.app.relay.Handoffs() - handoffs; got != 1 {
						t.Errorf("%d connections handed to the server, want 1 (the chunked mint's)", got)
					}
				}
			})
		}
	})
}

// delayProxy is a TCP proxy to a Redis that, while hold is set, holds each
// reply for delay before passing it on: the commands reach Redis and run at
// once, their replies arrive late.
type delayProxy struct {
	addr  string
	hold  atomic.Bool
	delay time.Duration
}

func newDelayProxy(t *testing.T, target string, delay time.Duration) *delayProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &delayProxy{addr: ln.Addr().String(), delay: delay}
	var mu sync.Mutex
	var conns []net.Conn
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
	})
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			r, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			mu.Lock()
			conns = append(conns, c, r)
			mu.Unlock()
			go func() { io.Copy(r, c); r.Close() }()
			go func() {
				buf := make([]byte, 64<<10)
				for {
					n, err := r.Read(buf)
					if n > 0 {
						if p.hold.Load() {
							time.Sleep(p.delay)
						}
						if _, werr := c.Write(buf[:n]); werr != nil {
							break
						}
					}
					if err != nil {
						break
					}
				}
				c.Close()
			}()
		}
	}()
	return p
}

// TestRelayMintOfClientGoneAuditedAtShutdown: a client sends a mint and
// leaves while its create's reply is on its way (Redis ran it; the reply is
// held back by a proxy), and the sidecar is stopped meanwhile. The token is
// stored and audited on both paths: the server finishes the handler within
// the grace period, and the loops' Shutdown waits for answers awaited, not
// only for open client connections.
func TestRelayMintOfClientGoneAuditedAtShutdown(t *testing.T) {
	onBothPaths(t, func(t *testing.T, loops string) {
		srv := testutil.StartRedis(t)
		px := newDelayProxy(t, srv.Addr(), 400*time.Millisecond)
		s := startMintSidecarOn(t, "redis://"+px.addr, loops, "--shutdown-grace", "5s")
		rdb := redisClient(t, srv.Addr(), goredis.Options{})
		ctx := context.Background()
		audits := len(auditLines(s))
		px.hold.Store(true)
		c, err := net.Dial("tcp", s.app.addr())
		if err != nil {
			t.Fatal(err)
		}
		io.WriteString(c, rawMint(mintTarget("ns1"), testAdminToken, `{"description":"gone","policies":["workflowView"]}`))
		testutil.Eventually(t, "the token stored", func() bool {
			keys, _ := rdb.Keys(ctx, "*:tok:*").Result()
			return len(keys) == 1
		})
		c.Close()
		time.Sleep(20 * time.Millisecond)
		s.cancel()
		select {
		case <-s.done:
		case <-time.After(10 * time.Second):
			t.Fatal("the sidecar did not stop")
		}
		s.done <- nil // for the cleanup's stop
		if lines := auditLines(s)[audits:]; len(lines) != 1 {
			t.Fatalf("a token stored by a mint, %d audit lines for it, want 1: %q", len(lines), lines)
		}
	})
}

// TestRelayMintThenHalfClose: a client that writes one mint and shuts
// down its sending side (printf '...' | nc -N, or any client that
// half-closes after its request) gets the answer, with the secret shown
// once, on both paths.
func TestRelayMintThenHalfClose(t *testing.T) {
	onBothPaths(t, func(t *testing.T, loops string) {
		// The cache off: the minted caller's record is looked up first,
		// and the FIN comes during that lookup (a Wait on the loops).
		s, srv := startMintSidecar(t, loops, "--token-cache-ttl", "0")
		rdb := redisClient(t, srv.Addr(), goredis.Options{})
		mgr := s.mintOK(t, "ns1", testAdminToken, `{"policies":["permissionsManage","workflowView"]}`)["token"].(string)
		for _, caller := range []struct{ name, token string }{{"admin, the create in flight", testAdminToken}, {"minted, its lookup in flight", mgr}} {
			t.Run(caller.name, func(t *testing.T) {
				c := dialRaw(t, s.app.addr())
				c.c.SetDeadline(time.Now().Add(5 * time.Second))
				if err := rdb.ClientPause(context.Background(), 300*time.Millisecond).Err(); err != nil {
					t.Fatal(err)
				}
				if _, err := io.WriteString(c.c, rawMint(mintTarget("ns1"), caller.token, `{"description":"fin","policies":["workflowView"]}`)); err != nil {
					t.Fatal(err)
				}
				time.Sleep(100 * time.Millisecond) // Redis holds the create or the lookup
				wantPending(t, c.c, "the mint before the client's FIN")
				c.c.SetDeadline(time.Now().Add(5 * time.Second))
				if err := c.c.(*net.TCPConn).CloseWrite(); err != nil {
					t.Fatal(err)
				}
				b, err := io.ReadAll(c.br)
				if err != nil {
					t.Fatalf("reading until the sidecar closes: %v (after %q)", err, b)
				}
				if !strings.HasPrefix(string(b), "HTTP/1.1 201 ") || !strings.Contains(string(b), `"token":"dkt_`) {
					t.Fatalf("after the mint and the client's FIN: read %q, %v; want the 201 with the secret", b, err)
				}
			})
		}
	})
}
