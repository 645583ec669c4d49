package relay

import (
	"time"
)

// The backend: Redis, spoken to by the loops themselves.
//
// A request the Handler answers on the loop (Answer) may need a write to
// Redis first: a token mint stores its token. Sent through a client
// library, that write would cost a goroutine, a pooled connection and a
// wake-up of the loop per request, as Serve does; here each loop keeps one
// connection to Redis of its own and pipelines on it the commands of every
// request it holds, in order: the commands of one batch of events go out
// with one write, and their replies come back with one read, which Redis
// answers in the order it received them (RESP2, no pub/sub, no blocking
// commands). Each reply is handed to its Call's Done on the loop.
//
// A connection that breaks sends each command written on it once more on a
// new connection (the Handler's commands must bear being run twice, as the
// create script does: go-redis resends the same way); a second break, a
// refused or timed-out dial, or no reply within BackendOptions.Timeout fails
// the calls with an error, which the Handler answers (fail closed).

// BackendOptions configure the loops' connections to Redis.
type BackendOptions struct {
	Addr string // host:port, plain TCP
	// Init are the commands (resp.AppendCommand) sent first on every new
	// connection, such as AUTH and SELECT; a connection on which any of
	// them fails is closed and its calls fail.
	Init        [][]byte
	DialTimeout time.Duration // 0: Options.DialTimeout
	// Timeout bounds a call, from its send to its reply; 0: 5s.
	Timeout time.Duration
}

// Call is a command to send to the backend before answering a request.
type Call struct {
	Cmd []byte // one command (resp.AppendCommand); must not change afterwards
	// Done runs on the loop with the reply: an int64, a string, nil, an
	// []any of these, or, as err, a ReplyError for an error reply or the
	// reason the backend could not answer. It runs even when the client has
	// gone meanwhile (its answer is then dropped) and must not block. Its
	// Reply must carry a response or another Call.
	Done func(reply any, err error) Reply
}

// Reply is what Verdict.Answer or a Call's Done gives for a request: a
// whole HTTP/1.1 response, or a Call to make first.
type Reply struct {
	Resp  []byte
	Close bool // close the connection after Resp
	Call  *Call
}

// ReplyError is an error reply of the backend, such as "NOSCRIPT ...".
type ReplyError string

func (e ReplyError) Error() string { return string(e) }
