//go:build linux

package relay

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"time"

	"github.com/direktiv/direktiv-authz/internal/rawio"
	"golang.org/x/sys/unix"
)

// A client connection goes stateRead → (stateWait →) (stateQueued →)
// stateExchange → stateRelay → stateRead, or leaves the relay (handoff,
// close) at a request boundary.
const (
	stateRead     = iota // reading and parsing the next request
	stateWait            // Verdict.Wait, Serve or a Reply.Later is running
	stateQueued          // waiting for an upstream connection
	stateExchange        // the request is going upstream; no response head yet
	stateRelay           // the response head went out; relaying the body
)

// highWater bounds what is queued for a client: past it the relay stops
// reading the upstream until the client has taken it.
const highWater = 64 << 10

type client struct {
	l        *loop
	fd       int
	ip       []byte // the client's address, as X-Forwarded-For gets it
	remote   netip.AddrPort
	in       []byte // read, not yet consumed
	out      []byte // to be written
	woff     int    // bytes of out written
	state    uint8
	since    int64 // when the current request (or idle wait) began
	readable bool
	writable bool
	eof      bool // the client shut down its side
	closing  bool // close once out is written

	parsed   request
	view     Request  // what Decide is shown (reused)
	exchange Exchange // what Done is shown (reused)
	waited   bool     // Decide asked for a Wait on this request already
	answers  bool     // that Wait was for a request to be answered (Verdict.Answers)
	served   uint64   // requests of this connection forwarded or answered so far
	note     any      // what that Wait returned
	pend     *later   // the Later whose answer is awaited (stateWait)

	// The exchange in flight.
	up       *upstream
	req      []byte // the request as sent upstream, kept for one retry
	method   []byte
	target   []byte
	label    uint8 // the Forward verdict's Label
	isHead   bool
	idem     bool // safe to send again
	retried  bool
	dialing  bool // a dial for this client is under way
	closeReq bool // the client asked for Connection: close
}

func (c *client) event(ev uint32) {
	if ev&(unix.EPOLLIN|unix.EPOLLRDHUP|unix.EPOLLHUP|unix.EPOLLERR) != 0 {
		c.readable = true
	}
	if ev&(unix.EPOLLOUT|unix.EPOLLHUP|unix.EPOLLERR) != 0 {
		c.writable = true
	}
	broken := ev&(unix.EPOLLHUP|unix.EPOLLERR) != 0
	kept := c.pend != nil || (c.state == stateWait && c.answers)
	if (broken || ev&unix.EPOLLRDHUP != 0) && c.state != stateRead && (broken || !kept) && !c.pipelined(ev) {
		// The client went away (or shut down its side, which is what a
		// client that gives up does) while a request was in flight: so
		// does the exchange, and the upstream sees its connection close,
		// as with nginx's default proxy_ignore_client_abort off. A request
		// the handler answers itself is the exception (a Later under way,
		// a Wait before an Answer: a mint): its answer is written when it
		// comes, as the server writes it, so that a client that only shut
		// down its sending side gets it (the secret, shown once); one that
		// closed has it refused by its socket.
		c.close()
		return
	}
	if ev&unix.EPOLLRDHUP != 0 {
		c.eof = true
	}
	c.step()
}

// later is a request whose answer comes later (Reply.Later).
type later struct {
	c     *client
	total int // the request's bytes in c.in
}

// answer takes the Reply to the request, from any goroutine, to the loop.
func (p *later) answer(rep Reply) {
	l := p.c.l
	if !l.post(func() { l.calls.Add(-1); p.deliver(rep) }) {
		l.calls.Add(-1) // the loop has stopped: nobody to answer
	}
}

// deliver writes rep for the request, unless its client has gone.
func (p *later) deliver(rep Reply) {
	c := p.c
	if c.fd < 0 || c.pend != p {
		return
	}
	c.pend = nil
	c.state = stateRead
	c.reply(rep, p.total, false)
}

// pipelined reports whether a client that shut down its sending side has
// sent more requests before doing so (read or not yet read): those are
// answered, as nginx and the server do, and the connection closes after.
// A reset or error is never that.
func (c *client) pipelined(ev uint32) bool {
	if ev&(unix.EPOLLHUP|unix.EPOLLERR) != 0 {
		return false
	}
	extra := len(c.in)
	if c.state == stateWait {
		extra -= c.parsed.head + c.parsed.length // the request waited on
	}
	if extra > 0 {
		return true
	}
	var b [1]byte
	n, _, err := unix.Recvfrom(c.fd, b[:], unix.MSG_PEEK|unix.MSG_DONTWAIT)
	return err == nil && n > 0
}

// step makes what progress it can.
func (c *client) step() {
	if c.fd < 0 {
		return
	}
	if len(c.out) > 0 && !c.flush() {
		return
	}
	switch c.state {
	case stateRead:
		if c.closing {
			c.close()
			return
		}
		c.readRequest()
	case stateRelay:
		if u := c.up; u != nil {
			u.step()
		}
	}
}

// flush writes out; it reports whether all of it went.
func (c *client) flush() bool {
	for c.woff < len(c.out) {
		if !c.writable {
			return false
		}
		n, e := rawio.Write(c.fd, c.out[c.woff:])
		switch {
		case e == unix.EAGAIN:
			c.writable = false
			return false
		case e == unix.EINTR:
			continue
		case e != 0:
			c.close()
			return false
		}
		c.woff += n
		if c.woff < len(c.out) {
			c.writable = false // a short write: the socket buffer is full
			return false
		}
	}
	if cap(c.out) > readBufSize {
		c.out = nil // a large response: not kept while the connection idles
	} else {
		c.out = c.out[:0]
	}
	c.woff = 0
	return true
}

// readRequest reads and parses until a whole request is in, then decides.
func (c *client) readRequest() {
	l := c.l
	r := l.r
	for c.state == stateRead && c.fd >= 0 && !c.closing {
		if len(c.out) > 0 {
			// A response answered at once (Answer) is not written yet:
			// what comes next could be a handoff, which would drop it.
			// The step that writes it (see reply) reads on.
			return
		}
		if len(c.in) > 0 {
			switch parseRequest(c.in, r.creds, r.opt.MaxBody, &c.parsed) {
			case notRelayed:
				l.handoff(c)
				return
			case parsedOK:
				if len(c.in) >= c.parsed.head+c.parsed.length {
					c.decide()
					continue
				}
			}
		}
		if !c.readable {
			return
		}
		if cap(c.in) == 0 {
			c.in = l.getBuf()
		}
		if need := c.parsed.head + c.parsed.length; len(c.in) > 0 && need > cap(c.in) {
			b := make([]byte, len(c.in), need)
			copy(b, c.in)
			l.putBuf(c.in)
			c.in = b
		}
		if len(c.in) == cap(c.in) {
			l.handoff(c) // cannot happen with the limits above; be safe
			return
		}
		n, e := rawio.Read(c.fd, c.in[len(c.in):cap(c.in)])
		switch {
		case e == unix.EAGAIN:
			c.readable = false
			c.releaseIn()
			return
		case e == unix.EINTR:
			continue
		case e != 0 || n == 0:
			c.close() // EOF or reset between requests (or inside one)
			return
		}
		if len(c.in) == 0 {
			c.since = l.now
		}
		space := cap(c.in) - len(c.in)
		c.in = c.in[:len(c.in)+n]
		if n < space && !c.eof {
			c.readable = false // a short read drained the socket
		}
	}
}

func (c *client) releaseIn() {
	if len(c.in) == 0 && cap(c.in) > 0 {
		c.l.putBuf(c.in)
		c.in = nil
	}
}

func (c *client) decide() {
	p := &c.parsed
	req := &c.view // the client's own: no allocation per request
	*req = Request{Method: p.method, Target: p.target, Tokens: p.tokens, Header: p.headers, Note: c.note, Remote: c.remote, Served: c.served}
	v := c.l.r.opt.Handler.Decide(req)
	*req = Request{}
	c.note = nil
	switch v.Action {
	case Forward:
		c.waited = false
		c.forward(v)
	case Wait:
		if c.waited || v.Wait == nil {
			c.l.handoff(c)
			return
		}
		c.waited, c.answers = true, v.Answers
		c.state = stateWait
		l, fn := c.l, v.Wait
		go func() {
			note := fn()
			l.post(func() {
				if c.fd >= 0 && c.state == stateWait {
					c.note = note
					c.state = stateRead
					c.readRequest()
				}
			})
		}()
	case Serve:
		if v.Serve == nil {
			c.l.handoff(c)
			return
		}
		c.waited = false
		c.serve(v.Serve)
	case Answer:
		if v.Answer == nil {
			c.l.handoff(c)
			return
		}
		c.waited = false
		c.served++
		total := c.parsed.head + c.parsed.length
		c.reply(v.Answer(c.in[:total]), total, true)
	default:
		c.l.handoff(c)
	}
}

// serve runs fn on the request in c.in off the loop, then writes its
// response, or hands the connection off if it gave none.
func (c *client) serve(fn func([]byte) ([]byte, bool)) {
	l := c.l
	total := c.parsed.head + c.parsed.length
	raw := append([]byte(nil), c.in[:total]...)
	closeReq := c.parsed.close
	c.state = stateWait
	go func() {
		resp, closeAfter := fn(raw)
		l.post(func() {
			if c.fd < 0 || c.state != stateWait {
				return
			}
			c.state = stateRead
			if resp == nil {
				l.handoff(c)
				return
			}
			c.in = c.in[:copy(c.in, c.in[total:])]
			c.releaseIn()
			c.out = append(c.out, resp...)
			c.closing = c.closing || closeAfter || closeReq || l.shutting
			c.since = l.now
			c.step()
		})
	}()
}

// reply carries out an Answer's Reply (first) or a Later's for the
// request of total bytes at the start of c.in.
func (c *client) reply(rep Reply, total int, first bool) {
	l := c.l
	switch {
	case rep.Later != nil:
		c.state = stateWait
		p := &later{c: c, total: total}
		l.calls.Add(1)
		c.pend = p
		rep.Later(p.answer)
		return
	case rep.Resp == nil && first:
		l.handoff(c)
		return
	case rep.Resp == nil:
		c.close() // the request was taken on: nothing to hand off
		return
	}
	c.in = c.in[:copy(c.in, c.in[total:])]
	c.releaseIn()
	c.out = append(c.out, rep.Resp...)
	// c.parsed is still the request's: nothing is parsed during a call.
	c.closing = c.closing || rep.Close || c.parsed.close || l.shutting
	c.state = stateRead
	c.since = l.now
	l.later(c.step)
}

// forward builds the request the upstream gets and sends it.
func (c *client) forward(v Verdict) {
	l := c.l
	r := l.r
	p := &c.parsed
	b := append(c.req[:0], p.method...)
	b = append(b, ' ')
	b = append(b, r.base...)
	b = append(b, p.target...)
	b = append(b, " HTTP/1.1\r\nHost: "...)
	if r.opt.PreserveHost {
		b = append(b, p.host...)
	} else {
		b = append(b, r.opt.Host...)
	}
	b = append(b, "\r\n"...)
	for lines := p.headers; len(lines) > 0; {
		var name, line []byte
		name, line, lines = nextLine(lines)
		if dropRequest(name, r.creds) && !(v.Token == TokenKeep && isCredential(name, r.creds)) {
			continue
		}
		b = append(b, line...)
	}
	if v.Token == TokenSet {
		b = append(b, r.opt.TokenHeader...)
		b = append(b, ": "...)
		b = append(b, v.Value...)
		b = append(b, "\r\n"...)
	}
	b = append(b, "X-Forwarded-For: "...)
	for _, x := range p.xff {
		b = append(b, x...)
		b = append(b, ", "...)
	}
	b = append(b, c.ip...)
	b = append(b, "\r\nX-Forwarded-Proto: http\r\n"...)
	if len(p.host) > 0 {
		b = append(b, "X-Forwarded-Host: "...)
		b = append(b, p.host...)
		b = append(b, "\r\n"...)
	}
	b = append(b, "\r\n"...)
	total := p.head + p.length
	b = append(b, c.in[p.head:total]...)
	c.req = b

	c.method = append(c.method[:0], p.method...)
	c.target = append(c.target[:0], p.target...)
	c.label = v.Label
	c.isHead = string(p.method) == "HEAD"
	c.idem = c.isHead || string(p.method) == "GET" || string(p.method) == "OPTIONS"
	c.closeReq = p.close
	c.retried = false
	c.served++
	c.in = c.in[:copy(c.in, c.in[total:])]
	c.releaseIn()
	c.send()
}

// send hands the request to an idle upstream connection, dials one, or
// queues for one.
func (c *client) send() {
	l := c.l
	c.since = l.now
	if u := l.takeIdle(); u != nil {
		u.assign(c)
		return
	}
	c.state = stateQueued
	if l.r.reserve() {
		l.dial(c)
		return
	}
	l.queue = append(l.queue, c)
	l.r.queued.Add(1)
	// A slot freed between reserve and the count above saw no one
	// queued: look again.
	l.dispatch()
	if c.state == stateQueued && !c.dialing {
		l.r.reclaim(l)
	}
}

// fail answers the request in flight with the Handler's error response.
func (c *client) fail(f Failure, err error) {
	r := c.l.r
	resp := r.opt.Handler.Fail(c.method, c.target, f, err)
	c.up = nil
	c.closing = c.closing || c.closeReq || c.l.shutting
	b := append(c.out, "HTTP/1.1 "...)
	b = strconv.AppendInt(b, int64(resp.Status), 10)
	b = append(b, ' ')
	b = append(b, statusText(resp.Status)...)
	b = append(b, "\r\n"...)
	for _, h := range resp.Header {
		b = append(b, h[0]...)
		b = append(b, ": "...)
		b = append(b, h[1]...)
		b = append(b, "\r\n"...)
	}
	b = c.l.appendDate(b)
	b = c.l.appendServer(b)
	b = append(b, "Content-Length: "...)
	b = strconv.AppendInt(b, int64(len(resp.Body)), 10)
	if c.closing {
		b = append(b, "\r\nConnection: close"...)
	}
	b = append(b, "\r\n\r\n"...)
	if !c.isHead {
		b = append(b, resp.Body...)
	}
	c.out = b
	c.done(Exchange{Method: c.method, Target: c.target, Status: resp.Status, Failure: f, Err: err})
	c.state = stateRead
	c.since = c.l.now
	c.step()
}

// done reports an exchange to Handler.Done, through the client's own
// Exchange: no allocation per request.
func (c *client) done(e Exchange) {
	c.exchange = e
	c.exchange.Label = c.label
	c.l.r.opt.Handler.Done(&c.exchange)
	c.exchange = Exchange{}
}

// writeHead queues the response head for the client.
func (c *client) writeHead(u *upstream) {
	rs := &u.resp
	c.closing = c.closing || c.closeReq || c.l.shutting
	b := c.out
	if rs.http10 {
		b = append(b, "HTTP/1.1"...)
		b = append(b, rs.line[8:]...)
	} else {
		b = append(b, rs.line...)
	}
	b = append(b, "\r\n"...)
	for lines := rs.headers; len(lines) > 0; {
		var name, line []byte
		name, line, lines = nextLine(lines)
		if !dropResponse(name, rs) {
			b = append(b, line...)
		}
	}
	if !rs.hasDate {
		// RFC 9110, 6.6.1: a response forwarded without a Date gets one.
		b = c.l.appendDate(b)
	}
	if !rs.hasServer {
		b = c.l.appendServer(b)
	}
	switch {
	case rs.frame == byLength || (rs.frame == noBody && rs.hasLength):
		b = append(b, "Content-Length: "...)
		b = strconv.AppendInt(b, int64(rs.length), 10)
		b = append(b, "\r\n"...)
	case rs.frame == chunked || rs.frame == byClose:
		b = append(b, "Transfer-Encoding: chunked\r\n"...)
	}
	if c.closing {
		b = append(b, "Connection: close\r\n"...)
	}
	b = append(b, "\r\n"...)
	c.out = b
	c.state = stateRelay
	c.done(Exchange{Method: c.method, Target: c.target, Status: rs.status, Upstream: time.Duration(c.l.now - u.written)})
}

// finish ends the exchange: the response has been queued whole.
func (c *client) finish() {
	c.up = nil
	if cap(c.req) > readBufSize {
		c.req = nil // a large upload: not kept while the connection idles
	}
	c.closing = c.closing || c.l.shutting
	c.state = stateRead
	c.since = c.l.now
	c.l.later(c.step)
}

// close closes the connection and abandons any exchange in flight.
func (c *client) close() {
	if c.fd < 0 {
		return
	}
	l := c.l
	l.socks[c.fd] = nil
	unix.Close(c.fd)
	c.fd = -1
	delete(l.clients, c)
	l.open.Add(-1)
	if c.state == stateQueued {
		l.unqueue(c)
	}
	if c.state == stateQueued || c.state == stateExchange {
		c.done(Exchange{Method: c.method, Target: c.target})
	}
	if u := c.up; u != nil {
		c.up = nil
		u.c = nil
		u.close() // its response is not read to the end
	}
	c.release()
}

func (c *client) release() {
	if cap(c.in) > 0 {
		c.l.putBuf(c.in)
	}
	c.in, c.out = nil, nil
}

// upstream is a keep-alive connection to the upstream.
type upstream struct {
	l        *loop
	fd       int
	c        *client // the exchange it serves; nil when idle
	woff     int     // bytes of c.req written
	written  int64   // when the request was written whole; 0: not yet
	in       []byte
	resp     response
	head     bool // resp is parsed
	started  bool // a response byte arrived
	left     int  // body bytes still to come (byLength)
	chunks   chunkReader
	stream   bool // counted in Relay.streams
	reused   bool // it served a request before this one
	readable bool
	writable bool
	hup      bool // the upstream shut down its side (or the connection broke)
}

func (u *upstream) event(ev uint32) {
	if ev&(unix.EPOLLIN|unix.EPOLLRDHUP|unix.EPOLLHUP|unix.EPOLLERR) != 0 {
		u.readable = true
	}
	if ev&(unix.EPOLLRDHUP|unix.EPOLLHUP|unix.EPOLLERR) != 0 {
		u.hup = true // no further edge will come: read to the EOF
	}
	if ev&(unix.EPOLLOUT|unix.EPOLLHUP|unix.EPOLLERR) != 0 {
		u.writable = true
	}
	u.step()
}

func (u *upstream) assign(c *client) {
	c.up = u
	c.state = stateExchange
	u.c = c
	u.woff, u.written = 0, 0
	u.head, u.started = false, false
	u.l.later(u.step)
}

func (u *upstream) step() {
	if u.fd < 0 {
		return
	}
	c := u.c
	if c == nil {
		// Idle: anything readable is the upstream closing it (or talking
		// out of turn); either way it is done.
		if u.readable {
			var b [64]byte
			if _, e := rawio.Read(u.fd, b[:]); e == unix.EAGAIN {
				u.readable = false
				return
			}
			u.close()
		}
		return
	}
	for u.woff < len(c.req) {
		if !u.writable {
			return
		}
		n, e := rawio.Write(u.fd, c.req[u.woff:])
		switch {
		case e == unix.EAGAIN:
			u.writable = false
			return
		case e == unix.EINTR:
			continue
		case e != 0:
			u.failEarly(error(e))
			return
		}
		u.woff += n
		if u.woff < len(c.req) {
			u.writable = false
			return
		}
	}
	if u.written == 0 {
		u.written = u.l.now
	}
	u.relay()
}

// relay reads the response and queues it for the client, until the
// upstream has no more for now or the client has enough queued.
func (u *upstream) relay() {
	l := u.l
	for u.c != nil && u.fd >= 0 {
		c := u.c
		if len(u.in) > 0 {
			n, head := len(u.in), u.head
			if !u.process() || u.c == nil {
				return // failed, or done (and the client moved on)
			}
			if len(u.in) > 0 && (len(u.in) != n || u.head != head) {
				continue // more of the same buffer to move
			}
		}
		if len(c.out) >= highWater && !c.flush() {
			return // back-pressure: the client's next writable event resumes
		}
		if !u.readable {
			break
		}
		if cap(u.in) == 0 {
			u.in = l.getBuf()
		}
		if len(u.in) == cap(u.in) {
			u.broken(errors.New("the response head is larger than 16 KiB"))
			return
		}
		space := cap(u.in) - len(u.in)
		n, e := rawio.Read(u.fd, u.in[len(u.in):cap(u.in)])
		switch {
		case e == unix.EAGAIN:
			u.readable = false
		case e == unix.EINTR:
		case e != 0:
			u.ended(e)
			return
		case n == 0:
			u.ended(nil)
			return
		default:
			u.started = true
			u.in = u.in[:len(u.in)+n]
			if n < space && !u.hup {
				u.readable = false // a short read drained the socket
			}
		}
	}
	if c := u.c; c != nil && len(c.out) > 0 {
		c.flush()
	}
	if u.fd >= 0 && len(u.in) == 0 {
		u.releaseIn()
	}
}

// process moves what u.in holds of the response to the client; false when
// the exchange ended with an error.
func (u *upstream) process() bool {
	c := u.c
	if !u.head {
		more, ok := parseResponse(u.in, c.isHead, &u.resp)
		if !ok {
			u.broken(errors.New("malformed response head"))
			return false
		}
		if more {
			return true
		}
		if u.resp.status < 200 {
			if u.resp.status == 101 {
				u.broken(errors.New("101 Switching Protocols to a request without Upgrade"))
				return false
			}
			u.consume(u.resp.head) // 100 Continue and the like: not relayed
			return true
		}
		u.head = true
		c.writeHead(u)
		u.consume(u.resp.head)
		u.left = u.resp.length
		u.chunks = chunkReader{}
		if u.resp.frame == chunked || u.resp.frame == byClose {
			if u.l.shutting {
				// An event stream starting while the sidecar stops: ended
				// at once, as beginShutdown ends those already running.
				u.abort()
				return false
			}
			u.stream = true
			u.l.r.streams.Add(1)
		}
	}
	switch u.resp.frame {
	case noBody:
		u.done()
	case byLength:
		k := min(u.left, len(u.in))
		c.out = append(c.out, u.in[:k]...)
		u.left -= k
		u.consume(k)
		if u.left == 0 {
			u.done()
		}
	case chunked:
		n, bad := u.chunks.feed(u.in)
		c.out = append(c.out, u.in[:n]...)
		u.consume(n)
		if bad {
			u.abort()
			return false
		}
		if u.chunks.done() {
			u.done()
		}
	case byClose:
		if len(u.in) == 0 {
			break // a zero-size chunk would end the body
		}
		c.out = strconv.AppendInt(c.out, int64(len(u.in)), 16)
		c.out = append(c.out, "\r\n"...)
		c.out = append(c.out, u.in...)
		c.out = append(c.out, "\r\n"...)
		u.in = u.in[:0]
	}
	return true
}

func (u *upstream) consume(n int) { u.in = u.in[:copy(u.in, u.in[n:])] }

func (u *upstream) releaseIn() {
	if len(u.in) == 0 && cap(u.in) > 0 {
		u.l.putBuf(u.in)
		u.in = nil
	}
}

// done ends a complete exchange: the connection goes back to the pool
// unless the upstream closes it or sent more than the response.
func (u *upstream) done() {
	c := u.c
	u.unstream()
	u.c = nil
	if u.resp.close || len(u.in) > 0 {
		u.close()
	} else {
		u.reused = true
		u.releaseIn()
		u.l.release(u)
	}
	c.finish()
}

// ended handles the upstream's EOF (or a read error) during an exchange.
func (u *upstream) ended(e error) { // e: nil for EOF
	c := u.c
	switch {
	case !u.started:
		u.failEarly(e)
	case !u.head:
		u.broken(errors.New("the connection closed inside the response head"))
	case u.resp.frame == byClose:
		c.out = append(c.out, "0\r\n\r\n"...)
		u.unstream()
		u.c = nil
		u.close()
		c.finish()
	default:
		u.abort()
	}
}

// failEarly handles a failure before any response byte: a request safe to
// repeat, on a connection that had served others (the upstream may have
// closed it as idle), is sent once more on another; anything else is a
// broken exchange.
func (u *upstream) failEarly(e error) {
	c := u.c
	if u.reused && c.idem && !c.retried {
		c.retried = true
		u.c = nil
		c.up = nil
		u.close()
		c.send()
		return
	}
	if e == nil {
		e = errors.New("the connection closed before a response")
	}
	u.broken(e)
}

// broken fails the exchange before its response head went out.
func (u *upstream) broken(err error) {
	c := u.c
	u.c = nil
	c.up = nil
	u.unstream()
	u.close()
	if c.state == stateRelay {
		c.close()
		return
	}
	c.fail(Broken, err)
}

// abort ends an exchange whose response has started: the client's
// connection is closed, so it sees the response cut short rather than
// complete.
func (u *upstream) abort() {
	c := u.c
	u.c = nil
	c.up = nil
	u.unstream()
	u.close()
	c.flush()
	c.close()
}

func (u *upstream) unstream() {
	if u.stream {
		u.stream = false
		u.l.r.streams.Add(-1)
	}
}

func (u *upstream) close() {
	if u.fd < 0 {
		return
	}
	l := u.l
	for i, v := range l.idle {
		if v == u {
			l.idle = append(l.idle[:i], l.idle[i+1:]...)
			break
		}
	}
	u.unstream()
	l.socks[u.fd] = nil
	unix.Close(u.fd)
	u.fd = -1
	if cap(u.in) > 0 {
		l.putBuf(u.in)
		u.in = nil
	}
	l.r.unreserve()
}

// takeIdle returns the most recently used idle upstream connection.
func (l *loop) takeIdle() *upstream {
	if n := len(l.idle); n > 0 {
		u := l.idle[n-1]
		l.idle = l.idle[:n-1]
		return u
	}
	return nil
}

// release returns u to the pool, or to the first client queued for one.
func (l *loop) release(u *upstream) {
	if l.shutting && len(l.queue) == 0 {
		u.close()
		return
	}
	if len(l.queue) > 0 {
		c := l.queue[0]
		l.queue = l.queue[1:]
		l.r.queued.Add(-1)
		u.assign(c)
		return
	}
	if l.r.queued.Load() > 0 {
		// Clients wait on another loop, and connections cannot move
		// between loops: free the slot for them (unreserve).
		u.close()
		return
	}
	l.idle = append(l.idle, u)
}

func (l *loop) unqueue(c *client) {
	for i, q := range l.queue {
		if q == c {
			l.queue = append(l.queue[:i], l.queue[i+1:]...)
			l.r.queued.Add(-1)
			return
		}
	}
}

// dispatch dials for the clients queued here while connection slots are
// free.
func (l *loop) dispatch() {
	for len(l.queue) > 0 && l.r.reserve() {
		c := l.queue[0]
		l.queue = l.queue[1:]
		l.r.queued.Add(-1)
		l.dial(c)
	}
}

// reserve takes one of the Options.MaxConns connection slots, if one is
// free.
func (r *Relay) reserve() bool {
	for {
		n := r.ups.Load()
		if n >= int64(r.opt.MaxConns) {
			return false
		}
		if r.ups.CompareAndSwap(n, n+1) {
			return true
		}
	}
}

// unreserve frees a slot; clients queued on any loop get to dial for it.
func (r *Relay) unreserve() {
	r.ups.Add(-1)
	if r.queued.Load() > 0 {
		for _, l := range r.loops {
			l.post(l.dispatch)
		}
	}
}

// reclaim asks the other loops to close one idle connection each, when
// every slot is taken and a client of from's waits: the freed slot lets it
// dial (see unreserve). Idle connections cannot move between loops.
func (r *Relay) reclaim(from *loop) {
	for _, l := range r.loops {
		if l != from {
			l.post(func() {
				if len(l.idle) > 0 {
					l.idle[0].close()
				}
			})
		}
	}
}

// dial connects to the upstream off the loop, for c; the caller has
// reserved the slot.
func (l *loop) dial(c *client) {
	c.dialing = true
	r := l.r
	go func() {
		fd, err := r.dial()
		if !l.post(func() { l.dialed(fd, err, c) }) && err == nil {
			unix.Close(fd) // the loop stopped meanwhile
		}
	}()
}

func (l *loop) dialed(fd int, err error, c *client) {
	c.dialing = false
	waiting := c.fd >= 0 && c.state == stateQueued
	if err != nil {
		if waiting {
			f := Unreachable
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				f = DialTimeout
			}
			c.fail(f, err)
		}
		l.r.unreserve()
		return
	}
	u := &upstream{l: l, fd: fd, writable: true}
	if err := l.register(fd, u); err != nil {
		u.close()
		if waiting {
			c.fail(Unreachable, err)
		}
		return
	}
	if waiting {
		u.assign(c)
		return
	}
	l.release(u)
}

// dial connects to the upstream; it runs on a goroutine of its own.
func (r *Relay) dial() (int, error) { return dialTCP(r.opt.Upstream, r.opt.DialTimeout) }

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

// appendDate appends a Date header line, the time formatted at most once
// every half second.
func (l *loop) appendDate(b []byte) []byte {
	if l.dateAt == 0 || l.now-l.dateAt >= int64(500*time.Millisecond) {
		l.date = time.Now().UTC().AppendFormat(append(l.date[:0], "Date: "...), http.TimeFormat)
		l.date = append(l.date, "\r\n"...)
		l.dateAt = l.now
	}
	return append(b, l.date...)
}

// appendServer appends the Server header line of Options.ServerName, if
// one is set.
func (l *loop) appendServer(b []byte) []byte {
	if name := l.r.opt.ServerName; name != "" {
		b = append(b, "Server: "...)
		b = append(b, name...)
		b = append(b, "\r\n"...)
	}
	return b
}

func statusText(code int) string {
	if t := http.StatusText(code); t != "" {
		return t
	}
	return "Status"
}
