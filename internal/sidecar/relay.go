package sidecar

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"runtime"
	"strings"
	"sync"

	"github.com/valyala/fasthttp"

	"github.com/direktiv/direktiv-authz/internal/answer"
	"github.com/direktiv/direktiv-authz/internal/apierror"
	"github.com/direktiv/direktiv-authz/internal/audit"
	"github.com/direktiv/direktiv-authz/internal/authn"
	"github.com/direktiv/direktiv-authz/internal/authz"
	"github.com/direktiv/direktiv-authz/internal/classify"
	"github.com/direktiv/direktiv-authz/internal/credential"
	"github.com/direktiv/direktiv-authz/internal/metrics"
	"github.com/direktiv/direktiv-authz/internal/relay"
	"github.com/direktiv/direktiv-authz/internal/secret"
	"github.com/direktiv/direktiv-authz/internal/tokens"
	"github.com/direktiv/direktiv-authz/store"
)

// The fast path. Requests arrive on the relay's event loops
// (internal/relay), which forward the plain, allowed ones themselves, and
// serve mints themselves when the store is Redis (answerMint: the server's
// mint code, with the create made through redis.Store.CreateAsync, which
// does not block the loop). Refusals, and the sidecar's other endpoints on a
// connection the loops have served before, are answered off the loop by the
// server's own handlers (serveOne), so that each is decided, answered,
// audited and counted in one place. Every other connection is handed, from
// the request the loops could not take on, to the fasthttp server: one that
// starts with the sidecar's other endpoints, malformed or unusual requests,
// large or chunked bodies. relayHandler decides which is which with the
// same decision as the server's (authz); a denial is never forwarded.

// relayHandler is the sidecar's relay.Handler.
type relayHandler struct{ a *app }

// lookupNote carries a store lookup done off the loop to the next Decide.
type lookupNote struct {
	rec store.Token
	err error
}

// Decide forwards a request the relay may send as it is: one that the
// authz decision allows at once, with the credential of the request read by
// credential.Reader and, for a minted token, its record cached (or just looked
// up: a cache miss is a Wait for the lookup). Refusals are served by the
// server's handlers off the loop (serveOne); requests whose answer the
// sidecar checks or rewrites (lookups, transforms) are handed to the
// server, as are the sidecar's own endpoints on a connection that starts
// with them.
func (h relayHandler) Decide(r *relay.Request) relay.Verdict {
	a := h.a
	req, err := classify.Read(r.Method, r.Target)
	if err != nil {
		return h.refuse(r, authz.Decision{Req: req}, err, false)
	}
	if req.Own {
		if a.loopMint(req) {
			return h.mint(r, req)
		}
		// The sidecar's other endpoints (and mints where the loops do not
		// serve them). A connection that has been served on the loops
		// before keeps to them: the request is served off the loop by the
		// server's handler. One that starts with them is handed to the
		// server for good: serving each request off the loop costs a second
		// parse, a goroutine and a loop wake-up (bench/RESULTS.md measured
		// it when mints went this way).
		if r.Served > 0 {
			return h.serve(r)
		}
		return relay.Verdict{Action: relay.Handoff}
	}
	cred, err := a.loopCredential(r)
	if err != nil {
		return h.refuse(r, authz.Decision{Req: req}, err, true)
	}
	var who authn.Caller
	var authErr error
	if cred.Kind == credential.Minted {
		var wait *relay.Verdict
		who, authErr = a.authn.AuthenticateWith(cred, func(sec secret.Secret) (store.Token, error) {
			found, w := a.loopRecord(r, sec, false)
			if w != nil {
				wait = w
				return store.Token{}, errWouldBlock
			}
			return found.rec, found.err
		})
		if wait != nil {
			return *wait
		}
	}
	d, err := a.authz.Decide(cred, who, authErr, req, r)
	switch {
	case err != nil:
		return h.refuse(r, d, err, true)
	case len(d.Route.Lookups) > 0 || d.Route.Transform != "":
		return relay.Verdict{Action: relay.Handoff}
	}
	v := relay.Verdict{Action: relay.Forward, Token: d.Creds, Label: uint8(req.Family)}
	if d.Creds == authz.CredsKey {
		v.Value = a.upstreamKey
	}
	return v
}

// loopRecord finds sec's record for r on the loop: the lookup of the Wait
// before this Decide (r.Note), or the token cache's. When neither has it,
// wait is the Wait that looks it up off the loop (answers: the request is
// answered, not forwarded; see relay.Verdict.Answers).
func (a *app) loopRecord(r *relay.Request, sec secret.Secret, answers bool) (found lookupNote, wait *relay.Verdict) {
	if n, ok := r.Note.(lookupNote); ok {
		return n, nil
	}
	rec, gen, cached := a.cache.Get(sec.Namespace, sec.ID)
	if cached {
		return lookupNote{rec: rec}, nil
	}
	return lookupNote{}, &relay.Verdict{Action: relay.Wait, Answers: answers, Wait: func() any {
		rec, err := a.authn.LookupToken(context.Background(), sec, gen)
		return lookupNote{rec: rec, err: err}
	}}
}

// loopMint reports whether the loops serve an own request as a mint:
// POST /api/namespaces/{ns}/auth/token, when the store is Redis (whose
// creates do not block the loop: redis.Store.CreateAsync).
func (a *app) loopMint(r classify.Request) bool {
	return a.loopMints && r.Method == "POST" && len(r.Rest) == 1 && r.Rest[0] == "token"
}

// loopCredential reads the credential of a request on the event loops.
func (a *app) loopCredential(req *relay.Request) (credential.Credential, error) {
	r := credential.Reader{Admin: a.cfg.AdminToken}
	for name, value := range req.Fields {
		if !r.Field(name, value) {
			break
		}
	}
	return r.Result()
}

// errWouldBlock is a store lookup the loop cannot make: the request is
// handed to the server.
var errWouldBlock = errors.New("a store lookup on the event loop")

// mint is the Verdict for a mint request: a Wait for the minting token's
// record when it is not cached, then an Answer on the loop (answerMint).
func (h relayHandler) mint(r *relay.Request, req classify.Request) relay.Verdict {
	a := h.a
	var sec secret.Secret
	var found lookupNote
	if cred, err := a.loopCredential(r); err == nil && cred.Kind == credential.Minted {
		if s, err := secret.Parse(string(cred.Value)); err == nil {
			var wait *relay.Verdict
			if found, wait = a.loopRecord(r, s, true); wait != nil {
				return *wait
			}
			sec = s
		}
	}
	find := func(s secret.Secret) (store.Token, error) {
		if s.ID != sec.ID || s.Namespace != sec.Namespace {
			return store.Token{}, errWouldBlock // not the token found above: cannot happen, as both read the same headers with credential.Reader
		}
		return found.rec, found.err
	}
	// The Answer may run after a Wait, when req's bytes are gone: it keeps
	// only what it needs.
	remote, ns, family := net.TCPAddrFromAddrPort(r.Remote), req.NS, req.Family
	return relay.Verdict{Action: relay.Answer, Answer: func(raw []byte) relay.Reply {
		return a.answerMint(raw, remote, ns, family, find)
	}}
}

// answerMint serves a mint on the loop: the token endpoints' steps
// (tokens.Endpoints.BeginMint, the create, EndMint), with the create made
// without blocking the loop (redis.Store.CreateAsync, batched with the
// other creates) and the answer written when it is stored. The response,
// audit line and metrics are the server's.
func (a *app) answerMint(raw []byte, remote net.Addr, ns string, family classify.Family, find func(secret.Secret) (store.Token, error)) relay.Reply {
	ctx, ok := a.readServeCtx(raw, remote)
	if !ok {
		return relay.Reply{}
	}
	ev := &audit.Event{Action: "mint", Namespace: ns, Decision: "deny"}
	plan, err := a.tokens.BeginMint(&ctx.RequestCtx, ns, ev, find)
	if errors.Is(err, errWouldBlock) {
		releaseServeCtx(ctx)
		return relay.Reply{}
	}
	if err != nil || plan.DryRun {
		a.tokens.EndMint(&ctx.RequestCtx, plan, ev, err)
		a.metrics.Request(family, ctx.Response.StatusCode())
		return a.serveReply(ctx)
	}
	return relay.Reply{Later: func(answer func(relay.Reply)) {
		start := metrics.Mono()
		a.redis.CreateAsync(plan.Rec, plan.Limit, func(err error) {
			a.metrics.CreateDone(start, err)
			a.tokens.EndMint(&ctx.RequestCtx, plan, ev, a.tokens.Stored(&ctx.RequestCtx, plan, ev, err))
			a.metrics.Request(family, ctx.Response.StatusCode())
			answer(a.serveReply(ctx))
		})
	}}
}

// serve is the Verdict serving an own endpoint's request with the
// server's handler, off the loop (serveOne).
func (h relayHandler) serve(r *relay.Request) relay.Verdict {
	remote := net.TCPAddrFromAddrPort(r.Remote)
	return relay.Verdict{Action: relay.Serve, Serve: func(raw []byte) ([]byte, bool) {
		return h.a.serveOne(raw, remote, authz.Decision{}, refusal{})
	}}
}

// refuse is the Verdict answering a request refused with err, as decided
// above: answered off the loop (serveOne), never decided again, and
// audited when the server would audit it (audit).
func (h relayHandler) refuse(r *relay.Request, d authz.Decision, err error, audit bool) relay.Verdict {
	remote := net.TCPAddrFromAddrPort(r.Remote)
	return relay.Verdict{Action: relay.Serve, Serve: func(raw []byte) ([]byte, bool) {
		return h.a.serveOne(raw, remote, d, refusal{err, audit})
	}}
}

// refusal is a request's refusal, decided on the loop, for serveOne.
type refusal struct {
	err   error
	audit bool
}

// serveOne answers one request the relay read whole, with the server's own
// handler or, for a refusal (refused), with its answer, and returns the
// response as bytes and whether the connection is to close after it.
func (a *app) serveOne(raw []byte, remote net.Addr, d authz.Decision, refused refusal) ([]byte, bool) {
	ctx, ok := a.readServeCtx(raw, remote)
	if !ok {
		return nil, false // the relay's parser took it; fasthttp's did not: let the server answer
	}
	if refused.err != nil {
		if refused.audit {
			a.forward.AuditRefusal(&ctx.RequestCtx, d.Req, d, refused.err)
		}
		a.answers.Error(&ctx.RequestCtx, refused.err)
		a.metrics.Request(d.Req.Family, ctx.Response.StatusCode())
	} else {
		a.server.Handler(&ctx.RequestCtx) // counted by handle
	}
	rep := a.serveReply(ctx)
	return rep.Resp, rep.Close
}

// readServeCtx reads the request raw, which the relay read whole, into a
// pooled request context.
func (a *app) readServeCtx(raw []byte, remote net.Addr) (*serveCtx, bool) {
	ctx := acquireServeCtx()
	ctx.Init(&ctx.empty, remote, nil)
	ctx.br.Reset(bytes.NewReader(raw))
	if err := ctx.Request.Read(&ctx.br); err != nil {
		releaseServeCtx(ctx)
		return nil, false
	}
	return ctx, true
}

// serveReply is ctx's response as the server would write it, and whether
// the connection is to close after it. It releases ctx.
func (a *app) serveReply(ctx *serveCtx) relay.Reply {
	defer releaseServeCtx(ctx)
	resp := &ctx.Response
	if resp.IsBodyStream() {
		// Not a response of the sidecar's own: nothing here forwards.
		resp.CloseBodyStream()
		path, _ := answer.Target(&ctx.RequestCtx)
		a.log.Error("request failed", "method", string(ctx.Method()), "path", string(path), "err", "a streamed response where the sidecar answers itself")
		resp.Reset()
		a.answers.Error(&ctx.RequestCtx, errors.New("internal error"))
	}
	resp.Header.SetNoDefaultContentType(true)
	if len(resp.Header.Server()) == 0 {
		resp.Header.SetServer(a.server.Name) // as the server sends it
	}
	resp.SkipBody = ctx.IsHead()
	closeAfter := resp.ConnectionClose() || ctx.Request.Header.ConnectionClose()
	if closeAfter {
		resp.SetConnectionClose()
	}
	ctx.out.Reset()
	if _, err := resp.WriteTo(&ctx.out); err != nil {
		return relay.Reply{}
	}
	return relay.Reply{Resp: append([]byte(nil), ctx.out.Bytes()...), Close: closeAfter}
}

// serveCtx is serveOne's pooled state.
type serveCtx struct {
	fasthttp.RequestCtx
	empty fasthttp.Request
	br    bufio.Reader
	out   bytes.Buffer
}

var serveCtxPool sync.Pool

func acquireServeCtx() *serveCtx {
	if c, ok := serveCtxPool.Get().(*serveCtx); ok {
		return c
	}
	c := &serveCtx{}
	c.br = *bufio.NewReaderSize(nil, 4096)
	return c
}

func releaseServeCtx(c *serveCtx) {
	c.Request.Reset()
	c.Response.Reset()
	c.br.Reset(nil)
	serveCtxPool.Put(c)
}

// Fail answers a request the upstream failed, and logs the cause as
// answer.Writer.Error does.
func (h relayHandler) Fail(method, target []byte, f relay.Failure, cause error) relay.Response {
	a := h.a
	ae := a.proxy.FailureError(f, cause)
	status := ae.Status()
	path, _, _ := bytes.Cut(target, []byte{'?'})
	a.log.Error("request failed", "method", string(method), "path", string(path), "status", status, "err", ae.Error())
	return relay.Response{
		Status: status,
		Header: [][2]string{{"Content-Type", "application/json"}, {"Cache-Control", "no-store"}},
		Body:   apierror.JSON(make([]byte, 0, 160), path, ae),
	}
}

// Done counts a forwarded request in the metrics under the family Decide
// read (Verdict.Label), as handle and forward count the server's.
func (h relayHandler) Done(e *relay.Exchange) {
	m := h.a.metrics
	if m == nil || e.Status == 0 {
		return // no metrics, or the client left before an answer: nothing was answered
	}
	m.Request(classify.Family(e.Label), e.Status)
	m.UpstreamTook(e.Upstream, e.Failure)
}

// relayListener is the server's listener when the relay accepts: it yields
// the connections the relay hands off.
type relayListener struct {
	addr  net.Addr
	conns chan net.Conn
	done  chan struct{}
	once  sync.Once
}

func newRelayListener(addr net.Addr) *relayListener {
	return &relayListener{addr: addr, conns: make(chan net.Conn, 1024), done: make(chan struct{})}
}

func (l *relayListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *relayListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

func (l *relayListener) Addr() net.Addr { return l.addr }

// handoff queues c for the server; after Close it closes c (the sidecar is
// stopping). It blocks only when 1024 handed-off connections wait.
func (l *relayListener) handoff(c net.Conn) {
	select {
	case <-l.done:
		c.Close()
	default:
		select {
		case l.conns <- c:
		case <-l.done:
			c.Close()
		}
	}
}

// newRelay puts the relay on the main listener, unless it is off, the
// listener serves TLS or the upstream is https (the relay speaks plain
// HTTP on both sides); the server then accepts as before.
func (a *app) newRelay() error {
	if a.cfg.Loops < 0 || a.tlsCert != nil || a.cfg.UpstreamBase.Scheme != "http" {
		return nil
	}
	if !relay.Supported {
		a.log.Warn("event loops unavailable on "+runtime.GOOS+": the server serves every request", "event_loops", a.cfg.EventLoops, "error", relay.ErrUnsupported.Error())
		return nil
	}
	tl, ok := a.ln.(*net.TCPListener)
	if !ok {
		return nil
	}
	u := a.cfg.UpstreamBase
	a.upstreamKey = []byte(a.cfg.UpstreamKey)
	a.relayLn = newRelayListener(a.ln.Addr())
	a.loopMints = a.redis != nil
	r, err := relay.New(tl, relay.Options{
		Upstream:          fasthttp.AddMissingPort(u.Host, false), // as the server's client dials it
		BasePath:          strings.TrimSuffix(u.EscapedPath(), "/"),
		Host:              u.Host,
		PreserveHost:      a.cfg.PreserveHost,
		TokenHeader:       a.cfg.UpstreamAPIKeyHeader,
		CredentialHeaders: credential.Headers,
		ServerName:        a.server.Name, // as the server sends it
		Loops:             a.cfg.Loops,
		MaxConns:          a.cfg.MaxUpstreamConns,
		MaxBody:           tokens.BodyLimit,
		DialTimeout:       a.cfg.DialTimeout,
		Timeout:           a.cfg.ResponseTimeout,
		IdleTimeout:       a.server.IdleTimeout,
		ReadTimeout:       a.server.ReadTimeout,
		Handler:           relayHandler{a},
		Handoff:           a.relayLn.handoff,
		Log:               a.log,
	})
	if err != nil {
		return fmt.Errorf("event loops: %w", err)
	}
	a.relay = r
	return nil
}
