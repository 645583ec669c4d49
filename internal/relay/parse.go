package relay

import (
	"bytes"

	"github.com/direktiv/direktiv-authz/internal/framing"
)

// The relay parses only a strict subset of HTTP/1.1 itself: anything it
// does not recognise as plainly valid (see parseRequest) is not refused but
// handed off, whole, to the server behind Options.Handoff, which then parses
// it its own way. So the relay never accepts what that server would refuse
// with a different meaning, and there is no second parser to disagree with
// about where a request ends.

// maxHead bounds a request head the relay reads before handing the
// connection off, and a response head from the upstream.
const (
	maxRequestHead  = 4096 // fasthttp.Server's default read buffer, the slow path's limit
	maxResponseHead = 16 << 10
)

// request is a parsed request head; its slices point into the buffer it was
// parsed from.
type request struct {
	method  []byte
	target  []byte
	host    []byte
	tokens  [][]byte
	xff     [][]byte // X-Forwarded-For values
	length  int      // Content-Length; 0 when absent
	close   bool     // Connection: close
	head    int      // length of the head, blank line included
	headers []byte   // the header lines (after the request line), each ending in CRLF, not the blank line
}

var (
	hdrHost             = []byte("host")
	hdrDate             = []byte("date")
	hdrServer           = []byte("server")
	hdrContentLength    = []byte("content-length")
	hdrTransferEncoding = []byte("transfer-encoding")
	hdrConnection       = []byte("connection")
	hdrXForwardedFor    = []byte("x-forwarded-for")
	hdrXForwardedProto  = []byte("x-forwarded-proto")
	hdrXForwardedHost   = []byte("x-forwarded-host")
)

// parseStatus is parseRequest's verdict.
type parseStatus uint8

const (
	parsedOK   parseStatus = iota
	needMore               // the head is not complete yet
	notRelayed             // valid or not, the relay does not handle it: hand off
)

// parseRequest parses the request head at the start of b. creds are the
// lower-case names whose values are collected in r.tokens. It returns
// notRelayed for anything but a plain HTTP/1.1 request in origin form with
// one Host, no Transfer-Encoding, Upgrade or Expect, at most one
// Content-Length (bodies up to maxBody), a Connection header of only
// close/keep-alive, and strictly formed lines (CRLF endings, no obs-fold,
// no control characters).
func parseRequest(b []byte, creds [][]byte, maxBody int, r *request) parseStatus {
	r.head, r.length = 0, 0
	end := bytes.Index(b, crlfcrlf)
	if end < 0 {
		if len(b) >= maxRequestHead {
			return notRelayed
		}
		return needMore
	}
	if end+4 > maxRequestHead {
		return notRelayed
	}
	*r = request{tokens: r.tokens[:0], xff: r.xff[:0], head: end + 4}
	head := b[:end+2] // every line with its CRLF
	// Request line: method SP origin-form SP HTTP/1.1.
	i := 0
	for i < len(head) && framing.Token(head[i]) {
		i++
	}
	if i == 0 || i >= len(head) || head[i] != ' ' {
		return notRelayed
	}
	r.method = head[:i]
	i++
	j := i
	for j < len(head) && framing.VChar(head[j]) {
		j++
	}
	if j == i || head[i] != '/' || j >= len(head) || head[j] != ' ' || bytes.IndexByte(head[i:j], '#') >= 0 {
		return notRelayed // the server's framing check refuses a '#'
	}
	r.target = head[i:j]
	j++
	if !bytes.HasPrefix(head[j:], http11crlf) {
		return notRelayed
	}
	lines := head[j+len(http11crlf):]
	r.headers = lines
	hosts, lengths := 0, 0
	for len(lines) > 0 {
		name, v, rest, ok := cutField(lines)
		if !ok {
			return notRelayed // obs-fold, space before the colon, a bad name or byte
		}
		lines = rest
		switch {
		case isCredential(name, creds):
			r.tokens = append(r.tokens, v)
		case equalFold(name, hdrHost):
			hosts++
			r.host = v
			if !framing.ValidHost(v) {
				return notRelayed // refused by the server's framing check
			}
		case equalFold(name, hdrContentLength):
			lengths++
			n, ok := parseDecimal(v)
			if !ok || n > maxBody {
				return notRelayed
			}
			r.length = n
		case equalFold(name, hdrConnection):
			if !connectionOptions(v, &r.close) {
				return notRelayed
			}
		case equalFold(name, hdrXForwardedFor):
			r.xff = append(r.xff, v)
		case hopRequest(name):
			return notRelayed
		}
	}
	if hosts != 1 || lengths > 1 {
		return notRelayed
	}
	return parsedOK
}

var (
	crlfcrlf   = []byte("\r\n\r\n")
	http11crlf = []byte("HTTP/1.1\r\n")
)

// hopRequest reports the request headers the relay leaves to the slow path:
// Transfer-Encoding (chunked bodies), Upgrade, Expect, TE and Trailer.
// Keep-Alive, Proxy-Connection and Proxy-Authorization are hop-by-hop too,
// but simply dropped (see dropRequest).
func hopRequest(name []byte) bool {
	switch len(name) {
	case 2:
		return equalFold(name, []byte("te"))
	case 6:
		return equalFold(name, []byte("expect"))
	case 7:
		return equalFold(name, []byte("upgrade")) || equalFold(name, []byte("trailer"))
	case 17:
		return equalFold(name, hdrTransferEncoding)
	}
	return false
}

// dropRequest reports the request headers the loops do not copy upstream:
// the credentials and DropsRequestHeader's.
func dropRequest(name []byte, creds [][]byte) bool {
	return isCredential(name, creds) || DropsRequestHeader(name)
}

// DropsRequestHeader reports a request header no forwarded request carries
// as the client sent it, whichever path forwards it (the loops, and the
// server's proxy): the hop-by-hop headers (RFC 9110, 7.6.1), Expect
// (answered by the sidecar), and Host and X-Forwarded-For, -Host and
// -Proto, which the forwarding path sets itself. The headers a Connection
// header names, and the credentials, are dropped too, by the caller.
func DropsRequestHeader(name []byte) bool {
	switch len(name) {
	case 2:
		return equalFold(name, []byte("te"))
	case 4:
		return equalFold(name, hdrHost)
	case 6:
		return equalFold(name, []byte("expect"))
	case 7:
		return equalFold(name, []byte("upgrade")) || equalFold(name, []byte("trailer"))
	case 10:
		return equalFold(name, hdrConnection) || equalFold(name, []byte("keep-alive"))
	case 15:
		return equalFold(name, hdrXForwardedFor)
	case 16:
		return equalFold(name, []byte("proxy-connection")) || equalFold(name, hdrXForwardedHost)
	case 17:
		return equalFold(name, hdrXForwardedProto) || equalFold(name, hdrTransferEncoding)
	case 18:
		return equalFold(name, []byte("proxy-authenticate"))
	case 19:
		return equalFold(name, []byte("proxy-authorization"))
	}
	return false
}

// DropsResponseHeader reports a response header no forwarded response
// carries as the upstream sent it, on either path: the hop-by-hop headers
// (RFC 9110, 7.6.1). Content-Length and Transfer-Encoding are the
// forwarding path's to write from the body's framing; the headers a
// Connection header names are dropped too, by the caller.
func DropsResponseHeader(name []byte) bool {
	switch len(name) {
	case 2:
		return equalFold(name, []byte("te"))
	case 7:
		return equalFold(name, []byte("upgrade")) || equalFold(name, []byte("trailer"))
	case 10:
		return equalFold(name, hdrConnection) || equalFold(name, []byte("keep-alive"))
	case 16:
		return equalFold(name, []byte("proxy-connection"))
	case 17:
		return equalFold(name, hdrTransferEncoding)
	case 18:
		return equalFold(name, []byte("proxy-authenticate"))
	case 19:
		return equalFold(name, []byte("proxy-authorization"))
	}
	return false
}

// isCredential reports whether name is one of the lower-case names creds.
func isCredential(name []byte, creds [][]byte) bool {
	for _, c := range creds {
		if equalFold(name, c) {
			return true
		}
	}
	return false
}

// connectionOptions reads a Connection header value of close and
// keep-alive options only; any other option names a header to drop, which
// the relay leaves to the slow path (false).
func connectionOptions(v []byte, close *bool) bool {
	for len(v) > 0 {
		var opt []byte
		opt, v, _ = bytes.Cut(v, []byte{','})
		opt = framing.TrimOWS(opt)
		switch {
		case len(opt) == 0:
		case equalFold(opt, []byte("close")):
			*close = true
		case equalFold(opt, []byte("keep-alive")):
		default:
			return false
		}
	}
	return true
}

// cutField takes the first header line off lines (each line ends in CRLF):
// its name, its value without surrounding whitespace, and the rest. ok is
// false unless the line is strictly "name:value" with a token for a name
// and field bytes only in the value.
func cutField(lines []byte) (name, value, rest []byte, ok bool) {
	nl := bytes.IndexByte(lines, '\n')
	if nl < 1 || lines[nl-1] != '\r' {
		return nil, nil, nil, false
	}
	text := lines[:nl-1]
	k := 0
	for k < len(text) && framing.Token(text[k]) {
		k++
	}
	if k == 0 || k >= len(text) || text[k] != ':' {
		return nil, nil, nil, false
	}
	for _, c := range text[k+1:] {
		if !framing.FieldByte(c) {
			return nil, nil, nil, false
		}
	}
	return text[:k], framing.TrimOWS(text[k+1:]), lines[nl+1:], true
}

// nextLine takes the first line off the header lines of a head that
// parseRequest or parseResponse accepted: the name, and the whole line with
// its CRLF.
func nextLine(lines []byte) (name, line, rest []byte) {
	nl := bytes.IndexByte(lines, '\n')
	line = lines[:nl+1]
	return line[:bytes.IndexByte(line, ':')], line, lines[nl+1:]
}

// equalFold compares a header name with a lower-case one, ASCII letters
// case-insensitively and every other byte exactly.
func equalFold(name, lower []byte) bool {
	if len(name) != len(lower) {
		return false
	}
	for i, c := range name {
		if c >= 'A' && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != lower[i] {
			return false
		}
	}
	return true
}

// parseDecimal parses a Content-Length or chunk-size-like decimal: digits
// only, at most 18 of them.
func parseDecimal(v []byte) (int, bool) {
	if len(v) == 0 || len(v) > 18 {
		return 0, false
	}
	n := 0
	for _, c := range v {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int(c-'0')
	}
	return n, true
}

// bodyFraming is how a response body is delimited.
type bodyFraming uint8

const (
	noBody   bodyFraming = iota // HEAD, 1xx, 204, 304
	byLength                    // Content-Length
	chunked                     // Transfer-Encoding: chunked
	byClose                     // until the upstream closes the connection
)

// response is a parsed upstream response head.
type response struct {
	status    int
	http10    bool
	frame     bodyFraming
	length    int  // byLength, or the Content-Length of a bodiless response
	hasLength bool // a Content-Length came
	hasDate   bool // a Date came
	hasServer bool // a Server came
	close     bool // the upstream closes the connection after it
	head      int  // length of the head, blank line included
	line      []byte
	headers   []byte   // header lines, each with its CRLF
	drop      [][]byte // header names the Connection header lists
}

// parseResponse parses the response head at the start of b, for a request
// of method head (true for HEAD). ok is false for a malformed head; more is
// true when it is not complete yet.
func parseResponse(b []byte, isHead bool, r *response) (more, ok bool) {
	end := bytes.Index(b, crlfcrlf)
	if end < 0 {
		return len(b) < maxResponseHead, len(b) < maxResponseHead
	}
	*r = response{drop: r.drop[:0], head: end + 4}
	head := b[:end+2]
	nl := bytes.IndexByte(head, '\n')
	if nl < 1 || head[nl-1] != '\r' {
		return false, false
	}
	line := head[:nl-1]
	if len(line) < 12 || !bytes.HasPrefix(line, []byte("HTTP/1.")) || (line[7] != '0' && line[7] != '1') || line[8] != ' ' || (len(line) > 12 && line[12] != ' ') {
		return false, false
	}
	r.http10 = line[7] == '0'
	status, okStatus := parseDecimal(line[9:12])
	if !okStatus || status < 100 || status > 999 {
		return false, false
	}
	for _, c := range line[12:] {
		if !framing.FieldByte(c) {
			return false, false
		}
	}
	r.status = status
	r.line = line
	r.close = r.http10
	lines := head[nl+1:]
	r.headers = lines
	te, lengths := false, 0
	keepAlive := false
	for len(lines) > 0 {
		name, v, rest, ok := cutField(lines)
		if !ok {
			return false, false
		}
		lines = rest
		switch {
		case equalFold(name, hdrDate):
			r.hasDate = true
		case equalFold(name, hdrServer):
			r.hasServer = true
		case equalFold(name, hdrContentLength):
			n, okLen := parseDecimal(v)
			if !okLen || (lengths > 0 && n != r.length) {
				return false, false
			}
			lengths++
			r.length = n
		case equalFold(name, hdrTransferEncoding):
			// Only chunked, alone: other codings would have to be undone.
			if !equalFold(v, []byte("chunked")) || te {
				return false, false
			}
			te = true
		case equalFold(name, hdrConnection):
			for len(v) > 0 {
				var opt []byte
				opt, v, _ = bytes.Cut(v, []byte{','})
				opt = framing.TrimOWS(opt)
				switch {
				case len(opt) == 0:
				case equalFold(opt, []byte("close")):
					r.close = true
				case equalFold(opt, []byte("keep-alive")):
					keepAlive = true
				default:
					r.drop = append(r.drop, opt)
				}
			}
		}
	}
	r.hasLength = lengths > 0
	if r.http10 && keepAlive && !te && lengths > 0 {
		r.close = false
	}
	switch {
	case isHead || status < 200 || status == 204 || status == 304:
		r.frame = noBody
	case te:
		// Transfer-Encoding overrides Content-Length (RFC 9112, 6.3), and
		// such a message may be an attempt at smuggling: the connection
		// is not reused.
		r.frame = chunked
		if lengths > 0 {
			r.close = true
		}
	case lengths > 0:
		r.frame = byLength
	default:
		r.frame = byClose
		r.close = true
	}
	return false, true
}

// dropResponse reports the response headers not relayed to the client:
// hop-by-hop ones (the relay frames the body itself) and those the
// Connection header names.
func dropResponse(name []byte, r *response) bool {
	if DropsResponseHeader(name) || equalFold(name, hdrContentLength) {
		return true // Content-Length: written by the relay from the framing
	}
	for _, d := range r.drop {
		if len(d) == len(name) && bytes.EqualFold(d, name) {
			return true
		}
	}
	return false
}

// chunkReader follows a chunked body byte by byte to find where it ends;
// the bytes themselves are relayed as they are.
type chunkReader struct {
	state   uint8
	size    int // bytes of chunk data left
	digits  int
	trailer bool // the current trailer line has bytes
}

const (
	csSize      = iota // reading the chunk size
	csExt              // in a chunk extension, up to CR
	csSizeLF           // after the size line's CR
	csData             // in chunk data
	csDataCR           // after the data: CR
	csDataLF           // after the data: LF
	csTrailer          // in the trailer section (after the last chunk)
	csTrailerLF        // after a trailer line's CR
	csDone
)

// feed consumes p and returns how many bytes belong to the body (all of p
// unless the body ends inside it) and whether it is malformed.
func (c *chunkReader) feed(p []byte) (n int, bad bool) {
	for n < len(p) {
		b := p[n]
		switch c.state {
		case csSize:
			switch {
			case hexVal(b) >= 0:
				if c.digits == 15 {
					return n, true
				}
				c.size = c.size<<4 | hexVal(b)
				c.digits++
			case (b == ';' || b == ' ' || b == '\t') && c.digits > 0:
				c.state = csExt
			case b == '\r' && c.digits > 0:
				c.state = csSizeLF
			default:
				return n, true
			}
		case csExt:
			if b == '\r' {
				c.state = csSizeLF
			} else if b == '\n' {
				return n, true
			}
		case csSizeLF:
			if b != '\n' {
				return n, true
			}
			c.digits = 0
			if c.size == 0 {
				c.state = csTrailer
				c.trailer = false
			} else {
				c.state = csData
			}
		case csData:
			k := min(c.size, len(p)-n)
			c.size -= k
			n += k
			if c.size == 0 {
				c.state = csDataCR
			}
			continue
		case csDataCR:
			if b != '\r' {
				return n, true
			}
			c.state = csDataLF
		case csDataLF:
			if b != '\n' {
				return n, true
			}
			c.state = csSize
		case csTrailer:
			switch b {
			case '\r':
				c.state = csTrailerLF
			case '\n':
				return n, true
			default:
				c.trailer = true
			}
		case csTrailerLF:
			if b != '\n' {
				return n, true
			}
			if !c.trailer {
				c.state = csDone
				return n + 1, false
			}
			c.trailer = false
			c.state = csTrailer
		case csDone:
			return n, false
		}
		n++
	}
	return n, false
}

func (c *chunkReader) done() bool { return c.state == csDone }

func hexVal(b byte) int {
	switch {
	case b >= '0' && b <= '9':
		return int(b - '0')
	case b >= 'a' && b <= 'f':
		return int(b-'a') + 10
	case b >= 'A' && b <= 'F':
		return int(b-'A') + 10
	}
	return -1
}
