package sidecar

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// upstream is the stand-in for Direktiv: a real net/http server (Direktiv's
// API is one) on loopback that records every request it receives and
// answers by path:
//
//	/test/sse        server-sent events: one per string sent on events, until
//	                 "" is sent or the client goes
//	/test/upload     reads the body, answers {"size","sha256"}; received
//	                 counts the bytes as they arrive
//	/test/sleep?d=   sleeps d (a Go duration), then answers
//	/test/chunked?n= n chunks of 1 KiB, each flushed: a body of unknown length
//	/test/hop        an answer carrying hop-by-hop headers
//	anything else    200 with a JSON echo of method and URI
//
// The recorded body is kept whole up to 1 MiB; Size always counts it all.
type upstream struct {
	srv      *httptest.Server
	events   chan string
	received atomic.Int64 // body bytes of /test/upload read so far
	conns    atomic.Int64 // connections accepted

	mu   sync.Mutex
	reqs []recorded
}

// recorded is one request as the upstream saw it.
type recorded struct {
	Method           string
	URI              string // the request target, raw, as on the wire
	Host             string
	Header           http.Header
	TransferEncoding []string
	ContentLength    int64
	Body             []byte
	Size             int64
}

const recordBodyLimit = 1 << 20

func startUpstream(tb testing.TB) *upstream {
	tb.Helper()
	u := &upstream{events: make(chan string)}
	u.srv = httptest.NewUnstartedServer(http.HandlerFunc(u.serve))
	u.srv.Config.ConnState = u.countConns
	u.srv.Start()
	tb.Cleanup(u.srv.Close)
	return u
}

func (u *upstream) countConns(_ net.Conn, st http.ConnState) {
	if st == http.StateNew {
		u.conns.Add(1)
	}
}

// startTLSUpstream is startUpstream over https with a self-signed
// certificate; it returns the PEM of that certificate.
func startTLSUpstream(tb testing.TB) (*upstream, []byte) {
	tb.Helper()
	u := &upstream{events: make(chan string)}
	u.srv = httptest.NewUnstartedServer(http.HandlerFunc(u.serve))
	u.srv.Config.ConnState = u.countConns
	u.srv.StartTLS()
	tb.Cleanup(u.srv.Close)
	return u, pemOf(u.srv.Certificate().Raw)
}

func (u *upstream) URL() string { return u.srv.URL }

// requests returns what was received so far.
func (u *upstream) requests() []recorded {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]recorded(nil), u.reqs...)
}

// only returns the one request received, failing the test unless there was
// exactly one, and forgets it.
func (u *upstream) only(tb testing.TB) recorded {
	tb.Helper()
	u.mu.Lock()
	defer u.mu.Unlock()
	if len(u.reqs) != 1 {
		tb.Fatalf("the upstream received %d requests, want 1: %+v", len(u.reqs), u.reqs)
	}
	r := u.reqs[0]
	u.reqs = nil
	return r
}

// none fails the test if the upstream received anything.
func (u *upstream) none(tb testing.TB) {
	tb.Helper()
	if reqs := u.requests(); len(reqs) != 0 {
		tb.Fatalf("the upstream received %d requests, want none: %s %s", len(reqs), reqs[0].Method, reqs[0].URI)
	}
}

func (u *upstream) reset() {
	u.mu.Lock()
	u.reqs = nil
	u.mu.Unlock()
	u.received.Store(0)
}

func (u *upstream) serve(w http.ResponseWriter, r *http.Request) {
	rec := recorded{
		Method:           r.Method,
		URI:              r.RequestURI,
		Host:             r.Host,
		Header:           r.Header.Clone(),
		TransferEncoding: r.TransferEncoding,
		ContentLength:    r.ContentLength,
	}
	path := r.URL.EscapedPath()
	if path == "/test/upload" {
		h := sha256.New()
		n, err := io.Copy(io.MultiWriter(h, counter{&u.received}), r.Body)
		rec.Size = n
		u.record(rec)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		writeTestJSON(w, http.StatusOK, map[string]any{"size": n, "sha256": hex.EncodeToString(h.Sum(nil))})
		return
	}
	body, _ := io.ReadAll(r.Body)
	rec.Size = int64(len(body))
	if len(body) > recordBodyLimit {
		body = body[:recordBodyLimit]
	}
	rec.Body = body
	u.record(rec)

	if direktivV2(w, r) {
		return
	}
	switch path {
	case "/test/sse":
		w.Header().Set("Content-Type", "text/event-stream")
		w.Header().Set("Cache-Control", "no-cache")
		w.WriteHeader(http.StatusOK)
		w.(http.Flusher).Flush()
		for {
			select {
			case ev := <-u.events:
				if ev == "" {
					return
				}
				fmt.Fprintf(w, "data: %s\n\n", ev)
				w.(http.Flusher).Flush()
			case <-r.Context().Done():
				return
			}
		}
	case "/test/sleep":
		d, _ := time.ParseDuration(r.URL.Query().Get("d"))
		select {
		case <-time.After(d):
		case <-r.Context().Done():
			return
		}
		writeTestJSON(w, http.StatusOK, map[string]any{"slept": d.String()})
	case "/test/chunked":
		n, _ := strconv.Atoi(r.URL.Query().Get("n"))
		w.Header().Set("Content-Type", "application/octet-stream")
		for i := range n {
			w.Write(chunkOf(i))
			w.(http.Flusher).Flush()
		}
	case "/test/hop":
		h := w.Header()
		h.Set("Connection", "X-Upstream-Hop")
		h.Set("X-Upstream-Hop", "1")
		h.Set("Keep-Alive", "timeout=5")
		h.Set("Proxy-Authenticate", "Basic")
		h.Set("Upgrade", "h2c")
		h.Set("X-Kept", "yes")
		h.Add("Set-Cookie", "a=1; Path=/")
		h.Add("Set-Cookie", "b=2; Path=/; HttpOnly")
		writeTestJSON(w, http.StatusCreated, map[string]any{"ok": true})
	default:
		w.Header().Set("X-Upstream", "direktiv")
		writeTestJSON(w, http.StatusOK, map[string]any{"method": r.Method, "uri": r.RequestURI})
	}
}

func (u *upstream) record(rec recorded) {
	u.mu.Lock()
	u.reqs = append(u.reqs, rec)
	u.mu.Unlock()
}

// chunkOf is the i-th 1 KiB chunk /test/chunked writes.
func chunkOf(i int) []byte {
	return []byte(strings.Repeat(fmt.Sprintf("%07d\n", i), 128))
}

type counter struct{ n *atomic.Int64 }

func (c counter) Write(p []byte) (int, error) {
	c.n.Add(int64(len(p)))
	return len(p), nil
}

func writeTestJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

// closedAddr returns a loopback address nothing listens on.
func closedAddr(tb testing.TB) string {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// The stand-in's Direktiv v0.10.0 world: what its v2 API answers, in the
// shapes recorded from a running v0.10.0 (../shared/direktiv-v0.10.0/):
// {"data": ...} on success, {"error": {"code", "message"}} on failure, and,
// as there, variables looked up by id alone, whatever the path's namespace.
var (
	testNamespaces = []string{"ns1", "ns2"}
	// variables by id: namespace, type and reference as Direktiv answers them.
	testVariables = map[string]struct{ ns, typ, ref string }{
		varNS1:     {"ns1", "namespace-variable", "ns1"},
		varNS2:     {"ns2", "namespace-variable", "ns2"},
		varWfNS2:   {"ns2", "workflow-variable", "/wf.yaml"},
		varInstNS2: {"ns2", "instance-variable", instNS2},
		varInstNS1: {"ns1", "instance-variable", instNS1},
	}
	testInstances = map[string]string{instNS1: "ns1", instNS2: "ns2"}
	testEvents    = map[string]string{"ev-ns1": "ns1", "ev-ns2": "ns2"}
)

const (
	varNS1     = "11111111-1111-4111-8111-111111111111"
	varNS2     = "22222222-2222-4222-8222-222222222222"
	varWfNS2   = "33333333-3333-4333-8333-333333333333"
	varInstNS2 = "44444444-4444-4444-8444-444444444444"
	varInstNS1 = "66666666-6666-4666-8666-666666666666"
	instNS1    = "77777777-7777-4777-8777-777777777777"
	instNS2    = "55555555-5555-4555-8555-555555555555"
)

// direktivV2 answers the Direktiv v2 routes the sidecar reads itself (the
// status, the namespace list, the objects it checks the namespace of); it
// reports false for every other request.
func direktivV2(w http.ResponseWriter, r *http.Request) bool {
	segs := strings.Split(strings.Trim(r.URL.Path, "/"), "/")
	if len(segs) < 3 || segs[0] != "api" || segs[1] != "v2" || r.Method != http.MethodGet {
		return false
	}
	data := func(v any) { writeTestJSON(w, http.StatusOK, map[string]any{"data": v}) }
	fail := func(status int, code, message string) {
		writeTestJSON(w, status, map[string]any{"error": map[string]any{"code": code, "message": message}})
	}
	variable := func(id string) map[string]any {
		v := testVariables[id]
		return map[string]any{"id": id, "type": v.typ, "reference": v.ref, "name": "v", "size": 5, "mimeType": "text/plain",
			"createdAt": "2026-12-06T01:16:52.671184Z", "updatedAt": "2026-12-06T01:16:52.671184Z"}
	}
	switch {
	case len(segs) == 3 && segs[2] == "status":
		data(map[string]any{"version": "dev2", "isEnterprise": false, "requiresAuth": false})
	case len(segs) == 3 && segs[2] == "namespaces":
		list := []any{}
		for _, ns := range testNamespaces {
			list = append(list, map[string]any{"name": ns, "createdAt": "2026-12-06T01:16:52.633823Z", "updatedAt": "2026-12-06T01:16:52.633823Z", "mirror": nil, "isSystemNamespace": false})
		}
		data(list)
	case len(segs) == 6 && segs[4] == "variables":
		if _, ok := testVariables[segs[5]]; !ok {
			fail(http.StatusNotFound, "resource_not_found", "requested resource is not found")
			return true
		}
		data(variable(segs[5]))
	case len(segs) == 5 && segs[4] == "variables" && r.URL.Query().Has("workflowPath"):
		list := []any{}
		for id, v := range testVariables {
			if v.ns == segs[3] && v.typ == "workflow-variable" && v.ref == r.URL.Query().Get("workflowPath") {
				list = append(list, variable(id))
			}
		}
		data(list)
	case len(segs) == 6 && segs[4] == "instances":
		if testInstances[segs[5]] != segs[3] {
			fail(http.StatusNotFound, "resource_not_found", "requested resource is not found")
			return true
		}
		data(map[string]any{"id": segs[5], "status": "complete"})
	case len(segs) == 7 && segs[4] == "events" && (segs[5] == "history" || segs[5] == "listeners"):
		ns, ok := testEvents[segs[6]]
		if !ok {
			fail(http.StatusInternalServerError, "internal", "internal server error") // as Direktiv answers an unknown event
			return true
		}
		data(map[string]any{"id": segs[6], "namespace": ns})
	default:
		return false
	}
	return true
}
