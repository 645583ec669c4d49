// Package framing checks how each HTTP/1.1 request on a server connection
// is delimited before the server reads it, and holds the line at what Go's
// net/http server (Direktiv's) accepts, or stricter. The server behind it
// (fasthttp) is more lenient than Go in places, and a request two HTTP
// hops delimit differently is request smuggling: Conn makes sure the
// server never reads a request Go would refuse or read differently.
//
// Conn reads the client's bytes itself and lets the server read a request
// only once its head has been checked whole and, for bodies up to
// Options.Window, its body too: a request refused here reaches neither the
// server nor the upstream. A chunked body is re-encoded in canonical form
// (no extensions, no trailer), so the server reads the same bytes Go
// would. A larger body is passed on as it is checked; a framing error
// there ends the body stream with the Error (see Failed), so the upstream
// never receives the request complete.
//
// It must not import the server or the sidecar's packages: the answer to a
// refused request is built by Options.Answer.
package framing

import (
	"bytes"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"slices"
	"strconv"
	"sync"
	"time"

	"golang.org/x/net/http/httpguts"
)

// Error is why a request was refused: its status (400, 417, 431 or 501)
// and a reason for the client. The connection is closed after it.
type Error struct {
	Status int
	Reason string
}

func (e *Error) Error() string { return e.Reason }

// Options configure the check.
type Options struct {
	// MaxHead bounds a request line and its header fields together; a larger
	// head is refused with 431. 0: 4096, fasthttp's default read buffer
	// (Go's net/http allows 1 MiB: this is stricter).
	MaxHead int
	// Window is how many bytes of one request are held until the request
	// is complete; past it, the rest is passed on as it is checked. 0:
	// 64 KiB.
	Window int
	// Answer builds the whole HTTP/1.1 response to a request refused before
	// the server read any of it; Conn writes it before closing.
	Answer func(*Error) []byte
}

// Limits of Go's chunked reader (net/http/internal): a chunk-size line,
// extension and CRLF included, fits its 4096-byte read buffer, and the bytes spent on
// chunk lines beyond 16 per chunk plus twice the chunk's size may not
// exceed 16 KiB in all.
const (
	maxChunkLine = 4096
	maxExcess    = 16 << 10
)

type state uint8

const (
	inHead      state = iota
	inBody            // n bytes of a Content-Length body to come
	inChunkLine       // a chunk-size line
	inChunkData       // n bytes of chunk data to come
	inChunkEnd        // the CRLF after chunk data
	inTrailer         // the CRLF after the last chunk
)

// Conn is a server connection whose requests are checked before the server
// reads them. Read is called by the server's goroutine only; Failed and
// Close may be called from others.
type Conn struct {
	net.Conn
	opt Options

	in        []byte // read from the client; in[inPos:] is not yet checked
	inPos     int
	pending   []byte // checked bytes of the request in progress, held
	out       []byte // checked bytes; out[outPos:] the server may read
	outPos    int
	st        state
	n         int64 // bytes to come in this body or chunk
	excess    int64
	streaming bool  // the request in progress is passed on as it is checked
	rerr      error // the client connection's read error

	mu       sync.Mutex
	err      *Error
	seen     bool // the server has read part of the refused request
	answered bool
}

// tlsConn is a Conn over a TLS connection: the server sees the TLS state
// through it (fasthttp looks for these two methods).
type tlsConn struct {
	*Conn
	tc *tls.Conn
}

func (c tlsConn) Handshake() error                     { return c.tc.Handshake() }
func (c tlsConn) ConnectionState() tls.ConnectionState { return c.tc.ConnectionState() }

// Wrap puts the check on c. If c is a *tls.Conn the result keeps its TLS
// methods.
func Wrap(c net.Conn, opt Options) net.Conn {
	if opt.MaxHead <= 0 {
		opt.MaxHead = 4096
	}
	if opt.Window <= 0 {
		opt.Window = 64 << 10
	}
	fc := &Conn{Conn: c, opt: opt}
	if tc, ok := c.(*tls.Conn); ok {
		return tlsConn{fc, tc}
	}
	return fc
}

type listener struct {
	net.Listener
	opt Options
}

// Listener puts the check on every connection ln accepts.
func Listener(ln net.Listener, opt Options) net.Listener { return listener{ln, opt} }

func (l listener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return Wrap(c, l.opt), nil
}

// Failed returns the Error that refused the request the server is reading
// on c, if any, and takes over answering it: Conn will not answer it on
// Close. c is the connection the server was given.
func Failed(c net.Conn) *Error {
	var fc *Conn
	switch v := c.(type) {
	case *Conn:
		fc = v
	case tlsConn:
		fc = v.Conn
	default:
		return nil
	}
	fc.mu.Lock()
	defer fc.mu.Unlock()
	if fc.err != nil {
		fc.answered = true
	}
	return fc.err
}

// Read gives the server checked bytes only. After a refusal it gives
// io.EOF at a request's start (the server then closes quietly and Close
// answers) and the Error inside a body the server has begun to read.
func (c *Conn) Read(p []byte) (int, error) {
	for c.outPos == len(c.out) {
		c.out, c.outPos = c.out[:0], 0
		c.mu.Lock()
		refused, seen := c.err, c.seen
		c.mu.Unlock()
		if refused != nil {
			if seen {
				return 0, refused
			}
			return 0, io.EOF
		}
		if c.rerr != nil {
			// What is held is an incomplete request: it is not passed on.
			return 0, c.rerr
		}
		if c.inPos > 0 {
			c.in = c.in[:copy(c.in, c.in[c.inPos:])]
			c.inPos = 0
		}
		c.in = slices.Grow(c.in, readSize)
		n, err := c.Conn.Read(c.in[len(c.in):cap(c.in)])
		c.in = c.in[:len(c.in)+n]
		c.check()
		if err != nil {
			var ne net.Error
			switch {
			case !errors.As(err, &ne) || !ne.Timeout():
				c.rerr = err
			case c.outPos == len(c.out):
				return 0, err // a deadline passed: the server decides
			}
		}
	}
	n := copy(p, c.out[c.outPos:])
	c.outPos += n
	return n, nil
}

// readSize is the room Read leaves for each read from the client.
const readSize = 16 << 10

// Close answers a request refused before the server read any of it, then
// closes the connection. After a refusal it first shuts its sending side
// and reads what the client still sends, for a moment, as Go's server
// does: closing with unread input makes the kernel reset the connection,
// and the client may lose the answer.
func (c *Conn) Close() error {
	c.mu.Lock()
	answer := c.err != nil && !c.seen && !c.answered && c.opt.Answer != nil
	c.answered = c.answered || answer
	e := c.err
	c.mu.Unlock()
	if answer {
		c.Conn.SetWriteDeadline(time.Now().Add(time.Second))
		c.Conn.Write(c.opt.Answer(e))
	}
	if e != nil {
		if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok && cw.CloseWrite() == nil {
			c.Conn.SetReadDeadline(time.Now().Add(lingerTime))
			io.Copy(io.Discard, io.LimitReader(c.Conn, lingerBytes))
		}
	}
	return c.Conn.Close()
}

// How long and how much Close reads after a refusal.
const (
	lingerTime  = 250 * time.Millisecond
	lingerBytes = 256 << 10
)

// refuse ends the check: held bytes are dropped and e answers the request.
func (c *Conn) refuse(e *Error) {
	c.mu.Lock()
	c.err, c.seen = e, c.streaming
	c.mu.Unlock()
	c.in, c.inPos, c.pending = nil, 0, nil
}

// check moves what can be checked from in to pending, and from pending to
// out what may be released.
func (c *Conn) check() {
	for c.err == nil {
		progressed := c.step()
		if !c.streaming && len(c.pending) > c.opt.Window {
			c.streaming = true
		}
		if c.streaming && len(c.pending) > 0 {
			c.out = append(c.out, c.pending...)
			c.pending = c.pending[:0]
		}
		if !progressed {
			return
		}
	}
}

// step checks one piece of the request in progress; false: more input is
// needed (or the request was refused).
func (c *Conn) step() bool {
	in := c.in[c.inPos:]
	switch c.st {
	case inHead:
		end := bytes.Index(in, []byte("\r\n\r\n"))
		seen := len(in)
		if end >= 0 {
			seen = end + 4
		}
		// Go reads a bare LF as a line end; here it is refused, at once.
		for i, b := range in[:seen] {
			if b == '\n' && (i == 0 || in[i-1] != '\r') {
				c.refuse(errBadRequest("line ending in LF without CR"))
				return false
			}
		}
		if seen > c.opt.MaxHead {
			c.refuse(&Error{Status: 431, Reason: "request header fields too large"})
			return false
		}
		if end < 0 {
			return false
		}
		h, err := parseHead(in[:end+4])
		if err != nil {
			c.refuse(err)
			return false
		}
		c.pending = append(c.pending, in[:end+4]...)
		c.inPos += end + 4
		switch {
		case h.chunked:
			c.st, c.excess = inChunkLine, 0
		case h.length > 0:
			c.st, c.n = inBody, h.length
		default:
			c.endRequest()
			return true
		}
		if h.expect {
			// The client waits for 100 Continue before it sends the body.
			c.streaming = true
		}
		return true
	case inBody, inChunkData:
		k := int(min(int64(len(in)), c.n))
		if k == 0 {
			return false
		}
		c.pending = append(c.pending, in[:k]...)
		c.inPos += k
		if c.n -= int64(k); c.n > 0 {
			return true
		}
		if c.st == inBody {
			c.endRequest()
		} else {
			c.st = inChunkEnd
		}
		return true
	case inChunkLine:
		nl := bytes.IndexByte(in, '\n')
		if nl < 0 {
			if len(in) >= maxChunkLine {
				c.refuse(&Error{Status: 400, Reason: "chunk line too long"})
			}
			return false
		}
		size, ok := parseChunkLine(in[:nl+1])
		if !ok {
			c.refuse(&Error{Status: 400, Reason: "malformed chunk line"})
			return false
		}
		// Go's count of bytes that are not data (net/http/internal).
		c.excess += int64(nl-1) + 2
		c.excess = max(c.excess-16-2*size, 0)
		if c.excess > maxExcess {
			c.refuse(&Error{Status: 400, Reason: "chunked encoding contains too much non-data"})
			return false
		}
		c.inPos += nl + 1
		if size == 0 {
			c.st = inTrailer
			return true
		}
		c.pending = strconv.AppendInt(c.pending, size, 16)
		c.pending = append(c.pending, '\r', '\n')
		c.st, c.n = inChunkData, size
		return true
	case inChunkEnd, inTrailer:
		if len(in) < 2 {
			return false
		}
		if in[0] != '\r' || in[1] != '\n' {
			if c.st == inTrailer {
				c.refuse(&Error{Status: 400, Reason: "trailer fields are not accepted"})
			} else {
				c.refuse(&Error{Status: 400, Reason: "chunk data not followed by CRLF"})
			}
			return false
		}
		c.inPos += 2
		if c.st == inTrailer {
			c.pending = append(c.pending, "0\r\n\r\n"...)
			c.endRequest()
		} else {
			c.pending = append(c.pending, '\r', '\n')
			c.st = inChunkLine
		}
		return true
	}
	return false
}

// endRequest releases the request just checked whole.
func (c *Conn) endRequest() {
	c.out = append(c.out, c.pending...)
	c.pending = c.pending[:0]
	c.st, c.streaming = inHead, false
}

// parseChunkLine reads a chunk-size line with its CRLF: hex digits (at most
// 15, so the size fits an int64), then either optional whitespace or an
// extension (';' and field bytes), as Go's chunked reader accepts, in at
// most maxChunkLine bytes.
func parseChunkLine(line []byte) (int64, bool) {
	if len(line) < 3 || len(line) > maxChunkLine || line[len(line)-2] != '\r' {
		return 0, false
	}
	line = line[:len(line)-2]
	var n int64
	i := 0
	for ; i < len(line) && i < 16; i++ {
		d, ok := unhex(line[i])
		if !ok {
			break
		}
		n = n<<4 | int64(d)
	}
	if i == 0 || i > 15 {
		return 0, false
	}
	rest := line[i:]
	if len(rest) > 0 && rest[0] == ';' {
		for _, b := range rest[1:] {
			if !FieldByte(b) {
				return 0, false
			}
		}
		return n, true
	}
	for _, b := range rest {
		if b != ' ' && b != '\t' {
			return 0, false
		}
	}
	return n, true
}

func unhex(b byte) (byte, bool) {
	switch {
	case '0' <= b && b <= '9':
		return b - '0', true
	case 'a' <= b && b <= 'f':
		return b - 'a' + 10, true
	case 'A' <= b && b <= 'F':
		return b - 'A' + 10, true
	}
	return 0, false
}

// head is what the framing check reads of a request head.
type head struct {
	length  int64 // Content-Length; 0 when none
	chunked bool
	expect  bool // Expect: 100-continue
}

var errBadRequest = func(reason string) *Error { return &Error{Status: 400, Reason: reason} }

// parseHead checks a whole request head (its blank line included): the
// request line "METHOD SP origin-form SP HTTP/1.x", then header fields
// "name:value" with CRLF line ends, no obs-fold, a token for a name and no
// control character in a value; one valid Host (HTTP/1.1 requires it);
// one Content-Length, digits only; a
// Transfer-Encoding of exactly "chunked", once, never with a
// Content-Length, never in HTTP/1.0.
func parseHead(b []byte) (head, *Error) {
	var h head
	line, rest, ok := cutLine(b)
	if !ok {
		return h, errBadRequest("malformed request line")
	}
	m := 0
	for m < len(line) && tchar[line[m]] {
		m++
	}
	if m == 0 || m >= len(line) || line[m] != ' ' {
		return h, errBadRequest("malformed request line")
	}
	t := m + 1
	for t < len(line) && VChar(line[t]) {
		t++
	}
	target, version := line[m+1:t], line[min(t+1, len(line)):]
	if t >= len(line) || line[t] != ' ' || len(target) == 0 {
		return h, errBadRequest("malformed request line")
	}
	if target[0] != '/' {
		return h, errBadRequest("the request target is not a path starting with /")
	}
	if bytes.IndexByte(target, '#') >= 0 {
		return h, errBadRequest("fragment (#) in request target")
	}
	var http10 bool
	switch string(version) {
	case "HTTP/1.1":
	case "HTTP/1.0":
		http10 = true
	default:
		if bytes.HasPrefix(version, []byte("HTTP/")) && len(version) == 8 && version[5] != '1' {
			return h, &Error{Status: 505, Reason: "HTTP version not supported"}
		}
		return h, errBadRequest("malformed request line")
	}
	var hosts, tes, lengths int
	var length []byte
	var te []byte
	for len(rest) > 2 {
		line, rest, ok = cutLine(rest)
		if !ok {
			return h, errBadRequest("malformed header line")
		}
		if line[0] == ' ' || line[0] == '\t' {
			return h, errBadRequest("obsolete line folding in header")
		}
		k := 0
		for k < len(line) && tchar[line[k]] {
			k++
		}
		if k == 0 || k >= len(line) || line[k] != ':' {
			return h, errBadRequest("malformed header line")
		}
		for _, c := range line[k+1:] {
			if !FieldByte(c) {
				return h, errBadRequest("invalid byte in header value")
			}
		}
		name, value := line[:k], TrimOWS(line[k+1:])
		switch {
		case equalFold(name, "host"):
			hosts++
			if !ValidHost(value) {
				return h, errBadRequest("malformed Host header")
			}
		case equalFold(name, "content-length"):
			// Go accepts a repeated Content-Length of the same value;
			// fasthttp does not, and nothing sends one.
			if lengths++; lengths > 1 {
				return h, errBadRequest("more than one Content-Length")
			}
			length = value
		case equalFold(name, "transfer-encoding"):
			tes++
			te = value
		case equalFold(name, "expect"):
			if !equalFold(value, "100-continue") {
				return h, &Error{Status: 417, Reason: "unsupported Expect"}
			}
			h.expect = true
		}
	}
	if len(rest) != 2 {
		return h, errBadRequest("malformed header line")
	}
	switch {
	case hosts > 1:
		return h, errBadRequest("too many Host headers")
	case hosts == 0 && !http10:
		return h, errBadRequest("missing required Host header")
	}
	if tes > 0 {
		switch {
		case http10:
			return h, errBadRequest("Transfer-Encoding in an HTTP/1.0 request")
		case lengths > 0:
			return h, errBadRequest("both Transfer-Encoding and Content-Length")
		case tes > 1 || !equalFold(te, "chunked"):
			return h, &Error{Status: 501, Reason: "unsupported transfer encoding"}
		}
		h.chunked = true
		return h, nil
	}
	if lengths > 0 {
		if len(length) == 0 || len(length) > 18 {
			return h, errBadRequest("invalid Content-Length")
		}
		for _, c := range length {
			if c < '0' || c > '9' {
				return h, errBadRequest("invalid Content-Length")
			}
			h.length = h.length*10 + int64(c-'0')
		}
	}
	return h, nil
}

// cutLine takes the first CRLF-ended line off b; ok is false when it ends
// otherwise or holds a CR or LF of its own.
func cutLine(b []byte) (line, rest []byte, ok bool) {
	nl := bytes.IndexByte(b, '\n')
	if nl < 1 || b[nl-1] != '\r' || bytes.IndexByte(b[:nl-1], '\r') >= 0 {
		return nil, nil, false
	}
	return b[:nl-1], b[nl+1:], true
}

// tchar reports the bytes of a token (RFC 9110, 5.6.2).
var tchar = func() (t [256]bool) {
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for c := 'a'; c <= 'z'; c++ {
		t[c] = true
		t[c-'a'+'A'] = true
	}
	for _, c := range "!#$%&'*+-.^_`|~" {
		t[c] = true
	}
	return t
}()

// The byte classes of a request head, for this check and the event loops'
// parser (internal/relay) alike.

// Token reports a byte of a token (RFC 9110, 5.6.2): a method, a header
// name.
func Token(c byte) bool { return tchar[c] }

// VChar reports what may stand in a request target: visible ASCII.
func VChar(c byte) bool { return c > 0x20 && c < 0x7f }

// FieldByte reports what may stand in a header value or chunk extension:
// visible ASCII, space, tab and obs-text; never CR, LF, NUL or DEL.
func FieldByte(c byte) bool { return c == '\t' || (c >= 0x20 && c != 0x7f) }

// TrimOWS trims spaces and tabs at both ends of v.
func TrimOWS(v []byte) []byte {
	for len(v) > 0 && (v[0] == ' ' || v[0] == '\t') {
		v = v[1:]
	}
	for len(v) > 0 && (v[len(v)-1] == ' ' || v[len(v)-1] == '\t') {
		v = v[:len(v)-1]
	}
	return v
}

// equalFold compares b with a lower-case ASCII string, letters
// case-insensitively.
func equalFold(b []byte, lower string) bool {
	if len(b) != len(lower) {
		return false
	}
	for i, c := range b {
		if c >= 'A' && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != lower[i] {
			return false
		}
	}
	return true
}

// IsError reports whether err is, or wraps, a framing Error.
func IsError(err error) bool {
	var e *Error
	return errors.As(err, &e)
}

// ValidHost reports whether v may stand in a Host header: not empty, and
// only the bytes Go's net/http accepts there (a request with any other is
// refused with 400). Go accepts an empty Host; here it is refused, on both
// paths.
func ValidHost(v []byte) bool { return len(v) > 0 && httpguts.ValidHostHeader(string(v)) }
