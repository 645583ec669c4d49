package redis

import (
	"context"
	"time"
)

// SetSweepLease sets how long s's sweeps hold a namespace.
func SetSweepLease(s *Store, d time.Duration) { s.sweepLease = d }

// ClaimSweep takes a namespace from s's sweep queue as a sweeper would, and
// never gives it back: a replica that died holding it.
func ClaimSweep(ctx context.Context, s *Store) (string, error) {
	ns, _, err := s.claim(ctx, "", 0)
	return ns, err
}
