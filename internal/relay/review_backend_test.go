//go:build linux

package relay

// Review tests of the backend (backend.go) and the Answer action
// (conn.go).

import (
	"context"
	"io"
	"net"
	"testing"
	"time"
)

// TestReviewAnswerThenHandoffKeepsResponse: a request answered at once on
// the loop (an Answer with a response, such as a dry-run mint or a 400),
// pipelined with a request the loop hands off (here HTTP/1.0), must get its
// response before the handed-off one's. The answer's write is deferred to
// the batch's end; readRequest must not parse the next request before it
// (a handoff would release c.out unwritten, and the client would read the
// handoff server's response as the answer to its first request).
func TestReviewAnswerThenHandoffKeepsResponse(t *testing.T) {
	f := newBeFake(t, "", nil)
	p := &beProbe{}
	e := beStart(t, f.addr, p, nil)
	c := e.dial(t)
	c.send("GET /direct/a HTTP/1.1\r\nHost: h\r\n\r\n" +
		"GET /ECHO/b HTTP/1.0\r\nHost: h\r\n\r\n") // HTTP/1.0: not relayed, handed off
	c.beExpect(200, "direct a")
	resp, body := c.response("GET")
	expectStatus(t, resp, body, 299, "handed off")
}

// TestReviewShutdownWaitsForCallOfClientGone: a client that leaves while
// its call is in flight has the call carried on (Done runs: for a mint, the
// audit line and metrics of a token that is stored). Shutdown must wait
// for such calls too, not only for open client connections: a loop that
// exited with the call in flight would never run its Done, and the token
// would be stored but neither audited nor counted.
func TestReviewShutdownWaitsForCallOfClientGone(t *testing.T) {
	f, release := newHoldFake(t)
	p := &beProbe{}
	// The call must not time out first: Shutdown would then find none.
	e := beStart(t, f.addr, p, func(o *Options) { o.Backend.Timeout = ioTimeout })
	c := e.dial(t)
	c.send("GET /HOLD HTTP/1.1\r\nHost: h\r\n\r\n")
	waitWritten(t, e.r, 1)
	// A reset: the client is gone at once (a FIN alone would keep it for
	// its answer).
	c.Conn.(*net.TCPConn).SetLinger(0)
	c.Close()
	waitFor(t, "the client gone", func() bool { return openClients(e.r) == 0 })
	shut := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), ioTimeout)
		defer cancel()
		shut <- e.shutdown(ctx)
	}()
	time.AfterFunc(200*time.Millisecond, func() { close(release) })
	select {
	case err := <-shut:
		if err != nil {
			t.Fatalf("Shutdown: %v", err)
		}
	case <-time.After(ioTimeout):
		t.Fatal("Shutdown did not return")
	}
	if d := p.doneCalls(); len(d) != 1 {
		t.Fatalf("Shutdown returned with %d Done calls for the call in flight, want 1: its Done never runs", len(d))
	} else if d[0].Reply != "held" {
		t.Fatalf("the call's Done had %v, %v; want the reply held (not a timeout)", d[0].Reply, d[0].Err)
	}
}

// TestWaitAnswersKeepsHalfClosedClient: a Wait marked Answers (a request
// the handler will answer itself) keeps a client that shuts down its
// sending side during the Wait, and the answer reaches it; a plain Wait
// (a request to forward) closes such a client, as before.
func TestWaitAnswersKeepsHalfClosedClient(t *testing.T) {
	for _, answers := range []bool{true, false} {
		release := make(chan struct{})
		e := start(t, setup{decide: func(r *Request) Verdict {
			if r.Note == nil {
				return Verdict{Action: Wait, Answers: answers, Wait: func() any { <-release; return 1 }}
			}
			return Verdict{Action: Answer, Answer: func([]byte) Reply {
				return Reply{Resp: []byte("HTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\nanswered")}
			}}
		}})
		c := e.dial(t)
		c.send("GET /w HTTP/1.1\r\nHost: h\r\n\r\n")
		waitFor(t, "Decide", func() bool { return len(e.h.decideCalls()) == 1 })
		c.Conn.(*net.TCPConn).CloseWrite()
		time.Sleep(50 * time.Millisecond) // the FIN is seen during the Wait
		close(release)
		b, _ := io.ReadAll(c.br)
		switch {
		case answers && string(b) != "HTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\nanswered":
			t.Errorf("Answers: read %q, want the answer", b)
		case !answers && len(b) != 0:
			t.Errorf("a plain Wait: read %q, want the connection closed unanswered", b)
		}
		waitFor(t, "the client closed", func() bool { return openClients(e.r) == 0 })
	}
}
