package redis_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/direktiv/direktiv-authz/internal/testutil"
	"github.com/direktiv/direktiv-authz/store"
	"github.com/direktiv/direktiv-authz/store/redis"
	"github.com/direktiv/direktiv-authz/store/storetest"
)

// waitQuery makes every create and revoke wait for one replica. The timeouts
// are generous for loaded test machines; wait_timeout must stay below
// read_timeout.
const waitQuery = "?wait_replicas=1&wait_timeout=1s&read_timeout=2s"

// TestConformanceSentinel runs the conformance suite through three sentinels,
// with every write waiting for the replica.
func TestConformanceSentinel(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a master, a replica and three sentinels")
	}
	sen := testutil.StartRedisSentinel(t)
	prefix := storetest.PerTest(func(t *testing.T) string { return "t" + storetest.Namespace(t) })
	storetest.Run(t, func(t *testing.T) storetest.Store {
		return mustRedis(t, sen.URL()+waitQuery, redis.Options{Prefix: prefix(t)})
	})
}

// TestSentinelFailover kills the master: every create and revoke the
// store acknowledged before is on the promoted replica, and the store finds
// it by itself. Without a replica left, writes fail closed (and a failed
// create leaves nothing); with the old master back as a replica, they
// succeed again.
func TestSentinelFailover(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a master, a replica and three sentinels")
	}
	sen := testutil.StartRedisSentinel(t)
	s := mustRedis(t, sen.URL()+waitQuery, redis.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Second)
	defer cancel()
	ns := storetest.Namespace(t)

	parent, _ := storetest.MustToken(t, ns, "", time.Hour)
	live := []store.Token{parent}
	for i := 0; i < 3; i++ {
		child, _ := storetest.MustToken(t, ns, parent.ID, time.Hour)
		live = append(live, child)
	}
	for i := 0; i < 20; i++ {
		tok, _ := storetest.MustToken(t, ns, "", time.Hour)
		live = append(live, tok)
	}
	revoked, _ := storetest.MustToken(t, ns, "", time.Hour)
	for _, tok := range append(slices.Clone(live), revoked) {
		if err := s.Create(ctx, tok); err != nil {
			t.Fatalf("Create(%s): %v", tok.ID, err)
		}
	}
	if rv, err := s.Revoke(ctx, ns, revoked.ID); err != nil || !slices.Equal(rv.IDs, []string{revoked.ID}) {
		t.Fatalf("Revoke = %v, %v", rv, err)
	}

	old := sen.KillMaster(t)
	killed := time.Now()
	newMaster := sen.WaitFailover(t, 30*time.Second)
	t.Logf("sentinels promoted %s after %s", newMaster.Addr(), time.Since(killed).Round(time.Millisecond))

	// The store follows the sentinels by itself.
	deadline := time.Now().Add(15 * time.Second)
	for {
		_, err := s.Lookup(ctx, ns, parent.ID)
		if err == nil {
			break
		}
		if !errors.Is(err, store.ErrUnavailable) || time.Now().After(deadline) {
			t.Fatalf("Lookup after the failover: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("store answering again %s after the kill", time.Since(killed).Round(time.Millisecond))
	for _, want := range live {
		got, err := s.Lookup(ctx, ns, want.ID)
		if err != nil {
			t.Fatalf("Lookup(%s) after the failover: %v (acknowledged before it)", want.ID, err)
		}
		if got.Hash != want.Hash || got.Parent != want.Parent || !got.Expires.Equal(want.Expires) {
			t.Fatalf("token %s after the failover: %+v, want %+v", want.ID, got, want)
		}
	}
	if _, err := s.Lookup(ctx, ns, revoked.ID); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Lookup of the token revoked before the failover: %v, want ErrNotFound", err)
	}
	toks, next, err := s.List(ctx, ns, "", store.MaxListLimit)
	if err != nil || next != "" || len(toks) != len(live) {
		t.Fatalf("List after the failover: %d tokens, next %q, %v; want %d", len(toks), next, err, len(live))
	}

	// The new master has no replica: writes cannot be acknowledged, fail
	// closed, and a refused create leaves no token.
	raw := goredis.NewClient(&goredis.Options{Addr: newMaster.Addr(), MaxRetries: -1})
	defer raw.Close()
	fresh, _ := storetest.MustToken(t, ns, "", time.Hour)
	start := time.Now()
	err = s.Create(ctx, fresh)
	if !errors.Is(err, store.ErrUnavailable) || !strings.Contains(err.Error(), "0 of 1 replicas") {
		t.Fatalf("Create without a replica: %v, want ErrUnavailable naming the replicas", err)
	}
	if d := time.Since(start); d < time.Second || d > 5*time.Second {
		t.Errorf("Create without a replica failed after %s, want about wait_timeout (1s)", d)
	}
	if _, err := s.Lookup(ctx, ns, fresh.ID); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Lookup of the refused token: %v, want ErrNotFound (undone)", err)
	}
	if n := raw.ZScore(ctx, redis.DefaultPrefix+":{"+ns+"}:idx", fresh.ID).Err(); !errors.Is(n, goredis.Nil) {
		t.Fatalf("the refused token is still indexed: %v", n)
	}
	// A revoke takes effect on the master but is reported unconfirmed.
	victim := live[1]
	if _, err := s.Revoke(ctx, ns, victim.ID); !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("Revoke without a replica: %v, want ErrUnavailable", err)
	}
	if _, err := s.Lookup(ctx, ns, victim.ID); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Lookup of the token revoked without a replica: %v, want ErrNotFound (in force on the master)", err)
	}
	if _, err := s.Revoke(ctx, ns, victim.ID); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Revoke again: %v, want ErrNotFound", err)
	}

	// The old master comes back as a replica: writes are acknowledged again.
	sen.RestartAsReplica(t, old)
	if err := s.Create(ctx, fresh); !errors.Is(err, store.ErrExists) {
		t.Fatalf("Create of the undone token again: %v, want ErrExists (its id stays taken for a minute)", err)
	}
	fresh, _ = storetest.MustToken(t, ns, "", time.Hour)
	if err := s.Create(ctx, fresh); err != nil {
		t.Fatalf("Create with the replica back: %v", err)
	}
	if rv, err := s.Revoke(ctx, ns, parent.ID); err != nil || len(rv.IDs) != 3 || rv.IDs[0] != parent.ID {
		t.Fatalf("Revoke of the parent with the replica back = %v, %v; want it and its two live children", rv, err)
	}
	if _, err := s.Lookup(ctx, ns, fresh.ID); err != nil {
		t.Fatalf("Lookup(%s): %v", fresh.ID, err)
	}
}

// TestWaitReplicasWithoutReplica: a standalone server has no replica,
// so waiting for one fails every write closed after wait_timeout, leaving
// nothing of a create behind; reads do not wait.
func TestWaitReplicasWithoutReplica(t *testing.T) {
	srv := testutil.StartRedis(t)
	plain := mustRedis(t, srv.URL(), redis.Options{})
	waiting := mustRedis(t, srv.URL(), redis.Options{WaitReplicas: 1, WaitTimeout: 100 * time.Millisecond})
	c := rawClient(t, srv)
	ctx, ns := context.Background(), storetest.Namespace(t)
	tag := redis.DefaultPrefix + ":{" + ns + "}:"

	tok, _ := storetest.MustToken(t, ns, "", time.Hour)
	start := time.Now()
	err := waiting.Create(ctx, tok)
	if !errors.Is(err, store.ErrUnavailable) || !strings.Contains(err.Error(), "reached 0 of 1 replicas within 100ms") {
		t.Fatalf("Create: %v, want ErrUnavailable naming the replicas", err)
	}
	if d := time.Since(start); d < 100*time.Millisecond {
		t.Fatalf("Create failed after %s, before the wait timeout", d)
	}
	// Undone: only the revoke marker remains, which keeps the id from
	// being created again by a late resend (and the index, whose entry
	// the pruning drops).
	if got := keys(t, ctx, c, tag+"*"); !slices.Equal(got, []string{tag + "ix", tag + "rv:" + tok.ID}) {
		t.Fatalf("keys after the refused create = %q, want only the revoke marker", got)
	}

	// A parent from the store that does not wait; a child create refused by
	// the waiting store leaves the parent's lineage as it was.
	parent, _ := storetest.MustToken(t, ns, "", time.Hour)
	if err := plain.Create(ctx, parent); err != nil {
		t.Fatal(err)
	}
	child, _ := storetest.MustToken(t, ns, parent.ID, time.Hour)
	if err := waiting.Create(ctx, child); !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("Create child: %v, want ErrUnavailable", err)
	}
	if n := c.Exists(ctx, tag+"tok:"+child.ID).Val(); n != 0 {
		t.Errorf("the child's record exists after the refused create")
	}
	if toks, _, err := plain.List(ctx, ns, "", 10); err != nil || len(toks) != 1 || toks[0].ID != parent.ID {
		t.Errorf("List after the refused child = %v, %v; want only the parent", toks, err)
	}

	if got, err := waiting.Lookup(ctx, ns, parent.ID); err != nil || got.ID != parent.ID {
		t.Fatalf("Lookup through the waiting store: %v", err)
	}
	if _, _, err := waiting.List(ctx, ns, "", 10); err != nil {
		t.Fatalf("List through the waiting store: %v", err)
	}
	// An id that exists is still reported as such, not as unavailable.
	dup, _ := storetest.MustToken(t, ns, "", time.Hour)
	dup.ID = parent.ID
	if err := waiting.Create(ctx, dup); !errors.Is(err, store.ErrExists) {
		t.Fatalf("Create of an existing id: %v, want ErrExists", err)
	}
	if _, err := waiting.Revoke(ctx, ns, parent.ID); !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("Revoke: %v, want ErrUnavailable", err)
	}
	if _, err := plain.Lookup(ctx, ns, parent.ID); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Lookup after the unconfirmed revoke: %v, want ErrNotFound (in force)", err)
	}
	if _, err := waiting.Revoke(ctx, ns, parent.ID); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Revoke again: %v, want ErrNotFound", err)
	}
}

func TestNewWaitOptions(t *testing.T) {
	srv := testutil.StartRedis(t)
	ctx := context.Background()
	for _, tc := range []struct {
		name, url string
		opts      redis.Options
		want      string
	}{
		{"negative replicas", srv.URL(), redis.Options{WaitReplicas: -1}, "wait replicas -1"},
		{"too many replicas", srv.URL(), redis.Options{WaitReplicas: 101}, "wait replicas 101"},
		{"timeout not below the read timeout", srv.URL() + "?read_timeout=1s", redis.Options{WaitReplicas: 1, WaitTimeout: time.Second}, "shorter than the read timeout"},
		{"URL timeout overridden too long", srv.URL() + "?wait_replicas=1&wait_timeout=100ms", redis.Options{WaitTimeout: 2 * time.Second}, "shorter than the read timeout"},
		{"negative timeout", srv.URL(), redis.Options{WaitReplicas: 1, WaitTimeout: -time.Second}, "wait timeout -1s"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, err := redis.New(ctx, tc.url, tc.opts)
			if err == nil {
				_ = r.Close()
				t.Fatal("New succeeded")
			}
			if !strings.Contains(err.Error(), tc.want) || errors.Is(err, store.ErrUnavailable) {
				t.Fatalf("New: %v, want a configuration error saying %q", err, tc.want)
			}
		})
	}
	// The URL's settings apply when the options leave them 0.
	r := mustRedis(t, srv.URL()+"?wait_replicas=1&wait_timeout=50ms", redis.Options{})
	tok, _ := storetest.MustToken(t, storetest.Namespace(t), "", time.Hour)
	if err := r.Create(ctx, tok); !errors.Is(err, store.ErrUnavailable) || !strings.Contains(err.Error(), "0 of 1 replicas within 50ms") {
		t.Fatalf("Create with wait_replicas=1 in the URL: %v", err)
	}
}
