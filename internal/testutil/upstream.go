package testutil

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Upstream is the stand-in for Direktiv: a real net/http server (Direktiv's
// API is one, and Go's reading of a request is the reference the framing
// tests hold the sidecar to) on loopback that records every request it
// reads and answers by path:
//
//	/test/sse        server-sent events: one per string sent on Events,
//	                 until "" is sent or the client goes
//	/test/upload     reads the body, answers {"size","sha256"}; Received
//	                 counts the bytes as they arrive
//	/test/sleep?d=   sleeps d (a Go duration), then answers {"slept"}
//	/test/chunked?n= n chunks of 1 KiB (UpstreamChunk), each flushed: a
//	                 body of unknown length
//	/test/hop        an answer carrying hop-by-hop headers
//	anything else    200, X-Upstream: direktiv and a JSON echo of method
//	                 and URI
//
// UpstreamAnswer puts answers of a test's own before these. The recorded
// body is kept whole up to RecordBodyLimit; Request.Size counts it all.
type Upstream struct {
	// Events feeds /test/sse: each string is one event, "" ends the stream.
	Events chan string

	srv      *httptest.Server
	answer   func(http.ResponseWriter, *http.Request) bool
	received atomic.Int64 // body bytes of /test/upload read so far
	conns    atomic.Int64 // connections accepted
	open     atomic.Int64 // connections neither closed nor hijacked

	mu   sync.Mutex
	reqs []Request
}

// Request is one request as the upstream read it.
type Request struct {
	Method           string
	URI              string // the request target, raw, as on the wire
	Host             string
	Header           http.Header
	TransferEncoding []string
	ContentLength    int64
	Body             string // the first RecordBodyLimit bytes
	Size             int64  // the body bytes read, all of them
	// BodyErr is why the body could not be read to its end: nil when Go
	// read the request whole.
	BodyErr error
}

// RecordBodyLimit is how much of a body Request.Body keeps.
const RecordBodyLimit = 1 << 20

// UpstreamOption changes the upstream StartUpstream starts.
type UpstreamOption func(*upstreamSetup)

type upstreamSetup struct {
	tls    bool
	idle   time.Duration
	ln     net.Listener
	answer func(http.ResponseWriter, *http.Request) bool
}

// UpstreamTLS serves https, with a self-signed certificate (CertPEM).
func UpstreamTLS() UpstreamOption { return func(s *upstreamSetup) { s.tls = true } }

// UpstreamIdleTimeout closes a connection idle for d.
func UpstreamIdleTimeout(d time.Duration) UpstreamOption {
	return func(s *upstreamSetup) { s.idle = d }
}

// UpstreamListener serves on ln instead of a new loopback port; the
// upstream closes ln when the test ends.
func UpstreamListener(ln net.Listener) UpstreamOption {
	return func(s *upstreamSetup) { s.ln = ln }
}

// UpstreamAnswer lets answer answer each request first, once it is
// recorded (its body read): answer reports whether it did. /test/upload
// stays the upstream's own, as it counts the body while reading it.
func UpstreamAnswer(answer func(w http.ResponseWriter, r *http.Request) bool) UpstreamOption {
	return func(s *upstreamSetup) { s.answer = answer }
}

// StartUpstream starts an Upstream that stops when tb ends, cutting the
// connections still open.
func StartUpstream(tb testing.TB, opts ...UpstreamOption) *Upstream {
	tb.Helper()
	var s upstreamSetup
	for _, o := range opts {
		o(&s)
	}
	u := &Upstream{Events: make(chan string), answer: s.answer}
	u.srv = httptest.NewUnstartedServer(http.HandlerFunc(u.serve))
	if s.ln != nil {
		u.srv.Listener.Close()
		u.srv.Listener = s.ln
	}
	u.srv.Config.IdleTimeout = s.idle
	u.srv.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		switch st {
		case http.StateNew:
			u.conns.Add(1)
			u.open.Add(1)
		case http.StateClosed, http.StateHijacked:
			u.open.Add(-1)
		}
	}
	if s.tls {
		u.srv.StartTLS()
	} else {
		u.srv.Start()
	}
	tb.Cleanup(func() {
		u.srv.CloseClientConnections()
		u.srv.Close()
	})
	return u
}

// URL is the upstream's base URL, http:// or https://.
func (u *Upstream) URL() string { return u.srv.URL }

// Addr is the upstream's host:port.
func (u *Upstream) Addr() string { return u.srv.Listener.Addr().String() }

// CertPEM is the PEM of the certificate an UpstreamTLS upstream serves.
func (u *Upstream) CertPEM() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: u.srv.Certificate().Raw})
}

// Conns is how many connections the upstream accepted.
func (u *Upstream) Conns() int64 { return u.conns.Load() }

// Open is how many connections are neither closed nor hijacked.
func (u *Upstream) Open() int64 { return u.open.Load() }

// Received is how many body bytes /test/upload has read so far.
func (u *Upstream) Received() int64 { return u.received.Load() }

// Requests returns what was received so far.
func (u *Upstream) Requests() []Request {
	u.mu.Lock()
	defer u.mu.Unlock()
	return slices.Clone(u.reqs)
}

// Only returns the one request received, failing tb unless there was
// exactly one, and forgets it.
func (u *Upstream) Only(tb testing.TB) Request {
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

// None fails tb if the upstream received anything.
func (u *Upstream) None(tb testing.TB) {
	tb.Helper()
	if reqs := u.Requests(); len(reqs) != 0 {
		tb.Fatalf("the upstream received %d requests, want none: %s %s", len(reqs), reqs[0].Method, reqs[0].URI)
	}
}

// Reset forgets the requests received and the bytes counted by Received.
func (u *Upstream) Reset() {
	u.mu.Lock()
	u.reqs = nil
	u.mu.Unlock()
	u.received.Store(0)
}

// Send sends ev on the open /test/sse stream, failing tb if none takes it
// within 5s.
func (u *Upstream) Send(tb testing.TB, ev string) {
	tb.Helper()
	select {
	case u.Events <- ev:
	case <-time.After(5 * time.Second):
		tb.Fatal("the upstream's event stream is not listening")
	}
}

// UpstreamChunk is the i-th 1 KiB chunk /test/chunked writes.
func UpstreamChunk(i int) []byte {
	return []byte(strings.Repeat(fmt.Sprintf("%07d\n", i), 128))
}

func (u *Upstream) serve(w http.ResponseWriter, r *http.Request) {
	rec := Request{
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
		rec.Size, rec.BodyErr = io.Copy(io.MultiWriter(h, counter{&u.received}), r.Body)
		u.record(rec)
		if rec.BodyErr != nil {
			http.Error(w, rec.BodyErr.Error(), http.StatusBadRequest)
			return
		}
		WriteJSON(w, http.StatusOK, map[string]any{"size": rec.Size, "sha256": hex.EncodeToString(h.Sum(nil))})
		return
	}
	var body strings.Builder
	rec.Size, rec.BodyErr = io.Copy(&limitedBuilder{&body}, r.Body)
	rec.Body = body.String()
	u.record(rec)

	if u.answer != nil && u.answer(w, r) {
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
			case ev := <-u.Events:
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
		WriteJSON(w, http.StatusOK, map[string]any{"slept": d.String()})
	case "/test/chunked":
		n, _ := strconv.Atoi(r.URL.Query().Get("n"))
		w.Header().Set("Content-Type", "application/octet-stream")
		for i := range n {
			w.Write(UpstreamChunk(i))
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
		WriteJSON(w, http.StatusCreated, map[string]any{"ok": true})
	default:
		w.Header().Set("X-Upstream", "direktiv")
		WriteJSON(w, http.StatusOK, map[string]any{"method": r.Method, "uri": r.RequestURI})
	}
}

func (u *Upstream) record(rec Request) {
	u.mu.Lock()
	u.reqs = append(u.reqs, rec)
	u.mu.Unlock()
}

// WriteJSON answers status with v as JSON.
func WriteJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

type counter struct{ n *atomic.Int64 }

func (c counter) Write(p []byte) (int, error) {
	c.n.Add(int64(len(p)))
	return len(p), nil
}

// limitedBuilder keeps the first RecordBodyLimit bytes written to it and
// counts the rest as written.
type limitedBuilder struct{ b *strings.Builder }

func (l *limitedBuilder) Write(p []byte) (int, error) {
	if room := RecordBodyLimit - l.b.Len(); room > 0 {
		l.b.Write(p[:min(len(p), room)])
	}
	return len(p), nil
}
