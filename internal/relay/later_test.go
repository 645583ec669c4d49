//go:build linux

package relay

// Tests of answers given later (Reply.Later): a request the Handler
// answers on the loop after work done elsewhere, as a mint is answered
// once the store has its token.

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/direktiv/direktiv-authz/internal/testutil"
)

// laterProbe answers by target:
//
//	/now/x          at once: 200 "now x"
//	/later/x        later, from a goroutine of its own: 200 "later x"
//	/held/x         later, once release is closed: 200 "held x"
//	/close/x        later, with Reply.Close: 200 "close x"
//	/empty          later, with no response
//	/sync/x         later, answer called on the loop before Later returns
//	/nothing        an Answer with neither response nor Later: a handoff
type laterProbe struct {
	release chan struct{}

	mu       sync.Mutex
	onLoop   map[uint64]bool // goroutines Answer and Later ran on
	raws     []string        // what Answer saw
	answered []string        // targets answered, in order
}

func newLaterProbe() *laterProbe {
	return &laterProbe{release: make(chan struct{}), onLoop: map[uint64]bool{}}
}

func laterResp(status int, body string) []byte {
	return fmt.Appendf(nil, "HTTP/1.1 %d %s\r\nContent-Length: %d\r\n\r\n%s", status, http.StatusText(status), len(body), body)
}

func (p *laterProbe) note(raw string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.onLoop[goid()] = true
	if raw != "" {
		p.raws = append(p.raws, raw)
	}
}

func (p *laterProbe) answer(answer func(Reply), target string, rep Reply) {
	p.mu.Lock()
	p.answered = append(p.answered, target)
	p.mu.Unlock()
	answer(rep)
}

func (p *laterProbe) answers() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.answered...)
}

func (p *laterProbe) decide(r *Request) Verdict {
	target := string(r.Target)
	kind, arg, _ := strings.Cut(strings.TrimPrefix(target, "/"), "/")
	if kind == "nothing" {
		return Verdict{Action: Answer, Answer: func([]byte) Reply { return Reply{} }}
	}
	return Verdict{Action: Answer, Answer: func(raw []byte) Reply {
		p.note(string(raw))
		if kind == "now" {
			return Reply{Resp: laterResp(200, "now "+arg)}
		}
		return Reply{Later: func(answer func(Reply)) {
			p.note("")
			rep := Reply{Resp: laterResp(200, kind+" "+arg)}
			switch kind {
			case "sync":
				p.answer(answer, target, rep)
				return
			case "close":
				rep.Close = true
			case "empty":
				rep = Reply{}
			}
			go func() {
				if kind == "held" {
					<-p.release
				}
				p.answer(answer, target, rep)
			}()
		}}
	}}
}

func startLater(tb testing.TB, p *laterProbe) *env {
	tb.Helper()
	return start(tb, setup{decide: p.decide, opt: func(o *Options) { o.Loops = 1 }})
}

func (c *tconn) expect(status int, body string) {
	c.tb.Helper()
	resp, got := c.response("GET")
	expectStatus(c.tb, resp, got, status, body)
}

// TestLaterAnswers: a request answered later gets the response given from
// another goroutine, on the same kept-alive connection; Answer sees the
// request's bytes whole; Answer and Later run on the loop; nothing goes
// upstream and no exchange is reported.
func TestLaterAnswers(t *testing.T) {
	p := newLaterProbe()
	e := startLater(t, p)
	c := e.dial(t)
	post := "POST /later/a HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello"
	c.send(post)
	c.expect(200, "later a")
	c.send("GET /sync/b HTTP/1.1\r\nHost: h\r\n\r\n")
	c.expect(200, "sync b")
	c.send("GET /now/c HTTP/1.1\r\nHost: h\r\n\r\n")
	c.expect(200, "now c")
	c.send("GET /later/d HTTP/1.1\r\nHost: h\r\n\r\n")
	c.expect(200, "later d")

	p.mu.Lock()
	raws, loops := p.raws, p.onLoop
	p.mu.Unlock()
	if len(raws) != 4 || raws[0] != post {
		t.Fatalf("Answer saw %q; want first %q", raws, post)
	}
	decides := e.h.decideCalls()
	if len(loops) != 1 || !loops[decides[0].Loop] {
		t.Fatalf("Answer and Later ran on %v, Decide on %d", loops, decides[0].Loop)
	}
	if d := e.h.doneCalls(); len(d) != 0 {
		t.Fatalf("Handler.Done calls %+v", d)
	}
	if n := len(e.up.Requests()); n != 0 {
		t.Fatalf("the upstream got %d requests", n)
	}
	if n := openClients(e.r); n != 1 {
		t.Fatalf("%d client connections open, want 1 (kept alive)", n)
	}
}

// TestLaterPipelined: requests pipelined behind one answered later are
// answered after it, in order.
func TestLaterPipelined(t *testing.T) {
	p := newLaterProbe()
	e := startLater(t, p)
	c := e.dial(t)
	c.send("GET /held/1 HTTP/1.1\r\nHost: h\r\n\r\nGET /now/2 HTTP/1.1\r\nHost: h\r\n\r\nGET /later/3 HTTP/1.1\r\nHost: h\r\n\r\n")
	testutil.Eventually(t, "the first request taken on", func() bool { return len(e.h.decideCalls()) == 1 })
	c.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	if n, _ := c.br.Read(make([]byte, 1)); n != 0 {
		t.Fatal("a response before the first request's answer")
	}
	c.SetReadDeadline(time.Time{})
	close(p.release)
	c.expect(200, "held 1")
	c.expect(200, "now 2")
	c.expect(200, "later 3")
}

// TestLaterManyAtOnce: answers given together for many clients (one wake-up
// of the loop for several) each reach their own client.
func TestLaterManyAtOnce(t *testing.T) {
	p := newLaterProbe()
	e := startLater(t, p)
	const n = 64
	conns := make([]*tconn, n)
	for i := range conns {
		conns[i] = e.dial(t)
		conns[i].send("GET /held/" + strconv.Itoa(i) + " HTTP/1.1\r\nHost: h\r\n\r\n")
	}
	testutil.Eventually(t, "every request taken on", func() bool { return len(e.h.decideCalls()) == n })
	close(p.release)
	for i, c := range conns {
		c.expect(200, "held "+strconv.Itoa(i))
	}
}

// TestLaterClientShutsDownSending: a client that shuts down its sending
// side while its answer is awaited still gets it (a mint's secret is shown
// once), and the connection closes after it; the loop serves others
// meanwhile.
func TestLaterClientShutsDownSending(t *testing.T) {
	p := newLaterProbe()
	e := startLater(t, p)
	a := e.dial(t)
	a.send("GET /held/a HTTP/1.1\r\nHost: h\r\n\r\n")
	testutil.Eventually(t, "a's request taken on", func() bool { return len(e.h.decideCalls()) == 1 })
	a.Conn.(*net.TCPConn).CloseWrite()
	b := e.dial(t)
	b.send("GET /later/b HTTP/1.1\r\nHost: h\r\n\r\n")
	b.expect(200, "later b")
	if n := openClients(e.r); n != 2 {
		t.Fatalf("%d client connections open, want 2 (a's kept for its answer, and b)", n)
	}
	close(p.release)
	a.expect(200, "held a")
	a.expectClosed()
	testutil.Eventually(t, "a closed", func() bool { return openClients(e.r) == 1 })
}

// TestLaterClientGone: an answer for a client that reset its connection is
// dropped; the loop goes on serving.
func TestLaterClientGone(t *testing.T) {
	p := newLaterProbe()
	e := startLater(t, p)
	a := e.dial(t)
	a.send("GET /held/a HTTP/1.1\r\nHost: h\r\n\r\n")
	testutil.Eventually(t, "a's request taken on", func() bool { return len(e.h.decideCalls()) == 1 })
	a.Conn.(*net.TCPConn).SetLinger(0)
	a.Close()
	testutil.Eventually(t, "a gone", func() bool { return openClients(e.r) == 0 })
	close(p.release)
	testutil.Eventually(t, "a's answer given", func() bool { return len(p.answers()) == 1 })
	b := e.dial(t)
	b.send("GET /later/b HTTP/1.1\r\nHost: h\r\n\r\n")
	b.expect(200, "later b")
	b.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	if n, err := b.br.Read(make([]byte, 1)); n != 0 || err == nil {
		t.Fatal("stray bytes for the new client")
	}
}

// TestLaterEmptyAnswerCloses: a later answer without a response closes the
// connection (the request was taken on: nothing is handed off), and what
// was pipelined behind it is not answered; an Answer with neither response
// nor Later hands the connection off, the request with it.
func TestLaterEmptyAnswerCloses(t *testing.T) {
	p := newLaterProbe()
	e := startLater(t, p)
	c := e.dial(t)
	c.send("GET /empty HTTP/1.1\r\nHost: h\r\n\r\nGET /now/x HTTP/1.1\r\nHost: h\r\n\r\n")
	c.expectClosed()
	if n := e.ho.handed.Load(); n != 0 {
		t.Fatalf("%d handoffs", n)
	}

	c = e.dial(t)
	c.send("POST /nothing HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabc")
	c.expect(299, "handed off")
	if n := e.ho.handed.Load(); n != 1 {
		t.Fatalf("%d handoffs, want 1", n)
	}
	if got := e.ho.requests(); len(got) != 1 || got[0].URI != "/nothing" || got[0].Body != "abc" {
		t.Fatalf("the handoff server got %+v", got)
	}
}

// TestLaterClose: Reply.Close, and the request's Connection: close, close
// the connection after a later answer; without either it stays.
func TestLaterClose(t *testing.T) {
	p := newLaterProbe()
	e := startLater(t, p)
	const next = "GET /now/next HTTP/1.1\r\nHost: h\r\n\r\n"
	for _, tt := range []struct {
		name, req, body string
		closed          bool
	}{
		{"Reply.Close", "GET /close/a HTTP/1.1\r\nHost: h\r\n\r\n", "close a", true},
		{"Connection: close", "GET /later/b HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n", "later b", true},
		{"neither", "GET /later/c HTTP/1.1\r\nHost: h\r\n\r\n", "later c", false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c := e.dial(t)
			c.send(tt.req + next)
			c.expect(200, tt.body)
			if tt.closed {
				c.expectClosed()
				testutil.Eventually(t, "the client closed", func() bool { return openClients(e.r) == 0 })
			} else {
				c.expect(200, "now next")
			}
		})
	}
}

// TestLaterPipelinedThenHalfClose: requests pipelined and the client's FIN
// after them, read in one go (printf '...' | nc -N): each is answered, then
// the connection closes, as for forwarded requests.
func TestLaterPipelinedThenHalfClose(t *testing.T) {
	p := newLaterProbe()
	e := startLater(t, p)
	c := e.dial(t)
	c.send("GET /later/a HTTP/1.1\r\nHost: h\r\n\r\nGET /later/b HTTP/1.1\r\nHost: h\r\n\r\n")
	c.Conn.(*net.TCPConn).CloseWrite()
	c.expect(200, "later a")
	resp, err := http.ReadResponse(c.br, nil)
	if err != nil {
		t.Fatalf("the second pipelined request before the client's FIN is not answered: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	expectStatus(t, resp, string(body), 200, "later b")
	c.expectClosed()
}

// TestLaterShutdownWaits: Shutdown waits for an answer awaited, writes it
// and closes the connection, leaving what was pipelined behind it; it
// waits too for an answer whose client has gone (a mint's token is then
// stored, and must still be audited and counted).
func TestLaterShutdownWaits(t *testing.T) {
	for _, gone := range []bool{false, true} {
		t.Run(fmt.Sprintf("client gone %v", gone), func(t *testing.T) {
			p := newLaterProbe()
			e := startLater(t, p)
			c := e.dial(t)
			c.send("GET /held/a HTTP/1.1\r\nHost: h\r\n\r\nGET /now/next HTTP/1.1\r\nHost: h\r\n\r\n")
			testutil.Eventually(t, "the request taken on", func() bool { return len(e.h.decideCalls()) == 1 })
			if gone {
				c.Conn.(*net.TCPConn).SetLinger(0)
				c.Close()
				testutil.Eventually(t, "the client gone", func() bool { return openClients(e.r) == 0 })
			}
			shut := make(chan error, 1)
			go func() {
				ctx, cancel := context.WithTimeout(context.Background(), ioTimeout)
				defer cancel()
				shut <- e.shutdown(ctx)
			}()
			time.Sleep(50 * time.Millisecond)
			select {
			case err := <-shut:
				t.Fatalf("Shutdown returned with an answer awaited: %v", err)
			default:
			}
			close(p.release)
			if !gone {
				c.expect(200, "held a")
				c.expectClosed()
			}
			select {
			case err := <-shut:
				if err != nil {
					t.Fatalf("Shutdown: %v", err)
				}
			case <-time.After(ioTimeout):
				t.Fatal("Shutdown did not return")
			}
			if got := p.answers(); len(got) != 1 || got[0] != "/held/a" {
				t.Fatalf("answers given %q, want the held one", got)
			}
		})
	}
}

// TestAnswerThenHandoffKeepsResponse: a request answered at once on the
// loop, pipelined with a request the loop hands off (here HTTP/1.0), gets
// its response before the handed-off one's: the answer's write is deferred
// to the batch's end, and the next request must not be parsed before it.
func TestAnswerThenHandoffKeepsResponse(t *testing.T) {
	p := newLaterProbe()
	e := startLater(t, p)
	c := e.dial(t)
	c.send("GET /now/a HTTP/1.1\r\nHost: h\r\n\r\n" +
		"GET /now/b HTTP/1.0\r\nHost: h\r\n\r\n") // HTTP/1.0: not relayed, handed off
	c.expect(200, "now a")
	c.expect(299, "handed off")
}

// TestWaitAnswersKeepsHalfClosedClient: a Wait marked Answers (a request
// the handler will answer itself) keeps a client that shuts down its
// sending side during the Wait, and the answer reaches it; a plain Wait
// (a request to forward) closes such a client.
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
		testutil.Eventually(t, "Decide", func() bool { return len(e.h.decideCalls()) == 1 })
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
		testutil.Eventually(t, "the client closed", func() bool { return openClients(e.r) == 0 })
	}
}
