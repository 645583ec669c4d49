package sidecar

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/direktiv/direktiv-authz/internal/audit"
	"github.com/direktiv/direktiv-authz/internal/config"
	"github.com/direktiv/direktiv-authz/internal/testutil"
)

// testAdminToken is the admin token the end-to-end tests configure.
const testAdminToken = "test-admin-token-0123456789"

// sidecar is a running instance of the real wiring on a loopback port.
type sidecar struct {
	app    *app
	url    string
	cancel context.CancelFunc
	done   chan error
	logs   *testutil.SyncBuffer
}

// startSidecar runs newApp+serve with args and environ on 127.0.0.1:0. The
// admin token is testAdminToken unless environ sets one.
func startSidecar(tb testing.TB, args []string, environ ...string) *sidecar {
	tb.Helper()
	args = append([]string{"--listen", "127.0.0.1:0", "--ops-listen", "127.0.0.1:0"}, args...)
	hasAdmin := false
	for _, kv := range environ {
		if strings.HasPrefix(kv, config.EnvAdminToken+"=") || strings.HasPrefix(kv, "DIREKTIV_AUTHZ_ADMIN_TOKEN_FILE=") {
			hasAdmin = true
		}
	}
	if !hasAdmin {
		environ = append(environ, config.EnvAdminToken+"="+testAdminToken)
	}
	logs := &testutil.SyncBuffer{}
	cfg, err := config.Parse(args, environ, logs)
	if err != nil {
		tb.Fatalf("parseConfig: %v", err)
	}
	log := newTestLogger(logs)
	ctx, cancel := context.WithCancel(context.Background())
	a, err := newApp(ctx, cfg, log, audit.New(logs), io.Discard)
	if err != nil {
		cancel()
		tb.Fatalf("newApp: %v", err)
	}
	s := &sidecar{app: a, url: "http://" + a.addr(), cancel: cancel, done: make(chan error, 1), logs: logs}
	go func() { s.done <- a.serve(ctx) }()
	tb.Cleanup(s.stop)
	return s
}

func (s *sidecar) stop() {
	s.cancel()
	select {
	case <-s.done:
	case <-time.After(10 * time.Second):
	}
}

// startRedisSidecar starts a redis-server and a sidecar storing in it.
func startRedisSidecar(tb testing.TB, args ...string) (*sidecar, *testutil.RedisServer) {
	tb.Helper()
	srv := testutil.StartRedis(tb)
	return startSidecar(tb, append([]string{"--redis-url", srv.URL()}, args...)), srv
}

// response is a decoded answer.
type response struct {
	status int
	header http.Header
	body   []byte
	path   string // the request's path, without the query: which error shape it gets (wantError); "" when unknown
}

func (r response) json(tb testing.TB) map[string]any {
	tb.Helper()
	var m map[string]any
	if err := json.Unmarshal(r.body, &m); err != nil {
		tb.Fatalf("response is not a JSON object: %v: %s", err, r.body)
	}
	return m
}

// do sends one request with an optional Direktiv-Token (any of the
// credential headers carries a credential; this is the one Direktiv up to
// 0.8 reads).
func (s *sidecar) do(tb testing.TB, method, path, token, body string) response {
	tb.Helper()
	req, err := http.NewRequest(method, s.url+path, strings.NewReader(body))
	if err != nil {
		tb.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Direktiv-Token", token)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		tb.Fatalf("%s %s: %v", method, path, err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		tb.Fatal(err)
	}
	return response{status: res.StatusCode, header: res.Header, body: b, path: req.URL.EscapedPath()}
}

// mintOK mints and fails the test unless the answer is 201.
func (s *sidecar) mintOK(tb testing.TB, ns, token, body string) map[string]any {
	tb.Helper()
	r := s.do(tb, "POST", "/api/namespaces/"+ns+"/auth/token", token, body)
	if r.status != http.StatusCreated {
		tb.Fatalf("mint in %s: status %d, want 201: %s", ns, r.status, r.body)
	}
	return r.json(tb)
}

// rawRequest writes req byte for byte on a new connection and reads one
// response.
func rawRequest(tb testing.TB, addr, req string) response {
	tb.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		tb.Fatal(err)
	}
	defer c.Close()
	if _, err := io.WriteString(c, req); err != nil {
		tb.Fatal(err)
	}
	res, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		tb.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return response{status: res.StatusCode, header: res.Header, body: b, path: requestPath(req)}
}

// requestPath is the path of the first request in a raw request: its
// target up to the query, the path of an absolute-form target, "" when the
// request line cannot be read.
func requestPath(req string) string {
	line, _, _ := strings.Cut(req, "\r\n")
	fields := strings.Fields(line)
	if len(fields) != 3 {
		return ""
	}
	target := fields[1]
	if !strings.HasPrefix(target, "/") && strings.Contains(target, "://") {
		u, err := url.Parse(target)
		if err != nil {
			return ""
		}
		return u.EscapedPath()
	}
	path, _, _ := strings.Cut(target, "?")
	return path
}

// strs turns a decoded JSON array into []string.
func strs(tb testing.TB, v any) []string {
	tb.Helper()
	arr, ok := v.([]any)
	if !ok {
		tb.Fatalf("%v (%T) is not a JSON array", v, v)
	}
	out := make([]string, len(arr))
	for i, e := range arr {
		out[i] = fmt.Sprint(e)
	}
	return out
}

func equalStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func newTestLogger(w io.Writer) *slog.Logger {
	return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
}
