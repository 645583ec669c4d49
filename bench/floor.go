//go:build linux

package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/netip"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/direktiv/direktiv-authz/internal/rawio"
	"golang.org/x/sys/unix"
)

// floor is a reference relay: the least work any HTTP proxy that does not
// coalesce requests must do. Each client connection gets an upstream
// connection of its own and bytes are copied both ways unchanged, with no
// HTTP parsing at all, on event loops built like internal/relay's (one
// locked goroutine and one epoll instance each, raw reads and writes). The
// compare run sends the same load through it as through the sidecar: its
// throughput is the most a proxy can reach on the machine.
type floor struct {
	lfd      int // a non-blocking duplicate of the listener's fd, in every loop's epoll
	upstream netip.AddrPort
	loops    []*floorLoop
	// stalls counts writes that could not finish at once, whose rest
	// waited for the sink to drain (back-pressure). Only the slow path
	// touches it.
	stalls atomic.Int64
}

// floorBufSize is the size of a loop's read buffer and the most a
// direction keeps unwritten.
const floorBufSize = 64 << 10

// floorLoop is one event loop. Everything in it is touched only by its
// goroutine, but for efd, which serve writes to.
type floorLoop struct {
	f   *floor
	ep  int
	efd int // eventfd: serve wakes the loop through it to stop
	// upstream and family are the loop's own: unix.Connect writes into
	// the Sockaddr it is given.
	upstream unix.Sockaddr
	family   int
	buf      []byte // what each read reads into, shared by the loop's connections
	events   []unix.EpollEvent
	ends     []*floorEnd // by fd
	gens     []int32     // the generation each fd was registered with (see set)
	gen      int32
	conns    []*floorConn // open, each at its idx
	free     []*floorConn // closed, for reuse with their pending buffers
	// pausedAt is when accepting stopped after an accept error; zero:
	// accepting.
	pausedAt time.Time
}

// floorConn is a client connection and its upstream connection.
type floorConn struct {
	client, upstream floorEnd
	up, down         floorPipe // up: client to upstream; down: upstream to client
	connecting       bool      // the upstream connect has not completed
	open             bool
	idx              int
}

// floorEnd is one of a connection's sockets.
type floorEnd struct {
	c  *floorConn
	fd int
	// hup: the peer has shut its side down (EPOLLRDHUP or EPOLLHUP): reads
	// go on past a short read, to the EOF, as no further edge may come.
	hup bool
	in  *floorPipe // the direction reading from this socket
	out *floorPipe // the direction writing to it
}

// floorPipe is one direction of a connection.
type floorPipe struct {
	src, dst *floorEnd
	pending  []byte // read, not yet written; while any, src is not read
	store    []byte // pending's backing array, floorBufSize, kept for reuse
	eof      bool   // src reached its end
	shut     bool   // dst was shut down for writing after the EOF
}

// newFloor prepares a relay with the given number of loops from ln to
// upstream (host:port); serve runs it. ln stays the caller's to close.
func newFloor(ln *net.TCPListener, upstream string, loops int) (*floor, error) {
	if loops < 1 {
		return nil, fmt.Errorf("floor: %d loops; at least 1 is needed", loops)
	}
	addr, err := net.ResolveTCPAddr("tcp", upstream)
	if err != nil {
		return nil, fmt.Errorf("floor: upstream %q: %w", upstream, err)
	}
	ap := addr.AddrPort()
	if !ap.Addr().IsValid() {
		return nil, fmt.Errorf("floor: upstream %q has no host; give host:port", upstream)
	}
	f := &floor{lfd: -1, upstream: netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())}
	rc, err := ln.SyscallConn()
	if err != nil {
		return nil, fmt.Errorf("floor: listener: %w", err)
	}
	var dupErr error
	if err := rc.Control(func(fd uintptr) { f.lfd, dupErr = unix.FcntlInt(fd, unix.F_DUPFD_CLOEXEC, 0) }); err != nil {
		return nil, fmt.Errorf("floor: listener: %w", err)
	}
	if dupErr != nil {
		f.lfd = -1
		return nil, fmt.Errorf("floor: duplicating the listener: %w", dupErr)
	}
	if err := unix.SetNonblock(f.lfd, true); err != nil {
		f.close()
		return nil, fmt.Errorf("floor: listener: %w", err)
	}
	for range loops {
		l, err := newFloorLoop(f)
		if err != nil {
			f.close()
			return nil, err
		}
		f.loops = append(f.loops, l)
	}
	return f, nil
}

func newFloorLoop(f *floor) (*floorLoop, error) {
	ep, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("floor: epoll: %w", err)
	}
	efd, err := unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
	if err != nil {
		unix.Close(ep)
		return nil, fmt.Errorf("floor: eventfd: %w", err)
	}
	l := &floorLoop{f: f, ep: ep, efd: efd, buf: make([]byte, floorBufSize), events: make([]unix.EpollEvent, 256)}
	if ip := f.upstream.Addr(); ip.Is4() {
		l.family, l.upstream = unix.AF_INET, &unix.SockaddrInet4{Port: int(f.upstream.Port()), Addr: ip.As4()}
	} else {
		l.family, l.upstream = unix.AF_INET6, &unix.SockaddrInet6{Port: int(f.upstream.Port()), Addr: ip.As16()}
	}
	err = unix.EpollCtl(ep, unix.EPOLL_CTL_ADD, efd, &unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(efd)})
	if err == nil {
		err = l.watchListener()
	}
	if err != nil {
		unix.Close(efd)
		unix.Close(ep)
		return nil, fmt.Errorf("floor: epoll_ctl: %w", err)
	}
	return l, nil
}

// watchListener adds the listener, level-triggered: every loop waits on
// it, and EPOLLEXCLUSIVE wakes one of them per connection rather than all.
func (l *floorLoop) watchListener() error {
	return unix.EpollCtl(l.ep, unix.EPOLL_CTL_ADD, l.f.lfd, &unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLEXCLUSIVE, Fd: int32(l.f.lfd)})
}

// serve runs the loops until ctx is done, then closes every connection,
// the loops and the listener's duplicate, and returns nil; or a loop's
// error if one fails first. It is called once.
func (f *floor) serve(ctx context.Context) error {
	errc := make(chan error, len(f.loops))
	var wg sync.WaitGroup
	for _, l := range f.loops {
		wg.Go(func() { errc <- l.run() })
	}
	var err error
	select {
	case <-ctx.Done():
	case err = <-errc: // loops return only when woken, so this is a failure
	}
	one := [8]byte{1}
	for _, l := range f.loops {
		unix.Write(l.efd, one[:])
	}
	wg.Wait()
	f.close()
	return err
}

func (f *floor) close() {
	for _, l := range f.loops {
		unix.Close(l.efd)
		unix.Close(l.ep)
	}
	f.loops = nil
	if f.lfd >= 0 {
		unix.Close(f.lfd)
		f.lfd = -1
	}
}

func (l *floorLoop) run() error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	defer l.closeAll()
	for {
		// A poll that cannot block finds the events waiting under load
		// without telling the scheduler of a system call; only an idle
		// loop blocks, as internal/relay's loops do.
		n, err := rawio.EpollPoll(l.ep, l.events)
		if n == 0 && err == nil {
			timeout := -1
			if !l.pausedAt.IsZero() {
				timeout = 1000
			}
			n, err = unix.EpollWait(l.ep, l.events, timeout)
		}
		if err != nil {
			if errors.Is(err, unix.EINTR) {
				continue
			}
			return fmt.Errorf("floor: epoll_wait: %w", err)
		}
		if !l.pausedAt.IsZero() && time.Since(l.pausedAt) >= time.Second {
			l.pausedAt = time.Time{}
			if err := l.watchListener(); err != nil {
				return fmt.Errorf("floor: watching the listener again: %w", err)
			}
		}
		for i := range n {
			ev := &l.events[i]
			switch fd := int(ev.Fd); {
			case fd == l.efd:
				return nil
			case fd == l.f.lfd:
				l.accept()
			case fd < len(l.ends) && l.ends[fd] != nil && l.gens[fd] == ev.Pad:
				l.event(l.ends[fd], ev.Events)
			}
		}
	}
}

// accept takes the connections waiting on the listener and starts
// connecting each upstream.
func (l *floorLoop) accept() {
	for {
		fd, _, err := unix.Accept4(l.f.lfd, unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC)
		switch {
		case err == nil:
			l.open(fd)
		case errors.Is(err, unix.EAGAIN):
			return
		case errors.Is(err, unix.EINTR), errors.Is(err, unix.ECONNABORTED):
		default:
			// Out of file descriptors or memory: the connection stays in
			// the backlog and the level-triggered listener would wake the
			// loop at once, for ever. Stop watching it for a second.
			unix.EpollCtl(l.ep, unix.EPOLL_CTL_DEL, l.f.lfd, nil)
			l.pausedAt = time.Now()
			return
		}
	}
}

// open pairs an accepted client socket with a new upstream socket.
func (l *floorLoop) open(cfd int) {
	unix.SetsockoptInt(cfd, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1)
	ufd, err := unix.Socket(l.family, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		unix.Close(cfd)
		return
	}
	unix.SetsockoptInt(ufd, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1)
	c := l.newConn(cfd, ufd)
	switch err := unix.Connect(ufd, l.upstream); {
	case err == nil:
	case errors.Is(err, unix.EINPROGRESS), errors.Is(err, unix.EINTR):
		c.connecting = true // completes with EPOLLOUT on ufd
	default:
		l.close(c)
		return
	}
	if l.register(&c.client) != nil || l.register(&c.upstream) != nil {
		l.close(c)
	}
}

func (l *floorLoop) newConn(cfd, ufd int) *floorConn {
	var c *floorConn
	if n := len(l.free); n > 0 {
		c = l.free[n-1]
		l.free[n-1] = nil
		l.free = l.free[:n-1]
	} else {
		c = &floorConn{}
		c.client = floorEnd{c: c, in: &c.up, out: &c.down}
		c.upstream = floorEnd{c: c, in: &c.down, out: &c.up}
		c.up.src, c.up.dst = &c.client, &c.upstream
		c.down.src, c.down.dst = &c.upstream, &c.client
	}
	c.client.fd, c.upstream.fd = cfd, ufd
	c.open = true
	c.idx = len(l.conns)
	l.conns = append(l.conns, c)
	l.set(cfd, &c.client)
	l.set(ufd, &c.upstream)
	return c
}

// set makes fd stand for e under a new generation, which its events
// carry: an event for a closed fd whose number a new socket took in the
// same batch is not delivered to that socket.
func (l *floorLoop) set(fd int, e *floorEnd) {
	for fd >= len(l.ends) {
		l.ends = append(l.ends, nil)
		l.gens = append(l.gens, 0)
	}
	l.gen++
	l.ends[fd] = e
	l.gens[fd] = l.gen
}

// register adds a socket, edge-triggered, for reading and writing.
func (l *floorLoop) register(e *floorEnd) error {
	return unix.EpollCtl(l.ep, unix.EPOLL_CTL_ADD, e.fd, &unix.EpollEvent{
		Events: unix.EPOLLIN | unix.EPOLLOUT | unix.EPOLLRDHUP | unix.EPOLLET,
		Fd:     int32(e.fd),
		Pad:    l.gens[e.fd],
	})
}

// close closes both sockets of c and keeps c for reuse.
func (l *floorLoop) close(c *floorConn) {
	if !c.open {
		return
	}
	c.open = false
	for _, e := range [...]*floorEnd{&c.client, &c.upstream} {
		l.ends[e.fd] = nil
		unix.Close(e.fd)
		e.fd = -1
		e.hup = false
	}
	for _, p := range [...]*floorPipe{&c.up, &c.down} {
		p.pending = nil
		p.eof, p.shut = false, false
	}
	c.connecting = false
	last := l.conns[len(l.conns)-1]
	l.conns[c.idx], last.idx = last, c.idx
	l.conns[len(l.conns)-1] = nil
	l.conns = l.conns[:len(l.conns)-1]
	if len(l.free) < 1024 {
		l.free = append(l.free, c)
	}
}

func (l *floorLoop) closeAll() {
	for len(l.conns) > 0 {
		l.close(l.conns[len(l.conns)-1])
	}
}

// event handles what epoll reports of one socket. A direction whose rest
// waits (pending) is moved on by its sink's EPOLLOUT only, not by its
// source's EPOLLIN.
func (l *floorLoop) event(e *floorEnd, ev uint32) {
	c := e.c
	if ev&unix.EPOLLERR != 0 {
		// A reset can come with data still unread (an upstream that
		// answered and closed with a request part unread resets): what
		// is there is passed on before both sides close.
		if !c.connecting && len(e.in.pending) == 0 {
			e.hup = true
			l.move(c, e.in)
		}
		l.close(c)
		return
	}
	// EPOLLHUP and EPOLLRDHUP leave data to be read before the EOF (the
	// upstream's last answer, after the client's half-close was passed
	// on): the reads find the end and the writes any failure.
	if ev&(unix.EPOLLRDHUP|unix.EPOLLHUP) != 0 {
		e.hup = true
	}
	readable := ev&(unix.EPOLLIN|unix.EPOLLRDHUP|unix.EPOLLHUP) != 0
	if c.connecting {
		switch {
		case e == &c.upstream && ev&(unix.EPOLLOUT|unix.EPOLLHUP) != 0:
			l.connected(c, readable)
		case e == &c.client && readable && len(c.up.pending) == 0:
			l.move(c, &c.up) // into pending, for after the connect
		}
		return
	}
	if readable && len(e.in.pending) == 0 {
		l.move(c, e.in)
	}
	if ev&unix.EPOLLOUT != 0 && c.open && len(e.out.pending) > 0 {
		l.move(c, e.out)
	}
}

// connected finishes c's upstream connect: on failure it closes c, on
// success it sends what the client sent meanwhile.
func (l *floorLoop) connected(c *floorConn, readable bool) {
	if soErr, err := unix.GetsockoptInt(c.upstream.fd, unix.SOL_SOCKET, unix.SO_ERROR); err != nil || soErr != 0 {
		l.close(c)
		return
	}
	c.connecting = false
	l.move(c, &c.up)
	if c.open && readable {
		l.move(c, &c.down)
	}
}

// move writes p's pending bytes, then reads p's source and writes what it
// read at once, until the source has no more, the sink is full (the rest
// pending), or the source ended; after its EOF, with nothing pending, it
// passes the half-close on and closes c once both directions have ended.
func (l *floorLoop) move(c *floorConn, p *floorPipe) {
	if len(p.pending) > 0 && (c.connecting || !l.flush(c, p)) {
		return
	}
	for !p.eof {
		n, errno := rawio.Read(p.src.fd, l.buf)
		switch {
		case errno == unix.EINTR:
		case errno == unix.EAGAIN:
			return
		case errno != 0:
			l.close(c)
			return
		case n == 0:
			p.eof = true
		default:
			if !l.send(c, p, l.buf[:n]) {
				return
			}
			// A short read emptied the socket: the next data brings a new
			// edge. After the peer's shutdown none may come, so read on.
			if n < len(l.buf) && !p.src.hup {
				return
			}
		}
	}
	if c.connecting || p.shut {
		return
	}
	p.shut = true
	if unix.Shutdown(p.dst.fd, unix.SHUT_WR) != nil || (c.up.shut && c.down.shut) {
		l.close(c)
	}
}

// send writes b to p's sink and reports whether all of it went. The rest
// (all of it while connecting) is kept in p.pending.
func (l *floorLoop) send(c *floorConn, p *floorPipe, b []byte) bool {
	if !c.connecting {
		n, errno := rawio.Write(p.dst.fd, b)
		for errno == unix.EINTR {
			n, errno = rawio.Write(p.dst.fd, b)
		}
		switch {
		case errno == 0:
			b = b[n:]
			if len(b) == 0 {
				return true
			}
		case errno != unix.EAGAIN:
			l.close(c)
			return false
		}
		l.f.stalls.Add(1)
	}
	if p.store == nil {
		p.store = make([]byte, 0, floorBufSize)
	}
	p.pending = append(p.store[:0], b...)
	return false
}

// flush writes p's pending bytes and reports whether they all went. A
// short write stops it: the socket is full and its EPOLLOUT edge will
// come.
func (l *floorLoop) flush(c *floorConn, p *floorPipe) bool {
	n, errno := rawio.Write(p.dst.fd, p.pending)
	for errno == unix.EINTR {
		n, errno = rawio.Write(p.dst.fd, p.pending)
	}
	switch {
	case errno == unix.EAGAIN:
		return false
	case errno != 0:
		l.close(c)
		return false
	}
	p.pending = p.pending[n:]
	return len(p.pending) == 0
}

// runFloor is the "floor" subcommand: the reference relay on its own, for
// the compare run to send load through.
func runFloor(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("bench floor", flag.ContinueOnError)
	fs.SetOutput(stderr)
	listen := fs.String("listen", "127.0.0.1:8081", "address to serve on (loopback only)")
	upstream := fs.String("upstream", "127.0.0.1:8080", "host:port to relay each connection to (loopback only)")
	loops := fs.Int("loops", max(1, runtime.GOMAXPROCS(0)/2), "event loops (the sidecar's default: one for every two of GOMAXPROCS)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("floor: unexpected argument %q", fs.Arg(0))
	}
	if err := requireLoopback(*listen); err != nil {
		return fmt.Errorf("floor: -listen: %w", err)
	}
	if err := requireLoopback(*upstream); err != nil {
		return fmt.Errorf("floor: -upstream: %w", err)
	}
	if *loops < 1 {
		return fmt.Errorf("floor: -loops %d: at least 1 is needed", *loops)
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return fmt.Errorf("floor: -listen: %w", err)
	}
	defer ln.Close()
	f, err := newFloor(ln.(*net.TCPListener), *upstream, *loops)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "floor relay listening on %s\n", ln.Addr())
	return f.serve(ctx)
}
