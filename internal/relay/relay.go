// Package relay forwards HTTP/1.1 requests to one upstream on event loops,
// the way nginx does: a few goroutines (by default one per two cores, see
// DefaultLoops), each with its own epoll instance, read and write
// non-blocking sockets themselves, with no goroutine per connection and no
// Go netpoller wake-up between a read and the write it leads to: a
// forwarded request costs less CPU than on the goroutine-per-connection
// server (bench/RESULTS.md has the figures).
//
// The relay handles only the plain, common case itself: a well-formed
// HTTP/1.1 request with at most a small Content-Length body, which the
// Handler allows at once, after a short off-loop wait (a token lookup),
// answers itself off the loop (Serve), or answers on the loop (Answer),
// possibly later, after work off the loop (Reply.Later: a mint's write to
// the store). Anything else (a chunked or large
// body, an upgrade, a malformed or merely unusual request, or whatever the
// Handler hands off) makes the relay hand the connection off, with the
// bytes it has read, to Options.Handoff: the full server, which then serves
// that connection to its end. Responses are relayed whatever their size or
// framing, streamed with back-pressure.
package relay

import (
	"bytes"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"runtime"
	"time"

	"github.com/direktiv/direktiv-authz/internal/framing"
)

// Action is what a Verdict tells the relay to do with a request.
type Action uint8

const (
	// Handoff gives the connection, from this request on, to
	// Options.Handoff.
	Handoff Action = iota
	// Forward sends the request upstream; Verdict.Token says what becomes of
	// its token headers.
	Forward
	// Wait runs Verdict.Wait off the loop and then asks Decide again, with
	// Wait's result. A second Wait for the same request is a Handoff.
	Wait
	// Serve passes the whole request, as received, to Verdict.Serve off the
	// loop and writes the response it returns; the connection stays on the
	// loop. A nil response is a Handoff.
	Serve
	// Answer runs Verdict.Answer on the loop with the request's bytes: it
	// answers the request itself, at once or later (Reply.Later). A Reply
	// with neither response nor Later is a Handoff.
	Answer
)

// TokenMode is what a forwarded request's token headers become.
type TokenMode uint8

const (
	TokenKeep TokenMode = iota // forwarded as the client sent them
	TokenSet                   // replaced by one header with Verdict.Value
	TokenDrop                  // not forwarded
)

// Request is what Decide sees of a request. The slices are valid only
// during the call.
type Request struct {
	Method []byte
	Target []byte   // path and query, as received
	Tokens [][]byte // the values of every credential header (Options.TokenHeader, Options.CredentialHeaders), in order
	Header []byte   // the header lines, each "name:value\r\n", strictly formed; see Fields
	Note   any      // what the Wait before this Decide of the same request returned; nil on the first
	Remote netip.AddrPort
	// Served counts the requests of this connection the relay has
	// forwarded or answered (Answer) before this one.
	Served uint64
}

// Fields yields the request's header fields in order: each name as sent
// and its value without surrounding whitespace.
func (r *Request) Fields(yield func(name, value []byte) bool) {
	for lines := r.Header; len(lines) > 0; {
		var name, line []byte
		name, line, lines = nextLine(lines)
		if !yield(name, framing.TrimOWS(line[len(name)+1:len(line)-2])) {
			return
		}
	}
}

// PeekAll returns the values of the header name (matched
// case-insensitively), in order; nil when there is none.
func (r *Request) PeekAll(name string) (values [][]byte) {
	for n, v := range r.Fields {
		if len(n) == len(name) && bytes.EqualFold(n, []byte(name)) {
			values = append(values, v)
		}
	}
	return values
}

// Verdict is Decide's answer.
type Verdict struct {
	Action Action
	Token  TokenMode
	Value  []byte     // TokenSet: the value sent; must not change afterwards
	Wait   func() any // Wait: run on a goroutine of its own; its result is the next Decide's Request.Note
	// Answers (Wait): the request will be answered (Answer), not
	// forwarded, so a client that shuts down its sending side meanwhile
	// is kept for its answer, as during a Later.
	Answers bool
	// Serve: run on a goroutine of its own with the request's bytes (head
	// and body, its own copy); it returns a whole HTTP/1.1 response and
	// whether the connection is to close after it, or nil.
	Serve func(raw []byte) (resp []byte, close bool)
	// Answer: run on the loop with the request's bytes (head and body,
	// valid only during the call); it must not block.
	Answer func(raw []byte) Reply
	// Label (Forward): the handler's own label for the request, reported
	// back in Exchange.Label (the sidecar's metrics label).
	Label uint8
}

// Failure is why an exchange with the upstream failed.
type Failure uint8

const (
	NoFailure   Failure = iota
	Unreachable         // could not connect
	DialTimeout         // did not connect within Options.DialTimeout
	Timeout             // did not start answering within Options.Timeout
	Broken              // broke off the exchange or answered malformed
	Busy                // every connection stayed busy for Options.DialTimeout
)

func (f Failure) String() string {
	switch f {
	case Unreachable:
		return "unreachable"
	case DialTimeout:
		return "dial timeout"
	case Timeout:
		return "timeout"
	case Broken:
		return "broken"
	case Busy:
		return "busy"
	}
	return "ok"
}

// Response is an answer of the relay's own, for a failed exchange.
type Response struct {
	Status int
	Header [][2]string
	Body   []byte
}

// Exchange is one forwarded request, reported to Handler.Done once its
// response head went out (or the exchange failed).
type Exchange struct {
	Method, Target []byte        // valid only during the call
	Status         int           // the status the client got; 0: none (the client left before the response head)
	Upstream       time.Duration // from the request written to the response head read; 0 when failed
	Failure        Failure
	Err            error // the cause of a failure, for the log
	Label          uint8 // the Forward verdict's Label
}

// Handler decides on requests. Its methods are called on the loops and must
// not block: anything that may (a store lookup) goes in Verdict.Wait.
type Handler interface {
	Decide(r *Request) Verdict
	// Fail is the answer to a request the upstream failed.
	Fail(method, target []byte, f Failure, err error) Response
	Done(e *Exchange)
}

// Options configure a Relay.
type Options struct {
	Upstream     string // host:port, plain TCP
	BasePath     string // prefixed to every request target; "" or "/..." without a trailing '/'
	Host         string // the Host header sent upstream, unless PreserveHost
	PreserveHost bool
	TokenHeader  string // a credential header, and the one TokenSet sends Verdict.Value in
	// CredentialHeaders are more credential headers: their values are in
	// Request.Tokens too, and TokenSet and TokenDrop remove them all.
	CredentialHeaders []string
	ServerName        string        // sent as Server on responses that have none; "": none
	Loops             int           // event loops; 0: DefaultLoops()
	MaxConns          int           // upstream connections open at most, over all loops
	MaxBody           int           // request bodies up to this many bytes are relayed; larger ones are handed off
	DialTimeout       time.Duration // connecting, and waiting for a free connection; 0: 5s
	Timeout           time.Duration // from a request written to its response's first byte; 0: none
	IdleTimeout       time.Duration // a client connection between requests
	ReadTimeout       time.Duration // a client's request, from its first byte to its last
	Handler           Handler
	Handoff           func(net.Conn) // serves a connection the relay gives up; must not block long
	Log               *slog.Logger
}

// DefaultLoops is one event loop for every two of GOMAXPROCS, at least
// one. A loop that is not saturated costs less CPU per request the more
// connections it serves (each epoll_wait returns more of them, each wake-up
// does more): on 2 cores, 1 loop forwarded more requests at less CPU each
// than 2 (bench/RESULTS.md). The other half of the cores is left to the
// kernel's network processing and the rest of the process.
func DefaultLoops() int { return max(1, runtime.GOMAXPROCS(0)/2) }

func lower(s string) string {
	b := []byte(s)
	for i, c := range b {
		if c >= 'A' && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}

// ErrUnsupported is New's error where the event loops do not exist: they
// are built on epoll, which only Linux has (Supported is false there). The
// server then serves everything.
var ErrUnsupported = errors.New("event loops need Linux (epoll)")
