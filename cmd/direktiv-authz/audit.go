package main

import (
	"io"
	"log/slog"

	"github.com/valyala/fasthttp"
)

// auditEvent is one line of the audit trail: every mint, dry run and revoke,
// and every refused mint, token call or forwarded request. It never holds a
// secret: callers are named by token id, or "admin".
type auditEvent struct {
	Action    string   // mint, dry_run, revoke, list, get, whoami, forward
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
	Revoked   []string // revoke: every id revoked (the cascade)
	Method    string   // forward
	Path      string   // forward: the raw path, without the query
}

// newAuditLogger writes audit lines as JSON, one object per line, with the
// keys in a fixed order (see audit) so that the shape stays stable whatever
// the log level of the operational log.
func newAuditLogger(w io.Writer) *slog.Logger {
	return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

// audit writes one audit line.
func (a *app) audit(ctx *fasthttp.RequestCtx, e auditEvent) {
	if a.audits == nil {
		return
	}
	attrs := []slog.Attr{
		slog.String("log", "audit"),
		slog.String("action", e.Action),
		slog.String("namespace", e.Namespace),
		slog.String("caller", e.Caller),
		slog.String("decision", e.Decision),
		slog.Int("status", e.Status),
		slog.String("reason", e.Reason),
		slog.Any("requested", nonNil(e.Requested)),
		slog.Any("granted", nonNil(e.Granted)),
		slog.Any("dropped", nonNil(e.Dropped)),
		slog.String("token", e.Token),
		slog.String("target", e.Target),
		slog.Any("revoked", nonNil(e.Revoked)),
		slog.String("method", e.Method),
		slog.String("path", e.Path),
		slog.String("client", ctx.RemoteAddr().String()),
		slog.String("revision", a.engine.Revision()),
	}
	a.audits.LogAttrs(ctx, slog.LevelInfo, "audit", attrs...)
}
