package main

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
