package main

import (
	"io"
	"strconv"
	"sync"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/direktiv/direktiv-authz/internal/jsonenc"
)

// auditEvent is one line of the audit trail: every mint, dry run and revoke,
// and every refused mint, token call or forwarded request. It never holds a
// secret: callers are named by token id, or "admin".
type auditEvent struct {
	Action    string   // mint, dry_run, revoke, revoke_complete, list, get, whoami, forward
	Namespace string   // the namespace acted on; "" for non-namespaced routes
	Caller    string   // "admin", a token id, or "" when unauthenticated
	Decision  string   // allow or deny
	Reason    string   // why it was denied, as told to the client
	Status    int      // the HTTP status answered
	Requested []string // mint: requested policies
	Granted   []string // mint: granted policies
	Dropped   []string // mint: requested but not held
	Token     string   // mint: the new token's id
	Target    string   // revoke: the id asked for
	Revoked   []string // revoke: the ids removed by the call (the token first)
	Count     int      // revoke: tokens revoked so far (revoke_complete: in all)
	Complete  bool     // revoke: every descendant removed
	Method    string   // forward
	Path      string   // forward: the raw path, without the query
}

// auditLog writes audit lines as JSON, one object per line, with the keys
// in a fixed order, so that the shape stays stable whatever the log level of
// the operational log:
//
//	{"time":RFC 3339 with nanoseconds,"level":"INFO","msg":"audit","log":"audit",
//	 "action","namespace","caller","decision","status","reason","requested",
//	 "granted","dropped","token","target","revoked","count","complete",
//	 "method","path","client","revision"}
//
// The line is the one log/slog's JSON handler wrote for these attributes
// (the operational log's format), built by hand: slog encodes the string
// lists with encoding/json's reflection, which cost a mint more than the
// rest of its line. Strings are escaped as encoding/json escapes them
// without its HTML escapes (slog's lists escape '<', '>' and '&'; slog's
// strings write \b and \f as \u0008 and \u000c): the same JSON values.
type auditLog struct {
	w    io.Writer // one Write per line, whole
	bufs sync.Pool // *[]byte
}

func newAuditLog(w io.Writer) *auditLog { return &auditLog{w: w} }

// audit writes one audit line.
func (a *app) audit(ctx *fasthttp.RequestCtx, e auditEvent) {
	if a.audits == nil {
		return
	}
	a.audits.write(time.Now(), e, ctx.RemoteAddr().String(), a.engine.Revision())
}

func (l *auditLog) write(now time.Time, e auditEvent, client, revision string) {
	bp, _ := l.bufs.Get().(*[]byte)
	if bp == nil {
		bp = new([]byte)
	}
	b := append((*bp)[:0], `{"time":"`...)
	b = now.AppendFormat(b, time.RFC3339Nano)
	b = append(b, `","level":"INFO","msg":"audit","log":"audit","action":`...)
	b = jsonenc.String(b, e.Action, false)
	b = append(b, `,"namespace":`...)
	b = jsonenc.String(b, e.Namespace, false)
	b = append(b, `,"caller":`...)
	b = jsonenc.String(b, e.Caller, false)
	b = append(b, `,"decision":`...)
	b = jsonenc.String(b, e.Decision, false)
	b = append(b, `,"status":`...)
	b = strconv.AppendInt(b, int64(e.Status), 10)
	b = append(b, `,"reason":`...)
	b = jsonenc.String(b, e.Reason, false)
	b = append(b, `,"requested":`...)
	b = jsonenc.Strings(b, nonNil(e.Requested), false)
	b = append(b, `,"granted":`...)
	b = jsonenc.Strings(b, nonNil(e.Granted), false)
	b = append(b, `,"dropped":`...)
	b = jsonenc.Strings(b, nonNil(e.Dropped), false)
	b = append(b, `,"token":`...)
	b = jsonenc.String(b, e.Token, false)
	b = append(b, `,"target":`...)
	b = jsonenc.String(b, e.Target, false)
	b = append(b, `,"revoked":`...)
	b = jsonenc.Strings(b, nonNil(e.Revoked), false)
	b = append(b, `,"count":`...)
	b = strconv.AppendInt(b, int64(e.Count), 10)
	b = append(b, `,"complete":`...)
	b = strconv.AppendBool(b, e.Complete)
	b = append(b, `,"method":`...)
	b = jsonenc.String(b, e.Method, false)
	b = append(b, `,"path":`...)
	b = jsonenc.String(b, e.Path, false)
	b = append(b, `,"client":`...)
	b = jsonenc.String(b, client, false)
	b = append(b, `,"revision":`...)
	b = jsonenc.String(b, revision, false)
	b = append(b, "}\n"...)
	_, _ = l.w.Write(b) // as slog: a failed log write is not the request's error
	if cap(b) <= 64<<10 {
		*bp = b
		l.bufs.Put(bp)
	}
}
