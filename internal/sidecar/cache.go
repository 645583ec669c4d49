package sidecar

import (
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/direktiv/direktiv-authz/store"
)

// tokenCacheSize bounds the token cache: at about 300 bytes a record, 100k
// entries stay in the tens of megabytes however many tokens are in use.
const tokenCacheSize = 100_000

// tokenCache keeps the records of recently authenticated tokens in process,
// so that a busy token costs one store lookup per ttl instead of one per
// request. It caches what the store answered, never a secret: a hit still
// has its hash compared with the presented token (see app.authenticate).
//
// An entry lives at most ttl (the bound on how long a revoked or deleted
// token is still honoured by this replica) and never past the record's own
// Expires. Only live records are cached: a miss, an error or a hash mismatch
// leaves no entry. When full, a stale entry or else an arbitrary one makes
// room: Go's randomised map iteration makes that a random eviction, O(1) and
// with no bookkeeping.
//
// A nil *tokenCache is a disabled cache: get always misses, fill and
// invalidate do nothing.
type tokenCache struct {
	ttl time.Duration
	max int
	now func() time.Time

	mu      sync.RWMutex
	entries map[tokenKey]tokenEntry
	// gen counts invalidations. A fill carries the generation read before its
	// store lookup and is dropped if an invalidation came in between, so a
	// lookup racing a revocation cannot put the revoked record back.
	gen uint64
	// under counts, for each token, the cached entries naming it among
	// their ancestors: a revocation drops those too, and looks for them
	// only when there are some.
	under map[tokenKey]int

	hits, misses atomic.Uint64 // get's answers, for the metrics
}

type tokenKey struct{ namespace, id string }

type tokenEntry struct {
	rec   store.Token
	until time.Time
}

// newTokenCache returns a cache of at most max records kept at most ttl, or
// nil (no cache) when ttl is 0.
func newTokenCache(ttl time.Duration, max int, now func() time.Time) *tokenCache {
	if ttl <= 0 || max <= 0 {
		return nil
	}
	return &tokenCache{ttl: ttl, max: max, now: now, entries: make(map[tokenKey]tokenEntry), under: make(map[tokenKey]int)}
}

// get returns the cached record of namespace/id if one is still fresh. On a
// miss it returns the generation to pass to fill after the store lookup.
func (c *tokenCache) get(namespace, id string) (rec store.Token, gen uint64, ok bool) {
	if c == nil {
		return store.Token{}, 0, false
	}
	c.mu.RLock()
	e, ok := c.entries[tokenKey{namespace, id}]
	gen = c.gen
	c.mu.RUnlock()
	if !ok || !c.now().Before(e.until) {
		c.misses.Add(1)
		return store.Token{}, gen, false
	}
	c.hits.Add(1)
	return e.rec, gen, true
}

// fill caches rec, a live record the store just returned, unless an
// invalidation happened since get returned gen.
func (c *tokenCache) fill(rec store.Token, gen uint64) {
	if c == nil {
		return
	}
	now := c.now()
	until := now.Add(c.ttl)
	if rec.Expires.Before(until) {
		until = rec.Expires
	}
	k := tokenKey{rec.Namespace, rec.ID}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.gen != gen {
		return
	}
	if old, ok := c.entries[k]; ok {
		c.dropLocked(k, old)
	} else if len(c.entries) >= c.max {
		c.evictLocked(now)
	}
	c.entries[k] = tokenEntry{rec: rec, until: until}
	for _, a := range rec.Ancestors {
		c.under[tokenKey{rec.Namespace, a}]++
	}
}

// dropLocked removes the entry e of k.
func (c *tokenCache) dropLocked(k tokenKey, e tokenEntry) {
	delete(c.entries, k)
	for _, a := range e.rec.Ancestors {
		ak := tokenKey{k.namespace, a}
		if c.under[ak]--; c.under[ak] <= 0 {
			delete(c.under, ak)
		}
	}
}

// evictLocked makes room for one entry: it looks at a few entries from a
// random starting point, drops those stale at now, and if none was, drops
// the first it saw.
func (c *tokenCache) evictLocked(now time.Time) {
	const probes = 8
	var first tokenKey
	seen, dropped := 0, false
	for k, e := range c.entries {
		if seen == 0 {
			first = k
		}
		if !now.Before(e.until) {
			c.dropLocked(k, e)
			dropped = true
		}
		if seen++; seen == probes {
			break
		}
	}
	if !dropped {
		c.dropLocked(first, c.entries[first])
	}
}

// invalidate drops namespace/id and every entry minted from it,
// transitively (those naming it among their ancestors), so that the next
// request with any of them asks the store. The revocation subscription
// calls it for every revoked token. Dropping descendants walks the cache,
// only when it holds some.
func (c *tokenCache) invalidate(namespace, id string) {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gen++
	k := tokenKey{namespace, id}
	if e, ok := c.entries[k]; ok {
		c.dropLocked(k, e)
	}
	if c.under[k] == 0 {
		return
	}
	for ek, e := range c.entries {
		if ek.namespace == namespace && slices.Contains(e.rec.Ancestors, id) {
			c.dropLocked(ek, e)
		}
	}
}

// len is the number of entries, fresh or not.
func (c *tokenCache) len() int {
	if c == nil {
		return 0
	}
	c.mu.RLock()
	defer c.mu.RUnlock()
	return len(c.entries)
}
