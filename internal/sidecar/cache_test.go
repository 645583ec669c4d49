package sidecar

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/direktiv/direktiv-authz/store"
)

// fakeClock is a settable clock for the cache.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func testRecord(ns, id string, expires time.Time) store.Token {
	return store.Token{ID: id, Namespace: ns, Policies: []string{"workflowView"}, Expires: expires, Hash: "h-" + id}
}

func TestTokenCache(t *testing.T) {
	clock := &fakeClock{t: time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)}
	far := clock.now().Add(time.Hour)

	t.Run("hit within the ttl, miss after", func(t *testing.T) {
		c := newTokenCache(time.Second, 10, clock.now)
		_, gen, ok := c.get("ns1", "a")
		if ok {
			t.Fatal("hit on an empty cache")
		}
		c.fill(testRecord("ns1", "a", far), gen)
		clock.add(999 * time.Millisecond)
		rec, _, ok := c.get("ns1", "a")
		if !ok || rec.ID != "a" || rec.Hash != "h-a" {
			t.Fatalf("got %+v %v, want the record", rec, ok)
		}
		if _, _, ok := c.get("ns2", "a"); ok {
			t.Error("hit in another namespace")
		}
		clock.add(time.Millisecond)
		if _, _, ok := c.get("ns1", "a"); ok {
			t.Error("hit after the ttl")
		}
	})
	t.Run("never past the record's expiry", func(t *testing.T) {
		c := newTokenCache(time.Minute, 10, clock.now)
		c.fill(testRecord("ns1", "b", clock.now().Add(100*time.Millisecond)), 0)
		if _, _, ok := c.get("ns1", "b"); !ok {
			t.Fatal("miss before the expiry")
		}
		clock.add(100 * time.Millisecond)
		if _, _, ok := c.get("ns1", "b"); ok {
			t.Error("hit at the record's expiry")
		}
	})
	t.Run("invalidate", func(t *testing.T) {
		c := newTokenCache(time.Minute, 10, clock.now)
		c.fill(testRecord("ns1", "c", far), 0)
		c.invalidate("ns1", "c")
		if _, _, ok := c.get("ns1", "c"); ok {
			t.Error("hit after invalidate")
		}
	})
	t.Run("invalidate drops descendants", func(t *testing.T) {
		c := newTokenCache(time.Minute, 10, clock.now)
		kid := testRecord("ns1", "kid", far)
		kid.Ancestors = []string{"root"}
		grand := testRecord("ns1", "grand", far)
		grand.Ancestors = []string{"root", "kid"}
		other := testRecord("ns1", "other", far)
		other.Ancestors = []string{"elsewhere"}
		twin := testRecord("ns2", "twin", far) // another namespace's token may name an equal id
		twin.Ancestors = []string{"kid"}
		for _, r := range []store.Token{kid, grand, other, twin} {
			c.fill(r, 0)
		}
		c.invalidate("ns1", "kid")
		for id, want := range map[string]bool{"kid": false, "grand": false, "other": true} {
			if _, _, ok := c.get("ns1", id); ok != want {
				t.Errorf("after revoking kid, %s cached = %v, want %v", id, ok, want)
			}
		}
		if _, _, ok := c.get("ns2", "twin"); !ok {
			t.Error("a token of another namespace was dropped")
		}
		if n := c.under[tokenKey{"ns1", "root"}]; n != 0 {
			t.Errorf("root still counts %d cached descendants", n)
		}
		c.invalidate("ns1", "elsewhere")
		if _, _, ok := c.get("ns1", "other"); ok || c.len() != 1 {
			t.Errorf("after revoking elsewhere: other cached %v, %d entries (want 1: twin)", ok, c.len())
		}
	})
	t.Run("a lookup racing an invalidation does not refill", func(t *testing.T) {
		c := newTokenCache(time.Minute, 10, clock.now)
		_, gen, _ := c.get("ns1", "d") // the lookup starts
		c.invalidate("ns1", "d")       // the token is revoked meanwhile
		c.fill(testRecord("ns1", "d", far), gen)
		if _, _, ok := c.get("ns1", "d"); ok {
			t.Error("the revoked record was cached")
		}
		_, gen, _ = c.get("ns1", "d")
		c.fill(testRecord("ns1", "d", far), gen)
		if _, _, ok := c.get("ns1", "d"); !ok {
			t.Error("a later lookup was not cached")
		}
	})
	t.Run("bounded", func(t *testing.T) {
		c := newTokenCache(time.Minute, 100, clock.now)
		for i := range 1000 {
			c.fill(testRecord("ns1", fmt.Sprint(i), far), 0)
			if n := c.len(); n > 100 {
				t.Fatalf("%d entries, at most 100 allowed", n)
			}
		}
		if _, _, ok := c.get("ns1", "999"); !ok {
			t.Error("the newest entry was evicted")
		}
	})
	t.Run("stale entries go first", func(t *testing.T) {
		c := newTokenCache(time.Second, 8, clock.now)
		for i := range 7 {
			c.fill(testRecord("ns1", fmt.Sprint(i), far), 0)
		}
		clock.add(2 * time.Second)
		c.fill(testRecord("ns1", "fresh", far), 0)
		c.fill(testRecord("ns1", "fresher", far), 0)
		if _, _, ok := c.get("ns1", "fresh"); !ok {
			t.Error("a fresh entry was evicted while stale ones remained")
		}
	})
	t.Run("ttl 0 disables", func(t *testing.T) {
		c := newTokenCache(0, 10, clock.now)
		if c != nil {
			t.Fatal("a cache with ttl 0")
		}
		c.fill(testRecord("ns1", "e", far), 0)
		c.invalidate("ns1", "e")
		if _, _, ok := c.get("ns1", "e"); ok || c.len() != 0 {
			t.Error("the nil cache holds something")
		}
	})
}

func TestTokenCacheConcurrent(t *testing.T) {
	c := newTokenCache(time.Second, 50, time.Now)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 2000 {
				id := fmt.Sprint((g*7 + i) % 80)
				if _, gen, ok := c.get("ns1", id); !ok {
					c.fill(testRecord("ns1", id, time.Now().Add(time.Hour)), gen)
				}
				if i%100 == 0 {
					c.invalidate("ns1", id)
				}
			}
		})
	}
	wg.Wait()
	if n := c.len(); n > 50 {
		t.Errorf("%d entries, at most 50 allowed", n)
	}
}

// deleteRecord removes a token's record from Redis behind the sidecar's
// back, as a revocation on another replica or an expiry would.
func deleteRecord(tb testing.TB, addr, id string) {
	tb.Helper()
	rdb := redis.NewClient(&redis.Options{Addr: addr})
	defer rdb.Close()
	ctx := context.Background()
	keys, err := rdb.Keys(ctx, "*tok:"+id).Result()
	if err != nil || len(keys) != 1 {
		tb.Fatalf("record keys %v (%v), want one", keys, err)
	}
	if err := rdb.Del(ctx, keys...).Err(); err != nil {
		tb.Fatal(err)
	}
}

func testCacheDeletedTokenRefusedWithinTTL(t *testing.T, e enforcer) {
	s, srv := e.s, e.redis
	m := s.mintOK(t, "ns1", testAdminToken, `{"policies":["variablesView"]}`)
	tok, id := m["token"].(string), m["id"].(string)

	if r := s.do(t, "GET", "/api/namespaces/ns1/vars", tok, ""); r.status != http.StatusOK {
		t.Fatalf("status %d: %s", r.status, r.body)
	}
	filled := time.Now()
	if _, _, ok := s.app.cache.get("ns1", id); !ok {
		t.Fatal("the authenticated record is not cached")
	}
	deleteRecord(t, srv.Addr(), id)
	deleted := time.Now()

	// Within the ttl the cached record answers; the store is not asked.
	if time.Since(filled) < 500*time.Millisecond {
		if r := s.do(t, "GET", "/api/namespaces/ns1/vars", tok, ""); r.status != http.StatusOK {
			t.Errorf("right after the deletion: status %d, want 200 from the cache", r.status)
		}
	}
	for {
		r := s.do(t, "GET", "/api/namespaces/ns1/vars", tok, "")
		if r.status == http.StatusUnauthorized {
			wantError(t, r, http.StatusUnauthorized, "unknown, expired or revoked")
			break
		}
		if r.status != http.StatusOK {
			t.Fatalf("status %d: %s", r.status, r.body)
		}
		if time.Since(deleted) > 3*time.Second {
			t.Fatal("the deleted token is still honoured after 3s")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if d := time.Since(filled); d > 1100*time.Millisecond {
		t.Errorf("refused %s after the record was cached, want at most 1s (+100ms slack)", d)
	}
	if _, _, ok := s.app.cache.get("ns1", id); ok {
		t.Error("the refused token is still cached")
	}
}

func TestCacheDisabledAndInvalidated(t *testing.T) {
	up := startUpstream(t)

	t.Run("ttl 0", func(t *testing.T) {
		s, srv := startEnforcer(t, up, []string{"--token-cache-ttl", "0"})
		m := s.mintOK(t, "ns1", testAdminToken, `{"policies":["variablesView"]}`)
		if r := s.do(t, "GET", "/api/namespaces/ns1/vars", m["token"].(string), ""); r.status != http.StatusOK {
			t.Fatalf("status %d", r.status)
		}
		deleteRecord(t, srv.Addr(), m["id"].(string))
		r := s.do(t, "GET", "/api/namespaces/ns1/vars", m["token"].(string), "")
		wantError(t, r, http.StatusUnauthorized, "unknown, expired or revoked")
	})
	t.Run("invalidate", func(t *testing.T) {
		s, srv := startEnforcer(t, up, []string{"--token-cache-ttl", "1m"})
		m := s.mintOK(t, "ns1", testAdminToken, `{"policies":["variablesView"]}`)
		if r := s.do(t, "GET", "/api/namespaces/ns1/vars", m["token"].(string), ""); r.status != http.StatusOK {
			t.Fatalf("status %d", r.status)
		}
		deleteRecord(t, srv.Addr(), m["id"].(string))
		if r := s.do(t, "GET", "/api/namespaces/ns1/vars", m["token"].(string), ""); r.status != http.StatusOK {
			t.Fatalf("with a 1m cache: status %d, want 200 from the cache", r.status)
		}
		s.app.cache.invalidate("ns1", m["id"].(string))
		r := s.do(t, "GET", "/api/namespaces/ns1/vars", m["token"].(string), "")
		wantError(t, r, http.StatusUnauthorized, "unknown, expired or revoked")
	})
}
