//go:build linux

package relay

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/direktiv/direktiv-authz/internal/rawio"
	"golang.org/x/sys/unix"
)

// Supported reports whether this system has the event loops.
const Supported = true

// Relay serves a listener on event loops.
type Relay struct {
	opt      Options
	lfd      int
	ln       *net.TCPListener
	loops    []*loop
	creds    [][]byte // lower-case Options.TokenHeader and Options.CredentialHeaders
	base     []byte
	ups      atomic.Int64 // upstream connections open or being dialled, over all loops
	queued   atomic.Int64 // clients waiting for an upstream connection, over all loops
	streams  atomic.Int64
	handoffs atomic.Uint64
	wg       sync.WaitGroup
}

// New prepares a relay on ln; Serve starts it, Shutdown closes ln.
func New(ln *net.TCPListener, opt Options) (*Relay, error) {
	if opt.Loops <= 0 {
		opt.Loops = DefaultLoops()
	}
	if opt.MaxConns <= 0 {
		opt.MaxConns = 512
	}
	if opt.DialTimeout <= 0 {
		opt.DialTimeout = 5 * time.Second
	}
	if opt.Log == nil {
		opt.Log = slog.New(slog.DiscardHandler)
	}
	rc, err := ln.SyscallConn()
	if err != nil {
		return nil, err
	}
	r := &Relay{opt: opt, ln: ln, lfd: -1}
	if err := rc.Control(func(fd uintptr) { r.lfd = int(fd) }); err != nil {
		return nil, err
	}
	r.creds = [][]byte{[]byte(lower(opt.TokenHeader))}
	for _, h := range opt.CredentialHeaders {
		if !isCredential([]byte(h), r.creds) {
			r.creds = append(r.creds, []byte(lower(h)))
		}
	}
	r.base = []byte(opt.BasePath)
	for range opt.Loops {
		l, err := newLoop(r)
		if err != nil {
			for _, l := range r.loops {
				l.close()
			}
			return nil, err
		}
		r.loops = append(r.loops, l)
	}
	return r, nil
}

// Serve runs the loops until Shutdown has finished.
func (r *Relay) Serve() error {
	errc := make(chan error, len(r.loops))
	for _, l := range r.loops {
		r.wg.Add(1)
		go func() {
			defer r.wg.Done()
			errc <- l.run()
		}()
	}
	r.wg.Wait()
	close(errc)
	for err := range errc {
		if err != nil {
			return err
		}
	}
	return nil
}

// Handoffs is the number of connections handed to Options.Handoff so far.
func (r *Relay) Handoffs() uint64 { return r.handoffs.Load() }

// Loops is the number of event loops.
func (r *Relay) Loops() int { return len(r.loops) }

// Streams is the number of responses of unknown length being relayed.
func (r *Relay) Streams() int { return int(r.streams.Load()) }

// Shutdown closes the listener, closes idle connections, ends responses of
// unknown length (event streams never end on their own), lets the others
// finish and closes each connection after its response. When ctx ends
// first, the rest are cut off and ctx's error returned. Serve then returns.
func (r *Relay) Shutdown(ctx context.Context) error {
	var acked sync.WaitGroup
	for _, l := range r.loops {
		acked.Add(1)
		if !l.post(func() {
			l.beginShutdown()
			acked.Done()
		}) {
			acked.Done() // that loop has stopped already
		}
	}
	// No loop watches the listener any more: close it, so that new
	// connections are refused rather than left in the backlog.
	acked.Wait()
	r.ln.Close()
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	var err error
wait:
	for {
		open := 0
		for _, l := range r.loops {
			open += int(l.open.Load()) + int(l.calls.Load())
		}
		if open == 0 {
			break
		}
		select {
		case <-ctx.Done():
			err = ctx.Err()
			break wait
		case <-t.C:
		}
	}
	for _, l := range r.loops {
		l.post(func() { l.exit = true })
	}
	r.wg.Wait()
	return err
}

// loop is one event loop. Everything in it but the inbox is touched only by
// its goroutine.
type loop struct {
	r      *Relay
	ep     int
	efd    int // eventfd: wakes the loop for its inbox
	socks  []sock
	gens   []int32 // the generation each fd was registered with (see set)
	gen    int32
	events []unix.EpollEvent
	open   atomic.Int64 // client connections, for Shutdown
	calls  atomic.Int64 // Laters not answered yet, for Shutdown

	mu      sync.Mutex
	stopped bool // the loop has exited: post refuses
	inbox   []func()
	pending []func() // the inbox taken, being run

	clients  map[*client]struct{}
	idle     []*upstream // idle upstream connections, most recent last
	queue    []*client   // waiting for an upstream connection
	wbuf     []byte      // scratch for building requests
	bufs     [][]byte    // free read buffers
	now      int64       // monotonic nanoseconds, read once per wake-up
	swept    int64
	shutting bool
	batching bool     // dispatching a batch of events: see run
	deferred []func() // steps to take when the batch is done
	// acceptPaused is when accepting stopped after an accept error (see
	// listenSock.event); 0: accepting.
	acceptPaused int64
	date         []byte // "Date: ...\r\n" (see appendDate)
	dateAt       int64
	exit         bool
}

// sock is what an fd is in this loop.
type sock interface{ event(ev uint32) }

type listenSock struct{ l *loop }

type wakeSock struct{ l *loop }

const readBufSize = 16 << 10

func newLoop(r *Relay) (*loop, error) {
	ep, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("epoll: %w", err)
	}
	efd, err := unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
	if err != nil {
		unix.Close(ep)
		return nil, fmt.Errorf("eventfd: %w", err)
	}
	l := &loop{r: r, ep: ep, efd: efd, events: make([]unix.EpollEvent, 256), clients: make(map[*client]struct{})}
	gen := l.set(efd, wakeSock{l})
	if err := unix.EpollCtl(ep, unix.EPOLL_CTL_ADD, efd, &unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLET, Fd: int32(efd), Pad: gen}); err != nil {
		l.close()
		return nil, err
	}
	if err := l.watchListener(); err != nil {
		l.close()
		return nil, fmt.Errorf("epoll listener: %w", err)
	}
	return l, nil
}

// watchListener adds the listener; every loop waits on it, and
// EPOLLEXCLUSIVE wakes one of them per connection rather than all.
func (l *loop) watchListener() error {
	gen := l.set(l.r.lfd, listenSock{l})
	return unix.EpollCtl(l.ep, unix.EPOLL_CTL_ADD, l.r.lfd, &unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLEXCLUSIVE, Fd: int32(l.r.lfd), Pad: gen})
}

func (l *loop) close() {
	l.mu.Lock()
	l.stopped = true
	l.inbox = nil
	l.mu.Unlock()
	unix.Close(l.efd)
	unix.Close(l.ep)
}

// set makes fd stand for s and returns the generation to register it with:
// an event carries it, so that an event for a closed fd whose number a new
// socket took in the same batch is not delivered to that socket.
func (l *loop) set(fd int, s sock) int32 {
	for fd >= len(l.socks) {
		l.socks = append(l.socks, nil)
		l.gens = append(l.gens, 0)
	}
	l.gen++
	l.socks[fd] = s
	l.gens[fd] = l.gen
	return l.gen
}

// register adds a connection's fd, edge-triggered, for reading and
// writing.
func (l *loop) register(fd int, s sock) error {
	gen := l.set(fd, s)
	return unix.EpollCtl(l.ep, unix.EPOLL_CTL_ADD, fd, &unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLOUT | unix.EPOLLRDHUP | unix.EPOLLET, Fd: int32(fd), Pad: gen})
}

// post runs fn on the loop; it may be called from any goroutine. It
// reports false, and fn never runs, once the loop has stopped.
func (l *loop) post(fn func()) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.stopped {
		return false
	}
	l.inbox = append(l.inbox, fn)
	if len(l.inbox) == 1 {
		// One wake-up for everything posted until the loop takes the
		// inbox: a batch of answers (Reply.Later) wakes it once.
		var one = [8]byte{1}
		unix.Write(l.efd, one[:])
	}
	return true
}

func (w wakeSock) event(uint32) {
	l := w.l
	var b [8]byte
	unix.Read(l.efd, b[:])
	l.mu.Lock()
	l.pending, l.inbox = l.inbox, l.pending[:0]
	l.mu.Unlock()
	for i, fn := range l.pending {
		fn()
		l.pending[i] = nil
	}
}

// later runs fn when the batch of events being dispatched is done, or now
// outside one: what fn writes (a request to the upstream, a response to a
// client) then goes out with the batch's other writes, see run.
func (l *loop) later(fn func()) {
	if l.batching {
		l.deferred = append(l.deferred, fn)
		return
	}
	fn()
}

func nanotime() int64 { return int64(time.Since(epoch)) }

var epoch = time.Now()

const sweepEvery = int64(100 * time.Millisecond)

func (l *loop) run() error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	defer l.close()
	defer l.closeAll()
	for !l.exit {
		// Under load events are waiting: a poll that cannot block finds
		// them without telling the scheduler about a system call. Only an
		// idle loop blocks, as a system call the scheduler knows of: a
		// loop that blocked each time would have its P taken away by the
		// runtime's monitor thread whenever it waited more than 20 µs, and
		// then wait for a P again on waking (measured: bench/RESULTS.md).
		n, err := rawio.EpollPoll(l.ep, l.events)
		if n == 0 && err == nil {
			n, err = unix.EpollWait(l.ep, l.events, int(sweepEvery/int64(time.Millisecond)))
		}
		if err != nil && !errors.Is(err, unix.EINTR) {
			return fmt.Errorf("epoll_wait: %w", err)
		}
		l.now = nanotime()
		// Writes that events of this batch lead to (requests to the
		// upstream, responses to clients) wait for the batch's end: the
		// peers woken by them then find a batch of work each rather than
		// preempting the loop once per request.
		l.batching = true
		for i := range max(n, 0) {
			ev := &l.events[i]
			if fd := int(ev.Fd); fd < len(l.socks) && l.socks[fd] != nil && l.gens[fd] == ev.Pad {
				l.socks[fd].event(ev.Events)
			}
		}
		l.batching = false
		for i := 0; i < len(l.deferred); i++ {
			l.deferred[i]()
			l.deferred[i] = nil
		}
		l.deferred = l.deferred[:0]
		if l.now-l.swept >= sweepEvery {
			l.swept = l.now
			l.sweep()
		}
	}
	return nil
}

// accept takes the connections waiting on the listener.
func (s listenSock) event(uint32) {
	l := s.l
	for range 64 {
		fd, sa, err := unix.Accept4(l.r.lfd, unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC)
		if err != nil {
			switch {
			case errors.Is(err, unix.EAGAIN), errors.Is(err, unix.EINTR), errors.Is(err, unix.ECONNABORTED):
			default:
				// Out of file descriptors (EMFILE, ENFILE) or memory: the
				// connection stays in the backlog and the level-triggered
				// listener would wake the loop at once, for ever. Stop
				// watching it for a while (see sweep), as fasthttp and
				// net/http back off.
				l.r.opt.Log.Warn("accept failed; not accepting for a second", "err", err)
				unix.EpollCtl(l.ep, unix.EPOLL_CTL_DEL, l.r.lfd, nil)
				l.acceptPaused = l.now
			}
			return
		}
		if l.shutting {
			unix.Close(fd)
			continue
		}
		unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1)
		c := &client{l: l, fd: fd, since: l.now, writable: true}
		c.remote = sockaddrAddr(sa)
		c.ip = []byte(c.remote.Addr().String())
		if err := l.register(fd, c); err != nil {
			l.socks[fd] = nil
			unix.Close(fd)
			continue
		}
		l.clients[c] = struct{}{}
		l.open.Add(1)
	}
}

func sockaddrAddr(sa unix.Sockaddr) netip.AddrPort {
	switch a := sa.(type) {
	case *unix.SockaddrInet4:
		return netip.AddrPortFrom(netip.AddrFrom4(a.Addr), uint16(a.Port))
	case *unix.SockaddrInet6:
		return netip.AddrPortFrom(netip.AddrFrom16(a.Addr).Unmap(), uint16(a.Port))
	}
	return netip.AddrPort{}
}

func (l *loop) getBuf() []byte {
	if n := len(l.bufs); n > 0 {
		b := l.bufs[n-1]
		l.bufs = l.bufs[:n-1]
		return b
	}
	return make([]byte, 0, readBufSize)
}

func (l *loop) putBuf(b []byte) {
	if cap(b) == readBufSize && len(l.bufs) < 1024 {
		l.bufs = append(l.bufs, b[:0])
	}
}

// sweep enforces the timeouts, every sweepEvery.
func (l *loop) sweep() {
	o := &l.r.opt
	if l.acceptPaused != 0 && !l.shutting && l.now-l.acceptPaused >= int64(time.Second) {
		l.acceptPaused = 0
		if err := l.watchListener(); err != nil {
			l.r.opt.Log.Warn("accepting again failed", "err", err)
		}
	}
	for c := range l.clients {
		switch c.state {
		case stateRead:
			if len(c.in) == 0 && len(c.out) == 0 && o.IdleTimeout > 0 && l.now-c.since > int64(o.IdleTimeout) {
				c.close()
			} else if len(c.in) > 0 && o.ReadTimeout > 0 && l.now-c.since > int64(o.ReadTimeout) {
				c.close()
			}
		case stateQueued:
			if !c.dialing && l.now-c.since > int64(o.DialTimeout) {
				l.unqueue(c)
				c.fail(Busy, fmt.Errorf("no upstream connection free within %s", o.DialTimeout))
			}
		case stateExchange:
			if u := c.up; u != nil && !u.started && o.Timeout > 0 && u.written > 0 && l.now-u.written > int64(o.Timeout) {
				u.close()
				c.up = nil
				c.fail(Timeout, errors.New("no response within the upstream timeout"))
			}
		}
	}
}

func (l *loop) beginShutdown() {
	l.shutting = true
	if l.acceptPaused == 0 {
		unix.EpollCtl(l.ep, unix.EPOLL_CTL_DEL, l.r.lfd, nil)
	}
	for c := range l.clients {
		switch {
		case c.state == stateRead && len(c.in) == 0 && len(c.out) == 0:
			c.close()
		case c.state == stateRead && len(c.in) == 0:
			c.closing = true // after the response being written
			// A request partly read is answered, with Connection: close.
		case c.state == stateRelay && c.up != nil && c.up.resp.frame != byLength && c.up.resp.frame != noBody:
			// An event stream: its client sees the connection close and
			// reconnects, to another replica.
			c.up.close()
			c.close()
		}
	}
}

func (l *loop) closeAll() {
	for c := range l.clients {
		if c.up != nil {
			c.up.close()
		}
		c.close()
	}
	for _, u := range l.idle {
		u.close()
	}
	l.idle = nil
}

// handoff gives c's connection, with what has been read of it, to
// Options.Handoff. It must be at a request boundary: nothing in flight.
func (l *loop) handoff(c *client) {
	l.r.handoffs.Add(1)
	unix.EpollCtl(l.ep, unix.EPOLL_CTL_DEL, c.fd, nil)
	l.socks[c.fd] = nil
	delete(l.clients, c)
	l.open.Add(-1)
	f := os.NewFile(uintptr(c.fd), "client")
	nc, err := net.FileConn(f) // a dup of the fd, in Go's netpoller
	f.Close()
	c.fd = -1
	if err != nil {
		l.r.opt.Log.Warn("handing a connection to the server failed", "err", err)
		c.release()
		return
	}
	pending := append([]byte(nil), c.in...)
	c.release()
	l.r.opt.Handoff(&prefixConn{Conn: nc, pending: pending})
}

// prefixConn is a connection whose first bytes were already read.
type prefixConn struct {
	net.Conn
	pending []byte
}

func (c *prefixConn) Read(p []byte) (int, error) {
	if len(c.pending) > 0 {
		n := copy(p, c.pending)
		c.pending = c.pending[n:]
		return n, nil
	}
	return c.Conn.Read(p)
}
