package store_test

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/direktiv/direktiv-authz/store"
	"github.com/direktiv/direktiv-authz/store/redistest"
	"github.com/direktiv/direktiv-authz/store/storetest"
)

func TestRedis(t *testing.T) {
	server := perTest(func(t *testing.T) *redistest.Server { return redistest.Start(t) })
	storetest.Run(t, func(t *testing.T) storetest.Store {
		return mustRedis(t, server(t).URL(), store.RedisOptions{})
	})
}

func TestRedisCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a three-node Redis Cluster")
	}
	cluster := redistest.StartCluster(t)
	// One cluster for all subtests; a prefix per subtest keeps them apart.
	prefix := perTest(func(t *testing.T) string { return "t" + storetest.Namespace(t) })
	storetest.Run(t, func(t *testing.T) storetest.Store {
		return mustRedis(t, cluster.URL(), store.RedisOptions{Prefix: prefix(t)})
	})
}

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
}

func mustRedis(t *testing.T, url string, opts store.RedisOptions) *store.Redis {
	t.Helper()
	if opts.Logger == nil {
		opts.Logger = testLogger(t)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	r, err := store.NewRedis(ctx, url, opts)
	if err != nil {
		t.Fatalf("NewRedis(%s): %v", url, err)
	}
	t.Cleanup(func() { _ = r.Close() })
	return r
}

// rawClient talks to the server directly, to inspect what the store wrote.
func rawClient(t *testing.T, s *redistest.Server) *redis.Client {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: s.Addr(), MaxRetries: -1})
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func keys(t *testing.T, ctx context.Context, c *redis.Client, pattern string) []string {
	t.Helper()
	var all []string
	iter := c.Scan(ctx, 0, pattern, 1000).Iterator()
	for iter.Next(ctx) {
		all = append(all, iter.Val())
	}
	if err := iter.Err(); err != nil {
		t.Fatalf("SCAN: %v", err)
	}
	slices.Sort(all)
	return all
}

func TestRedisKeyLayout(t *testing.T) {
	srv := redistest.Start(t)
	s := mustRedis(t, srv.URL(), store.RedisOptions{Prefix: "authz"})
	c := rawClient(t, srv)
	ctx, ns := context.Background(), storetest.Namespace(t)

	parent, _ := storetest.MustToken(t, ns, "", 2*time.Hour)
	child, _ := storetest.MustToken(t, ns, parent.ID, time.Hour)
	for _, tok := range []store.Token{parent, child} {
		if err := s.Create(ctx, tok); err != nil {
			t.Fatalf("Create: %v", err)
		}
	}
	tag := "authz:{" + ns + "}:"
	// No up key for the child: its one ancestor is its record's parent.
	want := []string{tag + "exp", tag + "idx", tag + "kids:" + parent.ID, tag + "tok:" + child.ID, tag + "tok:" + parent.ID}
	slices.Sort(want)
	if got := keys(t, ctx, c, "*"); !slices.Equal(got, want) {
		t.Fatalf("keys = %q\nwant %q", got, want)
	}
	for _, k := range want {
		// One hash tag, the namespace: all keys of a namespace share a
		// Redis Cluster slot.
		if strings.Count(k, "{") != 1 || !strings.Contains(k, "{"+ns+"}") {
			t.Errorf("key %q does not carry the hash tag {%s}", k, ns)
		}
	}

	expireAt := func(k string) int64 {
		t.Helper()
		ms, err := c.Do(ctx, "PEXPIRETIME", k).Int64()
		if err != nil {
			t.Fatalf("PEXPIRETIME %s: %v", k, err)
		}
		return ms
	}
	// Records and ancestor lists expire with their token; the index, the
	// expiry index and kids sets with their longest-lived member plus a
	// minute's slack (see extend in redis_scripts.go).
	const slack = 60000
	for _, tc := range []struct {
		key   string
		want  int64
		slack int64
	}{
		{tag + "tok:" + parent.ID, parent.Expires.UnixMilli(), 0},
		{tag + "tok:" + child.ID, child.Expires.UnixMilli(), 0},
		{tag + "kids:" + parent.ID, child.Expires.UnixMilli(), slack},
		{tag + "idx", parent.Expires.UnixMilli(), slack}, // the longest-lived member
		{tag + "exp", parent.Expires.UnixMilli(), slack},
	} {
		if got := expireAt(tc.key); got != tc.want+tc.slack {
			t.Errorf("PEXPIRETIME %s = %d, want %d", tc.key, got, tc.want+tc.slack)
		}
	}

	raw, err := c.Get(ctx, tag+"tok:"+child.ID).Bytes()
	if err != nil {
		t.Fatal(err)
	}
	var stored store.Token
	if err := json.Unmarshal(raw, &stored); err != nil {
		t.Fatalf("record is not JSON of store.Token: %v\n%s", err, raw)
	}
	if stored.ID != child.ID || stored.Hash != child.Hash || stored.Parent != parent.ID || !stored.Expires.Equal(child.Expires) {
		t.Fatalf("stored record %+v, want %+v", stored, child)
	}
	if score := c.ZScore(ctx, tag+"idx", child.ID).Val(); int64(score) != child.Created.UnixMicro() {
		t.Errorf("index score %v, want created µs %d", score, child.Created.UnixMicro())
	}
	if score := c.ZScore(ctx, tag+"exp", child.ID).Val(); int64(score) != child.Expires.UnixMilli() {
		t.Errorf("expiry index score %v, want expires ms %d", score, child.Expires.UnixMilli())
	}
	if kids := c.SMembers(ctx, tag+"kids:"+parent.ID).Val(); !slices.Equal(kids, []string{child.ID}) {
		t.Errorf("kids of the parent = %v, want [%s]", kids, child.ID)
	}
	if n := c.Exists(ctx, tag+"up:"+child.ID).Val(); n != 0 {
		t.Errorf("the child has an up key; its one ancestor is its record's parent")
	}

	// A grandchild that outlives its parent keeps every link above it
	// alive as long as itself, and records all its ancestors.
	grandchild, _ := storetest.MustToken(t, ns, child.ID, 3*time.Hour)
	if err := s.Create(ctx, grandchild); err != nil {
		t.Fatal(err)
	}
	for k, extra := range map[string]int64{tag + "kids:" + parent.ID: slack, tag + "kids:" + child.ID: slack, tag + "up:" + grandchild.ID: 0} {
		if got, want := expireAt(k), grandchild.Expires.UnixMilli()+extra; got != want {
			t.Errorf("PEXPIRETIME %s = %d, want the grandchild's expiry %d (+ %d ms)", k, got, want, extra)
		}
	}
	if up := c.Get(ctx, tag+"up:"+grandchild.ID).Val(); up != parent.ID+" "+child.ID {
		t.Errorf("ancestors of the grandchild = %q, want parent and child", up)
	}

	// Revoking everything leaves only the revoke marker, for a minute.
	if _, err := s.Revoke(ctx, ns, parent.ID); err != nil {
		t.Fatal(err)
	}
	marker := tag + "done:" + parent.ID
	if got := keys(t, ctx, c, "*"); !slices.Equal(got, []string{marker}) {
		t.Fatalf("keys after revoke = %q, want only %q", got, marker)
	}
	if ttl := c.PTTL(ctx, marker).Val(); ttl <= 55*time.Second || ttl > time.Minute {
		t.Fatalf("revoke marker TTL %s, want about a minute", ttl)
	}
}

// TestRedisAncestorsFromRecords: a token whose one ancestor is its parent
// has no up key; a child of it finds that ancestor in its record's parent
// field, which a description or policy crafted to look like one cannot
// fake (quotes inside JSON strings are escaped). A revoke still cascades.
func TestRedisAncestorsFromRecords(t *testing.T) {
	srv := redistest.Start(t)
	s := mustRedis(t, srv.URL(), store.RedisOptions{})
	c := rawClient(t, srv)
	ctx, ns := context.Background(), storetest.Namespace(t)
	tag := store.DefaultRedisPrefix + ":{" + ns + "}:"
	const fake = `x","parent":"evil","y":"`

	// Each outlives its parent, so each create must extend the kids sets
	// of all its ancestors: those it found.
	root, _ := storetest.MustToken(t, ns, "", time.Hour)
	root.Description = fake // a root: no parent, whatever its description says
	child, _ := storetest.MustToken(t, ns, root.ID, 2*time.Hour)
	child.Description = fake
	child.Policies = []string{`"parent":"evil"`}
	grandchild, _ := storetest.MustToken(t, ns, child.ID, 3*time.Hour)
	great, _ := storetest.MustToken(t, ns, grandchild.ID, 4*time.Hour)
	for _, tok := range []store.Token{root, child, grandchild, great} {
		if err := s.Create(ctx, tok); err != nil {
			t.Fatalf("Create: %v", err)
		}
	}
	for id, want := range map[string]string{
		child.ID:      "", // no key
		grandchild.ID: root.ID + " " + child.ID,
		great.ID:      root.ID + " " + child.ID + " " + grandchild.ID,
	} {
		got, err := c.Get(ctx, tag+"up:"+id).Result()
		if want == "" {
			if !errors.Is(err, redis.Nil) {
				t.Errorf("up:%s = %q, %v; want no key", id, got, err)
			}
			continue
		}
		if got != want {
			t.Errorf("up:%s = %q (%v), want %q", id, got, err, want)
		}
	}
	// The root, found in the child's record only, lives in the chain: its
	// kids set was made to live as long as the grandchild and the great-
	// grandchild.
	if at, err := c.Do(ctx, "PEXPIRETIME", tag+"kids:"+root.ID).Int64(); err != nil || at < great.Expires.UnixMilli() {
		t.Errorf("PEXPIRETIME kids:root = %d (%v), want at least the great-grandchild's expiry %d", at, err, great.Expires.UnixMilli())
	}
	ids, err := s.Revoke(ctx, ns, root.ID)
	if err != nil || len(ids) != 4 {
		t.Fatalf("Revoke(root) = %v, %v; want all four", ids, err)
	}
}

func TestRedisPrunesExpiredIndexEntries(t *testing.T) {
	srv := redistest.Start(t)
	s := mustRedis(t, srv.URL(), store.RedisOptions{})
	c := rawClient(t, srv)
	ctx, ns := context.Background(), storetest.Namespace(t)
	tag := store.DefaultRedisPrefix + ":{" + ns + "}:"

	short, _ := storetest.MustToken(t, ns, "", 200*time.Millisecond)
	long, _ := storetest.MustToken(t, ns, "", time.Hour)
	for _, tok := range []store.Token{short, long} {
		if err := s.Create(ctx, tok); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(time.Until(short.Expires) + 20*time.Millisecond)
	if got := c.ZRange(ctx, tag+"idx", 0, -1).Val(); len(got) != 2 {
		t.Fatalf("index before pruning = %v, want both entries", got)
	}
	// Create prunes.
	other, _ := storetest.MustToken(t, ns, "", time.Hour)
	if err := s.Create(ctx, other); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{tag + "idx", tag + "exp"} {
		if got := c.ZRange(ctx, k, 0, -1).Val(); slices.Contains(got, short.ID) || len(got) != 2 {
			t.Fatalf("%s after Create = %v, want the two live ids", k, got)
		}
	}

	// List prunes.
	short2, _ := storetest.MustToken(t, ns, "", 200*time.Millisecond)
	if err := s.Create(ctx, short2); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Until(short2.Expires) + 20*time.Millisecond)
	toks, next, err := s.List(ctx, ns, "", 10)
	if err != nil || len(toks) != 2 || next != "" {
		t.Fatalf("List = %d tokens, next %q, %v", len(toks), next, err)
	}
	for _, k := range []string{tag + "idx", tag + "exp"} {
		if got := c.ZRange(ctx, k, 0, -1).Val(); slices.Contains(got, short2.ID) {
			t.Fatalf("%s after List still holds the expired %s", k, short2.ID)
		}
	}
}

// TestRedisUnavailable stops the server: every method must fail closed with
// ErrUnavailable, and the store must recover by itself when Redis is back.
func TestRedisUnavailable(t *testing.T) {
	srv := redistest.Start(t)
	s := mustRedis(t, srv.URL(), store.RedisOptions{})
	c := rawClient(t, srv)
	ns := storetest.Namespace(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	live, _ := storetest.MustToken(t, ns, "", time.Hour)
	if err := s.Create(ctx, live); err != nil {
		t.Fatal(err)
	}
	srv.Stop(t)

	fresh, _ := storetest.MustToken(t, ns, "", time.Hour)
	child, _ := storetest.MustToken(t, ns, live.ID, time.Hour)
	calls := map[string]func() error{
		"Create":       func() error { return s.Create(ctx, fresh) },
		"Create child": func() error { return s.Create(ctx, child) },
		"Lookup":       func() error { _, err := s.Lookup(ctx, ns, live.ID); return err },
		"List":         func() error { _, _, err := s.List(ctx, ns, "", 10); return err },
		"Revoke":       func() error { _, err := s.Revoke(ctx, ns, live.ID); return err },
		"Ping":         func() error { return s.Ping(ctx) },
		"Subscribe":    func() error { return s.Subscribe(ctx, func(string, string) {}) },
	}
	for name, call := range calls {
		start := time.Now()
		err := call()
		if !errors.Is(err, store.ErrUnavailable) {
			t.Errorf("%s with Redis down: %v, want ErrUnavailable", name, err)
		}
		t.Logf("%s failed after %s", name, time.Since(start).Round(time.Millisecond))
		if d := time.Since(start); d > 2*time.Second {
			t.Errorf("%s took %s to fail", name, d)
		}
	}
	_, err := store.NewRedis(ctx, srv.URL(), store.RedisOptions{})
	if !errors.Is(err, store.ErrUnavailable) {
		t.Errorf("NewRedis with Redis down: %v, want ErrUnavailable", err)
	}

	srv.Restart(t)
	// The server kept nothing (no persistence); the failed calls wrote
	// nothing.
	if got := keys(t, ctx, c, "*"); len(got) != 0 {
		t.Fatalf("keys after restart = %q, want none", got)
	}
	// The store reconnects on its own; after failed dials go-redis retries
	// in the background about once a second, so give it a few.
	deadline := time.Now().Add(5 * time.Second)
	for {
		_, err := s.Lookup(ctx, ns, fresh.ID)
		if errors.Is(err, store.ErrNotFound) {
			break
		}
		if !errors.Is(err, store.ErrUnavailable) || time.Now().After(deadline) {
			t.Fatalf("Lookup after restart: %v, want ErrNotFound", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err := s.Create(ctx, fresh); err != nil {
		t.Fatalf("Create after restart: %v", err)
	}
	if _, err := s.Lookup(ctx, ns, fresh.ID); err != nil {
		t.Fatalf("Lookup after restart: %v", err)
	}
}

// TestRedisUnavailableMidway freezes the server (SIGSTOP) after a create and
// a cascade revoke were sent, so both time out: each must report
// ErrUnavailable, and once the server resumes and runs them, nothing may be
// left half-done.
func TestRedisUnavailableMidway(t *testing.T) {
	srv := redistest.Start(t)
	// Two stores with a connection each, already set up (NewRedis pings), so
	// that both scripts reach the frozen server.
	url := srv.URL() + "?read_timeout=200ms&max_retries=0"
	s1 := mustRedis(t, url, store.RedisOptions{})
	s2 := mustRedis(t, url, store.RedisOptions{})
	c := rawClient(t, srv)
	ctx, ns := context.Background(), storetest.Namespace(t)
	tag := store.DefaultRedisPrefix + ":{" + ns + "}:"

	parent, _ := storetest.MustToken(t, ns, "", time.Hour)
	kid, _ := storetest.MustToken(t, ns, parent.ID, time.Hour)
	for _, tok := range []store.Token{parent, kid} {
		if err := s1.Create(ctx, tok); err != nil {
			t.Fatal(err)
		}
	}
	if err := s2.Ping(ctx); err != nil {
		t.Fatal(err)
	}
	srv.Pause(t)
	grandkid, _ := storetest.MustToken(t, ns, kid.ID, time.Hour)
	if err := s1.Create(ctx, grandkid); !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("Create against a frozen server: %v, want ErrUnavailable", err)
	}
	if _, err := s2.Revoke(ctx, ns, parent.ID); !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("Revoke against a frozen server: %v, want ErrUnavailable", err)
	}
	srv.Resume(t)

	// The server runs what it received: the grandchild is created whole,
	// then the cascade revokes all three. Nothing else may remain.
	deadline := time.Now().Add(5 * time.Second)
	for {
		left := keys(t, ctx, c, tag+"*")
		if slices.Equal(left, []string{tag + "done:" + parent.ID}) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("keys after resume = %q, want only the revoke marker", left)
		}
		time.Sleep(20 * time.Millisecond)
	}
	for _, tok := range []store.Token{parent, kid, grandkid} {
		if _, err := s1.Lookup(ctx, ns, tok.ID); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("Lookup(%s) after resume: %v, want ErrNotFound", tok.ID, err)
		}
	}
}

func TestRedisScriptCacheFlushed(t *testing.T) {
	srv := redistest.Start(t)
	s := mustRedis(t, srv.URL(), store.RedisOptions{})
	c := rawClient(t, srv)
	ctx, ns := context.Background(), storetest.Namespace(t)
	for i := 0; i < 2; i++ {
		if err := c.ScriptFlush(ctx).Err(); err != nil {
			t.Fatal(err)
		}
		tok, _ := storetest.MustToken(t, ns, "", time.Hour)
		if err := s.Create(ctx, tok); err != nil {
			t.Fatalf("Create after SCRIPT FLUSH: %v", err)
		}
		if _, _, err := s.List(ctx, ns, "", 10); err != nil {
			t.Fatalf("List after SCRIPT FLUSH: %v", err)
		}
		if err := c.ScriptFlush(ctx).Err(); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Revoke(ctx, ns, tok.ID); err != nil {
			t.Fatalf("Revoke after SCRIPT FLUSH: %v", err)
		}
	}
}

func TestRedisCorruptRecordFailsClosed(t *testing.T) {
	srv := redistest.Start(t)
	s := mustRedis(t, srv.URL(), store.RedisOptions{})
	c := rawClient(t, srv)
	ctx, ns := context.Background(), storetest.Namespace(t)
	tok, _ := storetest.MustToken(t, ns, "", time.Hour)
	if err := s.Create(ctx, tok); err != nil {
		t.Fatal(err)
	}
	key := store.DefaultRedisPrefix + ":{" + ns + "}:tok:" + tok.ID
	other, _ := storetest.MustToken(t, ns, "", time.Hour)
	swapped, _ := json.Marshal(other)
	for _, bad := range []string{"not json", string(swapped)} {
		if err := c.Set(ctx, key, bad, time.Hour).Err(); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Lookup(ctx, ns, tok.ID); !errors.Is(err, store.ErrUnavailable) {
			t.Fatalf("Lookup of a corrupt record: %v, want ErrUnavailable", err)
		}
		if _, _, err := s.List(ctx, ns, "", 10); !errors.Is(err, store.ErrUnavailable) {
			t.Fatalf("List over a corrupt record: %v, want ErrUnavailable", err)
		}
	}
}

func TestRedisPrefixesIsolate(t *testing.T) {
	srv := redistest.Start(t)
	a := mustRedis(t, srv.URL(), store.RedisOptions{Prefix: "a"})
	b := mustRedis(t, srv.URL(), store.RedisOptions{Prefix: "b"})
	ctx, ns := context.Background(), storetest.Namespace(t)
	tok, _ := storetest.MustToken(t, ns, "", time.Hour)
	if err := a.Create(ctx, tok); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Lookup(ctx, ns, tok.ID); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Lookup under another prefix: %v, want ErrNotFound", err)
	}
	if err := b.Create(ctx, tok); err != nil {
		t.Fatalf("Create of the same token under another prefix: %v", err)
	}
}

func TestNewRedisErrors(t *testing.T) {
	ctx := context.Background()
	srv := redistest.Start(t)
	tests := []struct {
		name, url string
		opts      store.RedisOptions
		want      string
	}{
		{"bad URL", "http://" + srv.Addr(), store.RedisOptions{}, "unsupported scheme"},
		{"prefix with brace", srv.URL(), store.RedisOptions{Prefix: "a{b}"}, "prefix"},
		{"prefix with space", srv.URL(), store.RedisOptions{Prefix: "a b"}, "prefix"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r, err := store.NewRedis(ctx, tc.url, tc.opts)
			if err == nil {
				_ = r.Close()
				t.Fatal("NewRedis succeeded")
			}
			if !strings.Contains(err.Error(), tc.want) || errors.Is(err, store.ErrUnavailable) {
				t.Fatalf("NewRedis: %v, want a configuration error mentioning %q", err, tc.want)
			}
		})
	}
}
