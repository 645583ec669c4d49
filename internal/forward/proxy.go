package forward

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"iter"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/direktiv/direktiv-authz/internal/apierror"
	"github.com/direktiv/direktiv-authz/internal/authz"
	"github.com/direktiv/direktiv-authz/internal/config"
	"github.com/direktiv/direktiv-authz/internal/credential"
	"github.com/direktiv/direktiv-authz/internal/framing"
	"github.com/direktiv/direktiv-authz/internal/relay"
)

// upstreamReadBuffer is the per-connection read buffer for upstream
// responses; it also bounds the size of a response's headers.
const upstreamReadBuffer = 16 << 10

// Proxy forwards requests to the upstream Direktiv API over a pool of
// keep-alive connections. Method, path and query go out byte for byte as
// received; bodies are streamed both ways, never buffered whole; hop-by-hop
// headers are dropped and X-Forwarded-For/-Proto/-Host are set.
type Proxy struct {
	client       *fasthttp.HostClient
	base         string // scheme://host plus the base URL's path, no trailing '/'
	key          string // the upstream API key, "" for none; never logged
	keyHeader    string // the header it is sent in
	preserveHost bool
	dialTimeout  time.Duration
	timeout      time.Duration // to the first byte of a response; 0: none
	tls          *tls.Config   // nil for http://
	log          *slog.Logger
	scratch      sync.Pool // *[]byte: request URI and header values being built

	mu      sync.Mutex
	closed  bool                       // set by interrupt: the sidecar is stopping
	streams map[*upstreamBody]struct{} // responses of unknown length being streamed
}

// NewProxy builds the proxy for cfg.UpstreamBase; it opens no connection.
func NewProxy(cfg config.Config, log *slog.Logger) *Proxy {
	u := cfg.UpstreamBase
	p := &Proxy{
		base:         u.Scheme + "://" + u.Host + strings.TrimSuffix(u.EscapedPath(), "/"),
		preserveHost: cfg.PreserveHost,
		key:          cfg.UpstreamKey,
		keyHeader:    cfg.UpstreamAPIKeyHeader,
		dialTimeout:  cfg.DialTimeout,
		timeout:      cfg.ResponseTimeout,
		log:          log,
		streams:      make(map[*upstreamBody]struct{}),
	}
	if u.Scheme == "https" {
		p.tls = &tls.Config{ServerName: u.Hostname(), RootCAs: cfg.UpstreamRoots, MinVersion: tls.VersionTLS12}
	}
	p.client = &fasthttp.HostClient{
		Addr:                      fasthttp.AddMissingPort(u.Host, u.Scheme == "https"),
		IsTLS:                     u.Scheme == "https",
		Dial:                      p.dial,
		MaxConns:                  cfg.MaxUpstreamConns,
		MaxConnWaitTimeout:        cfg.DialTimeout,
		MaxIdemponentCallAttempts: 2,
		RetryIfErr:                retryIfErr,
		ReadBufferSize:            upstreamReadBuffer,
		NoDefaultUserAgentHeader:  true,
		DisablePathNormalizing:    true,
		StreamResponseBody:        true,
		SecureErrorLogMessage:     true,
	}
	return p
}

// forward sends the request upstream and sets the upstream's answer as the
// response, its body streamed. It returns apierror.BadGateway when the upstream
// cannot be reached or breaks the exchange, apierror.GatewayTimeout when it does
// not connect within --upstream-dial-timeout or does not start answering
// within --upstream-timeout, apierror.Unavailable when all --upstream-max-conns
// connections stay busy for --upstream-dial-timeout, and apierror.BadRequest for
// a request target that is not a path (such as OPTIONS *); the response is
// then untouched.
func (p *Proxy) forward(ctx *fasthttp.RequestCtx, d authz.Decision) error {
	req := fasthttp.AcquireRequest()
	resp := fasthttp.AcquireResponse()
	p.prepare(ctx, req, d)
	if err := p.client.Do(req, resp); err != nil {
		fasthttp.ReleaseRequest(req)
		fasthttp.ReleaseResponse(resp)
		if ctx.Request.IsBodyStream() {
			// The rest of the body may be unread: the connection cannot
			// carry another request.
			ctx.SetConnectionClose()
		}
		if fe := framing.Failed(ctx.Conn()); fe != nil {
			return apierror.FromFraming(fe) // the client's body broke off the exchange
		}
		return p.upstreamError(err)
	}
	p.respond(ctx, req, resp)
	return nil
}

// prepare copies the client's request into req, as the upstream is to see
// it: hop-by-hop headers (and those the client names in Connection)
// removed, then the credential headers as creds says, so that nothing a
// client lists in Connection removes the key the sidecar adds.
func (p *Proxy) prepare(ctx *fasthttp.RequestCtx, req *fasthttp.Request, d authz.Decision) {
	creds := d.Creds
	in := &ctx.Request.Header
	in.CopyTo(&req.Header)
	out := &req.Header
	// No Content-Type (or User-Agent, see newProxy) of fasthttp's own where
	// the client sent none.
	out.SetNoDefaultContentType(true)
	for _, v := range in.PeekAll(fasthttp.HeaderConnection) {
		deleteNamed(out, v)
	}
	// Host stays for UseHostHeader; X-Forwarded-* are set below.
	deleteWhere(out, func(name []byte) bool {
		return relay.DropsRequestHeader(name) && !credential.EqualFoldName(name, "host")
	})
	if creds != authz.CredsKeep {
		deleteCredentials(out, p.keyHeader)
	}
	if creds == authz.CredsKey {
		out.Set(p.keyHeader, p.key)
	}

	bp := p.getScratch()
	buf := *bp

	// The upstream URI: the base URL, then the path and query the rules
	// decided on, as received.
	buf = append(buf[:0], p.base...)
	buf = append(buf, d.Req.Path...)
	if len(d.Req.Query) > 0 {
		buf = append(buf, '?')
		buf = append(buf, d.Req.Query...)
	}
	req.SetRequestURIBytes(buf)
	// Host is the upstream's, from the URI, unless the client's is kept.
	req.UseHostHeader = p.preserveHost

	buf = buf[:0]
	for _, v := range in.PeekAll(fasthttp.HeaderXForwardedFor) {
		buf = append(buf, v...)
		buf = append(buf, ", "...)
	}
	if addr, ok := ctx.RemoteAddr().(*net.TCPAddr); ok {
		buf, _ = addr.IP.AppendText(buf)
	} else {
		buf = append(buf, ctx.RemoteAddr().String()...)
	}
	// Set replaces one header of a name; Del drops every copy first.
	out.Del(fasthttp.HeaderXForwardedFor)
	out.SetBytesV(fasthttp.HeaderXForwardedFor, buf)
	out.Del(fasthttp.HeaderXForwardedProto)
	if ctx.IsTLS() {
		out.Set(fasthttp.HeaderXForwardedProto, "https")
	} else {
		out.Set(fasthttp.HeaderXForwardedProto, "http")
	}
	out.Del(fasthttp.HeaderXForwardedHost)
	if host := in.Host(); len(host) > 0 {
		out.SetBytesV(fasthttp.HeaderXForwardedHost, host)
	}
	*bp = buf
	p.scratch.Put(bp)

	if ctx.Request.IsBodyStream() {
		// The client is still sending: pass the body on as it arrives, with
		// its length, or chunked when the client chunked it. The wrapper
		// keeps the client from closing the server's stream.
		req.SetBodyStream(struct{ io.Reader }{ctx.RequestBodyStream()}, in.ContentLength())
	} else {
		// Small bodies (up to the server's MaxRequestBodySize) arrive whole.
		req.SetBodyRaw(ctx.Request.Body())
	}
}

func (p *Proxy) getScratch() *[]byte {
	if bp, ok := p.scratch.Get().(*[]byte); ok {
		return bp
	}
	b := make([]byte, 0, 512)
	return &b
}

// headers is a request's or a response's header, as fasthttp holds them.
type headers interface {
	All() iter.Seq2[[]byte, []byte]
	DelBytes(name []byte)
}

// deleteWhere deletes from h every header whose name drop reports.
func deleteWhere(h headers, drop func(name []byte) bool) {
	var names [][]byte
	for name := range h.All() {
		if drop(name) {
			names = append(names, append([]byte(nil), name...))
		}
	}
	for _, name := range names {
		h.DelBytes(name)
	}
}

// deleteCredentials deletes every credential header, and the header the
// upstream key goes in, from h, whatever the spelling of their names.
func deleteCredentials(h *fasthttp.RequestHeader, keyHeader string) {
	var names [][]byte
	for name := range h.All() {
		if credential.EqualFoldName(name, strings.ToLower(keyHeader)) {
			names = append(names, append([]byte(nil), name...))
			continue
		}
		for _, c := range credential.Headers {
			if credential.EqualFoldName(name, c) {
				names = append(names, append([]byte(nil), name...))
			}
		}
	}
	for _, name := range names {
		h.DelBytes(name)
	}
}

// deleteNamed deletes from h every header named in a Connection header
// value: a comma-separated list of header names.
func deleteNamed(h *fasthttp.RequestHeader, list []byte) {
	for len(list) > 0 {
		var name []byte
		name, list, _ = bytes.Cut(list, []byte{','})
		if name = bytes.TrimSpace(name); len(name) > 0 {
			h.DelBytes(name)
		}
	}
}

// respond sets the upstream's answer as ctx's response. The body is the
// upstream's stream: it is released, with req, when the server has written
// it or failed to.
func (p *Proxy) respond(ctx *fasthttp.RequestCtx, req *fasthttp.Request, resp *fasthttp.Response) {
	p.copyResponseHeader(ctx, resp)
	body, ok := resp.BodyStream().(fasthttp.ReadCloserWithError)
	if !ok {
		// No body to stream (a HEAD, a 204, a 304): the headers, the
		// upstream's Content-Length included, are the whole answer.
		fasthttp.ReleaseRequest(req)
		fasthttp.ReleaseResponse(resp)
		return
	}
	b := &upstreamBody{p: p, req: req, resp: resp, body: body}
	n := resp.Header.ContentLength()
	if n < 0 {
		// Unknown length, as for server-sent events: the server writes each
		// read as a chunk and flushes it, so events reach the client as the
		// upstream sends them; the headers go out at once, before the first.
		ctx.Response.ImmediateHeaderFlush = true
		p.track(b)
	}
	ctx.Response.SetBodyStream(b, n)
}

// copyResponseHeader sets the upstream's response headers on ctx's
// response, without hop-by-hop headers and those its Connection names.
func (p *Proxy) copyResponseHeader(ctx *fasthttp.RequestCtx, resp *fasthttp.Response) {
	out := &ctx.Response.Header
	resp.Header.CopyTo(out)
	for _, v := range resp.Header.PeekAll(fasthttp.HeaderConnection) {
		for list := v; len(list) > 0; {
			var name []byte
			name, list, _ = bytes.Cut(list, []byte{','})
			if name = bytes.TrimSpace(name); len(name) > 0 {
				out.DelBytes(name)
			}
		}
	}
	deleteWhere(out, relay.DropsResponseHeader)
	// No Content-Type of the sidecar's own where the upstream sent none.
	out.SetNoDefaultContentType(true)
}

// upstreamBody is a response body streamed from the upstream. The server
// reads it while writing the response and closes it when done; closing
// releases the upstream connection (or closes it, if the body was not read
// to its end) and the pooled request and response.
//
// This uses Response.SetBodyStream rather than SetBodyStreamWriter: the
// server then copies with no extra goroutine and pipe, keeps the upstream's
// Content-Length where there is one, flushes every chunk of a body of
// unknown length, and, when the upstream breaks off, aborts the client's
// connection instead of ending the response as if it were complete.
type upstreamBody struct {
	p    *Proxy
	req  *fasthttp.Request
	resp *fasthttp.Response
	body fasthttp.ReadCloserWithError
}

func (b *upstreamBody) Read(p []byte) (int, error) { return b.body.Read(p) }

// CloseWithError is called once by the server with the error that ended the
// write, if any.
func (b *upstreamBody) CloseWithError(err error) error {
	b.p.untrack(b)
	b.body.CloseWithError(err)
	fasthttp.ReleaseRequest(b.req)
	fasthttp.ReleaseResponse(b.resp)
	return nil
}

func (p *Proxy) track(b *upstreamBody) {
	p.mu.Lock()
	closed := p.closed
	if !closed {
		p.streams[b] = struct{}{}
	}
	p.mu.Unlock()
	if closed {
		b.body.CloseWithError(errStopping)
	}
}

func (p *Proxy) untrack(b *upstreamBody) {
	p.mu.Lock()
	delete(p.streams, b)
	p.mu.Unlock()
}

var errStopping = errors.New("the sidecar is stopping")

// Interrupt ends every response of unknown length being streamed, and any
// that starts later: event streams never end on their own, and would hold a
// graceful shutdown for its whole grace period. Their clients see the
// connection close and reconnect (to another replica). Responses of known
// length are left to finish.
func (p *Proxy) Interrupt() {
	p.mu.Lock()
	p.closed = true
	streams := make([]*upstreamBody, 0, len(p.streams))
	for b := range p.streams {
		streams = append(streams, b)
	}
	p.mu.Unlock()
	if len(streams) > 0 {
		p.log.Info("ending the event streams being forwarded, for shutdown", "streams", len(streams))
	}
	for _, b := range streams {
		// Safe while the server reads: it closes the upstream connection,
		// which ends the blocked Read. The server then calls CloseWithError.
		b.body.CloseWithError(errStopping)
	}
}

// Close closes the idle upstream connections; call it once the server has
// stopped.
func (p *Proxy) Close() { p.client.CloseIdleConnections() }

// Streaming is the number of responses of unknown length being streamed.
func (p *Proxy) Streaming() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.streams)
}

// dialError marks a failure to connect (TCP or TLS), as opposed to one of an
// established connection.
type dialError struct{ err error }

func (e *dialError) Error() string { return "connecting to the upstream: " + e.err.Error() }
func (e *dialError) Unwrap() error { return e.err }

// dial connects to the upstream within --upstream-dial-timeout, TLS
// handshake included, and arms --upstream-timeout on the connection.
func (p *Proxy) dial(addr string) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), p.dialTimeout)
	defer cancel()
	d := net.Dialer{KeepAlive: 30 * time.Second}
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, &dialError{err}
	}
	if p.tls != nil {
		tc := tls.Client(conn, p.tls)
		if err := tc.HandshakeContext(ctx); err != nil {
			conn.Close()
			return nil, &dialError{err}
		}
		conn = tc
	}
	return &awaitConn{Conn: conn, timeout: p.timeout}, nil
}

// awaitConn is an upstream connection that enforces --upstream-timeout: the
// time from the last byte of a request written to the first byte of its
// response read. Once the response has started, reads have no deadline, so
// that an event stream can stay open for hours and a large download can take
// as long as it takes.
//
// fasthttp's own ReadTimeout cannot do this: it also bounds the reading of a
// streamed body. A connection serves one request at a time, so the fields
// need no lock.
type awaitConn struct {
	net.Conn
	timeout time.Duration // 0: no limit
	waiting bool          // a request was written, no response byte read yet
	armed   bool          // the read deadline is set
}

func (c *awaitConn) Write(b []byte) (int, error) {
	c.waiting = true
	return c.Conn.Write(b)
}

func (c *awaitConn) Read(b []byte) (int, error) {
	if c.waiting && !c.armed && c.timeout > 0 {
		if err := c.Conn.SetReadDeadline(time.Now().Add(c.timeout)); err != nil {
			return 0, err
		}
		c.armed = true
	}
	n, err := c.Conn.Read(b)
	if n > 0 && c.waiting {
		c.waiting = false
		if c.armed {
			c.armed = false
			if derr := c.Conn.SetReadDeadline(time.Time{}); err == nil {
				err = derr
			}
		}
	}
	if err != nil && c.armed && errors.Is(err, os.ErrDeadlineExceeded) {
		return n, errAwaitTimeout
	}
	return n, err
}

// SetReadDeadline ignores the deadlines fasthttp sets: it sets none but
// clears them, which would clear the one Read armed. The proxy sets neither
// ReadTimeout nor request timeouts on the client.
func (c *awaitConn) SetReadDeadline(time.Time) error { return nil }

// Handshake tells fasthttp that the connection is ready as it is: dial did
// the TLS handshake of an https upstream itself, within the dial timeout.
func (c *awaitConn) Handshake() error { return nil }

// errAwaitTimeout is the error of a response that did not start within
// --upstream-timeout.
var errAwaitTimeout = timeoutError("the upstream did not start answering in time")

type timeoutError string

func (e timeoutError) Error() string { return string(e) }
func (e timeoutError) Timeout() bool { return true }

// retryIfErr allows the one retry fasthttp may make: a request that is safe
// to send again (GET, HEAD, OPTIONS; a streamed body is never retried) and
// failed on an established connection, typically a keep-alive connection
// the upstream closed while idle. Timeouts and failures to connect are not
// retried: they would only make the client wait twice as long.
func retryIfErr(req *fasthttp.Request, _ int, err error) (resetTimeout, retry bool) {
	var de *dialError
	if errors.As(err, &de) || isTimeout(err) {
		return false, false
	}
	return false, req.Header.IsGet() || req.Header.IsHead() || req.Header.IsOptions()
}

func isTimeout(err error) bool {
	if errors.Is(err, fasthttp.ErrTimeout) || errors.Is(err, os.ErrDeadlineExceeded) || errors.Is(err, context.DeadlineExceeded) {
		return true
	}
	var te interface{ Timeout() bool }
	return errors.As(err, &te) && te.Timeout()
}

// upstreamFailure is how an exchange with the upstream that ended with err
// failed, in the relay's terms (relay.NoFailure for nil), so that the
// server and the event loops answer and count failures alike.
func upstreamFailure(err error) relay.Failure {
	var de *dialError
	switch {
	case err == nil:
		return relay.NoFailure
	case errors.Is(err, fasthttp.ErrNoFreeConns):
		return relay.Busy
	case errors.As(err, &de) && isTimeout(err):
		return relay.DialTimeout
	case errors.As(err, &de):
		return relay.Unreachable
	case isTimeout(err):
		return relay.Timeout
	default:
		return relay.Broken
	}
}

// upstreamError is the answer to an exchange with the upstream that failed
// with err.
func (p *Proxy) upstreamError(err error) error {
	return p.FailureError(upstreamFailure(err), err)
}

// FailureError is the answer to an exchange with the upstream that failed
// as f; the cause goes to the log (answer.Writer.Error logs every 5xx), not to the
// client.
func (p *Proxy) FailureError(f relay.Failure, cause error) *apierror.Error {
	switch f {
	case relay.Busy:
		return &apierror.Error{Code: apierror.Unavailable, Message: fmt.Sprintf("all %d connections to the Direktiv API are busy; try again later", p.client.MaxConns), Err: cause}
	case relay.DialTimeout:
		return &apierror.Error{Code: apierror.GatewayTimeout, Message: fmt.Sprintf("the Direktiv API could not be reached within %s; try again later", p.dialTimeout), Err: cause}
	case relay.Unreachable:
		return &apierror.Error{Code: apierror.BadGateway, Message: "the Direktiv API cannot be reached; try again later", Err: cause}
	case relay.Timeout:
		return &apierror.Error{Code: apierror.GatewayTimeout, Message: fmt.Sprintf("the Direktiv API did not answer within %s", p.timeout), Err: cause}
	default:
		return &apierror.Error{Code: apierror.BadGateway, Message: "the Direktiv API broke off the exchange; try again later", Err: cause}
	}
}
