package storetest

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/direktiv/direktiv-authz/store"
)

// wantLimited fails t unless err is a *store.RateLimitedError of scope
// whose RetryAfter lies in (lo, hi].
func wantLimited(t *testing.T, what string, err error, scope string, lo, hi time.Duration) {
	t.Helper()
	var rl *store.RateLimitedError
	if !errors.Is(err, store.ErrRateLimited) || !errors.As(err, &rl) {
		t.Fatalf("%s: error %v, want a rate limit", what, err)
	}
	if rl.Scope != scope || rl.RetryAfter <= lo || rl.RetryAfter > hi {
		t.Fatalf("%s: refused by the %s limit %s, retry after %s; want the %s limit, retry after (%s, %s]", what, rl.Scope, rl.Rate, rl.RetryAfter, scope, lo, hi)
	}
}

func createLimited(t *testing.T, ctx context.Context, s Store, ns string, l store.Limit) (store.Token, error) {
	t.Helper()
	tok, _ := MustToken(t, ns, "", time.Hour)
	return tok, s.CreateLimited(ctx, tok, l)
}

func testRateLimits(t *testing.T, newStore func(t *testing.T) Store) {
	ctx := testContext(t)
	perMinute := store.Rate{Count: 2, Per: time.Minute}

	t.Run("namespace", func(t *testing.T) {
		s, other, ns := newStore(t), newStore(t), Namespace(t)
		l := store.Limit{Namespace: perMinute}
		// The burst is the count; a second instance on the same backend
		// shares the limit.
		if _, err := createLimited(t, ctx, s, ns, l); err != nil {
			t.Fatal(err)
		}
		if _, err := createLimited(t, ctx, other, ns, l); err != nil {
			t.Fatal(err)
		}
		tok, err := createLimited(t, ctx, s, ns, l)
		wantLimited(t, "third create", err, store.ScopeNamespace, 29*time.Second, 30*time.Second)
		wantGone(t, ctx, s, ns, tok.ID)
		_, err = createLimited(t, ctx, other, ns, l)
		wantLimited(t, "third create on the other instance", err, store.ScopeNamespace, 29*time.Second, 30*time.Second)
		// Other namespaces, and creates without the limit, are not limited.
		if _, err := createLimited(t, ctx, s, Namespace(t), l); err != nil {
			t.Fatalf("another namespace: %v", err)
		}
		if _, err := createLimited(t, ctx, s, ns, store.Limit{}); err != nil {
			t.Fatalf("no limit: %v", err)
		}
	})

	t.Run("caller", func(t *testing.T) {
		s, ns := newStore(t), Namespace(t)
		a, _ := MustToken(t, ns, "", time.Hour)
		b, _ := MustToken(t, ns, "", time.Hour)
		la := store.Limit{Caller: perMinute, CallerID: a.ID}
		for range 2 {
			if _, err := createLimited(t, ctx, s, ns, la); err != nil {
				t.Fatal(err)
			}
		}
		_, err := createLimited(t, ctx, s, ns, la)
		wantLimited(t, "third create by a", err, store.ScopeToken, 29*time.Second, 30*time.Second)
		if _, err := createLimited(t, ctx, s, ns, store.Limit{Caller: perMinute, CallerID: b.ID}); err != nil {
			t.Fatalf("another caller: %v", err)
		}
		// No caller id (the admin token): the caller limit does not apply.
		for range 3 {
			if _, err := createLimited(t, ctx, s, ns, store.Limit{Caller: perMinute}); err != nil {
				t.Fatalf("no caller id: %v", err)
			}
		}
		// Both limits refuse: the one furthest from passing is named.
		ns2 := Namespace(t)
		both := store.Limit{Namespace: store.Rate{Count: 1, Per: time.Minute}, Caller: store.Rate{Count: 1, Per: time.Hour}, CallerID: b.ID}
		if _, err := createLimited(t, ctx, s, ns2, both); err != nil {
			t.Fatal(err)
		}
		_, err = createLimited(t, ctx, s, ns2, both)
		wantLimited(t, "both limits refuse", err, store.ScopeToken, 59*time.Minute, time.Hour)
		both.CallerID = a.ID
		_, err = createLimited(t, ctx, s, ns2, both)
		wantLimited(t, "only the namespace refuses", err, store.ScopeNamespace, 59*time.Second, time.Minute)
	})

	t.Run("only stored creates count", func(t *testing.T) {
		s, ns := newStore(t), Namespace(t)
		l := store.Limit{Namespace: store.Rate{Count: 1, Per: time.Hour}}
		// Refused for other reasons: counted against nothing.
		never, _ := MustToken(t, ns, "", time.Hour)
		orphan, _ := MustToken(t, ns, never.ID, time.Hour)
		wantErr(t, "create with a parent that is not live", s.CreateLimited(ctx, orphan, l), store.ErrNotFound)
		bad := store.Limit{Namespace: store.Rate{Count: -1, Per: time.Minute}}
		wantErr(t, "create with an invalid limit", s.CreateLimited(ctx, orphan, bad), store.ErrInvalid)
		tok, err := createLimited(t, ctx, s, ns, l)
		if err != nil {
			t.Fatalf("first stored create: %v", err)
		}
		// The identical create again (a resent request) is not counted again.
		if err := s.CreateLimited(ctx, tok, l); err != nil {
			t.Fatalf("identical create again: %v", err)
		}
		_, err = createLimited(t, ctx, s, ns, l)
		wantLimited(t, "second create", err, store.ScopeNamespace, 59*time.Minute, time.Hour)
	})

	t.Run("refills", func(t *testing.T) {
		s, ns := newStore(t), Namespace(t)
		l := store.Limit{Namespace: store.Rate{Count: 1, Per: 300 * time.Millisecond}}
		if _, err := createLimited(t, ctx, s, ns, l); err != nil {
			t.Fatal(err)
		}
		_, err := createLimited(t, ctx, s, ns, l)
		wantLimited(t, "second create at once", err, store.ScopeNamespace, 0, 300*time.Millisecond)
		var rl *store.RateLimitedError
		errors.As(err, &rl)
		time.Sleep(rl.RetryAfter + 20*time.Millisecond)
		if _, err := createLimited(t, ctx, s, ns, l); err != nil {
			t.Fatalf("after waiting RetryAfter: %v", err)
		}
	})
}
