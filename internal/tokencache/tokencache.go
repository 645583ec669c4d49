// Package tokencache keeps the records of recently authenticated tokens in
// process, bounded in size and age. It holds records, never secrets, and
// imports only store.
package tokencache

import (
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/direktiv/direktiv-authz/store"
)

// Size bounds the token cache: at about 300 bytes a record, 100k
// entries stay in the tens of megabytes however many tokens are in use.
const Size = 100_000

// Cache keeps the records of recently authenticated tokens in process,
// so that a busy token costs one store lookup per ttl instead of one per
// request. It caches what the store answered, never a secret: a hit still
// has its hash compared with the presented token by its caller.
//
// An entry lives at most ttl (the bound on how long a revoked or deleted
// token is still honoured by this replica) and never past the record's own
// Expires. Only live records are cached: a miss, an error or a hash mismatch
// leaves no entry. When full, a stale entry or else an arbitrary one makes
// room: Go's randomised map iteration makes that a random eviction, O(1) and
// with no bookkeeping.
//
// A nil *Cache is a disabled cache: Get always misses, Fill and
// Invalidate do nothing.
type Cache struct {
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

	hits, misses atomic.Uint64 // Get's answers, for the metrics
}

type tokenKey struct{ namespace, id string }

type tokenEntry struct {
	rec   store.Token
	until time.Time
}

// New returns a cache of at most max records kept at most ttl, or
// nil (no cache) when ttl is 0.
func New(ttl time.Duration, max int, now func() time.Time) *Cache {
	if ttl <= 0 || max <= 0 {
		return nil
	}
	return &Cache{ttl: ttl, max: max, now: now, entries: make(map[tokenKey]tokenEntry), under: make(map[tokenKey]int)}
}

// Get returns the cached record of namespace/id if one is still fresh. On a
// miss it returns the generation to pass to Fill after the store lookup.
func (c *Cache) Get(namespace, id string) (rec store.Token, gen uint64, ok bool) {
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

// Fill caches rec, a live record the store just returned, unless an
// invalidation happened since Get returned gen.
func (c *Cache) Fill(rec store.Token, gen uint64) {
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
func (c *Cache) dropLocked(k tokenKey, e tokenEntry) {
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
func (c *Cache) evictLocked(now time.Time) {
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

// Invalidate drops namespace/id and every entry minted from it,
// transitively (those naming it among their ancestors), so that the next
// request with any of them asks the store. The revocation subscription
// calls it for every revoked token. Dropping descendants walks the cache,
// only when it holds some.
func (c *Cache) Invalidate(namespace, id string) {
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

// Len is the number of entries, fresh or not.
func (c *Cache) Len() int {
	if c == nil {
		return 0
	}
	c.mu.RLock()
	defer c.mu.RUnlock()
	return len(c.entries)
}

// Lookups counts Get's answers: hits and misses.
func (c *Cache) Lookups() (hits, misses uint64) { return c.hits.Load(), c.misses.Load() }
