// Package audit writes the audit trail: one JSON line per mint, dry run and
// revoke, and per refused mint, token call or forwarded request, in a fixed
// key order. A line never holds a secret. It imports nothing of the project.
package audit

import (
	"bytes"
	"io"
	"sync"
	"time"

	gojson "github.com/goccy/go-json"
	"github.com/valyala/fasthttp"
)

// Event is one line of the audit trail: every mint, dry run and revoke,
// and every refused mint, token call or forwarded request. It never holds a
// secret: callers are named by token id, or "admin".
type Event struct {
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

// Log writes audit lines as JSON, one object per line, with the keys
// in a fixed order, so that the shape stays stable whatever the log level of
// the operational log:
//
//	{"time":RFC 3339 with nanoseconds,"level":"INFO","msg":"audit","log":"audit",
//	 "action","namespace","caller","decision","status","reason","requested",
//	 "granted","dropped","token","target","revoked","count","complete",
//	 "method","path","client","revision"}
//
// The line is the one log/slog's JSON handler wrote for these attributes
// (the operational log's format), encoded from line by goccy/go-json
// byte for byte as encoding/json's Encoder with SetEscapeHTML(false) writes
// it (slog's lists escape '<', '>' and '&'; slog's strings write \b and \f
// as \u0008 and \u000c): the same JSON values. goccy rather than
// encoding/json or a hand-written encoder: see bench/RESULTS.md, issue 17.
type Log struct {
	w        io.Writer // one Write per line, whole
	bufs     sync.Pool // *lineBuf
	revision func() string
}

// line is an audit line's keys, in order.
type line struct {
	Time      time.Time `json:"time"`
	Level     string    `json:"level"`
	Msg       string    `json:"msg"`
	Log       string    `json:"log"`
	Action    string    `json:"action"`
	Namespace string    `json:"namespace"`
	Caller    string    `json:"caller"`
	Decision  string    `json:"decision"`
	Status    int       `json:"status"`
	Reason    string    `json:"reason"`
	Requested []string  `json:"requested"`
	Granted   []string  `json:"granted"`
	Dropped   []string  `json:"dropped"`
	Token     string    `json:"token"`
	Target    string    `json:"target"`
	Revoked   []string  `json:"revoked"`
	Count     int       `json:"count"`
	Complete  bool      `json:"complete"`
	Method    string    `json:"method"`
	Path      string    `json:"path"`
	Client    string    `json:"client"`
	Revision  string    `json:"revision"`
}

// lineBuf is a line's buffer with its encoder, reused.
type lineBuf struct {
	b   bytes.Buffer
	enc *gojson.Encoder
}

// New returns a Log writing each line to w in one Write.
func New(w io.Writer) *Log { return &Log{w: w} }

// SetRevision names the policy revision Request writes in each line; it
// is set once, before the first request.
func (l *Log) SetRevision(revision func() string) {
	if l != nil {
		l.revision = revision
	}
}

// Request writes e for the request of ctx, now, under the current policy
// revision. A nil *Log writes nothing.
func (l *Log) Request(ctx *fasthttp.RequestCtx, e Event) {
	if l == nil {
		return
	}
	revision := ""
	if l.revision != nil {
		revision = l.revision()
	}
	l.Write(time.Now(), e, ctx.RemoteAddr().String(), revision)
}

// Write writes e as one line at now, for the client at address client,
// decided under the policy revision.
func (l *Log) Write(now time.Time, e Event, client, revision string) {
	ab, _ := l.bufs.Get().(*lineBuf)
	if ab == nil {
		ab = new(lineBuf)
		ab.enc = gojson.NewEncoder(&ab.b)
		ab.enc.SetEscapeHTML(false) // not gojson.MarshalNoEscape: it escapes HTML all the same
	}
	ab.b.Reset()
	// Strings, lists and a time of year 0..9999: cannot fail.
	_ = ab.enc.Encode(line{Time: now, Level: "INFO", Msg: "audit", Log: "audit",
		Action: e.Action, Namespace: e.Namespace, Caller: e.Caller, Decision: e.Decision, Status: e.Status, Reason: e.Reason,
		Requested: nonNil(e.Requested), Granted: nonNil(e.Granted), Dropped: nonNil(e.Dropped), Token: e.Token,
		Target: e.Target, Revoked: nonNil(e.Revoked), Count: e.Count, Complete: e.Complete, Method: e.Method, Path: e.Path,
		Client: client, Revision: revision})
	_, _ = l.w.Write(ab.b.Bytes()) // as slog: a failed log write is not the request's error
	if ab.b.Cap() <= 64<<10 {
		l.bufs.Put(ab)
	}
}

// nonNil is s, or an empty list for nil: a list is always written as one.
func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}
