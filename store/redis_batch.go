package store

import (
	"context"
	"slices"
	"sync"

	"github.com/redis/go-redis/v9"
)

// Batching of concurrent creates.
//
// A mint is one create script, and each script sent alone costs a round
// trip: a write and a read system call on both ends, a pool checkout (with
// go-redis's health-check peek) and a wake-up of the waiting goroutine. Under
// load those costs, not the script, dominate on both the sidecar and Redis.
// So creates that arrive while others are in flight are sent together, as
// one pipeline of EVALSHA commands on one connection: Redis reads them with
// one read, runs them one after the other (each script is still atomic on its
// own: another client's command may run between two of them, exactly as
// between two separate round trips) and answers them with one write.
//
// A create that finds fewer than maxCreatePipelines pipelines in flight is
// sent at once, alone: batching never delays a create on an idle store.
// Otherwise it waits; when a pipeline comes back, the oldest waiting create
// takes the waiting creates (up to maxCreateBatch) and sends them as the
// next pipeline (group commit). There is no timer and no extra goroutine.
//
// Each create keeps its own reply and error. A pipeline that fails as a
// whole (connection lost) fails every create in it with that error, after
// go-redis's own resends, which the create script recognizes (see
// createScript). On Redis Cluster, go-redis splits a pipeline by node.
//
// Creates that must wait for replicas (RedisOptions.WaitReplicas) are not
// batched: their WAIT must follow their own script on the same connection
// (see runWrite).

// maxCreatePipelines is how many create pipelines may be in flight at once.
// One would leave Redis idle while the sidecar handles the replies of a
// pipeline; a few keep both busy. Measured with make bench on 2 cores
// (bench/RESULTS.md).
const maxCreatePipelines = 4

// maxCreateBatch bounds the creates of one pipeline, so that one pipeline's
// reply stays a few hundred kilobytes at most and no create waits behind
// thousands of others.
const maxCreateBatch = 256

// scriptCall is one create waiting to be sent or answered.
type scriptCall struct {
	keys []string
	args []any
	cmd  *redis.Cmd

	done chan struct{} // closed when cmd is set, or when lead is
	lead []*scriptCall // handed to this call to send: a batch that includes it
}

// scriptBatcher sends one script's calls in pipelines.
type scriptBatcher struct {
	client redis.UniversalClient
	script *redis.Script

	mu       sync.Mutex
	inflight int           // pipelines being sent or handed to a leader
	waiting  []*scriptCall // calls not yet in a pipeline, oldest first
}

// run sends keys and args to the script, possibly in a pipeline with other
// calls, and returns its reply. ctx is checked before the call joins a
// batch; once it has, the call runs to its end (bounded by the client's read
// and write timeouts), since other calls may be in the same pipeline.
func (b *scriptBatcher) run(ctx context.Context, keys []string, args []any) *redis.Cmd {
	if err := ctx.Err(); err != nil {
		cmd := redis.NewCmd(ctx)
		cmd.SetErr(err)
		return cmd
	}
	c := &scriptCall{keys: keys, args: args, done: make(chan struct{})}
	b.mu.Lock()
	if b.inflight < maxCreatePipelines {
		// Nothing waits while a pipeline is free (a pipeline that comes
		// back with calls waiting hands them on instead of freeing its
		// place), so this call goes alone.
		b.inflight++
		b.mu.Unlock()
		b.send(ctx, c, []*scriptCall{c})
		return c.cmd
	}
	b.waiting = append(b.waiting, c)
	b.mu.Unlock()
	<-c.done
	if c.lead != nil {
		b.send(ctx, c, c.lead)
	}
	return c.cmd
}

// take removes and returns the oldest waiting calls, at most
// maxCreateBatch; b.mu is held.
func (b *scriptBatcher) take() []*scriptCall {
	n := min(len(b.waiting), maxCreateBatch)
	batch := slices.Clone(b.waiting[:n])
	rest := copy(b.waiting, b.waiting[n:])
	clear(b.waiting[rest:])
	b.waiting = b.waiting[:rest]
	return batch
}

// send sends batch as one pipeline, answers every call in it but self (the
// caller reads its own), then hands the next batch, if any, to the oldest
// waiting call.
func (b *scriptBatcher) send(ctx context.Context, self *scriptCall, batch []*scriptCall) {
	// Other calls ride on this pipeline: the sender's cancellation must not
	// fail them. The client's timeouts bound it.
	ctx = context.WithoutCancel(ctx)
	if len(batch) == 1 {
		self.cmd = b.script.Run(ctx, b.client, self.keys, self.args...)
	} else {
		pipe := b.client.Pipeline()
		for _, c := range batch {
			c.cmd = b.script.EvalSha(ctx, pipe, c.keys, c.args...)
		}
		_, _ = pipe.Exec(ctx) // each call reads its own command's error
		for _, c := range batch {
			if redis.HasErrorPrefix(c.cmd.Err(), "NOSCRIPT") {
				// Redis lost the script (restart, failover): the first
				// EVAL loads it again for the others.
				c.cmd = b.script.Run(ctx, b.client, c.keys, c.args...)
			}
		}
	}
	for _, c := range batch {
		if c != self {
			close(c.done)
		}
	}

	b.mu.Lock()
	if len(b.waiting) == 0 {
		b.inflight--
		b.mu.Unlock()
		return
	}
	next := b.take()
	b.mu.Unlock()
	next[0].lead = next
	close(next[0].done)
}
