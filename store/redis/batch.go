package redis

import (
	"context"
	"slices"
	"sync"

	goredis "github.com/redis/go-redis/v9"
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
// Otherwise it waits; when a pipeline comes back, the waiting creates (up
// to maxCreateBatch) are sent as the next pipeline (group commit), by a
// goroutine started for it. There is no timer.
//
// Callers that must not block (the event loops, see CreateAsync) join the
// same batches; their reply is handed to a function of theirs instead of
// a waiting goroutine.
//
// Each create keeps its own reply and error. A pipeline that fails as a
// whole (connection lost) fails every create in it with that error, after
// go-redis's own resends, which the create script recognizes (see
// createScript). On Redis Cluster, go-redis splits a pipeline by node.
//
// Creates that must wait for replicas (Options.WaitReplicas) are not
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
	cmd  *goredis.Cmd
	done func(*goredis.Cmd) // run with cmd once it is set; nil for a call sent by its caller
}

// scriptBatcher sends one script's calls in pipelines.
type scriptBatcher struct {
	client goredis.UniversalClient
	script *goredis.Script

	mu       sync.Mutex
	inflight int           // pipelines being sent
	waiting  []*scriptCall // calls not yet in a pipeline, oldest first
}

// run sends keys and args to the script, possibly in a pipeline with other
// calls, and returns its reply. ctx is checked before the call joins a
// batch; once it has, the call runs to its end (bounded by the client's read
// and write timeouts), since other calls may be in the same pipeline.
func (b *scriptBatcher) run(ctx context.Context, keys []string, args []any) *goredis.Cmd {
	if err := ctx.Err(); err != nil {
		cmd := goredis.NewCmd(ctx)
		cmd.SetErr(err)
		return cmd
	}
	c := &scriptCall{keys: keys, args: args}
	b.mu.Lock()
	if b.inflight < maxCreatePipelines {
		// Nothing waits while a pipeline is free (a pipeline that comes
		// back with calls waiting sends them instead of freeing its
		// place), so this call goes alone, sent by its caller.
		b.inflight++
		b.mu.Unlock()
		// Other calls may ride on the pipelines that follow this one: the
		// caller's cancellation must not fail them.
		b.send(context.WithoutCancel(ctx), []*scriptCall{c})
		return c.cmd
	}
	sent := make(chan struct{})
	c.done = func(*goredis.Cmd) { close(sent) }
	b.waiting = append(b.waiting, c)
	b.mu.Unlock()
	<-sent
	return c.cmd
}

// start is run for a caller that must not block (the event loops): it
// returns at once, and done is called with the reply on a goroutine of the
// batcher's.
func (b *scriptBatcher) start(keys []string, args []any, done func(*goredis.Cmd)) {
	c := &scriptCall{keys: keys, args: args, done: done}
	b.mu.Lock()
	if b.inflight < maxCreatePipelines {
		b.inflight++
		b.mu.Unlock()
		go b.send(context.Background(), []*scriptCall{c})
		return
	}
	b.waiting = append(b.waiting, c)
	b.mu.Unlock()
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

// send sends batch as one pipeline; then, before answering its calls, it
// hands its place to the calls waiting meanwhile, sent as the next pipeline
// on a goroutine of their own, so that Redis is not kept waiting while
// this batch's replies are handled.
func (b *scriptBatcher) send(ctx context.Context, batch []*scriptCall) {
	if len(batch) == 1 {
		c := batch[0]
		c.cmd = b.script.Run(ctx, b.client, c.keys, c.args...)
	} else {
		pipe := b.client.Pipeline()
		for _, c := range batch {
			c.cmd = b.script.EvalSha(ctx, pipe, c.keys, c.args...)
		}
		_, _ = pipe.Exec(ctx) // each call reads its own command's error
		for _, c := range batch {
			if goredis.HasErrorPrefix(c.cmd.Err(), "NOSCRIPT") {
				// Redis lost the script (restart, failover): the first
				// EVAL loads it again for the others.
				c.cmd = b.script.Run(ctx, b.client, c.keys, c.args...)
			}
		}
	}

	b.mu.Lock()
	if len(b.waiting) == 0 {
		b.inflight--
	} else {
		go b.send(context.Background(), b.take())
	}
	b.mu.Unlock()
	for _, c := range batch {
		if c.done != nil {
			c.done(c.cmd)
		}
	}
}
