//go:build linux

package relay

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/direktiv/direktiv-authz/internal/testutil"
)

// Shutdown: idle connections closed, responses finished, streams ended.

func TestShutdown(t *testing.T) {
	t.Run("idle connections are closed", func(t *testing.T) {
		e := start(t, setup{})
		a, b := e.dial(t), e.dial(t)
		for _, c := range []*tconn{a, b} {
			resp, body := c.get("/x")
			expectStatus(t, resp, body, 200, okBody("GET", "/x"))
		}
		ctx, cancel := context.WithTimeout(context.Background(), ioTimeout)
		defer cancel()
		if err := e.shutdown(ctx); err != nil {
			t.Fatalf("Shutdown: %v", err)
		}
		a.expectClosed()
		b.expectClosed()
		e.waitServe(t)
		if _, err := net.Dial("tcp", e.addr); err == nil {
			t.Fatal("a connection after Shutdown was accepted")
		}
		testutil.Eventually(t, "the upstream connections closed", func() bool { return e.up.Open() == 0 })
	})
	t.Run("in-flight request finishes with Connection: close", func(t *testing.T) {
		e := start(t, setup{})
		slow, idle := e.dial(t), e.dial(t)
		resp, body := idle.get("/x")
		expectStatus(t, resp, body, 200, okBody("GET", "/x"))
		slow.send("GET /slow?ms=1500 HTTP/1.1\r\nHost: h\r\n\r\n")
		testutil.Eventually(t, "the slow request upstream", func() bool { return len(e.up.Requests()) == 2 })
		shut := make(chan error, 1)
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), ioTimeout)
			defer cancel()
			shut <- e.shutdown(ctx)
		}()
		idle.expectClosed()
		dialRefused(t, e.addr)
		select {
		case err := <-shut:
			t.Fatalf("Shutdown returned %v with a request in flight", err)
		default:
		}
		resp, body = slow.response("GET")
		expectStatus(t, resp, body, 200, "slow done")
		if !resp.Close {
			t.Fatal("no Connection: close")
		}
		slow.expectClosed()
		select {
		case err := <-shut:
			if err != nil {
				t.Fatalf("Shutdown: %v", err)
			}
		case <-time.After(ioTimeout):
			t.Fatal("Shutdown did not return")
		}
		e.waitServe(t)
	})
	t.Run("event streams are ended", func(t *testing.T) {
		e := start(t, setup{})
		c := e.dial(t)
		openStream(t, c)
		ctx, cancel := context.WithTimeout(context.Background(), ioTimeout)
		defer cancel()
		if err := e.shutdown(ctx); err != nil {
			t.Fatalf("Shutdown: %v", err)
		}
		c.expectClosed()
		select {
		case <-e.ans.sseGone:
		case <-time.After(ioTimeout):
			t.Fatal("the upstream request was not cancelled")
		}
		if n := e.r.Streams(); n != 0 {
			t.Fatalf("Streams() = %d", n)
		}
		e.waitServe(t)
	})
	t.Run("expired context", func(t *testing.T) {
		e := start(t, setup{})
		c := e.dial(t)
		c.send("GET /slow?ms=10000 HTTP/1.1\r\nHost: h\r\n\r\n")
		testutil.Eventually(t, "the slow request upstream", func() bool { return len(e.up.Requests()) == 1 })
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if err := e.shutdown(ctx); !errors.Is(err, context.Canceled) {
			t.Fatalf("Shutdown = %v, want context.Canceled", err)
		}
		e.waitServe(t)
		c.expectClosed()
		select {
		case <-e.ans.slowGone:
		case <-time.After(ioTimeout):
			t.Fatal("the upstream request was not cancelled")
		}
	})
}

// A connection whose response was being relayed when Shutdown began is
// closed after that response, as Shutdown's doc says; Shutdown then
// returns.
func TestShutdownClosesConnectionAfterRelayedResponse(t *testing.T) {
	e := start(t, setup{})
	c := e.dial(t)
	c.send("GET /hold HTTP/1.1\r\nHost: h\r\n\r\n")
	resp, err := http.ReadResponse(c.br, nil)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("%v", err)
	}
	shut := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		shut <- e.shutdown(ctx)
	}()
	dialRefused(t, e.addr) // Shutdown has begun
	close(e.ans.release)
	body, err := io.ReadAll(resp.Body)
	if err != nil || string(body) != "0123456789" {
		t.Fatalf("body %q, %v", body, err)
	}
	c.SetReadDeadline(time.Now().Add(2 * time.Second))
	c.expectClosed()
	if err := <-shut; err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
}

// A second Shutdown, after the loops stopped, returns at once.
func TestShutdownTwice(t *testing.T) {
	e := start(t, setup{})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := e.shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	e.waitServe(t)
	done := make(chan error, 1)
	go func() { done <- e.r.Shutdown(ctx) }()
	select {
	case <-done:
	case <-time.After(3 * time.Second):
		t.Fatal("the second Shutdown did not return")
	}
}

// lateStream is an upstream whose /late-sse answers only once released: an
// event stream whose head comes when the test says so.
type lateStream struct {
	addr     string
	got      chan struct{} // the request arrived
	release  chan struct{} // send the head and the first event
	gone     chan struct{} // the client's side of the stream went away
	received atomic.Int64
}

func newLateStream(tb testing.TB) *lateStream {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	s := &lateStream{addr: ln.Addr().String(), got: make(chan struct{}, 16), release: make(chan struct{}), gone: make(chan struct{}, 16)}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.received.Add(1)
		s.got <- struct{}{}
		select {
		case <-s.release:
		case <-r.Context().Done():
			s.gone <- struct{}{}
			return
		}
		w.Header().Set("Content-Type", "text/event-stream")
		io.WriteString(w, "data: one\n\n")
		http.NewResponseController(w).Flush()
		<-r.Context().Done()
		s.gone <- struct{}{}
	})}
	go srv.Serve(ln)
	tb.Cleanup(func() { srv.Close() })
	return s
}

// TestShutdownEndsStreamStartedDuringShutdown: an event stream whose head
// arrives after Shutdown began (its request was waiting for the upstream)
// is ended too, as the server's path ends any that starts later: Shutdown
// does not wait out the stream's whole context.
func TestShutdownEndsStreamStartedDuringShutdown(t *testing.T) {
	up := newLateStream(t)
	e := start(t, setup{opt: func(o *Options) { o.Upstream = up.addr }})
	c := e.dial(t)
	c.send("GET /late-sse HTTP/1.1\r\nHost: h\r\n\r\n")
	select {
	case <-up.got:
	case <-time.After(ioTimeout):
		t.Fatal("the request did not reach the upstream")
	}
	shut := make(chan error, 1)
	begin := time.Now()
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		shut <- e.shutdown(ctx)
	}()
	dialRefused(t, e.addr) // every loop is shutting down
	close(up.release)      // now the stream's head comes
	resp, err := http.ReadResponse(c.br, nil)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("response: %v", err)
	}
	err = <-shut
	took := time.Since(begin)
	if err != nil || took > 2*time.Second {
		t.Fatalf("Shutdown returned %v after %v; want nil, the stream ended at once", err, took.Round(time.Millisecond))
	}
}

// TestShutdownAnswersRequestHalfReceived: a request partly received when
// Shutdown begins is not idle: it is read to its end and answered, with
// Connection: close, as the server's path answers it.
func TestShutdownAnswersRequestHalfReceived(t *testing.T) {
	e := start(t, setup{})
	c := e.dial(t)
	c.send("POST /upload HTTP/1.1\r\nHost: h\r\nContent-Length: 4\r\n\r\nab")
	testutil.Eventually(t, "the relay to read the first part", func() bool { return bufferedBytes(t, e.r) > 0 })
	shut := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), ioTimeout)
		defer cancel()
		shut <- e.shutdown(ctx)
	}()
	dialRefused(t, e.addr)
	c.send("cd")
	resp, err := http.ReadResponse(c.br, nil)
	if err != nil {
		t.Fatalf("no response to the request that was being received: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	expectStatus(t, resp, string(body), 200, okBody("POST", "/upload"))
	if !resp.Close {
		t.Error("no Connection: close during shutdown")
	}
	if err := <-shut; err != nil {
		t.Fatal(err)
	}
}
