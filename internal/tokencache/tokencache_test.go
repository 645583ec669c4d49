package tokencache

import (
	"fmt"
	"sync"
	"testing"
	"time"

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
		c := New(time.Second, 10, clock.now)
		_, gen, ok := c.Get("ns1", "a")
		if ok {
			t.Fatal("hit on an empty cache")
		}
		c.Fill(testRecord("ns1", "a", far), gen)
		clock.add(999 * time.Millisecond)
		rec, _, ok := c.Get("ns1", "a")
		if !ok || rec.ID != "a" || rec.Hash != "h-a" {
			t.Fatalf("got %+v %v, want the record", rec, ok)
		}
		if _, _, ok := c.Get("ns2", "a"); ok {
			t.Error("hit in another namespace")
		}
		clock.add(time.Millisecond)
		if _, _, ok := c.Get("ns1", "a"); ok {
			t.Error("hit after the ttl")
		}
	})
	t.Run("never past the record's expiry", func(t *testing.T) {
		c := New(time.Minute, 10, clock.now)
		c.Fill(testRecord("ns1", "b", clock.now().Add(100*time.Millisecond)), 0)
		if _, _, ok := c.Get("ns1", "b"); !ok {
			t.Fatal("miss before the expiry")
		}
		clock.add(100 * time.Millisecond)
		if _, _, ok := c.Get("ns1", "b"); ok {
			t.Error("hit at the record's expiry")
		}
	})
	t.Run("invalidate", func(t *testing.T) {
		c := New(time.Minute, 10, clock.now)
		c.Fill(testRecord("ns1", "c", far), 0)
		c.Invalidate("ns1", "c")
		if _, _, ok := c.Get("ns1", "c"); ok {
			t.Error("hit after invalidate")
		}
	})
	t.Run("invalidate drops descendants", func(t *testing.T) {
		c := New(time.Minute, 10, clock.now)
		kid := testRecord("ns1", "kid", far)
		kid.Ancestors = []string{"root"}
		grand := testRecord("ns1", "grand", far)
		grand.Ancestors = []string{"root", "kid"}
		other := testRecord("ns1", "other", far)
		other.Ancestors = []string{"elsewhere"}
		twin := testRecord("ns2", "twin", far) // another namespace's token may name an equal id
		twin.Ancestors = []string{"kid"}
		for _, r := range []store.Token{kid, grand, other, twin} {
			c.Fill(r, 0)
		}
		c.Invalidate("ns1", "kid")
		for id, want := range map[string]bool{"kid": false, "grand": false, "other": true} {
			if _, _, ok := c.Get("ns1", id); ok != want {
				t.Errorf("after revoking kid, %s cached = %v, want %v", id, ok, want)
			}
		}
		if _, _, ok := c.Get("ns2", "twin"); !ok {
			t.Error("a token of another namespace was dropped")
		}
		if n := c.under[tokenKey{"ns1", "root"}]; n != 0 {
			t.Errorf("root still counts %d cached descendants", n)
		}
		c.Invalidate("ns1", "elsewhere")
		if _, _, ok := c.Get("ns1", "other"); ok || c.Len() != 1 {
			t.Errorf("after revoking elsewhere: other cached %v, %d entries (want 1: twin)", ok, c.Len())
		}
	})
	t.Run("a lookup racing an invalidation does not refill", func(t *testing.T) {
		c := New(time.Minute, 10, clock.now)
		_, gen, _ := c.Get("ns1", "d") // the lookup starts
		c.Invalidate("ns1", "d")       // the token is revoked meanwhile
		c.Fill(testRecord("ns1", "d", far), gen)
		if _, _, ok := c.Get("ns1", "d"); ok {
			t.Error("the revoked record was cached")
		}
		_, gen, _ = c.Get("ns1", "d")
		c.Fill(testRecord("ns1", "d", far), gen)
		if _, _, ok := c.Get("ns1", "d"); !ok {
			t.Error("a later lookup was not cached")
		}
	})
	t.Run("bounded", func(t *testing.T) {
		c := New(time.Minute, 100, clock.now)
		for i := range 1000 {
			c.Fill(testRecord("ns1", fmt.Sprint(i), far), 0)
			if n := c.Len(); n > 100 {
				t.Fatalf("%d entries, at most 100 allowed", n)
			}
		}
		if _, _, ok := c.Get("ns1", "999"); !ok {
			t.Error("the newest entry was evicted")
		}
	})
	t.Run("stale entries go first", func(t *testing.T) {
		c := New(time.Second, 8, clock.now)
		for i := range 7 {
			c.Fill(testRecord("ns1", fmt.Sprint(i), far), 0)
		}
		clock.add(2 * time.Second)
		c.Fill(testRecord("ns1", "fresh", far), 0)
		c.Fill(testRecord("ns1", "fresher", far), 0)
		if _, _, ok := c.Get("ns1", "fresh"); !ok {
			t.Error("a fresh entry was evicted while stale ones remained")
		}
	})
	t.Run("ttl 0 disables", func(t *testing.T) {
		c := New(0, 10, clock.now)
		if c != nil {
			t.Fatal("a cache with ttl 0")
		}
		c.Fill(testRecord("ns1", "e", far), 0)
		c.Invalidate("ns1", "e")
		if _, _, ok := c.Get("ns1", "e"); ok || c.Len() != 0 {
			t.Error("the nil cache holds something")
		}
	})
}

func TestTokenCacheConcurrent(t *testing.T) {
	c := New(time.Second, 50, time.Now)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 2000 {
				id := fmt.Sprint((g*7 + i) % 80)
				if _, gen, ok := c.Get("ns1", id); !ok {
					c.Fill(testRecord("ns1", id, time.Now().Add(time.Hour)), gen)
				}
				if i%100 == 0 {
					c.Invalidate("ns1", id)
				}
			}
		})
	}
	wg.Wait()
	if n := c.Len(); n > 50 {
		t.Errorf("%d entries, at most 50 allowed", n)
	}
}
