package redis

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/direktiv/direktiv-authz/store"
)

// Waiting for replicas (Options.WaitReplicas).
//
// Redis replicates asynchronously: without waiting, a create or revoke that
// the master acknowledged and then lost in a crash, before any replica had
// it, is gone after a failover (a minted token stops working; a revoked one
// works again). With WaitReplicas = n, each write script is followed by
// WAIT n on the same connection, in the same pipelined round trip, and the
// write is reported done only once n replicas hold it:
//   - fewer within WaitTimeout: Create undoes the token (best effort; nobody
//     has its secret) and Revoke leaves the revocation in force on the
//     master; both return ErrUnavailable so that the client retries (a
//     retried revoke of a token already revoked answers ErrNotFound);
//   - what remains: a master that fails between running the script and the
//     replicas' acknowledgement may or may not have passed the write on. The
//     caller got ErrUnavailable, so a token it never received may exist,
//     whole, and a revocation it was told failed may have happened. And
//     Sentinel promotes the replica with the most data it knows of, so a
//     write held by fewer replicas than exist survives only if the sentinels
//     can still see a replica holding it; wait for as many replicas as a
//     failover must keep.
//
// A write script that changes nothing (an id that exists, a token that is
// not live) still waits, so with replicas missing every create and revoke
// takes WaitTimeout. Reads never wait.

// runWrite runs a write script. Without WaitReplicas it is Script.Run and
// acked is 0. With it, the script and WAIT go to the master of keys[0] on
// one connection in one pipelined round trip, and acked is what WAIT
// answered: WAIT counts the replicas holding every write of its own
// connection, so it must follow the script on the same one (go-redis
// resends both on a new connection if the first fails). The error is the
// script's, else WAIT's.
func (r *Store) runWrite(ctx context.Context, sc *goredis.Script, keys []string, args ...any) (*goredis.Cmd, int, error) {
	if r.waitReplicas == 0 {
		cmd := sc.Run(ctx, r.client, keys, args...)
		return cmd, 0, cmd.Err()
	}
	var node goredis.Cmdable = r.client
	cc, cluster := r.client.(*goredis.ClusterClient)
	if cluster {
		// A cluster pipeline would send the keyless WAIT to any node.
		m, err := cc.MasterForKey(ctx, keys[0])
		if err != nil {
			return nil, 0, err
		}
		node = m
	}
	var cmd *goredis.Cmd
	var wait *goredis.Cmd
	run := func(eval func(p goredis.Pipeliner) *goredis.Cmd) {
		// Pipelined's error is that of the first failed command, read below.
		_, _ = node.Pipelined(ctx, func(p goredis.Pipeliner) error {
			cmd = eval(p)
			wait = p.Do(ctx, "wait", r.waitReplicas, r.waitTimeout.Milliseconds())
			return nil
		})
	}
	run(func(p goredis.Pipeliner) *goredis.Cmd { return sc.EvalSha(ctx, p, keys, args...) })
	if goredis.HasErrorPrefix(cmd.Err(), "NOSCRIPT") {
		run(func(p goredis.Pipeliner) *goredis.Cmd { return sc.Eval(ctx, p, keys, args...) })
	}
	if err := cmd.Err(); err != nil {
		if cluster && (goredis.HasErrorPrefix(err, "MOVED") || goredis.HasErrorPrefix(err, "ASK")) {
			// The slot is moving: nothing ran; a retry by the caller finds
			// the slot's new master.
			cc.ReloadState(ctx)
		}
		return cmd, 0, err
	}
	acked, err := wait.Int()
	if err != nil {
		return cmd, 0, err
	}
	return cmd, acked, nil
}

// undoCreate deletes t after too few replicas acknowledged its creation, so
// that a mint answered 503 leaves no token behind. It is best effort (Redis
// may be failing): the token is whole either way and nobody has its secret.
func (r *Store) undoCreate(ctx context.Context, t store.Token) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
	defer cancel()
	ns := t.Namespace
	var nonce [16]byte
	_, _ = rand.Read(nonce[:])
	keys := []string{r.recordKey(ns, t.ID), r.indexKey(ns), r.markerKey(ns, t.ID),
		r.childrenKey(ns), r.sweepStateKey(ns)}
	err := revokeScript.Run(ctx, r.client, keys, t.ID, r.tag(ns), r.channel, ns,
		hex.EncodeToString(nonce[:]), store.RevokeMarkerTTL.Milliseconds()).Err()
	if err != nil {
		r.log.Warn("could not undo a token too few replicas acknowledged; it stays, unused, until it expires",
			"namespace", ns, "id", t.ID, "err", err)
	}
}

// waitOptions fills in and checks the wait settings of opts: from the URL's
// cfg (nil for NewWithClient) when opts leaves them 0, with
// DefaultWaitTimeout (at most half the read timeout) as the last resort.
func waitOptions(opts Options, cfg *Config) (Options, error) {
	readTimeout := time.Duration(0) // unknown for a client passed in
	if cfg != nil {
		readTimeout = cfg.readTimeout()
		if opts.WaitReplicas == 0 {
			opts.WaitReplicas = cfg.WaitReplicas
		}
		if opts.WaitTimeout == 0 {
			opts.WaitTimeout = cfg.WaitTimeout
		}
	}
	if opts.WaitReplicas < 0 || opts.WaitReplicas > 100 {
		return opts, fmt.Errorf("redis wait replicas %d: want 0 to 100", opts.WaitReplicas)
	}
	if opts.WaitTimeout < 0 {
		return opts, fmt.Errorf("redis wait timeout %s: want a positive duration", opts.WaitTimeout)
	}
	if opts.WaitReplicas == 0 {
		opts.WaitTimeout = 0
		return opts, nil
	}
	if opts.WaitTimeout == 0 {
		opts.WaitTimeout = DefaultWaitTimeout
		if readTimeout > 0 {
			opts.WaitTimeout = min(opts.WaitTimeout, readTimeout/2)
		}
	}
	if readTimeout > 0 && opts.WaitTimeout >= readTimeout {
		return opts, fmt.Errorf("redis wait timeout %s must be shorter than the read timeout %s: the wait is read like a reply", opts.WaitTimeout, readTimeout)
	}
	return opts, nil
}

// readTimeout is the connections' read timeout.
func (c *Config) readTimeout() time.Duration {
	switch {
	case c.Sentinel != nil:
		return c.Sentinel.ReadTimeout
	case c.Cluster != nil:
		return c.Cluster.ReadTimeout
	case c.Standalone != nil:
		return c.Standalone.ReadTimeout
	}
	return DefaultReadTimeout
}
