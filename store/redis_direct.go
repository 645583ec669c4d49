package store

import (
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/direktiv/direktiv-authz/internal/resp"
)

// Creates over a connection of the caller's own.
//
// The sidecar's event loops keep one connection to Redis each and pipeline
// on it the creates of the mints they serve (internal/relay, backend.go):
// no goroutine, pooled connection or wake-up per create. Direct tells them
// where Redis is and how to set a connection up; DirectCreate gives one
// create's command and reads its reply exactly as CreateLimited does. The
// script, its keys and its answers are CreateLimited's: both paths store
// the same records and may run side by side.

// DirectConn is what a connection of the caller's own to the store's Redis
// needs.
type DirectConn struct {
	Addr        string     // host:port, plain TCP
	Init        [][]string // commands to send first on every new connection (AUTH, SELECT)
	DialTimeout time.Duration
	ReadTimeout time.Duration // the client's; a command is failed after it
}

// Direct returns how to reach this store's Redis over a connection of the
// caller's own, and false where the store's client must be used: Redis
// Cluster or Sentinel (the server to talk to can change), TLS, a Unix
// socket, credentials from a provider, and RedisOptions.WaitReplicas (each
// write's WAIT must follow it on its connection).
func (r *Redis) Direct() (DirectConn, bool) {
	c, ok := r.client.(*redis.Client)
	if !ok || r.waitReplicas > 0 {
		return DirectConn{}, false
	}
	o := c.Options()
	// A Sentinel (failover) client is a *redis.Client too, whose Addr is
	// no server's ("FailoverClient"): its dialer asks the sentinels.
	if _, _, err := net.SplitHostPort(o.Addr); err != nil || o.TLSConfig != nil || (o.Network != "" && o.Network != "tcp") ||
		o.CredentialsProvider != nil || o.CredentialsProviderContext != nil || o.StreamingCredentialsProvider != nil {
		return DirectConn{}, false
	}
	d := DirectConn{Addr: o.Addr, DialTimeout: o.DialTimeout, ReadTimeout: o.ReadTimeout}
	if d.DialTimeout <= 0 {
		d.DialTimeout = 5 * time.Second
	}
	if d.ReadTimeout <= 0 {
		d.ReadTimeout = 3 * time.Second
	}
	switch {
	case o.Username != "":
		d.Init = append(d.Init, []string{"AUTH", o.Username, o.Password})
	case o.Password != "":
		d.Init = append(d.Init, []string{"AUTH", o.Password})
	}
	if o.DB != 0 {
		d.Init = append(d.Init, []string{"SELECT", strconv.Itoa(o.DB)})
	}
	return d, true
}

// DirectCreate is one create (CreateLimited) sent over a connection of the
// caller's own.
type DirectCreate struct {
	t    Token
	keys []string
	args []any
	refs []limitRef
}

// DirectCreate prepares the create of t counted against l, with
// CreateLimited's checks: an error wrapping ErrInvalid for an invalid record
// or limit.
func (r *Redis) DirectCreate(t Token, l Limit) (*DirectCreate, error) {
	t, err := validateRecord(t, time.Now())
	if err != nil {
		return nil, err
	}
	if err := validateLimit(l); err != nil {
		return nil, err
	}
	keys, args, refs := r.createArgs(t, l)
	return &DirectCreate{t: t, keys: keys, args: args, refs: refs}, nil
}

// AppendCommand appends the create as an EVALSHA command in RESP.
func (d *DirectCreate) AppendCommand(b []byte) []byte {
	return d.appendCommand(b, "EVALSHA", createScript.Hash())
}

// AppendFallback appends the create as an EVAL command, for a server that
// lacks the script (restarted, failed over): it loads the script again.
func (d *DirectCreate) AppendFallback(b []byte) []byte {
	return d.appendCommand(b, "EVAL", createScriptSource)
}

func (d *DirectCreate) appendCommand(b []byte, verb, script string) []byte {
	b = resp.AppendArray(b, 3+len(d.keys)+len(d.args))
	b = resp.AppendBulk(b, verb)
	b = resp.AppendBulk(b, script)
	b = resp.AppendBulkInt(b, int64(len(d.keys)))
	for _, k := range d.keys {
		b = resp.AppendBulk(b, k)
	}
	for _, a := range d.args {
		switch v := a.(type) {
		case string:
			b = resp.AppendBulk(b, v)
		case []byte:
			b = resp.AppendBulk(b, v)
		case int:
			b = resp.AppendBulkInt(b, int64(v))
		case int64:
			b = resp.AppendBulkInt(b, v)
		default:
			panic(fmt.Sprintf("create argument of type %T", a)) // createArgs builds none
		}
	}
	return b
}

// Result reads the reply to AppendCommand's or AppendFallback's command:
// reply is an int64, a string, nil or an []any of these, and err an error
// reply of Redis or why no reply came. It returns what CreateLimited returns
// for it, and noScript true when Redis lacked the script: send the fallback
// then (the error, wrapping ErrUnavailable, is the answer when that was the
// fallback).
func (d *DirectCreate) Result(reply any, err error) (noScript bool, _ error) {
	if err != nil {
		return strings.HasPrefix(err.Error(), "NOSCRIPT"), unavailable(err, "creating token %s/%s", d.t.Namespace, d.t.ID)
	}
	return false, createOutcome(d.t, reply, d.refs)
}
