// Package redis is the token store of production: Redis standalone,
// Sentinel or Cluster, reached through go-redis from the URL it parses. It
// keeps store's records and checks store's rules; it imports nothing of the
// HTTP layer.
package redis

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/direktiv/direktiv-authz/internal/secret"
	"github.com/direktiv/direktiv-authz/store"
)

// DefaultPrefix starts every key and the channel of a Redis store.
const DefaultPrefix = "direktiv-authz"

// Options configures a Redis store.
type Options struct {
	// Prefix starts every key and the pub/sub channel, so several
	// deployments can share one Redis. Default DefaultPrefix. It may not
	// contain '{', '}', whitespace or control characters (the hash tag of a
	// key must be the namespace).
	Prefix string
	// Logger receives connection and revocation-feed events. Default: discard.
	Logger *slog.Logger
	// WaitReplicas, if above 0 (at most 100), makes Create and Revoke wait
	// until that many replicas hold their writes (Redis WAIT), for at most
	// WaitTimeout, before reporting success; fewer in time is ErrUnavailable
	// (see wait.go for what that does and does not guarantee). 0, the
	// default, does not wait. New takes the URL's wait_replicas and
	// wait_timeout for fields left 0.
	WaitReplicas int
	// WaitTimeout bounds that wait: default DefaultWaitTimeout, at
	// most half the read timeout; it must be shorter than the read timeout.
	WaitTimeout time.Duration
	// StartUnavailable makes New return the store even when Redis does
	// not answer yet: every call then fails with ErrUnavailable until it
	// does, and the client reconnects by itself. The version check is
	// skipped in that case (logged). Without it, New fails.
	StartUnavailable bool
}

// Redis is a token store in Redis: standalone, Sentinel or Cluster (Redis
// 7.0 or later). Several sidecars may share one Redis; they see each other's
// tokens and revocations.
//
// Keys, all of one namespace in one Redis Cluster slot (hash tag {<ns>}):
//
//	<prefix>:{<ns>}:tok:<id>    string, the token's record (record.go); expires at Token.Expires (PXAT)
//	<prefix>:{<ns>}:ix          stream of the ids in the order they were stored (List): field i = the id, e = the token's lifetime in seconds after the entry's id (rounded up)
//	<prefix>:{<ns>}:pc          where the creates' pruning of the index stands (a stream id)
//	<prefix>:{<ns>}:kn          hash: how many children were minted from <id> (tokens with children only)
//	<prefix>:{<ns>}:rv:<id>     revoke marker: refuses every token naming <id> among its ancestors (see revokeScript)
//	<prefix>:{<ns>}:sw          hash: the removal of revoked subtrees under way (see sweepScript)
//	<prefix>:{<ns>}:rc:<id>     the total of a completed removal, for a minute
//	<prefix>:{<ns>}:rl:ns       mint rate limit of the namespace (see CreateLimited)
//	<prefix>:{<ns>}:rl:tok:<id> mint rate limit of the minting token <id>
//
// and one key shared by every namespace, in a slot of its own:
//
//	<prefix>:sweepq             sorted set: namespaces whose revoked tokens are being removed, by lease end (sweep.go)
//
// The index and the children counts expire with the namespace's
// longest-lived token, and live a minute longer than that when their expiry
// moves, so that most creates find them long enough and write nothing. A
// revoke marker lives as long as the index did when it was set. Index
// entries of expired tokens are dropped by Create (two per call on average,
// walking the index, deciding from the entry alone: it names the token's
// lifetime, so no record is read), entries whose record is gone (revoked,
// expired) by List (those it reads) and the sweep. The index therefore holds
// at most about twice as many entries as the namespace has tokens not yet
// expired, revoked ones included, while tokens are minted at a steady pace;
// an idle namespace's index expires whole.
// Revocations are published on the channel <prefix>:revoked as
// {"namespace":"<ns>","ids":["<id>"]}: the revoked token; its descendants
// are those naming it among their ancestors.
//
// Tokens of the JSON record format (before format 2: keys idx, exp, kids:,
// up:, done:) are read, authenticated and revoked (with their descendants,
// through their kids sets) but not listed; they expire in place.
//
// All keys of a namespace live on one Redis Cluster node: the store scales
// across namespaces, not within one.
//
// Every method returns an error wrapping ErrUnavailable when Redis does not
// answer (connection refused, timeout, cluster down, READONLY, ...), with the
// go-redis error (and a context error) still reachable through errors.Is.
// With Options.WaitReplicas, Create and Revoke also return it when too
// few replicas acknowledged the write in time. A Redis is safe for
// concurrent use.
type Store struct {
	client  goredis.UniversalClient
	prefix  string
	channel string
	log     *slog.Logger

	waitReplicas int           // replicas each write waits for; 0: none
	waitTimeout  time.Duration // how long it waits

	creates *scriptBatcher // createScript calls, batched (see batch.go)

	sweepLease time.Duration // sweepLease; tests shorten it

	closeOnce sync.Once
	closed    chan struct{}
}

// A Store is a store.Store: what the sidecar needs of a token store.
var _ store.Store = (*Store)(nil)

// New parses rawURL (see ParseURL), connects and checks that the
// server answers and runs Redis 7.0 or later. It returns the URL error as is,
// an error wrapping ErrUnavailable if Redis does not answer before ctx is
// done, or an error for a bad option or an old server. Close the store to
// release its connections.
func New(ctx context.Context, rawURL string, opts Options) (*Store, error) {
	cfg, err := ParseURL(rawURL)
	if err != nil {
		return nil, err
	}
	if err := validPrefix(opts.Prefix); err != nil {
		return nil, err
	}
	if opts, err = waitOptions(opts, cfg); err != nil {
		return nil, err
	}
	r := NewWithClient(cfg.NewClient(), opts)
	if err := r.Ping(ctx); err != nil {
		if opts.StartUnavailable && errors.Is(err, store.ErrUnavailable) {
			r.log.Warn("redis does not answer yet; token calls fail closed until it does (version check skipped)", "redis", cfg.String(), "err", err)
			return r, nil
		}
		_ = r.Close()
		return nil, fmt.Errorf("connecting to redis (%s): %w", cfg, err)
	}
	if err := r.checkVersion(ctx); err != nil {
		_ = r.Close()
		return nil, fmt.Errorf("redis (%s): %w", cfg, err)
	}
	// Load the scripts now so that the first calls take one round trip. A
	// server that lost them (restart, failover) gets them again by EVAL.
	for _, sc := range []*goredis.Script{createScript, lookupScript, listScript, revokeScript, sweepScript, claimScript} {
		if err := sc.Load(ctx, r.client).Err(); err != nil {
			r.log.Warn("cannot preload a Lua script; it is sent with its first use", "err", err)
		}
	}
	r.log.Info("token store connected", "redis", cfg.String(), "prefix", r.prefix)
	return r, nil
}

// NewWithClient returns a store on an existing client, which the store then
// owns: Close closes it. It does not connect. It panics if opts.Prefix or
// the wait options are invalid (see Options); New returns that as
// an error instead.
func NewWithClient(c goredis.UniversalClient, opts Options) *Store {
	if err := validPrefix(opts.Prefix); err != nil {
		panic(err)
	}
	opts, err := waitOptions(opts, nil)
	if err != nil {
		panic(err)
	}
	prefix := opts.Prefix
	if prefix == "" {
		prefix = DefaultPrefix
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Store{
		client:  c,
		prefix:  prefix,
		channel: prefix + ":revoked",
		log:     log,
		closed:  make(chan struct{}),

		sweepLease: sweepLease,

		waitReplicas: opts.WaitReplicas,
		waitTimeout:  opts.WaitTimeout,

		creates: &scriptBatcher{client: c, script: createScript},
	}
}

func validPrefix(p string) error {
	if len(p) > 128 {
		return fmt.Errorf("redis key prefix is %d bytes, at most 128", len(p))
	}
	for i := 0; i < len(p); i++ {
		if c := p[i]; c <= ' ' || c == 0x7f || c == '{' || c == '}' {
			return fmt.Errorf("redis key prefix %q: no '{', '}', spaces or control characters", p)
		}
	}
	return nil
}

// checkVersion refuses servers older than 7.0. A server that hides INFO is
// given the benefit of the doubt: its scripts would fail with ErrUnavailable.
func (r *Store) checkVersion(ctx context.Context) error {
	info, err := r.client.Info(ctx, "server").Result()
	if err != nil {
		r.log.Warn("cannot read the Redis version; Redis 7.0 or later is required", "err", err)
		return nil
	}
	for _, line := range strings.Split(info, "\n") {
		v, ok := strings.CutPrefix(strings.TrimSpace(line), "redis_version:")
		if !ok {
			continue
		}
		major, _, _ := strings.Cut(v, ".")
		if n, err := strconv.Atoi(major); err == nil && n < 7 {
			return fmt.Errorf("redis %s is too old: the token store needs Redis 7.0 or later", v)
		}
		return nil
	}
	return nil
}

func (r *Store) tag(ns string) string           { return r.prefix + ":{" + ns + "}:" }
func (r *Store) recordKey(ns, id string) string { return r.tag(ns) + "tok:" + id }
func (r *Store) markerKey(ns, id string) string { return r.tag(ns) + "rv:" + id }
func (r *Store) indexKey(ns string) string      { return r.tag(ns) + "ix" }
func (r *Store) pruneKey(ns string) string      { return r.tag(ns) + "pc" }
func (r *Store) childrenKey(ns string) string   { return r.tag(ns) + "kn" }
func (r *Store) sweepStateKey(ns string) string { return r.tag(ns) + "sw" }
func (r *Store) sweepQueueKey() string          { return r.prefix + ":sweepq" }

func unavailable(err error, format string, args ...any) error {
	return fmt.Errorf("%w: %s: %w", store.ErrUnavailable, fmt.Sprintf(format, args...), err)
}

// Create stores t in one atomic script. It returns an error wrapping
//   - ErrInvalid if t is incomplete: namespace, id or parent not a valid name,
//     parent equal to id, Hash not 64 lowercase hex digits, Created zero or
//     outside 1970..2255, Expires not after Created or not after now;
//   - ErrExists if a token with t's namespace and id exists (or was revoked);
//   - ErrNotFound if t.Parent is set and that token is not live, so a child
//     of a revoked or expired parent, or of a token under a revoked
//     ancestor, is never stored;
//   - ErrUnavailable if Redis does not answer.
//
// On error nothing is stored (with WaitReplicas, see wait.go for the
// window that remains). The record expires at t.Expires; times are stored
// in UTC.
func (r *Store) Create(ctx context.Context, t store.Token) error {
	return r.CreateLimited(ctx, t, store.Limit{})
}

// CreateLimited is Create counted against the rate limits l, in the same
// script and round trip: it returns a *RateLimitedError (errors.Is
// ErrRateLimited) when a limit refuses, and counts the create only when it
// stores the token. It returns an error wrapping ErrInvalid for an invalid
// l. The limits are shared by every store on this Redis with the same prefix
// and run on the Redis server's clock.
func (r *Store) CreateLimited(ctx context.Context, t store.Token, l store.Limit) error {
	c, err := r.newCreate(t, l)
	if err != nil {
		return err
	}
	if r.waitReplicas > 0 {
		return r.createReplicated(ctx, c)
	}
	return c.outcome(r.creates.run(ctx, c.keys, c.args))
}

// CreateAsync is CreateLimited for a caller that must not block, such as
// an event loop: it returns at once, and done is called exactly once, on a
// goroutine of the store's, with what CreateLimited returns. The create
// joins the same batches as CreateLimited's (batch.go).
func (r *Store) CreateAsync(t store.Token, l store.Limit, done func(error)) {
	c, err := r.newCreate(t, l)
	switch {
	case err != nil:
		go done(err)
	case r.waitReplicas > 0:
		go func() { done(r.createReplicated(context.Background(), c)) }()
	default:
		r.creates.start(c.keys, c.args, func(cmd *goredis.Cmd) { done(c.outcome(cmd)) })
	}
}

// create is one create, checked and ready to send.
type create struct {
	t    store.Token
	keys []string
	args []any
	refs []limitRef
}

// newCreate checks t and l and builds their createScript call.
func (r *Store) newCreate(t store.Token, l store.Limit) (*create, error) {
	t, err := store.ValidateRecord(t, time.Now())
	if err != nil {
		return nil, err
	}
	if err := store.ValidateLimit(l); err != nil {
		return nil, err
	}
	keys, args, refs := r.createArgs(t, l)
	return &create{t: t, keys: keys, args: args, refs: refs}, nil
}

// outcome is what CreateLimited returns for the script's reply cmd.
func (c *create) outcome(cmd *goredis.Cmd) error {
	if err := cmd.Err(); err != nil {
		return unavailable(err, "creating token %s/%s", c.t.Namespace, c.t.ID)
	}
	return createOutcome(c.t, cmd.Val(), c.refs)
}

// createReplicated runs c and waits for Options.WaitReplicas
// replicas to hold it (runWrite), undoing it when too few do.
func (r *Store) createReplicated(ctx context.Context, c *create) error {
	cmd, acked, err := r.runWrite(ctx, createScript, c.keys, c.args...)
	if err != nil {
		return unavailable(err, "creating token %s/%s", c.t.Namespace, c.t.ID)
	}
	err = createOutcome(c.t, cmd.Val(), c.refs)
	if err == nil && acked < r.waitReplicas {
		r.undoCreate(ctx, c.t)
		return fmt.Errorf("%w: token %s/%s reached %d of %d replicas within %s; it was not created",
			store.ErrUnavailable, c.t.Namespace, c.t.ID, acked, r.waitReplicas, r.waitTimeout)
	}
	return err
}

// createOutcome reads createScript's reply for t: nil when it stored t.
func createOutcome(t store.Token, reply any, refs []limitRef) error {
	res, ok := reply.(int64)
	if !ok {
		if arr, isArr := reply.([]any); isArr {
			if rl, isRL := rateLimitedReply(arr, refs); isRL {
				return rl
			}
		}
		return fmt.Errorf("%w: create script answered %v", store.ErrUnavailable, reply)
	}
	switch res {
	case 1:
		return nil
	case 0:
		return fmt.Errorf("%w: %s/%s", store.ErrExists, t.Namespace, t.ID)
	case -1:
		return fmt.Errorf("%w: parent %s/%s of token %s", store.ErrNotFound, t.Namespace, t.Parent, t.ID)
	case -2:
		return fmt.Errorf("%w: token %s expired at %s by the Redis clock, before it was stored", store.ErrInvalid, t.ID, t.Expires.Format(time.RFC3339Nano))
	case -3:
		return fmt.Errorf("%w: token %s would have more than %d ancestors", store.ErrInvalid, t.ID, store.MaxAncestors)
	default:
		return fmt.Errorf("%w: create script answered %d", store.ErrUnavailable, res)
	}
}

// createArgs is createScript's KEYS and ARGV for the valid record t and
// limits l, and the scope of each limit in order.
func (r *Store) createArgs(t store.Token, l store.Limit) ([]string, []any, []limitRef) {
	ns := t.Namespace
	keys := []string{r.recordKey(ns, t.ID), r.indexKey(ns), r.markerKey(ns, t.ID), r.pruneKey(ns)}
	var parent []byte
	if t.Parent != "" {
		keys = append(keys, r.recordKey(ns, t.Parent), r.childrenKey(ns))
		parent = store.RawID(t.Parent)
	}
	// Redis Expires at ms: the record must be gone by t.Expires.
	at := t.Expires.UnixMilli()
	args := []any{t.AppendRecordTail(make([]byte, 0, 128)), at, t.ID, parent, r.tag(ns), store.MaxAncestors, t.Parent}
	return r.rateLimits(ns, l, keys, args)
}

// Lookup returns the live token namespace/id in one round trip (lookupScript:
// the record, and the revoke markers of its ancestors). It returns an
// error wrapping ErrInvalid if namespace or id is not a valid name,
// ErrNotFound if the token was never stored, has expired or was revoked, or
// one of its ancestors was, and ErrUnavailable if Redis does not answer or
// holds a record this code cannot read (fail closed).
func (r *Store) Lookup(ctx context.Context, namespace, id string) (store.Token, error) {
	if err := store.ValidateName(namespace, id); err != nil {
		return store.Token{}, err
	}
	b, err := lookupScript.Run(ctx, r.client, []string{r.recordKey(namespace, id)}, r.tag(namespace), id).Text()
	if errors.Is(err, goredis.Nil) {
		return store.Token{}, fmt.Errorf("%w: %s/%s", store.ErrNotFound, namespace, id)
	}
	if err != nil {
		return store.Token{}, unavailable(err, "looking up token %s/%s", namespace, id)
	}
	t, err := store.DecodeRecord([]byte(b), namespace, id)
	if err != nil {
		return store.Token{}, fmt.Errorf("%w: %w", store.ErrUnavailable, err)
	}
	// Redis drops a key one millisecond after its PXAT; the token is gone
	// at the instant itself.
	if t.Expired(time.Now()) {
		return store.Token{}, fmt.Errorf("%w: %s/%s", store.ErrNotFound, namespace, id)
	}
	return t, nil
}

// List returns up to limit live tokens of namespace in the order they were
// stored (oldest first), starting after the cursor after ("" = from the
// start). next is the cursor of the following page, "" when there is none; a
// page can be short, or (rarely) empty with next "", when tokens expire while
// it is read. Tokens under a revoked ancestor are not listed, though their
// removal may still be under way. Each listScript call reads at most
// listScanBudget index entries, dropping those of tokens gone. It returns an
// error wrapping ErrInvalid for an invalid namespace, a limit outside
// 1..MaxListLimit or a cursor List did not return, and ErrUnavailable if
// Redis does not answer.
func (r *Store) List(ctx context.Context, namespace, after string, limit int) ([]store.Token, string, error) {
	if err := store.ValidateList(namespace, after, limit); err != nil {
		return nil, "", err
	}
	keys := []string{r.indexKey(namespace)}
	from := after
	out := make([]store.Token, 0, min(limit, 64))
	now := time.Now()
	for {
		res, err := listScript.Run(ctx, r.client, keys, r.tag(namespace), from, limit-len(out), listScanBudget).Slice()
		if err != nil {
			return nil, "", unavailable(err, "listing tokens of %s", namespace)
		}
		if len(res) < 2 || len(res)%2 != 0 {
			return nil, "", fmt.Errorf("%w: listing tokens of %s: the list script answered %d values", store.ErrUnavailable, namespace, len(res))
		}
		more, _ := res[0].(int64)
		last, _ := res[1].(string)
		for i := 2; i < len(res); i += 2 {
			id, _ := res[i].(string)
			rec, _ := res[i+1].(string)
			t, err := store.DecodeRecord([]byte(rec), namespace, id)
			if err != nil {
				return nil, "", fmt.Errorf("%w: %w", store.ErrUnavailable, err)
			}
			if !t.Expired(now) {
				out = append(out, t)
			}
		}
		if last != "" {
			from = last
		}
		switch {
		case more == 0:
			return out, "", nil
		case len(out) >= limit:
			return out, from, nil
		}
	}
}

// revokeInlineBatches is how many sweep batches Revoke runs itself after
// marking a subtree: a namespace of up to a few hundred tokens is then done
// before Revoke returns, and a larger one costs the call a bounded time.
const revokeInlineBatches = 3

// Revoke revokes the live token namespace/id and every token minted from
// it, transitively (see revokeScript): one short atomic step deletes its
// record and, if it has descendants, marks it revoked, which refuses all of
// them at once on every replica, and publishes the revocation to every
// Subscribe on this Redis. Tokens minted from a token that has since
// expired are revoked too. The descendants' records are then removed in
// batches: a few by Revoke itself, the rest by the sweep (Sweep, on any
// replica). Revocation.Done tells which.
//
// It returns an error wrapping ErrInvalid if namespace or id is not a valid
// name, ErrNotFound if namespace/id is not live (nothing changes), and
// ErrUnavailable if Redis does not answer (then the revocation happened
// or not), or, with WaitReplicas, if too few replicas acknowledged it (in
// force on the master).
func (r *Store) Revoke(ctx context.Context, namespace, id string) (store.Revocation, error) {
	if err := store.ValidateName(namespace, id); err != nil {
		return store.Revocation{}, err
	}
	var nonce [16]byte
	if _, err := rand.Read(nonce[:]); err != nil {
		return store.Revocation{}, fmt.Errorf("reading random bytes: %w", err)
	}
	// The namespace is queued for the sweep first: a revocation whose reply
	// is lost, or whose caller dies, still gets its descendants removed. A
	// queued namespace without work costs a sweeper one batch. Score 0 also
	// makes a sweeper that is finishing the namespace keep it (see
	// releaseScript).
	if err := r.client.ZAdd(ctx, r.sweepQueueKey(), goredis.Z{Score: 0, Member: namespace}).Err(); err != nil {
		return store.Revocation{}, unavailable(err, "revoking token %s/%s", namespace, id)
	}
	keys := []string{r.recordKey(namespace, id), r.indexKey(namespace), r.markerKey(namespace, id),
		r.childrenKey(namespace), r.sweepStateKey(namespace)}
	cmd, acked, err := r.runWrite(ctx, revokeScript, keys, id, r.tag(namespace), r.channel, namespace,
		hex.EncodeToString(nonce[:]), store.RevokeMarkerTTL.Milliseconds())
	if err != nil {
		return store.Revocation{}, unavailable(err, "revoking token %s/%s", namespace, id)
	}
	reply, err := cmd.Slice()
	if err != nil {
		return store.Revocation{}, unavailable(err, "revoking token %s/%s", namespace, id)
	}
	if len(reply) == 0 {
		return store.Revocation{}, fmt.Errorf("%w: %s/%s", store.ErrNotFound, namespace, id)
	}
	if acked < r.waitReplicas {
		r.log.Warn("revocation acknowledged by too few replicas; it is in force on the master", "namespace", namespace, "id", id,
			"replicas", acked, "want", r.waitReplicas)
		return store.Revocation{}, fmt.Errorf("%w: revoking %s/%s: reached %d of %d replicas within %s; in force on the master, but a failover could undo it: revoke again",
			store.ErrUnavailable, namespace, id, acked, r.waitReplicas, r.waitTimeout)
	}
	rv := store.Revocation{IDs: []string{id}, Count: 1, Done: true}
	if done, _ := reply[0].(int64); done == 1 {
		r.log.Debug("token revoked", "namespace", namespace, "id", id)
		return rv, nil
	}
	// Descendants: sweep a little here, the rest in the background (the
	// sweeps poll the queue every sweepPoll: a small namespace is done
	// here before one of them takes it).
	rv.Done = false
	for range revokeInlineBatches {
		b, err := r.sweepOnce(ctx, namespace, id)
		if err != nil {
			r.log.Warn("revoked; the removal of the descendants continues in the background", "namespace", namespace, "id", id, "err", err)
			break
		}
		rv.IDs = append(rv.IDs, b.mine...)
		if n, ok := b.completed[id]; ok {
			rv.Count, rv.Done = n, true
			r.log.Debug("tokens revoked", "namespace", namespace, "id", id, "count", n)
			return rv, nil
		}
		if !b.pending {
			break
		}
	}
	res, err := sweepCountScript.Run(ctx, r.client, []string{r.sweepStateKey(namespace), r.tag(namespace) + "rc:" + id}, id).Int64Slice()
	switch {
	case err != nil || len(res) != 2:
		rv.Count = len(rv.IDs)
	default: // another replica's sweep may have completed it meanwhile
		rv.Done, rv.Count = res[0] == 1, max(int(res[1]), len(rv.IDs))
	}
	r.log.Debug("token revoked; its descendants are refused, their removal continues", "namespace", namespace, "id", id, "count", rv.Count)
	return rv, nil
}

// revokedMessage is what revokeScript publishes.
type revokedMessage struct {
	Namespace string   `json:"namespace"`
	IDs       []string `json:"ids"`
}

// Subscribe calls fn once per token revoked by any store on this Redis (same
// prefix), on the caller's goroutine, from the moment the subscription is
// confirmed. It blocks until ctx is done and then returns nil. It returns an
// error wrapping ErrUnavailable if the first subscription fails, or once the
// store is closed.
//
// Delivery is at most once: Redis pub/sub keeps no backlog, so revocations
// published while the connection is down (go-redis reconnects and
// resubscribes by itself; each resubscription is logged) are lost. A cache
// fed by Subscribe must bound how long it trusts an entry.
func (r *Store) Subscribe(ctx context.Context, fn func(namespace, id string)) error {
	ctx, cancel := r.untilClosed(ctx)
	defer cancel()

	ps := r.client.Subscribe(ctx, r.channel)
	defer ps.Close()
	if _, err := ps.ReceiveTimeout(ctx, 5*time.Second); err != nil {
		return unavailable(err, "subscribing to %s", r.channel)
	}
	r.log.Debug("subscribed to revocations", "channel", r.channel)

	ch := ps.ChannelWithSubscriptions(goredis.WithChannelSize(1000))
	for {
		select {
		case <-ctx.Done():
			select {
			case <-r.closed:
				return fmt.Errorf("%w: redis store is closed", store.ErrUnavailable)
			default:
				return nil
			}
		case m, ok := <-ch:
			if !ok {
				return fmt.Errorf("%w: revocation subscription closed", store.ErrUnavailable)
			}
			switch m := m.(type) {
			case *goredis.Subscription:
				if m.Kind == "subscribe" {
					r.log.Warn("resubscribed to revocations after a connection loss; revocations published meanwhile were missed", "channel", r.channel)
				}
			case *goredis.Message:
				var msg revokedMessage
				if err := json.Unmarshal([]byte(m.Payload), &msg); err != nil || !secret.ValidNamespace(msg.Namespace) {
					r.log.Warn("ignoring malformed revocation message", "channel", m.Channel, "bytes", len(m.Payload))
					continue
				}
				for _, id := range msg.IDs {
					fn(msg.Namespace, id)
				}
			}
		}
	}
}

// untilClosed is ctx, also done when the store is closed.
func (r *Store) untilClosed(ctx context.Context) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(ctx)
	go func() {
		select {
		case <-r.closed:
			cancel()
		case <-ctx.Done():
		}
	}()
	return ctx, cancel
}

// Ping returns nil if Redis answers, else an error wrapping ErrUnavailable.
func (r *Store) Ping(ctx context.Context) error {
	if err := r.client.Ping(ctx).Err(); err != nil {
		return unavailable(err, "ping")
	}
	return nil
}

// Close ends every Subscribe and closes the client; later calls return
// ErrUnavailable. It is idempotent.
func (r *Store) Close() error {
	var err error
	r.closeOnce.Do(func() {
		close(r.closed)
		err = r.client.Close()
	})
	return err
}
