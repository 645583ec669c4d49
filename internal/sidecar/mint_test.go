package sidecar

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/direktiv/direktiv-authz/internal/secret"
	"github.com/direktiv/direktiv-authz/internal/testutil"
	"github.com/direktiv/direktiv-authz/internal/tokens"
	"github.com/direktiv/direktiv-authz/store"
)

// docRequest is the request from Direktiv's documentation, byte for byte as
// curl sends it, double slash included.
const docBody = `{"description":"created by api","policies":["deleteNamespace","eventsManage"],"expires":"P1Y"}`

func docRequest(host string) string {
	return "POST //api/namespaces/MY-NAMESPACE/auth/token HTTP/1.1\r\n" +
		"Host: " + host + "\r\n" +
		"User-Agent: curl/7.88.1\r\n" +
		"Accept: */*\r\n" +
		"Content-Type: application/json\r\n" +
		"Direktiv-Token: " + testAdminToken + "\r\n" +
		fmt.Sprintf("Content-Length: %d\r\n", len(docBody)) +
		"\r\n" + docBody
}

func TestMintDocumentationRequest(t *testing.T) {
	s, srv := startRedisSidecar(t)
	r := rawRequest(t, s.app.addr(), docRequest(s.app.addr()))
	if r.status != http.StatusCreated {
		t.Fatalf("status %d, want 201: %s", r.status, r.body)
	}
	if ct := r.header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type %q, want application/json", ct)
	}
	m := r.json(t)
	for _, f := range []string{"id", "token", "namespace", "description", "policies", "dropped", "created", "expires", "warnings"} {
		if _, ok := m[f]; !ok {
			t.Errorf("response lacks %q: %s", f, r.body)
		}
	}
	if m["namespace"] != "MY-NAMESPACE" || m["description"] != "created by api" {
		t.Errorf("namespace/description = %v/%v", m["namespace"], m["description"])
	}
	if got := strs(t, m["policies"]); !equalStrings(got, []string{"deleteNamespace", "eventsManage"}) {
		t.Errorf("policies %v", got)
	}
	if len(strs(t, m["dropped"])) != 0 || len(strs(t, m["warnings"])) != 0 {
		t.Errorf("dropped %v warnings %v, want none", m["dropped"], m["warnings"])
	}
	created, err := time.Parse(time.RFC3339, m["created"].(string))
	if err != nil || created.Location() != time.UTC {
		t.Fatalf("created %v: %v", m["created"], err)
	}
	expires, err := time.Parse(time.RFC3339, m["expires"].(string))
	if err != nil {
		t.Fatalf("expires %v: %v", m["expires"], err)
	}
	if want := created.AddDate(1, 0, 0); !expires.Equal(want) {
		t.Errorf("expires %s, want created + 1 calendar year = %s", expires, want)
	}
	if !strings.HasSuffix(m["created"].(string), "Z") || !strings.HasSuffix(m["expires"].(string), "Z") {
		t.Errorf("times not in UTC: %v %v", m["created"], m["expires"])
	}

	// Stored state: one record, its hash not its secret, expiring at the
	// expiry instant.
	tok := m["token"].(string)
	sec, err := secret.Parse(tok)
	if err != nil {
		t.Fatalf("minted token does not parse: %v", err)
	}
	if sec.ID != m["id"] || sec.Namespace != "MY-NAMESPACE" {
		t.Errorf("token carries %s/%s, response says %v", sec.Namespace, sec.ID, m["id"])
	}
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	defer rdb.Close()
	ctx := context.Background()
	keys, err := rdb.Keys(ctx, "*tok:*").Result()
	if err != nil || len(keys) != 1 {
		t.Fatalf("record keys %v (%v), want exactly one", keys, err)
	}
	raw, err := rdb.Get(ctx, keys[0]).Result()
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(raw, tok) || strings.Contains(raw, strings.TrimPrefix(tok, secret.Prefix)) {
		t.Fatalf("the stored record holds the secret: %s", raw)
	}
	rec, err := store.DecodeRecord([]byte(raw), sec.Namespace, sec.ID)
	if err != nil {
		t.Fatal(err)
	}
	if rec.Hash != sec.Hash() || rec.Parent != "" || rec.Revision == "" {
		t.Errorf("record hash/parent/revision = %q/%q/%q", rec.Hash, rec.Parent, rec.Revision)
	}
	at, err := rdb.PExpireTime(ctx, keys[0]).Result()
	if err != nil {
		t.Fatal(err)
	}
	if at != time.Duration(expires.UnixMilli())*time.Millisecond {
		t.Errorf("key expires at %v ms, want %d", at.Milliseconds(), expires.UnixMilli())
	}
	if strings.Contains(s.logs.String(), tok) {
		t.Error("the secret appears in the log")
	}
}

func TestMintChain(t *testing.T) {
	s, _ := startRedisSidecar(t)
	parent := s.mintOK(t, "ns1", testAdminToken, `{"description":"manager","policies":["permissionsManage","workflowManage","secretsView"],"expires":"P7D"}`)
	ptok := parent["token"].(string)

	// Lower-case header name works the same.
	req, _ := http.NewRequest("POST", s.url+"/api/namespaces/ns1/auth/token", strings.NewReader(`{"policies":["workflowView","eventsSend"],"expires":"P1D"}`))
	req.Header.Set("direktiv-token", ptok)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var child map[string]any
	json.NewDecoder(res.Body).Decode(&child)
	res.Body.Close()
	if res.StatusCode != http.StatusCreated {
		t.Fatalf("child mint status %d: %v", res.StatusCode, child)
	}
	// workflowView is held through workflowManage; eventsSend is not held.
	if got := strs(t, child["policies"]); !equalStrings(got, []string{"workflowView"}) {
		t.Errorf("granted %v, want [workflowView]", got)
	}
	if got := strs(t, child["dropped"]); !equalStrings(got, []string{"eventsSend"}) {
		t.Errorf("dropped %v, want [eventsSend]", got)
	}

	// The child never outlives its parent.
	long := s.mintOK(t, "ns1", ptok, `{"policies":["secretsView"],"expires":"P30D"}`)
	if long["expires"] != parent["expires"] {
		t.Errorf("child expires %v, parent %v: the child must be clamped", long["expires"], parent["expires"])
	}
	if w := strs(t, long["warnings"]); len(w) != 1 || !strings.Contains(w[0], "outlive") {
		t.Errorf("warnings %v, want one about the parent's expiry", w)
	}
	// The child holds no permissionsManage: it may not mint.
	r := s.do(t, "POST", "/api/namespaces/ns1/auth/token", child["token"].(string), `{"policies":["workflowView"]}`)
	if r.status != http.StatusForbidden || !strings.Contains(string(r.body), "permissionsManage") {
		t.Errorf("grandchild mint: %d %s, want 403 naming permissionsManage", r.status, r.body)
	}
	// The parent may not mint in another namespace.
	r = s.do(t, "POST", "/api/namespaces/ns2/auth/token", ptok, `{"policies":["workflowView"]}`)
	if r.status != http.StatusForbidden {
		t.Errorf("other namespace: %d %s, want 403", r.status, r.body)
	}
}

func TestMintRefusals(t *testing.T) {
	s, srv := startRedisSidecar(t, "--max-ttl", "P1Y")
	viewer := s.mintOK(t, "ns1", testAdminToken, `{"policies":["workflowView"]}`)["token"].(string)
	mgr := s.mintOK(t, "ns1", testAdminToken, `{"policies":["permissionsManage"]}`)["token"].(string)
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	defer rdb.Close()
	count := func() int {
		keys, err := rdb.Keys(context.Background(), "*tok:*").Result()
		if err != nil {
			t.Fatal(err)
		}
		return len(keys)
	}
	before := count()
	forged := viewer[:len(viewer)-2] + "AA"
	if forged == viewer {
		forged = viewer[:len(viewer)-2] + "BB"
	}
	const path = "/api/namespaces/ns1/auth/token"
	cases := []struct {
		name, method, path, token, body string
		status                          int
		msg                             string
	}{
		{"no token", "POST", path, "", `{"policies":["workflowView"]}`, 401, "no credential: send the admin token or a namespace token in Direktiv-Api-Key, Direktiv-Token or Authorization: Bearer"},
		{"unknown token", "POST", path, "something-else", `{"policies":["workflowView"]}`, 401, "neither the admin token"},
		{"bad checksum", "POST", path, forged, `{"policies":["workflowView"]}`, 401, "malformed"},
		{"without permissionsManage", "POST", path, viewer, `{"policies":["workflowView"]}`, 403, "permissionsManage"},
		{"nothing held", "POST", path, mgr, `{"policies":["secretsManage"]}`, 403, "secretsManage"},
		{"unknown policy", "POST", path, testAdminToken, `{"policies":["workflowView","fooBar"]}`, 400, "fooBar"},
		{"empty policies", "POST", path, testAdminToken, `{"policies":[]}`, 400, "policies"},
		{"missing policies", "POST", path, testAdminToken, `{"description":"x"}`, 400, "policies"},
		{"not json", "POST", path, testAdminToken, `policies=workflowView`, 400, "invalid JSON"},
		{"empty body", "POST", path, testAdminToken, ``, 400, "empty"},
		{"wrong type", "POST", path, testAdminToken, `{"policies":"workflowView"}`, 400, `"policies" must be an array of strings`},
		{"wrong type expires", "POST", path, testAdminToken, `{"policies":["workflowView"],"expires":30}`, 400, `"expires" must be a string`},
		{"unknown field", "POST", path, testAdminToken, `{"policies":["workflowView"],"ttl":"P1D"}`, 400, `unknown field "ttl"`},
		{"trailing data", "POST", path, testAdminToken, `{"policies":["workflowView"]} {}`, 400, "after the JSON object"},
		{"zero expires", "POST", path, testAdminToken, `{"policies":["workflowView"],"expires":"P0D"}`, 400, "zero"},
		{"negative expires", "POST", path, testAdminToken, `{"policies":["workflowView"],"expires":"-P1D"}`, 400, "negative"},
		{"malformed expires", "POST", path, testAdminToken, `{"policies":["workflowView"],"expires":"1 year"}`, 400, "must start with P"},
		{"empty P", "POST", path, testAdminToken, `{"policies":["workflowView"],"expires":"P"}`, 400, "no components"},
		{"empty PT", "POST", path, testAdminToken, `{"policies":["workflowView"],"expires":"PT"}`, 400, "T must be followed"},
		{"empty string expires", "POST", path, testAdminToken, `{"policies":["workflowView"],"expires":""}`, 400, "empty"},
		{"bad namespace", "POST", "/api/namespaces/-bad-/auth/token", testAdminToken, `{"policies":["workflowView"]}`, 400, "namespace"},
		{"wrong method", "PUT", path, testAdminToken, `{"policies":["workflowView"]}`, 405, "PUT"},
		{"too large", "POST", path, testAdminToken, `{"description":"` + strings.Repeat("x", 70<<10) + `","policies":["workflowView"]}`, 413, "exceeds"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := s.do(t, tc.method, tc.path, tc.token, tc.body)
			// The mint endpoint keeps the v1 shape: {"code":<status>,"message"}.
			wantError(t, r, tc.status, tc.msg)
			if tc.status == 405 && r.header.Get("Allow") != "GET, POST" {
				t.Errorf("Allow %q", r.header.Get("Allow"))
			}
		})
	}
	if after := count(); after != before {
		t.Errorf("refused requests stored %d records", after-before)
	}
}

func TestMintExpiryClamp(t *testing.T) {
	s, _ := startRedisSidecar(t, "--max-ttl", "P30D", "--default-ttl", "P7D")
	m := s.mintOK(t, "ns1", testAdminToken, `{"policies":["workflowView"],"expires":"P5Y"}`)
	created, _ := time.Parse(time.RFC3339, m["created"].(string))
	expires, _ := time.Parse(time.RFC3339, m["expires"].(string))
	if want := created.AddDate(0, 0, 30); !expires.Equal(want) {
		t.Errorf("expires %s, want the maximum %s", expires, want)
	}
	if w := strs(t, m["warnings"]); len(w) != 1 || !strings.Contains(w[0], "maximum P30D") {
		t.Errorf("warnings %v", w)
	}
	m = s.mintOK(t, "ns1", testAdminToken, `{"policies":["workflowView"]}`)
	created, _ = time.Parse(time.RFC3339, m["created"].(string))
	expires, _ = time.Parse(time.RFC3339, m["expires"].(string))
	if want := created.AddDate(0, 0, 7); !expires.Equal(want) {
		t.Errorf("default expiry %s, want %s", expires, want)
	}
}

func TestMintFailsClosedWithoutRedis(t *testing.T) {
	s, srv := startRedisSidecar(t)
	mgr := s.mintOK(t, "ns1", testAdminToken, `{"policies":["permissionsManage"]}`)["token"].(string)
	srv.Stop(t)
	for _, tok := range []string{testAdminToken, mgr} {
		r := s.do(t, "POST", "/api/namespaces/ns1/auth/token", tok, `{"policies":["permissionsView"]}`)
		if r.status != http.StatusServiceUnavailable {
			t.Fatalf("status %d, want 503: %s", r.status, r.body)
		}
		if m := r.json(t); int(m["code"].(float64)) != 503 {
			t.Errorf("code %v", m["code"])
		}
	}
	srv.Restart(t)
	// The store recovers by itself; what was refused was never stored.
	deadline := time.Now().Add(5 * time.Second)
	for {
		r := s.do(t, "POST", "/api/namespaces/ns1/auth/token", testAdminToken, `{"policies":["permissionsView"]}`)
		if r.status == http.StatusCreated {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no recovery after Redis came back: %d %s", r.status, r.body)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestDevModeInMemory(t *testing.T) {
	s := startSidecar(t, []string{"--dev"})
	m := s.mintOK(t, "ns1", testAdminToken, `{"policies":["permissionsManage"]}`)
	c := s.mintOK(t, "ns1", m["token"].(string), `{"policies":["permissionsView"]}`)
	if got := strs(t, c["policies"]); !equalStrings(got, []string{"permissionsView"}) {
		t.Errorf("granted %v", got)
	}
}

// TestStartsWhileRedisIsDown: a sidecar whose Redis does not answer yet
// starts anyway, is not ready and fails closed, then serves by itself once
// Redis is up, so a pod does not crash-loop while Redis starts.
func TestStartsWhileRedisIsDown(t *testing.T) {
	srv := testutil.StartRedis(t)
	srv.Stop(t)
	s := startSidecar(t, []string{"--redis-url", srv.URL()})
	readyz := func() int {
		res, err := http.Get("http://" + s.app.ops.Addr() + "/readyz")
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		return res.StatusCode
	}
	if got := readyz(); got != http.StatusServiceUnavailable {
		t.Fatalf("readyz %d with Redis down, want 503", got)
	}
	if r := s.do(t, "POST", "/api/namespaces/ns1/auth/token", testAdminToken, `{"policies":["workflowView"]}`); r.status != http.StatusServiceUnavailable {
		t.Fatalf("mint with Redis down: %d %s, want 503", r.status, r.body)
	}
	srv.Restart(t)
	deadline := time.Now().Add(10 * time.Second)
	for readyz() != http.StatusOK || s.do(t, "POST", "/api/namespaces/ns1/auth/token", testAdminToken, `{"policies":["workflowView"]}`).status != http.StatusCreated {
		if time.Now().After(deadline) {
			t.Fatal("the sidecar did not start serving after Redis came up")
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// A mint body over the limit gets its 413 while the client is still
// sending: up to tokens.DrainLimit the body is read and dropped and the
// connection serves the next request; beyond it the connection is closed.
func TestMintTooLargeAnswered(t *testing.T) {
	s, _ := startRedisSidecar(t)
	addr := strings.TrimPrefix(s.url, "http://")
	send := func(conn net.Conn, br *bufio.Reader, size int) *http.Response {
		t.Helper()
		body := `{"description":"` + strings.Repeat("x", size) + `","policies":["workflowView"]}`
		head := fmt.Sprintf("POST /api/namespaces/ns1/auth/token HTTP/1.1\r\nHost: x\r\nDirektiv-Token: %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n", testAdminToken, len(body))
		// Write concurrently: the answer may come before the body is sent.
		werr := make(chan error, 1)
		go func() { _, err := io.WriteString(conn, head+body); werr <- err }()
		res, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("reading the answer to a %d byte body: %v", len(body), err)
		}
		if _, err := io.Copy(io.Discard, res.Body); err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if size <= tokens.DrainLimit {
			if err := <-werr; err != nil {
				t.Fatalf("sending a %d byte body: %v (the sidecar stopped reading it)", len(body), err)
			}
		}
		return res
	}

	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	br := bufio.NewReader(conn)
	res := send(conn, br, 300<<10)
	if res.StatusCode != http.StatusRequestEntityTooLarge || res.Close {
		t.Fatalf("300 KiB body: %d, close %v; want 413 on a connection kept open", res.StatusCode, res.Close)
	}
	// The same connection mints next.
	if res := send(conn, br, 10); res.StatusCode != http.StatusCreated {
		t.Fatalf("mint after the 413 on the same connection: %d, want 201", res.StatusCode)
	}

	conn2, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn2.Close()
	res = send(conn2, bufio.NewReader(conn2), 2<<20)
	if res.StatusCode != http.StatusRequestEntityTooLarge || !res.Close {
		t.Fatalf("2 MiB body: %d, close %v; want 413 and the connection closed", res.StatusCode, res.Close)
	}
}
