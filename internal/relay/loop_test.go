//go:build linux

package relay

import (
	"bufio"
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/direktiv/direktiv-authz/internal/testutil"
)

// The loops themselves: accepting, events, buffers.

// onLoops runs fn on every loop's goroutine in turn and waits for it, so
// that a test can look at loop state without a data race.
func onLoops(tb testing.TB, r *Relay, fn func(l *loop)) {
	tb.Helper()
	for _, l := range r.loops {
		done := make(chan struct{})
		if !l.post(func() { fn(l); close(done) }) {
			continue
		}
		select {
		case <-done:
		case <-time.After(ioTimeout):
			tb.Fatal("a loop did not run the posted function")
		}
	}
}

// bufferedBytes is what the relay has read of its clients' requests and not
// consumed yet, over all loops.
func bufferedBytes(tb testing.TB, r *Relay) int {
	n := 0
	onLoops(tb, r, func(l *loop) {
		for c := range l.clients {
			n += len(c.in)
		}
	})
	return n
}

// countHandler counts log records whose message is msg.
type countHandler struct {
	msg string
	n   *atomic.Int64
}

// TestAcceptBacksOffOnEMFILE: when accept fails with EMFILE the
// connection stays in the backlog and the listener is level-triggered: the
// loop stops watching it for a while, logging a few failures at most,
// rather than spin, as
// fasthttp and net/http sleep between failed accepts.
func TestAcceptBacksOffOnEMFILE(t *testing.T) {
	var warnings atomic.Int64
	e := start(t, setup{opt: func(o *Options) {
		o.Loops = 1
		o.Log = slog.New(countHandler{msg: "accept failed", n: &warnings})
	}})
	warm := e.dial(t) // opened before the fds run out
	resp, body := warm.get("/warm")
	expectStatus(t, resp, body, 200, okBody("GET", "/warm"))

	var old unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &old); err != nil {
		t.Fatal(err)
	}
	var fillers []int
	restore := func() {
		for _, fd := range fillers {
			unix.Close(fd)
		}
		fillers = nil
		unix.Setrlimit(unix.RLIMIT_NOFILE, &old)
	}
	defer restore()
	// Room for a few more fds than are open, then fill all but one.
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skip(err)
	}
	maxfd := 0
	for _, de := range entries {
		if n, err := strconv.Atoi(de.Name()); err == nil {
			maxfd = max(maxfd, n)
		}
	}
	lim := unix.Rlimit{Cur: uint64(maxfd + 16), Max: old.Max}
	if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
		t.Skip(err)
	}
	for {
		fd, err := unix.Open("/dev/null", unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			break
		}
		fillers = append(fillers, fd)
	}
	if len(fillers) == 0 {
		t.Skip("could not fill the fd table")
	}
	unix.Close(fillers[len(fillers)-1]) // one fd for the test's client
	fillers = fillers[:len(fillers)-1]
	c, err := net.Dial("tcp", e.addr) // connects (the backlog); the relay cannot accept it
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	before := warnings.Load()
	time.Sleep(300 * time.Millisecond)
	spins := warnings.Load() - before
	restore()
	// The connection is served once fds are free again.
	tc := &tconn{Conn: c, br: bufio.NewReader(c), tb: t}
	c.SetDeadline(time.Now().Add(ioTimeout))
	resp, body = tc.get("/after")
	expectStatus(t, resp, body, 200, okBody("GET", "/after"))
	if spins > 10 {
		t.Fatalf("%d failed accepts logged in 300ms: the loop spins", spins)
	}
}

// TestStaleEventAfterFdReuse: in one epoll_wait batch, an event that
// closes fd X (an upstream's broken chunk aborting its client), the
// listener's event (accept4 returns the lowest free fd: X) and then the
// closed client's own event (its FIN): the stale event is not delivered to
// the new client, which is told apart by the generation its fd was
// registered with (nginx's "instance" bit).
func TestStaleEventAfterFdReuse(t *testing.T) {
	sendBad := make(chan struct{})
	addr := rawUpstream(t, func(conn net.Conn, req *http.Request) bool {
		if req.URL.Path == "/badchunk-held" {
			io.WriteString(conn, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
			<-sendBad
			io.WriteString(conn, "5\r\nhelloX\r\n")
			time.Sleep(time.Second)
			return false
		}
		io.WriteString(conn, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
		return true
	})
	block := make(chan struct{})
	e := start(t, setup{opt: func(o *Options) { o.Upstream = addr; o.Loops = 1 }, decide: func(r *Request) Verdict {
		if string(r.Target) == "/block" {
			<-block // a test's trick: the loop waits while events queue up
			return Verdict{Action: Serve, Serve: func([]byte) ([]byte, bool) { return []byte("HTTP/1.1 204 No Content\r\n\r\n"), false }}
		}
		return Verdict{Action: Forward}
	}})
	a := e.dial(t)
	a.send("GET /badchunk-held HTTP/1.1\r\nHost: h\r\n\r\n")
	readHead(t, a.br)
	fdA := -1
	onLoops(t, e.r, func(l *loop) {
		for c := range l.clients {
			fdA = c.fd
		}
	})
	z := e.dial(t)
	z.send("GET /block HTTP/1.1\r\nHost: h\r\n\r\n")
	testutil.Eventually(t, "the loop blocked", func() bool { return len(e.h.decideCalls()) == 2 })
	close(sendBad) // 1. a's upstream becomes readable: its bad chunk aborts a
	time.Sleep(30 * time.Millisecond)
	b := e.dial(t) // 2. the listener becomes readable
	time.Sleep(30 * time.Millisecond)
	a.Conn.(*net.TCPConn).CloseWrite() // 3. a becomes readable (FIN)
	time.Sleep(30 * time.Millisecond)
	close(block)
	z.response("GET")
	fdB := -1
	port := b.LocalAddr().(*net.TCPAddr).Port
	onLoops(t, e.r, func(l *loop) {
		for c := range l.clients {
			if int(c.remote.Port()) == port {
				fdB = c.fd
			}
		}
	})
	if fdB != fdA {
		t.Skipf("the new client got fd %d, not the closed one's %d: nothing to show", fdB, fdA)
	}
	resp, body := b.get("/x")
	expectStatus(t, resp, body, 200, "ok")
	if resp.Close {
		t.Fatalf("a new client on the reused fd %d got Connection: close on its first response (the old fd's EPOLLRDHUP)", fdB)
	}
}

// TestIdleConnectionReleasesBuffers: a keep-alive client that got a large
// response and sent a large body holds, once idle, neither its output
// buffer nor the request copy kept for a retry, at most one read buffer
// in all: the server returns its buffers to pools too, and idle
// connections may be many.
func TestIdleConnectionReleasesBuffers(t *testing.T) {
	e := start(t, setup{opt: func(o *Options) { o.Loops = 1 }})
	c := e.dial(t)
	resp, body := c.get("/big")
	if resp.StatusCode != 200 || len(body) != len(bigBody()) {
		t.Fatalf("status %d, %d bytes", resp.StatusCode, len(body))
	}
	upload := strings.Repeat("x", 60<<10)
	c.send("POST /p HTTP/1.1\r\nHost: h\r\nContent-Length: " + strconv.Itoa(len(upload)) + "\r\n\r\n" + upload)
	resp, body = c.response("POST")
	expectStatus(t, resp, body, 200, okBody("POST", "/p"))
	retained := 0
	onLoops(t, e.r, func(l *loop) {
		for cl := range l.clients {
			if cl.state == stateRead && len(cl.in) == 0 && len(cl.out) == 0 {
				retained += cap(cl.out) + cap(cl.req) + cap(cl.in)
			}
		}
	})
	if retained > readBufSize {
		t.Fatalf("an idle client holds %d bytes of buffers", retained)
	}
}

func (h countHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h countHandler) Handle(_ context.Context, r slog.Record) error {
	if r.Message == h.msg {
		h.n.Add(1)
	}
	return nil
}
func (h countHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h countHandler) WithGroup(string) slog.Handler      { return h }
