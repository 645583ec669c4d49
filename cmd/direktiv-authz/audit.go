package main

import (
	"io"
	"strconv"
	"sync"
	"time"
	"unicode/utf8"

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

// auditLog writes audit lines as JSON, one object per line, with the keys
// in a fixed order, so that the shape stays stable whatever the log level of
// the operational log:
//
//	{"time":RFC 3339 with nanoseconds,"level":"INFO","msg":"audit","log":"audit",
//	 "action","namespace","caller","decision","status","reason","requested",
//	 "granted","dropped","token","target","revoked","method","path","client",
//	 "revision"}
//
// The line is the one log/slog's JSON handler wrote for these attributes
// (the operational log's format), built by hand: slog encodes the string
// lists with encoding/json's reflection, which cost a mint more than the
// rest of its line. Strings are escaped as JSON requires (quotes,
// backslashes, control characters, invalid UTF-8 as U+FFFD, U+2028/9);
// unlike slog's lists, '<', '>' and '&' are not turned into \u escapes.
type auditLog struct {
	w    io.Writer // one Write per line, whole
	bufs sync.Pool // *[]byte
}

func newAuditLogger(w io.Writer) *auditLog { return &auditLog{w: w} }

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
	b = appendJSONString(b, e.Action)
	b = append(b, `,"namespace":`...)
	b = appendJSONString(b, e.Namespace)
	b = append(b, `,"caller":`...)
	b = appendJSONString(b, e.Caller)
	b = append(b, `,"decision":`...)
	b = appendJSONString(b, e.Decision)
	b = append(b, `,"status":`...)
	b = strconv.AppendInt(b, int64(e.Status), 10)
	b = append(b, `,"reason":`...)
	b = appendJSONString(b, e.Reason)
	b = append(b, `,"requested":`...)
	b = appendJSONList(b, e.Requested)
	b = append(b, `,"granted":`...)
	b = appendJSONList(b, e.Granted)
	b = append(b, `,"dropped":`...)
	b = appendJSONList(b, e.Dropped)
	b = append(b, `,"token":`...)
	b = appendJSONString(b, e.Token)
	b = append(b, `,"target":`...)
	b = appendJSONString(b, e.Target)
	b = append(b, `,"revoked":`...)
	b = appendJSONList(b, e.Revoked)
	b = append(b, `,"method":`...)
	b = appendJSONString(b, e.Method)
	b = append(b, `,"path":`...)
	b = appendJSONString(b, e.Path)
	b = append(b, `,"client":`...)
	b = appendJSONString(b, client)
	b = append(b, `,"revision":`...)
	b = appendJSONString(b, revision)
	b = append(b, "}\n"...)
	_, _ = l.w.Write(b) // as slog: a failed log write is not the request's error
	if cap(b) <= 64<<10 {
		*bp = b
		l.bufs.Put(bp)
	}
}

// appendJSONList appends list as a JSON array of strings; nil is [].
func appendJSONList(b []byte, list []string) []byte {
	b = append(b, '[')
	for i, s := range list {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendJSONString(b, s)
	}
	return append(b, ']')
}

// appendJSONString appends s as a quoted JSON string.
func appendJSONString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
		case r == '\u2028' || r == '\u2029':
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hex[r&0xf])
		default:
			i += size
			continue
		}
		i += size
		start = i
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
