package sidecar

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

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
	if _, _, ok := s.app.cache.Get("ns1", id); !ok {
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
	if _, _, ok := s.app.cache.Get("ns1", id); ok {
		t.Error("the refused token is still cached")
	}
}

func TestCacheDisabledAndInvalidated(t *testing.T) {
	up := startUpstream(t)

	t.Run("ttl 0", func(t *testing.T) {
		s, srv := startEnforcer(t, up.URL(), []string{"--token-cache-ttl", "0"})
		m := s.mintOK(t, "ns1", testAdminToken, `{"policies":["variablesView"]}`)
		if r := s.do(t, "GET", "/api/namespaces/ns1/vars", m["token"].(string), ""); r.status != http.StatusOK {
			t.Fatalf("status %d", r.status)
		}
		deleteRecord(t, srv.Addr(), m["id"].(string))
		r := s.do(t, "GET", "/api/namespaces/ns1/vars", m["token"].(string), "")
		wantError(t, r, http.StatusUnauthorized, "unknown, expired or revoked")
	})
	t.Run("invalidate", func(t *testing.T) {
		s, srv := startEnforcer(t, up.URL(), []string{"--token-cache-ttl", "1m"})
		m := s.mintOK(t, "ns1", testAdminToken, `{"policies":["variablesView"]}`)
		if r := s.do(t, "GET", "/api/namespaces/ns1/vars", m["token"].(string), ""); r.status != http.StatusOK {
			t.Fatalf("status %d", r.status)
		}
		deleteRecord(t, srv.Addr(), m["id"].(string))
		if r := s.do(t, "GET", "/api/namespaces/ns1/vars", m["token"].(string), ""); r.status != http.StatusOK {
			t.Fatalf("with a 1m cache: status %d, want 200 from the cache", r.status)
		}
		s.app.cache.Invalidate("ns1", m["id"].(string))
		r := s.do(t, "GET", "/api/namespaces/ns1/vars", m["token"].(string), "")
		wantError(t, r, http.StatusUnauthorized, "unknown, expired or revoked")
	})
}
