//go:build linux

package relay

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/direktiv/direktiv-authz/internal/rawio"
	"golang.org/x/sys/unix"
)

// errNoBackend fails calls on a relay without BackendOptions.Addr.
var errNoBackend = errors.New("no backend configured")

// maxReply bounds one reply: more is a protocol error.
const maxReply = 64 << 20

// waiter is one call in flight for a client.
type waiter struct {
	c      *client
	call   *Call
	at     int64 // when it was sent first
	total  int   // the request's bytes in c.in
	end    int   // where its command ends in backend.out, until written
	resent bool  // written on a connection that broke, and sent again
}

// backend is a loop's connection to the backend.
type backend struct {
	l        *loop
	fd       int // -1: none
	dialing  bool
	out      []byte // to be written
	woff     int
	in       []byte
	skip     int       // replies to Init still to come
	calls    []*waiter // written or in out, oldest first
	unsent   int       // how many of the last calls are not written whole
	flushing bool      // a flush waits for the batch's end
	writable bool
	readable bool
}

// call sends w's command, connecting first if need be.
func (b *backend) call(w *waiter) {
	l := b.l
	if l.r.opt.Backend.Addr == "" {
		b.deliver(w, nil, errNoBackend)
		return
	}
	b.calls = append(b.calls, w)
	b.out = append(b.out, w.call.Cmd...)
	w.end = len(b.out)
	b.unsent++
	if b.fd < 0 {
		b.dial()
		return
	}
	if !b.flushing {
		b.flushing = true
		l.later(b.flush)
	}
}

func (b *backend) dial() {
	if b.dialing {
		return
	}
	b.dialing = true
	l := b.l
	o := l.r.opt.Backend
	go func() {
		fd, err := dialTCP(o.Addr, o.DialTimeout)
		if !l.post(func() { b.dialed(fd, err) }) && err == nil {
			unix.Close(fd) // the loop stopped meanwhile
		}
	}()
}

func (b *backend) dialed(fd int, err error) {
	b.dialing = false
	if err == nil {
		if b.l.exit {
			unix.Close(fd)
			return
		}
		err = b.l.register(fd, b)
		if err != nil {
			b.l.socks[fd] = nil
			unix.Close(fd)
		}
	}
	if err != nil {
		b.failAll(fmt.Errorf("connecting to redis %s: %w", b.l.r.opt.Backend.Addr, err), false)
		return
	}
	b.fd, b.writable, b.readable = fd, true, false
	var init []byte
	for _, c := range b.l.r.opt.Backend.Init {
		init = append(init, c...)
	}
	b.skip = len(b.l.r.opt.Backend.Init)
	b.out = append(init, b.out...) // nothing was written: woff is 0
	for _, w := range b.calls[len(b.calls)-b.unsent:] {
		w.end += len(init)
	}
	b.flush()
}

func (b *backend) event(ev uint32) {
	if ev&(unix.EPOLLIN|unix.EPOLLRDHUP|unix.EPOLLHUP|unix.EPOLLERR) != 0 {
		b.readable = true
	}
	if ev&(unix.EPOLLOUT|unix.EPOLLHUP|unix.EPOLLERR) != 0 {
		b.writable = true
	}
	if b.fd < 0 {
		return
	}
	if b.writable && b.woff < len(b.out) {
		b.flush()
	}
	if b.fd >= 0 && b.readable {
		b.read()
	}
}

// flush writes out.
func (b *backend) flush() {
	b.flushing = false
	for b.fd >= 0 && b.woff < len(b.out) {
		if !b.writable {
			return
		}
		n, e := rawio.Write(b.fd, b.out[b.woff:])
		switch {
		case e == unix.EAGAIN:
			b.writable = false
			return
		case e == unix.EINTR:
			continue
		case e != 0:
			b.broken(fmt.Errorf("writing to redis: %w", e))
			return
		}
		b.woff += n
		for b.unsent > 0 && b.calls[len(b.calls)-b.unsent].end <= b.woff {
			b.unsent--
		}
	}
	if b.fd >= 0 && b.woff == len(b.out) {
		b.out, b.woff = b.out[:0], 0
	}
}

// read reads and hands out the replies that are in.
func (b *backend) read() {
	for b.fd >= 0 && b.readable {
		if len(b.in) == cap(b.in) {
			if cap(b.in) >= maxReply {
				b.broken(errors.New("redis reply too large"))
				return
			}
			b.in = append(b.in, make([]byte, max(16<<10, cap(b.in)))...)[:len(b.in)]
		}
		n, e := rawio.Read(b.fd, b.in[len(b.in):cap(b.in)])
		switch {
		case e == unix.EAGAIN:
			b.readable = false
			return
		case e == unix.EINTR:
			continue
		case e != 0:
			b.broken(fmt.Errorf("reading from redis: %w", e))
			return
		case n == 0:
			b.broken(errors.New("redis closed the connection"))
			return
		}
		b.in = b.in[:len(b.in)+n]
		if !b.replies() {
			return
		}
	}
}

// replies hands out every whole reply in b.in; it reports false when the
// connection failed.
func (b *backend) replies() bool {
	off := 0
	defer func() {
		if b.fd >= 0 {
			b.in = b.in[:copy(b.in, b.in[off:])]
		}
	}()
	for off < len(b.in) {
		v, n, err := parseReply(b.in[off:], 0)
		if err != nil {
			b.broken(fmt.Errorf("redis reply: %w", err))
			return false
		}
		if n == 0 {
			return true
		}
		off += n
		rerr, isErr := v.(ReplyError)
		if b.skip > 0 {
			b.skip--
			if isErr {
				b.failAll(fmt.Errorf("redis refused the connection's set-up: %w", rerr), false)
				return false
			}
			continue
		}
		if b.unsent == len(b.calls) { // none, or none written
			b.broken(errors.New("redis sent a reply to no command"))
			return false
		}
		w := b.calls[0]
		b.calls[0] = nil
		b.calls = b.calls[1:]
		if isErr {
			b.deliver(w, nil, rerr)
		} else {
			b.deliver(w, v, nil)
		}
	}
	return true
}

// broken closes a connection that failed and sends what was in flight on
// it once more.
func (b *backend) broken(err error) { b.failAll(err, true) }

// failAll closes the connection and fails its calls with err, or, with
// resend, sends again on a new connection those not written whole yet and
// those written on a broken connection only once.
func (b *backend) failAll(err error, resend bool) {
	b.close()
	calls, written := b.calls, len(b.calls)-b.unsent
	b.calls, b.unsent = nil, 0
	b.out, b.woff, b.in, b.skip = nil, 0, nil, 0
	for i, w := range calls {
		switch {
		case resend && i >= written:
			b.call(w)
		case resend && !w.resent:
			w.resent = true
			b.call(w)
		default:
			b.deliver(w, nil, err)
		}
	}
}

// deliver runs w's Done and answers its client.
func (b *backend) deliver(w *waiter, v any, err error) {
	b.l.calls.Add(-1)
	rep := w.call.Done(v, err)
	c := w.c
	if c.fd < 0 || c.pend != w {
		// The client left. A further Call (the create again, as EVAL)
		// still goes, so that what the first one meant is done and its
		// Done runs; its response is dropped.
		if rep.Call != nil && c.pend == w {
			w2 := &waiter{c: c, call: rep.Call, at: b.l.now, total: w.total}
			b.l.calls.Add(1)
			c.pend = w2
			b.call(w2)
		}
		return
	}
	c.pend = nil
	c.state = stateRead
	c.reply(rep, w.total, false)
}

// sweep fails the calls when the oldest has waited past the timeout.
func (b *backend) sweep() {
	if len(b.calls) == 0 {
		return
	}
	t := b.l.r.opt.Backend.Timeout
	if b.l.now-b.calls[0].at > int64(t) {
		b.failAll(fmt.Errorf("redis did not answer within %s", t), false)
	}
}

func (b *backend) close() {
	if b.fd >= 0 {
		b.l.socks[b.fd] = nil
		unix.Close(b.fd)
		b.fd = -1
	}
}

// dialTCP connects to addr and returns a non-blocking fd of the
// connection's own; it runs on a goroutine of its own, as resolving the
// host may block.
func dialTCP(addr string, timeout time.Duration) (int, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	d := net.Dialer{KeepAlive: 30 * time.Second}
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return -1, err
	}
	defer conn.Close()
	rc, err := conn.(*net.TCPConn).SyscallConn()
	if err != nil {
		return -1, err
	}
	nfd := -1
	var derr error
	if err := rc.Control(func(fd uintptr) { nfd, derr = unix.FcntlInt(fd, unix.F_DUPFD_CLOEXEC, 0) }); err != nil {
		return -1, err
	}
	if derr != nil {
		return -1, fmt.Errorf("dup: %w", derr)
	}
	return nfd, nil
}

// errProtocol is a reply that is not RESP2.
var errProtocol = errors.New("malformed reply")

// parseReply parses the first RESP2 reply in b: the value (a ReplyError for
// an error reply) and its length, 0 when b holds only part of it.
func parseReply(b []byte, depth int) (any, int, error) {
	if len(b) == 0 {
		return nil, 0, nil
	}
	end := -1
	for i := 1; i+1 < len(b); i++ {
		if b[i] == '\r' {
			if b[i+1] != '\n' {
				return nil, 0, errProtocol
			}
			end = i
			break
		}
	}
	if end < 0 {
		if len(b) > 64<<10 {
			return nil, 0, errProtocol // a line this long is no reply of a command we send
		}
		return nil, 0, nil
	}
	line, n := b[1:end], end+2
	switch b[0] {
	case '+':
		return string(line), n, nil
	case '-':
		return ReplyError(line), n, nil
	case ':':
		v, err := strconv.ParseInt(string(line), 10, 64)
		if err != nil {
			return nil, 0, errProtocol
		}
		return v, n, nil
	case '$':
		size, err := strconv.Atoi(string(line))
		switch {
		case err != nil || size < -1 || size > maxReply:
			return nil, 0, errProtocol
		case size == -1:
			return nil, n, nil
		case len(b) < n+size+2:
			return nil, 0, nil
		case b[n+size] != '\r' || b[n+size+1] != '\n':
			return nil, 0, errProtocol
		}
		return string(b[n : n+size]), n + size + 2, nil
	case '*':
		count, err := strconv.Atoi(string(line))
		switch {
		case err != nil || count < -1 || count > maxReply || depth >= 8:
			return nil, 0, errProtocol
		case count == -1:
			return nil, n, nil
		}
		arr := make([]any, 0, min(count, 64))
		for range count {
			v, m, err := parseReply(b[n:], depth+1)
			if err != nil || m == 0 {
				return nil, 0, err
			}
			arr = append(arr, v)
			n += m
		}
		return arr, n, nil
	}
	return nil, 0, errProtocol
}
