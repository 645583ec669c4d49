package redis

import (
	"context"
	"fmt"
	"time"

	"github.com/direktiv/direktiv-authz/store"
)

// Removal of revoked subtrees in the background.
//
// Revoke marks a token with descendants revoked in one short script; from
// then on every lookup, list and create refuses its descendants (they name
// it among their ancestors). Their records are removed afterwards by sweeps:
// sweepScript walks the namespace's index sweepBatch entries at a time and
// deletes every record under a revoked ancestor, so no command holds Redis
// for long, however large the subtree. A revocation is complete when a
// whole pass over the index has run after its marker was set (no token is
// added under a marked ancestor, so the pass meets every descendant).
//
// The work is durable and shared: the sweep state of a namespace lives in
// its own slot (<p>:{ns}:sw), and the namespaces with work in a queue
// (<p>:sweepq) that every replica's Sweep polls. A replica takes a
// namespace with a lease (sweepLease), renews it as it goes, and gives it
// back when the namespace has no revocation left; if it dies, the lease
// runs out and another replica resumes from the recorded position. Two
// sweepers on one namespace (a lease that ran out while its holder was
// stalled) are harmless: each batch is atomic, a record is deleted once and
// counted once.

// sweepLease is how long a replica holds a namespace's sweep without
// renewing it; a replica that died is replaced after at most this.
const sweepLease = 10 * time.Second

// sweepPoll is how often an idle Sweep looks at the queue.
const sweepPoll = time.Second

// sweepPause is how many times as long as a batch took a sweep waits
// before the next: at half of Redis's time (1), forwarding that looks every
// token up in Redis saw its p99 more than double during a removal
// (bench/RESULTS.md).
const sweepPause = 2

// sweepResult is what one sweepScript call did.
type sweepResult struct {
	pending   bool           // revocations still wait in the namespace
	removed   int            // records deleted
	mine      []string       // of those, the descendants of the id asked about
	completed map[string]int // revocations completed: id → count
}

// sweepOnce runs one sweep batch in namespace; mine selects the removed ids
// to return (the descendants of that id).
func (r *Store) sweepOnce(ctx context.Context, namespace, mine string) (sweepResult, error) {
	keys := []string{r.indexKey(namespace), r.sweepStateKey(namespace), r.childrenKey(namespace)}
	res, err := sweepScript.Run(ctx, r.client, keys, r.tag(namespace), sweepBatch, mine).Slice()
	if err != nil {
		return sweepResult{}, unavailable(err, "removing revoked tokens of %s", namespace)
	}
	if len(res) < 3 || len(res)%2 != 1 {
		return sweepResult{}, fmt.Errorf("%w: the sweep script answered %d values", store.ErrUnavailable, len(res))
	}
	pending, _ := res[0].(int64)
	removed, _ := res[1].(int64)
	out := sweepResult{pending: pending == 1, removed: int(removed)}
	ids, _ := res[2].([]any)
	for _, v := range ids {
		if id, ok := v.(string); ok {
			out.mine = append(out.mine, id)
		}
	}
	for i := 3; i+1 < len(res); i += 2 {
		id, _ := res[i].(string)
		n, _ := res[i+1].(int64)
		if out.completed == nil {
			out.completed = map[string]int{}
		}
		out.completed[id] = int(n)
	}
	return out, nil
}

// Sweep removes revoked tokens in the background until ctx is done or the
// store is closed, then returns nil: it takes namespaces from the sweep
// queue one at a time and runs sweep batches in each until no revocation is
// left there. done is called (on Sweep's goroutine) for each revocation it
// completes, with the total count of tokens it revoked. Between batches it
// waits twice as long as the batch took (sweepPause), so that a sweep takes
// at most about a third of Redis's time. Errors are logged and retried after a pause: a replica
// that cannot reach Redis refuses every token anyway.
//
// Run one Sweep per store; every replica runs one.
func (r *Store) Sweep(ctx context.Context, done func(namespace, id string, count int)) error {
	ctx, cancel := r.untilClosed(ctx)
	defer cancel()
	for ctx.Err() == nil {
		ns, lease, err := r.claim(ctx, "", 0)
		switch {
		case err != nil:
			r.log.Warn("sweep: cannot read the queue of revoked tokens to remove; retrying", "err", err)
			sleep(ctx, sweepPoll, nil)
			continue
		case ns == "":
			sleep(ctx, sweepPoll, nil)
			continue
		}
		r.sweepNamespace(ctx, ns, lease, done)
	}
	return nil
}

// sweepNamespace sweeps ns while this replica holds its lease.
func (r *Store) sweepNamespace(ctx context.Context, ns string, lease int64, done func(namespace, id string, count int)) {
	renewed := time.Now()
	for ctx.Err() == nil {
		start := time.Now()
		b, err := r.sweepOnce(ctx, ns, "")
		if err != nil {
			r.log.Warn("sweep: a batch failed; the namespace is retried", "namespace", ns, "err", err)
			sleep(ctx, sweepPoll, nil)
			return // the lease runs out, or this replica takes it again
		}
		took := time.Since(start)
		for id, n := range b.completed {
			r.log.Info("revoked tokens removed", "namespace", ns, "id", id, "count", n)
			if done != nil {
				done(ns, id, n)
			}
		}
		if !b.pending {
			if err := releaseScript.Run(ctx, r.client, []string{r.sweepQueueKey()}, ns, lease).Err(); err != nil {
				r.log.Warn("sweep: cannot release a namespace; its lease runs out", "namespace", ns, "err", err)
			}
			return
		}
		if time.Since(renewed) > r.sweepLease/3 {
			n, l, err := r.claim(ctx, ns, lease)
			if err != nil || n == "" {
				return // another replica took it, or Redis is away
			}
			lease, renewed = l, time.Now()
		}
		sleep(ctx, sweepPause*took, nil)
	}
}

// claim takes a namespace whose lease is over (ns ""), or renews the lease
// of ns ending at lease. It returns "" when there is none, or ns is no
// longer this caller's.
func (r *Store) claim(ctx context.Context, ns string, lease int64) (string, int64, error) {
	res, err := claimScript.Run(ctx, r.client, []string{r.sweepQueueKey()}, r.sweepLease.Milliseconds(), ns, lease).Slice()
	if err != nil {
		return "", 0, unavailable(err, "claiming a sweep")
	}
	if len(res) != 2 {
		return "", 0, nil
	}
	got, _ := res[0].(string)
	until, _ := res[1].(int64)
	return got, until, nil
}

// sleep waits d, or until ctx is done or wake receives.
func sleep(ctx context.Context, d time.Duration, wake <-chan struct{}) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	case <-wake:
	}
}
