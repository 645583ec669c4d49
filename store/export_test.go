package store

import (
	"context"
	"time"
)

// NewMemoryWithSweep returns a Memory whose janitor runs every sweep.
func NewMemoryWithSweep(sweep time.Duration) *Memory { return newMemory(sweep) }

// SetSweepLease sets how long r's sweeps hold a namespace.
func SetSweepLease(r *Redis, d time.Duration) { r.sweepLease = d }

// ClaimSweep takes a namespace from r's sweep queue as a sweeper would, and
// never gives it back: a replica that died holding it.
func ClaimSweep(ctx context.Context, r *Redis) (string, error) {
	ns, _, err := r.claim(ctx, "", 0)
	return ns, err
}
