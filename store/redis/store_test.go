package redis_test

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"log/slog"
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

// The conformance suite exercises every method of a store.
var _ storetest.Store = (*redis.Store)(nil)

func TestConformanceStandalone(t *testing.T) {
	server := storetest.PerTest(func(t *testing.T) *testutil.RedisServer { return testutil.StartRedis(t) })
	storetest.Run(t, func(t *testing.T) storetest.Store {
		return mustRedis(t, server(t).URL(), redis.Options{})
	})
}

// TestConformanceAsyncCreates runs the suite with every create made through
// CreateAsync, as the event loops make them: the same records, answers and
// errors as CreateLimited's.
func TestConformanceAsyncCreates(t *testing.T) {
	server := storetest.PerTest(func(t *testing.T) *testutil.RedisServer { return testutil.StartRedis(t) })
	storetest.Run(t, func(t *testing.T) storetest.Store {
		return asyncCreates{mustRedis(t, server(t).URL(), redis.Options{})}
	})
}

// TestAsyncCreateWaitsForReplicas: with WaitReplicas, CreateAsync
// waits for them as CreateLimited does, and undoes a create too few hold.
func TestAsyncCreateWaitsForReplicas(t *testing.T) {
	srv := testutil.StartRedis(t)
	s := mustRedis(t, srv.URL(), redis.Options{WaitReplicas: 1, WaitTimeout: 50 * time.Millisecond})
	ctx, ns := context.Background(), storetest.Namespace(t)
	tok, _ := storetest.MustToken(t, ns, "", time.Hour)
	err := asyncCreates{s}.CreateLimited(ctx, tok, store.Limit{})
	if !errors.Is(err, store.ErrUnavailable) || !strings.Contains(err.Error(), "reached 0 of 1 replicas") {
		t.Fatalf("CreateAsync without a replica: %v; want ErrUnavailable, 0 of 1 replicas", err)
	}
	if _, err := s.Lookup(ctx, ns, tok.ID); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Lookup after the undone create: %v; want ErrNotFound", err)
	}
}

// asyncCreates is a store whose creates go through CreateAsync, each
// checked to be answered once.
type asyncCreates struct{ *redis.Store }

func (s asyncCreates) Create(ctx context.Context, t store.Token) error {
	return s.CreateLimited(ctx, t, store.Limit{})
}

func (s asyncCreates) CreateLimited(_ context.Context, t store.Token, l store.Limit) error {
	done := make(chan error, 1)
	s.CreateAsync(t, l, func(err error) {
		select {
		case done <- err:
		default:
			panic("CreateAsync answered twice")
		}
	})
	return <-done
}

func TestConformanceCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a three-node Redis Cluster")
	}
	cluster := testutil.StartRedisCluster(t)
	// One cluster for all subtests; a prefix per subtest keeps them apart.
	prefix := storetest.PerTest(func(t *testing.T) string { return "t" + storetest.Namespace(t) })
	storetest.Run(t, func(t *testing.T) storetest.Store {
		return mustRedis(t, cluster.URL(), redis.Options{Prefix: prefix(t)})
	})
}

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
}

func mustRedis(t *testing.T, url string, opts redis.Options) *redis.Store {
	t.Helper()
	if opts.Logger == nil {
		opts.Logger = testLogger(t)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	r, err := redis.New(ctx, url, opts)
	if err != nil {
		t.Fatalf("New(%s): %v", url, err)
	}
	t.Cleanup(func() { _ = r.Close() })
	return r
}

// rawClient talks to the server directly, to inspect what the store wrote.
func rawClient(t *testing.T, s *testutil.RedisServer) *goredis.Client {
	t.Helper()
	c := goredis.NewClient(&goredis.Options{Addr: s.Addr(), MaxRetries: -1})
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func keys(t *testing.T, ctx context.Context, c *goredis.Client, pattern string) []string {
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

func TestKeyLayout(t *testing.T) {
	srv := testutil.StartRedis(t)
	s := mustRedis(t, srv.URL(), redis.Options{Prefix: "authz"})
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
	want := []string{tag + "ix", tag + "kn", tag + "tok:" + child.ID, tag + "tok:" + parent.ID}
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
	// Records expire with their token; the index and the children counts
	// with the longest-lived token plus a minute's slack (see extend in
	// scripts.go).
	const slack = 60000
	for _, tc := range []struct {
		key  string
		want int64
	}{
		{tag + "tok:" + parent.ID, parent.Expires.UnixMilli()},
		{tag + "tok:" + child.ID, child.Expires.UnixMilli()},
		{tag + "kn", child.Expires.UnixMilli() + slack},
		{tag + "ix", parent.Expires.UnixMilli() + slack},
	} {
		if got := expireAt(tc.key); got != tc.want {
			t.Errorf("PEXPIRETIME %s = %d, want %d", tc.key, got, tc.want)
		}
	}
	if n := c.HGet(ctx, tag+"kn", parent.ID).Val(); n != "1" {
		t.Errorf("children of the parent = %q, want 1", n)
	}
	entries := c.XRange(ctx, tag+"ix", "-", "+").Val()
	if len(entries) != 2 || entries[0].Values["i"] != parent.ID || entries[1].Values["i"] != child.ID {
		t.Errorf("index = %v, want the parent then the child", entries)
	}

	// A grandchild's record names both its ancestors, oldest first.
	grandchild, _ := storetest.MustToken(t, ns, child.ID, 3*time.Hour)
	if err := s.Create(ctx, grandchild); err != nil {
		t.Fatal(err)
	}
	rec := c.Get(ctx, tag+"tok:"+grandchild.ID).Val()
	if rec[0] != 2 || rec[1] != 2 || rec[2:18] != string(mustRaw(t, parent.ID)) || rec[18:34] != string(mustRaw(t, child.ID)) {
		t.Errorf("grandchild's record starts %q, want format 2, two ancestors, parent and child", rec[:min(len(rec), 34)])
	}
	got, err := s.Lookup(ctx, ns, grandchild.ID)
	if err != nil || !slices.Equal(got.Ancestors, []string{parent.ID, child.ID}) || got.Parent != child.ID {
		t.Fatalf("Lookup(grandchild) = %+v, %v; want ancestors parent, child", got, err)
	}

	// Revoking everything leaves the revoke marker, which lives as long as
	// the index would have (its longest-lived token could be a descendant).
	rv, err := s.Revoke(ctx, ns, parent.ID)
	if err != nil || !rv.Done || rv.Count != 3 {
		t.Fatalf("Revoke = %+v, %v; want 3, done", rv, err)
	}
	marker := tag + "rv:" + parent.ID
	left := slices.DeleteFunc(keys(t, ctx, c, "*"), func(k string) bool { return k == tag+"pc" }) // where pruning stands, if it ran
	if total := tag + "rc:" + parent.ID; !slices.Equal(left, []string{"authz:sweepq", tag + "ix", total, marker}) {
		t.Fatalf("keys after revoke = %q, want the sweep queue, the index, the total %q and %q", left, total, marker)
	}
	if at := expireAt(marker); at < grandchild.Expires.UnixMilli() {
		t.Fatalf("revoke marker expires at %d, before the grandchild's %d", at, grandchild.Expires.UnixMilli())
	}
	if n := c.XLen(ctx, tag+"ix").Val(); n != 0 {
		t.Fatalf("index after revoke holds %d entries", n)
	}
}

func mustRaw(t *testing.T, id string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.ReplaceAll(id, "-", ""))
	if err != nil || len(b) != 16 {
		t.Fatalf("id %q: %v", id, err)
	}
	return b
}

// indexIDs is the ids a namespace's index names, in order.
func indexIDs(t *testing.T, ctx context.Context, c *goredis.Client, tag string) []string {
	t.Helper()
	var ids []string
	for _, e := range c.XRange(ctx, tag+"ix", "-", "+").Val() {
		id, _ := e.Values["i"].(string)
		ids = append(ids, id)
	}
	return ids
}

// createUntil creates tokens of an hour in ns until done holds, at most
// limit of them, and returns their ids.
func createUntil(t *testing.T, ctx context.Context, s *redis.Store, ns string, limit int, done func() bool) []string {
	t.Helper()
	var ids []string
	for !done() {
		if len(ids) == limit {
			t.Fatalf("%d creates did not prune the index", limit)
		}
		tok, _ := storetest.MustToken(t, ns, "", time.Hour)
		if err := s.Create(ctx, tok); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, tok.ID)
	}
	return ids
}

func TestPrunesIndexEntries(t *testing.T) {
	srv := testutil.StartRedis(t)
	s := mustRedis(t, srv.URL(), redis.Options{})
	c := rawClient(t, srv)
	ctx, ns := context.Background(), storetest.Namespace(t)
	tag := redis.DefaultPrefix + ":{" + ns + "}:"

	short, _ := storetest.MustToken(t, ns, "", 200*time.Millisecond)
	long, _ := storetest.MustToken(t, ns, "", time.Hour)
	for _, tok := range []store.Token{short, long} {
		if err := s.Create(ctx, tok); err != nil {
			t.Fatal(err)
		}
	}
	// Each entry names its token's lifetime in whole seconds.
	if e := c.XRange(ctx, tag+"ix", "-", "+").Val(); len(e) != 2 || e[0].Values["e"] != "1" || e[1].Values["e"] != "3600" {
		t.Fatalf("index = %v, want the short token (e 1) then the long one (e 3600)", e)
	}

	// An entry of an earlier version names only the id: it is dropped when
	// its record is gone (never), kept while the record lives.
	old, _ := storetest.MustToken(t, ns, "", time.Hour)
	if err := s.Create(ctx, old); err != nil {
		t.Fatal(err)
	}
	never, _ := storetest.MustToken(t, ns, "", time.Hour)
	last := c.XRange(ctx, tag+"ix", "-", "+").Val()[2].ID
	if n := c.XDel(ctx, tag+"ix", last).Val(); n != 1 {
		t.Fatal("XDEL of the entry of old")
	}
	for _, id := range []string{old.ID, never.ID} {
		if err := c.XAdd(ctx, &goredis.XAddArgs{Stream: tag + "ix", Values: []string{"i", id}}).Err(); err != nil {
			t.Fatal(err)
		}
	}
	if got := indexIDs(t, ctx, c, tag); !slices.Equal(got, []string{short.ID, long.ID, old.ID, never.ID}) {
		t.Fatalf("index = %q", got)
	}

	// Creates prune from the index alone, so an expired token's entry stays
	// until a second after its lifetime (rounded up to a second) has passed.
	creates := createUntil(t, ctx, s, ns, 2000, func() bool { return !slices.Contains(indexIDs(t, ctx, c, tag), never.ID) })
	if ids := indexIDs(t, ctx, c, tag); !slices.Contains(ids, short.ID) || !slices.Contains(ids, old.ID) {
		t.Fatalf("index after %d creates = %d entries, lost the short token (not yet pruned) or old (live)", len(creates), len(ids))
	}
	time.Sleep(time.Until(short.Created.Add(2100 * time.Millisecond)))
	more := createUntil(t, ctx, s, ns, 2000, func() bool { return !slices.Contains(indexIDs(t, ctx, c, tag), short.ID) })
	creates = append(creates, more...)

	// Passes over the index never drop the entry of a live token: go on
	// until the creates have walked it twice more (two entries per create).
	for range len(indexIDs(t, ctx, c, tag)) {
		tok, _ := storetest.MustToken(t, ns, "", time.Hour)
		if err := s.Create(ctx, tok); err != nil {
			t.Fatal(err)
		}
		creates = append(creates, tok.ID)
	}
	want := append([]string{long.ID, old.ID}, creates...)
	if got := indexIDs(t, ctx, c, tag); !slices.Equal(got, want) {
		t.Fatalf("index after %d creates: %d entries, want the %d live tokens in order", len(creates), len(got), len(want))
	}
	if toks, _, err := s.List(ctx, ns, "", store.MaxListLimit); err != nil || len(toks) != len(want) {
		t.Fatalf("List = %d tokens, %v; want %d", len(toks), err, len(want))
	}

	// List prunes what it reads: the entry of a token revoked, at once.
	if _, err := s.Revoke(ctx, ns, long.ID); err != nil {
		t.Fatal(err)
	}
	if got := indexIDs(t, ctx, c, tag); got[0] != long.ID {
		t.Fatalf("index after the revoke starts %q, want the revoked token's entry until something prunes it", got[0])
	}
	toks, _, err := s.List(ctx, ns, "", store.MaxListLimit)
	if err != nil || len(toks) != len(want)-1 {
		t.Fatalf("List = %d tokens, %v; want %d", len(toks), err, len(want)-1)
	}
	if got := indexIDs(t, ctx, c, tag); !slices.Equal(got, want[1:]) {
		t.Fatalf("index after List = %d entries, want the %d live ones", len(got), len(want)-1)
	}
}

func TestUnavailable(t *testing.T) {
	srv := testutil.StartRedis(t)
	s := mustRedis(t, srv.URL(), redis.Options{})
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
		"CreateAsync":  func() error { return asyncCreates{s}.Create(ctx, fresh) },
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
	_, err := redis.New(ctx, srv.URL(), redis.Options{})
	if !errors.Is(err, store.ErrUnavailable) {
		t.Errorf("New with Redis down: %v, want ErrUnavailable", err)
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

// TestUnavailableMidway freezes the server (SIGSTOP) after a create and
// a cascade revoke were sent, so both time out: each must report
// ErrUnavailable, and once the server resumes and runs them, nothing may be
// left half-done.
func TestUnavailableMidway(t *testing.T) {
	srv := testutil.StartRedis(t)
	// Two stores with a connection each, already set up (New pings), so
	// that both scripts reach the frozen server.
	url := srv.URL() + "?read_timeout=200ms&max_retries=0"
	s1 := mustRedis(t, url, redis.Options{})
	s2 := mustRedis(t, url, redis.Options{})
	c := rawClient(t, srv)
	ctx, ns := context.Background(), storetest.Namespace(t)
	tag := redis.DefaultPrefix + ":{" + ns + "}:"

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

	// The server runs what it received: the grandchild is created whole.
	// The revoke queued the namespace for the sweep first, and failed
	// there: it changed nothing. Revoked again, the parent is marked and
	// the sweep removes its descendants. Nothing else may remain.
	waitLive := time.Now().Add(5 * time.Second)
	for {
		if _, err := s1.Lookup(ctx, ns, grandkid.ID); err == nil {
			break
		} else if time.Now().After(waitLive) {
			t.Fatalf("the grandchild is not live after resume: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if _, err := s1.Revoke(ctx, ns, parent.ID); err != nil {
		t.Fatalf("Revoke after resume: %v", err)
	}
	sweepCtx, stop := context.WithCancel(ctx)
	defer stop()
	go func() { _ = s2.Sweep(sweepCtx, nil) }()
	deadline := time.Now().Add(5 * time.Second)
	for {
		left := slices.DeleteFunc(keys(t, ctx, c, tag+"*"), func(k string) bool { return k == tag+"ix" || k == tag+"pc" })
		if slices.Equal(left, []string{tag + "rc:" + parent.ID, tag + "rv:" + parent.ID}) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("keys after resume = %q, want only the revoke marker and the removal's total (and the emptied index)", left)
		}
		time.Sleep(20 * time.Millisecond)
	}
	for _, tok := range []store.Token{parent, kid, grandkid} {
		if _, err := s1.Lookup(ctx, ns, tok.ID); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("Lookup(%s) after resume: %v, want ErrNotFound", tok.ID, err)
		}
	}
}

func TestScriptCacheFlushed(t *testing.T) {
	srv := testutil.StartRedis(t)
	s := mustRedis(t, srv.URL(), redis.Options{})
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

func TestCorruptRecordFailsClosed(t *testing.T) {
	srv := testutil.StartRedis(t)
	s := mustRedis(t, srv.URL(), redis.Options{})
	c := rawClient(t, srv)
	ctx, ns := context.Background(), storetest.Namespace(t)
	tok, _ := storetest.MustToken(t, ns, "", time.Hour)
	if err := s.Create(ctx, tok); err != nil {
		t.Fatal(err)
	}
	key := redis.DefaultPrefix + ":{" + ns + "}:tok:" + tok.ID
	other, _ := storetest.MustToken(t, ns, "", time.Hour)
	swapped, _ := json.Marshal(other)
	for _, bad := range []string{"not json", string(swapped), "\x02\x05short", "\x02\x00short"} {
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

func TestPrefixesIsolate(t *testing.T) {
	srv := testutil.StartRedis(t)
	a := mustRedis(t, srv.URL(), redis.Options{Prefix: "a"})
	b := mustRedis(t, srv.URL(), redis.Options{Prefix: "b"})
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

func TestNewErrors(t *testing.T) {
	ctx := context.Background()
	srv := testutil.StartRedis(t)
	tests := []struct {
		name, url string
		opts      redis.Options
		want      string
	}{
		{"bad URL", "http://" + srv.Addr(), redis.Options{}, "unsupported scheme"},
		{"prefix with brace", srv.URL(), redis.Options{Prefix: "a{b}"}, "prefix"},
		{"prefix with space", srv.URL(), redis.Options{Prefix: "a b"}, "prefix"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r, err := redis.New(ctx, tc.url, tc.opts)
			if err == nil {
				_ = r.Close()
				t.Fatal("New succeeded")
			}
			if !strings.Contains(err.Error(), tc.want) || errors.Is(err, store.ErrUnavailable) {
				t.Fatalf("New: %v, want a configuration error mentioning %q", err, tc.want)
			}
		})
	}
}
