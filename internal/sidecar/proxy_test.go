package sidecar

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/url"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/direktiv/direktiv-authz/internal/apierror"
	"github.com/direktiv/direktiv-authz/internal/config"
	"github.com/direktiv/direktiv-authz/internal/testutil"
)

// startForwarder runs a dev-mode sidecar (in-memory store: these tests
// forward with the admin token, which the store never sees, or to public
// routes such as /test/...) in front of up, with no upstream API key: the
// admin token passes as sent.
func startForwarder(tb testing.TB, up *testutil.Upstream, args ...string) *sidecar {
	tb.Helper()
	return startSidecar(tb, append([]string{"--dev", "--upstream", up.URL()}, args...))
}

// hostOf is the host:port of a URL.
func hostOf(tb testing.TB, raw string) string {
	tb.Helper()
	u, err := url.Parse(raw)
	if err != nil {
		tb.Fatal(err)
	}
	return u.Host
}

// wantError checks an answer of the sidecar's own: the status, and the JSON
// error shape of the request's path (errorShapeV1) with the message
// mentioning mention: on /api/v2/... paths and outside /api/ Direktiv's v2
// shape, {"error":{"code","message"}}, whose code is the one apierror
// names for the status; on the other /api/ paths the v1 shape,
// {"code":<status>,"message"}. When r does not know its request's path, the
// body's shape decides which of the two it is held to, as strictly.
func wantError(tb testing.TB, r response, status int, mention string) {
	tb.Helper()
	wantErrorCode(tb, r, status, "", mention)
}

// wantErrorCode is wantError with the v2 code named (for the 401s, which
// have two: access_token_missing and access_token_invalid); "" is the one
// apierror
// names for status. The v1 shape has no such name.
func wantErrorCode(tb testing.TB, r response, status int, code, mention string) {
	tb.Helper()
	if r.status != status {
		tb.Fatalf("status %d, want %d: %s", r.status, status, r.body)
	}
	if ct := r.header.Get("Content-Type"); ct != "application/json" {
		tb.Errorf("Content-Type %q, want application/json", ct)
	}
	if cc := r.header.Get("Cache-Control"); cc != "no-store" {
		tb.Errorf("Cache-Control %q, want no-store", cc)
	}
	m := r.json(tb)
	_, v2 := m["error"]
	if r.path != "" {
		if want := !errorShapeV1(r.path); v2 != want {
			tb.Fatalf("the answer for %s is in the %s shape, want the %s one: %s", r.path, shapeName(v2), shapeName(want), r.body)
		}
	}
	var msg string
	if v2 {
		if code == "" {
			code = direktivCodeOfStatus(tb, status)
		}
		e, ok := m["error"].(map[string]any)
		if !ok || len(m) != 1 || len(e) != 2 {
			tb.Fatalf("answer %s, want {\"error\":{\"code\",\"message\"}}", r.body)
		}
		if e["code"] != code {
			tb.Errorf("error code %v, want %s: %s", e["code"], code, r.body)
		}
		msg, _ = e["message"].(string)
	} else {
		if len(m) != 2 {
			tb.Errorf("answer %s has fields %v, want code and message", r.body, slices.Sorted(maps.Keys(m)))
		}
		if c, _ := m["code"].(float64); int(c) != status {
			tb.Errorf("body code %v, want %d: %s", m["code"], status, r.body)
		}
		msg, _ = m["message"].(string)
	}
	if msg == "" || !strings.Contains(msg, mention) {
		tb.Errorf("message %q does not mention %q", msg, mention)
	}
}

// errorShapeV1 reports whether the sidecar's errors for a request to path
// are in Direktiv's v1 shape: a path under /api/ but not under /api/v2
// (leading slashes skipped, as the route rules skip empty segments). The
// sidecar's own /api/namespaces/{ns}/auth/... endpoints are among them.
func errorShapeV1(path string) bool {
	rest, ok := strings.CutPrefix(strings.TrimLeft(path, "/"), "api/")
	return ok && rest != "v2" && !strings.HasPrefix(rest, "v2/")
}

func shapeName(v2 bool) string {
	if v2 {
		return "v2"
	}
	return "v1"
}

// direktivCodeOfStatus is Direktiv's name for the apierror.Code of status;
// a 401 is access_token_invalid (access_token_missing is asked for by name).
func direktivCodeOfStatus(tb testing.TB, status int) string {
	tb.Helper()
	c, ok := apierror.ForStatus(status)
	if !ok {
		tb.Fatalf("no error code has status %d", status)
	}
	return c.DirektivName()
}

// TestForward runs the forwarding tests that need no settings of their own
// against one sidecar and one upstream: starting a sidecar loads and tests
// the policies, which takes a while. The --upstream-timeout is short, for the
// slow-upstream case and to show that it does not cut event streams.
// onBothPaths runs fn as a subtest on each data path: the event loops (the
// default) and the server alone (--event-loops off), with the value to
// pass as --event-loops.
func onBothPaths(t *testing.T, fn func(t *testing.T, loops string)) {
	t.Helper()
	for _, path := range []struct{ name, loops string }{{"event loops", "auto"}, {"server", "off"}} {
		t.Run(path.name, func(t *testing.T) { fn(t, path.loops) })
	}
}

// TestForward runs on both data paths: the event loops (the default) and
// the goroutine-per-connection server alone (--event-loops off), which also
// serves every connection the loops hand off.
func TestForward(t *testing.T) {
	onBothPaths(t, testForwardOn)
}

func testForwardOn(t *testing.T, loops string) {
	up := startUpstream(t)
	s := startForwarder(t, up, "--upstream-timeout", "300ms", "--event-loops", loops)
	for _, tc := range []struct {
		name string
		fn   func(*testing.T, *sidecar, *testutil.Upstream)
	}{
		{"byte for byte", testForwardByteForByte},
		{"HEAD", testForwardHead},
		{"not a path", testForwardNotAPath},
		{"targets read two ways", testForwardAmbiguousTargets},
		{"hop-by-hop headers", testForwardHopByHop},
		{"X-Forwarded headers", testForwardedHeaders},
		{"server-sent events", testForwardServerSentEvents},
		{"client goes away", testForwardClientGoesAway},
		{"chunked response", testForwardChunkedResponse},
		{"large upload", testForwardLargeUpload},
		{"slow upstream", testForwardUpstreamSlow},
		{"keep-alive", testForwardKeepAlive},
	} {
		up.Reset()
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, s, up) })
	}
}

func testForwardByteForByte(t *testing.T, s *sidecar, up *testutil.Upstream) {
	cases := []struct {
		method, target, body string
	}{
		{"GET", "/api/version", ""},
		{"GET", "/api/namespaces/ns1/tree/a%20b.yaml?op=execute&x=1", ""},
		{"POST", "/api/namespaces/ns1/tree/wf.yaml?op=create-workflow", "states:\n- id: a\n  type: noop\n"},
		{"PUT", "/api/v2/namespaces/ns1/files/dir/%C3%A4%20x.yaml?a=%26b&c&d=%3D", `{"data":"x"}`},
		{"DELETE", "/api/namespaces/ns1/vars/x%2By?z=1+2", ""},
		{"OPTIONS", "/api/namespaces/ns1/tree/?op=vars", ""},
		{"GET", "/api/v2/namespaces/ns1/instances?filter.field=AS&filter.type=CONTAINS&filter.val=a%2Fb&limit=10", ""},
		{"PROPFIND", "/api/jq", `{"query":".","data":"{}"}`},
		{"GET", "/api/namespaces/ns1/logs?after=2024-01-01T00:00:00Z&q=%E2%9C%93", ""},
	}
	prefixed := startForwarder(t, up, "--upstream", up.URL()+"/direktiv/v0/")
	for _, base := range []string{"", "/direktiv/v0"} {
		s := s
		if base != "" {
			s = prefixed
		}
		for _, c := range cases {
			t.Run(c.method+" "+base+c.target, func(t *testing.T) {
				up.Reset()
				req := c.method + " " + c.target + " HTTP/1.1\r\n" +
					"Host: sidecar.example:8090\r\n" +
					"User-Agent: direktiv-cli/1.0\r\n" +
					"Accept: application/json\r\n" +
					"X-Custom: One\r\n" +
					"X-Multi: 1\r\n" +
					"X-Multi: 2\r\n" +
					"Cookie: session=abc\r\n" +
					"direktiv-token: " + testAdminToken + "\r\n"
				if c.body != "" {
					req += "Content-Type: application/yaml\r\n" + fmt.Sprintf("Content-Length: %d\r\n", len(c.body))
				}
				r := rawRequest(t, s.app.addr(), req+"\r\n"+c.body)
				if r.status != http.StatusOK || r.header.Get("X-Upstream") != "direktiv" {
					t.Fatalf("status %d, X-Upstream %q: %s", r.status, r.header.Get("X-Upstream"), r.body)
				}
				if cl := r.header.Get("Content-Length"); cl != strconv.Itoa(len(r.body)) {
					t.Errorf("Content-Length %q, body %d bytes: the upstream's length is kept", cl, len(r.body))
				}
				got := up.Only(t)
				if got.Method != c.method || got.URI != base+c.target {
					t.Errorf("upstream got %s %s, want %s %s", got.Method, got.URI, c.method, base+c.target)
				}
				if got.Body != c.body {
					t.Errorf("upstream got body %q, want %q", got.Body, c.body)
				}
				if got.Host != hostOf(t, up.URL()) {
					t.Errorf("upstream got Host %q, want the upstream's %q", got.Host, hostOf(t, up.URL()))
				}
				h := got.Header
				for name, want := range map[string]string{
					"User-Agent":     "direktiv-cli/1.0",
					"Accept":         "application/json",
					"X-Custom":       "One",
					"Cookie":         "session=abc",
					"Direktiv-Token": testAdminToken,
				} {
					if h.Get(name) != want {
						t.Errorf("upstream got %s %q, want %q", name, h.Get(name), want)
					}
				}
				if v := h.Values("X-Multi"); len(v) != 2 || v[0] != "1" || v[1] != "2" {
					t.Errorf("upstream got X-Multi %q, want [1 2]", v)
				}
				if c.body != "" && h.Get("Content-Type") != "application/yaml" {
					t.Errorf("upstream got Content-Type %q", h.Get("Content-Type"))
				}
			})
		}
	}
}

func testForwardHead(t *testing.T, s *sidecar, up *testutil.Upstream) {
	r := rawRequest(t, s.app.addr(), "HEAD /api/version HTTP/1.1\r\nHost: x\r\nDirektiv-Token: "+testAdminToken+"\r\nConnection: close\r\n\r\n")
	if r.status != http.StatusOK || len(r.body) != 0 || r.header.Get("X-Upstream") != "direktiv" {
		t.Fatalf("status %d, body %q, headers %v", r.status, r.body, r.header)
	}
	if got := up.Only(t); got.Method != "HEAD" || got.URI != "/api/version" {
		t.Errorf("upstream got %s %s", got.Method, got.URI)
	}
}

func testForwardNotAPath(t *testing.T, s *sidecar, up *testutil.Upstream) {
	r := rawRequest(t, s.app.addr(), "OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n")
	wantError(t, r, http.StatusBadRequest, "not a path")
	up.None(t)
}

// Targets the rules and Direktiv's router could read differently are
// refused, with the admin token too, and nothing reaches the upstream.
func testForwardAmbiguousTargets(t *testing.T, s *sidecar, up *testutil.Upstream) {
	for _, c := range []struct{ line, mention string }{
		{"GET //api/namespaces/ns1/tree/wf.yaml HTTP/1.1", "empty segment"},
		{"PATCH /api/v2/namespaces/ns1//variables/" + varNS1 + " HTTP/1.1", "empty segment"},
		{"GET //api/v2/namespaces?x=http://evil HTTP/1.1", "empty segment"},
		{"GET /api/v2/n%61mespaces/ns1/files/wf.yaml HTTP/1.1", "encodes"},
		{"GET /api/v2/namespaces/ns1/files/wf%2Eyaml HTTP/1.1", "encodes"},
		{"get /api/v2/namespaces/ns1/files/wf.yaml HTTP/1.1", "upper-case"},
		{"Get /api/v2/namespaces/ns1/files/wf.yaml HTTP/1.1", "upper-case"},
		{"GET http://h/api/v2/namespaces/ns1/files/wf.yaml HTTP/1.1", "not a path"},
		{"GET /api/v2/namespaces/ns1/files/wf.yaml#x HTTP/1.1", "#"},
	} {
		t.Run(c.line, func(t *testing.T) {
			up.Reset()
			r := rawRequest(t, s.app.addr(), c.line+"\r\nHost: x\r\nDirektiv-Token: "+testAdminToken+"\r\n\r\n")
			if r.status != http.StatusBadRequest || !strings.Contains(string(r.body), c.mention) {
				t.Errorf("status %d, want 400 mentioning %q: %s", r.status, c.mention, r.body)
			}
			up.None(t)
		})
	}
	// A trailing slash reads one way: forwarded.
	up.Reset()
	r := rawRequest(t, s.app.addr(), "GET /api/namespaces/ns1/tree/ HTTP/1.1\r\nHost: x\r\nDirektiv-Token: "+testAdminToken+"\r\n\r\n")
	if r.status != http.StatusOK || up.Only(t).URI != "/api/namespaces/ns1/tree/" {
		t.Errorf("trailing slash: status %d: %s", r.status, r.body)
	}
}

func testForwardHopByHop(t *testing.T, s *sidecar, up *testutil.Upstream) {
	body := "5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
	r := rawRequest(t, s.app.addr(), "POST /test/hop?x=1 HTTP/1.1\r\n"+
		"Host: sidecar\r\n"+
		"Connection: keep-alive, X-Client-Hop\r\n"+
		"X-Client-Hop: secret\r\n"+
		"Keep-Alive: timeout=5\r\n"+
		"TE: trailers\r\n"+
		"Proxy-Authorization: Basic Zm9vOmJhcg==\r\n"+
		"Proxy-Connection: keep-alive\r\n"+
		"Upgrade: websocket\r\n"+
		"X-End-To-End: kept\r\n"+
		"Transfer-Encoding: chunked\r\n\r\n"+body)
	if r.status != http.StatusCreated {
		t.Fatalf("status %d: %s", r.status, r.body)
	}
	got := up.Only(t)
	if got.Body != "hello world" {
		t.Errorf("upstream got body %q, want the de-chunked %q", got.Body, "hello world")
	}
	for _, name := range []string{"X-Client-Hop", "Keep-Alive", "Te", "Proxy-Authorization", "Proxy-Connection", "Upgrade"} {
		if v, ok := got.Header[http.CanonicalHeaderKey(name)]; ok {
			t.Errorf("upstream got hop-by-hop %s: %q", name, v)
		}
	}
	// net/http consumes Connection and Transfer-Encoding; what reached it
	// is the proxy's own framing.
	if c := got.Header.Get("Connection"); c != "" {
		t.Errorf("upstream got Connection %q", c)
	}
	if got.Header.Get("X-End-To-End") != "kept" {
		t.Errorf("upstream lost X-End-To-End: %v", got.Header)
	}
	for _, name := range []string{"Content-Type", "User-Agent"} {
		if v, ok := got.Header[name]; ok {
			t.Errorf("upstream got %s %q, which the client did not send", name, v)
		}
	}
	for _, name := range []string{"X-Upstream-Hop", "Keep-Alive", "Proxy-Authenticate", "Upgrade"} {
		if v, ok := r.header[name]; ok {
			t.Errorf("client got hop-by-hop %s: %q", name, v)
		}
	}
	if c := r.header.Get("Connection"); c != "" && c != "keep-alive" {
		t.Errorf("client got Connection %q: the upstream's leaked", c)
	}
	if r.header.Get("X-Kept") != "yes" {
		t.Errorf("client lost X-Kept: %v", r.header)
	}
	if c := r.header.Values("Set-Cookie"); len(c) != 2 || c[0] != "a=1; Path=/" || c[1] != "b=2; Path=/; HttpOnly" {
		t.Errorf("client got Set-Cookie %q", c)
	}
}

func testForwardedHeaders(t *testing.T, s *sidecar, up *testutil.Upstream) {
	req := "GET /api/version HTTP/1.1\r\nHost: authz.example.com\r\nDirektiv-Token: " + testAdminToken + "\r\nX-Forwarded-For: 10.0.0.1\r\nX-Forwarded-For: 10.0.0.2\r\nX-Forwarded-Host: evil.example\r\nX-Forwarded-Host: evil2.example\r\nX-Forwarded-Proto: https\r\nX-Forwarded-Proto: ftp\r\n\r\n"

	if r := rawRequest(t, s.app.addr(), req); r.status != http.StatusOK {
		t.Fatalf("status %d", r.status)
	}
	got := up.Only(t)
	if xff := got.Header.Values("X-Forwarded-For"); len(xff) != 1 || xff[0] != "10.0.0.1, 10.0.0.2, 127.0.0.1" {
		t.Errorf("X-Forwarded-For %q, want the client's with 127.0.0.1 appended", xff)
	}
	if p := got.Header.Values("X-Forwarded-Proto"); len(p) != 1 || p[0] != "http" {
		t.Errorf("X-Forwarded-Proto %q, want http", p)
	}
	if h := got.Header.Values("X-Forwarded-Host"); len(h) != 1 || h[0] != "authz.example.com" {
		t.Errorf("X-Forwarded-Host %q, want authz.example.com", h)
	}
	if got.Host != hostOf(t, up.URL()) {
		t.Errorf("Host %q, want the upstream's %q", got.Host, hostOf(t, up.URL()))
	}

	s = startForwarder(t, up, "--preserve-host")
	if r := rawRequest(t, s.app.addr(), req); r.status != http.StatusOK {
		t.Fatalf("status %d", r.status)
	}
	if got := up.Only(t); got.Host != "authz.example.com" {
		t.Errorf("--preserve-host: Host %q, want the client's authz.example.com", got.Host)
	}

	c, err := config.Parse([]string{"--dev"}, []string{"DIREKTIV_AUTHZ_PRESERVE_HOST=true"}, io.Discard)
	if err != nil || !c.PreserveHost {
		t.Errorf("DIREKTIV_AUTHZ_PRESERVE_HOST=true: %v %v", c.PreserveHost, err)
	}
}

// sseClient opens an event stream through s and returns a reader of its
// lines; each read fails the test after a timeout instead of hanging.
type sseStream struct {
	res   *http.Response
	lines chan string
}

func openSSE(tb testing.TB, s *sidecar, path string) *sseStream {
	tb.Helper()
	req, _ := http.NewRequest("GET", s.url+path, nil)
	req.Header.Set("Accept", "text/event-stream")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		tb.Fatal(err)
	}
	st := &sseStream{res: res, lines: make(chan string, 16)}
	go func() {
		defer close(st.lines)
		sc := bufio.NewScanner(res.Body)
		for sc.Scan() {
			st.lines <- sc.Text()
		}
	}()
	tb.Cleanup(func() { res.Body.Close() })
	return st
}

// next returns the next non-empty line, or "EOF".
func (st *sseStream) next(tb testing.TB) string {
	tb.Helper()
	for {
		select {
		case l, ok := <-st.lines:
			if !ok {
				return "EOF"
			}
			if l != "" {
				return l
			}
		case <-time.After(5 * time.Second):
			tb.Fatal("no event within 5s: the stream is buffered or stuck")
			return ""
		}
	}
}

func testForwardServerSentEvents(t *testing.T, s *sidecar, up *testutil.Upstream) {
	// --upstream-timeout (300ms) bounds the wait for the response to start,
	// not the stream: events come slower than it.
	st := openSSE(t, s, "/test/sse")
	if st.res.StatusCode != http.StatusOK || st.res.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("status %d, Content-Type %q", st.res.StatusCode, st.res.Header.Get("Content-Type"))
	}
	if st.res.ContentLength != -1 {
		t.Errorf("ContentLength %d, want unknown", st.res.ContentLength)
	}
	// The headers arrived before any event was sent; now one at a time.
	up.Send(t, "one")
	if l := st.next(t); l != "data: one" {
		t.Fatalf("first event %q", l)
	}
	time.Sleep(500 * time.Millisecond)
	up.Send(t, "two")
	if l := st.next(t); l != "data: two" {
		t.Fatalf("second event %q", l)
	}
	if n := s.app.streaming(); n != 1 {
		t.Errorf("%d streams tracked, want 1", n)
	}
	up.Send(t, "") // the upstream ends the stream
	if l := st.next(t); l != "EOF" {
		t.Fatalf("after the upstream ended the stream: %q, want EOF", l)
	}
	testutil.Eventually(t, "stream released", func() bool { return s.app.streaming() == 0 })
}

func testForwardClientGoesAway(t *testing.T, s *sidecar, up *testutil.Upstream) {
	st := openSSE(t, s, "/test/sse")
	up.Send(t, "one")
	if l := st.next(t); l != "data: one" {
		t.Fatalf("first event %q", l)
	}
	st.res.Body.Close()
	// The sidecar notices when a write fails, at the first or second event
	// after the client left (TCP accepts one write before the reset); it then
	// closes the upstream connection, which ends the upstream's handler.
	sent := 0
	testutil.Eventually(t, "stream released", func() bool {
		select {
		case up.Events <- "more":
			sent++
		case <-time.After(50 * time.Millisecond):
		}
		return s.app.streaming() == 0
	})
	if sent > 3 {
		t.Errorf("%d events sent before the sidecar noticed the client left", sent)
	}
	// The upstream's handler ends at its first or second write to the
	// connection the sidecar closed (the event loops notice the client
	// leaving at once, before any event; the server at its next write).
	for i := 0; ; i++ {
		select {
		case up.Events <- "late":
			if i == 3 {
				t.Fatal("the upstream's handler still runs: its connection was not closed")
			}
			continue
		case <-time.After(200 * time.Millisecond):
		}
		break
	}
}

func TestForwardShutdownEndsStreams(t *testing.T) {
	up := startUpstream(t)
	s := startForwarder(t, up)
	st := openSSE(t, s, "/test/sse")
	up.Send(t, "one")
	if l := st.next(t); l != "data: one" {
		t.Fatalf("first event %q", l)
	}
	start := time.Now()
	s.cancel()
	select {
	case err := <-s.done:
		if err != nil {
			t.Errorf("serve: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("shutdown waited on the event stream")
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("shutdown took %s", d)
	}
	if l := st.next(t); l != "EOF" {
		t.Errorf("the client's stream goes on: %q", l)
	}
	s.done <- nil // for the cleanup's stop
}

func testForwardChunkedResponse(t *testing.T, s *sidecar, up *testutil.Upstream) {
	const n = 300
	res, err := http.Get(s.url + "/test/chunked?n=" + strconv.Itoa(n))
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	if res.ContentLength != -1 || len(res.TransferEncoding) != 1 || res.TransferEncoding[0] != "chunked" {
		t.Errorf("ContentLength %d, Transfer-Encoding %q: want chunked, length unknown", res.ContentLength, res.TransferEncoding)
	}
	got, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	var want bytes.Buffer
	for i := range n {
		want.Write(testutil.UpstreamChunk(i))
	}
	if !bytes.Equal(got, want.Bytes()) {
		t.Errorf("body: %d bytes, want %d, equal %v", len(got), want.Len(), bytes.Equal(got, want.Bytes()))
	}
}

// slowReader hands out size bytes of random data in 1 MiB pieces. Once it
// has handed out gateAt bytes it waits for gate: the test opens it when the
// upstream has received data, which a proxy that buffers the whole body
// before sending would never let happen.
type slowReader struct {
	chunk  []byte
	left   int64
	sent   int64
	gateAt int64
	gate   <-chan struct{}
}

func (r *slowReader) Read(p []byte) (int, error) {
	if r.left == 0 {
		return 0, io.EOF
	}
	if r.sent >= r.gateAt && r.gate != nil {
		select {
		case <-r.gate:
			r.gate = nil
		case <-time.After(10 * time.Second):
			return 0, fmt.Errorf("the upstream received nothing of the first %d bytes: the body is buffered", r.sent)
		}
	}
	n := min(int64(len(p)), int64(len(r.chunk)), r.left)
	off := r.sent % int64(len(r.chunk))
	n = min(n, int64(len(r.chunk))-off)
	copy(p, r.chunk[off:off+n])
	r.left -= n
	r.sent += n
	return int(n), nil
}

func testForwardLargeUpload(t *testing.T, s *sidecar, up *testutil.Upstream) {
	chunk := make([]byte, 1<<20)
	rand.Read(chunk)

	for _, tc := range []struct {
		name    string
		size    int64
		chunked bool
	}{
		{"50MB with Content-Length", 50 << 20, false},
		{"20MB chunked", 20 << 20, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			up.Reset()
			h := sha256.New()
			for range tc.size / int64(len(chunk)) {
				h.Write(chunk)
			}
			sum := h.Sum(nil)
			gate := make(chan struct{})
			body := &slowReader{chunk: chunk, left: tc.size, gateAt: 8 << 20, gate: gate}
			go func() {
				for up.Received() < 1<<20 {
					time.Sleep(5 * time.Millisecond)
				}
				close(gate)
			}()

			runtime.GC()
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			base := ms.HeapAlloc
			var peak atomic.Uint64
			stop := make(chan struct{})
			sampled := make(chan struct{})
			go func() {
				defer close(sampled)
				var ms runtime.MemStats
				for {
					runtime.ReadMemStats(&ms)
					if ms.HeapAlloc > peak.Load() {
						peak.Store(ms.HeapAlloc)
					}
					select {
					case <-stop:
						return
					case <-time.After(20 * time.Millisecond):
					}
				}
			}()

			req, _ := http.NewRequest("POST", s.url+"/test/upload", body)
			req.Header.Set("Direktiv-Token", testAdminToken)
			req.Header.Set("Content-Type", "application/octet-stream")
			if tc.chunked {
				req.ContentLength = -1
			} else {
				req.ContentLength = tc.size
			}
			res, err := http.DefaultClient.Do(req)
			close(stop)
			<-sampled
			if err != nil {
				t.Fatal(err)
			}
			defer res.Body.Close()
			r := response{status: res.StatusCode}
			r.body, _ = io.ReadAll(res.Body)
			if r.status != http.StatusOK {
				t.Fatalf("status %d: %s", r.status, r.body)
			}
			m := r.json(t)
			if m["size"] != float64(tc.size) || m["sha256"] != hex.EncodeToString(sum) {
				t.Errorf("upstream got %v bytes with sha256 %v, want %d and %x", m["size"], m["sha256"], tc.size, sum)
			}
			if body.sent != tc.size {
				t.Errorf("the client sent %d bytes, want %d", body.sent, tc.size)
			}
			got := up.Only(t)
			if tc.chunked && (len(got.TransferEncoding) != 1 || got.TransferEncoding[0] != "chunked") {
				t.Errorf("upstream got Transfer-Encoding %q, want chunked", got.TransferEncoding)
			}
			if !tc.chunked && got.ContentLength != tc.size {
				t.Errorf("upstream got Content-Length %d, want %d", got.ContentLength, tc.size)
			}
			growth := int64(peak.Load()) - int64(base)
			t.Logf("heap growth during the upload: %.1f MiB", float64(growth)/(1<<20))
			if growth > 16<<20 {
				t.Errorf("the heap grew by %.1f MiB while %d MiB went through: the body is buffered", float64(growth)/(1<<20), tc.size>>20)
			}
		})
	}
}

func TestForwardUpstreamDown(t *testing.T) {
	s := startSidecar(t, []string{"--dev", "--upstream", "http://" + testutil.ClosedAddr(t)})
	start := time.Now()
	r := s.do(t, "GET", "/api/version", testAdminToken, "")
	wantError(t, r, http.StatusBadGateway, "cannot be reached")
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("took %s", d)
	}
	if strings.Contains(string(r.body), "127.0.0.1") {
		t.Errorf("the answer reveals the upstream address: %s", r.body)
	}
	if !strings.Contains(s.logs.String(), "connection refused") {
		t.Errorf("the log lacks the cause:\n%s", s.logs.String())
	}
}

func testForwardUpstreamSlow(t *testing.T, s *sidecar, up *testutil.Upstream) {
	for _, method := range []string{"GET", "POST"} {
		up.Reset()
		start := time.Now()
		r := s.do(t, method, "/test/sleep?d=3s", "", "")
		wantError(t, r, http.StatusGatewayTimeout, "did not answer within 300ms")
		if d := time.Since(start); d > 1500*time.Millisecond {
			t.Errorf("%s: 504 after %s", method, d)
		}
		// A timed-out request is not sent again.
		if n := len(up.Requests()); n != 1 {
			t.Errorf("%s: the upstream got %d requests, want 1", method, n)
		}
	}
	// Faster than the timeout is fine, on the same pooled connections.
	if r := s.do(t, "GET", "/test/sleep?d=50ms", "", ""); r.status != http.StatusOK {
		t.Errorf("status %d: %s", r.status, r.body)
	}
}

func TestForwardConnectionLimit(t *testing.T) {
	up := startUpstream(t)
	s := startForwarder(t, up, "--upstream-max-conns", "1", "--upstream-dial-timeout", "200ms")
	st := openSSE(t, s, "/test/sse") // holds the one connection
	up.Send(t, "one")
	if l := st.next(t); l != "data: one" {
		t.Fatalf("first event %q", l)
	}
	for _, path := range []string{"/api/version", "/test/busy"} { // the v1 and the v2 error shape
		start := time.Now()
		r := s.do(t, "GET", path, testAdminToken, "")
		wantError(t, r, http.StatusServiceUnavailable, "all 1 connections to the Direktiv API are busy")
		if d := time.Since(start); d < 200*time.Millisecond || d > 2*time.Second {
			t.Errorf("%s: 503 after %s, want after waiting the 200ms dial timeout", path, d)
		}
	}
	up.Send(t, "") // the stream ends and frees the connection
	if l := st.next(t); l != "EOF" {
		t.Fatalf("after the end: %q", l)
	}
	testutil.Eventually(t, "connection free", func() bool { return s.do(t, "GET", "/api/version", testAdminToken, "").status == http.StatusOK })
}

func TestForwardHTTPSUpstream(t *testing.T) {
	up := startUpstream(t, testutil.UpstreamTLS())
	ca := testutil.WriteFile(t, t.TempDir(), "ca.pem", string(up.CertPEM()))

	s := startForwarder(t, up, "--upstream-ca-file", ca)
	r := s.do(t, "GET", "/api/namespaces/ns1/tree/a%20b.yaml?op=execute&x=1", testAdminToken, "")
	if r.status != http.StatusOK {
		t.Fatalf("status %d: %s", r.status, r.body)
	}
	if got := up.Only(t); got.URI != "/api/namespaces/ns1/tree/a%20b.yaml?op=execute&x=1" {
		t.Errorf("upstream got %s", got.URI)
	}

	// Without the CA the certificate is not trusted: nothing is sent.
	s = startForwarder(t, up)
	r = s.do(t, "GET", "/api/version", testAdminToken, "")
	wantError(t, r, http.StatusBadGateway, "cannot be reached")
	up.None(t)
}

func testForwardKeepAlive(t *testing.T, s *sidecar, up *testutil.Upstream) {
	before := up.Conns()
	for range 20 {
		if r := s.do(t, "GET", "/api/version", testAdminToken, ""); r.status != http.StatusOK {
			t.Fatalf("status %d", r.status)
		}
	}
	// Earlier tests may have left no idle connection: one dial at most.
	if n := up.Conns() - before; n > 1 {
		t.Errorf("%d upstream connections for 20 sequential requests, want at most 1", n)
	}
}
