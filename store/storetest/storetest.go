// Package storetest is the conformance suite every token store passes: the
// same table of behaviours run against store.Memory and redis.Store (on a
// real redis-server, standalone and Cluster). It also has fixtures for other
// packages' tests.
package storetest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/direktiv/direktiv-authz/internal/secret"
	"github.com/direktiv/direktiv-authz/store"
)

// Store is what the suite exercises: the methods every store has.
type Store interface {
	Create(ctx context.Context, t store.Token) error
	CreateLimited(ctx context.Context, t store.Token, l store.Limit) error
	Lookup(ctx context.Context, namespace, id string) (store.Token, error)
	List(ctx context.Context, namespace, after string, limit int) ([]store.Token, string, error)
	Revoke(ctx context.Context, namespace, id string) (store.Revocation, error)
	Subscribe(ctx context.Context, fn func(namespace, id string)) error
	Ping(ctx context.Context) error
	Close() error
}

var _ Store = (*store.Memory)(nil)

// shortTTL is the lifetime of tokens that a test watches expire.
const shortTTL = 300 * time.Millisecond

// Run runs the suite as parallel subtests of t. newStore(t) returns a store
// for the subtest t; every call with the same t must return a store on the
// same backend (for Redis: another New on the same URL and prefix), so
// that the suite can check that one instance sees another's revocations. The
// backend may hold other data, but newStore must close what it opens (with
// t.Cleanup). Namespaces are random per subtest.
func Run(t *testing.T, newStore func(t *testing.T) Store) {
	tests := []struct {
		name string
		run  func(t *testing.T, newStore func(t *testing.T) Store)
	}{
		{"CreateLookupRoundTrip", testRoundTrip},
		{"DuplicateID", testDuplicate},
		{"ConcurrentCreates", testConcurrentCreates},
		{"ParentMustBeLive", testParentMustBeLive},
		{"InvalidRecordsRefused", testInvalid},
		{"Expiry", testExpiry},
		{"ListOrderAndPaging", testListPaging},
		{"ListCursorSurvivesRevoke", testListCursorRevoked},
		{"ListArguments", testListArguments},
		{"RevokeCascade", testRevokeCascade},
		{"RevokeCascadeThroughExpired", testRevokeThroughExpired},
		{"RevokeUnknown", testRevokeUnknown},
		{"AncestorLimit", testAncestorLimit},
		{"RevokeRacesCreate", testRevokeRacesCreate},
		{"SubscribeSecondInstance", testSubscribe},
		{"NamespacesIsolated", testNamespaces},
		{"RateLimits", testRateLimits},
		{"PingAndClose", testClose},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.run(t, newStore)
		})
	}
}

// PerTest returns a function that calls mk once per test and hands out that
// result to every later call with the same test.
func PerTest[T any](mk func(t *testing.T) T) func(t *testing.T) T {
	var mu sync.Mutex
	made := map[*testing.T]T{}
	return func(t *testing.T) T {
		mu.Lock()
		defer mu.Unlock()
		if v, ok := made[t]; ok {
			return v
		}
		v := mk(t)
		made[t] = v
		return v
	}
}

// Namespace returns a fresh random valid namespace name.
func Namespace(tb testing.TB) string {
	tb.Helper()
	var b [6]byte
	if _, err := rand.Read(b[:]); err != nil {
		tb.Fatal(err)
	}
	return "ns-" + hex.EncodeToString(b[:])
}

// MustToken mints a secret in namespace and returns the record to store for
// it: created now, expiring after ttl, minted from parent ("" for the admin
// token), with a description, two policies and a revision.
func MustToken(tb testing.TB, namespace, parent string, ttl time.Duration) (store.Token, secret.Secret) {
	tb.Helper()
	sec, err := secret.New(namespace)
	if err != nil {
		tb.Fatalf("secret.New(%q): %v", namespace, err)
	}
	now := time.Now()
	return store.Token{
		ID:          sec.ID,
		Namespace:   namespace,
		Description: "token " + sec.ID[:8],
		Policies:    []string{"explorerView", "workflowView"},
		Parent:      parent,
		Created:     now,
		Expires:     now.Add(ttl),
		Revision:    "rev-1",
		Hash:        sec.Hash(),
	}, sec
}

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func mustCreate(t *testing.T, ctx context.Context, s Store, tok store.Token) store.Token {
	t.Helper()
	if err := s.Create(ctx, tok); err != nil {
		t.Fatalf("Create(%s/%s): %v", tok.Namespace, tok.ID, err)
	}
	return tok
}

func create(t *testing.T, ctx context.Context, s Store, ns, parent string, ttl time.Duration) store.Token {
	t.Helper()
	tok, _ := MustToken(t, ns, parent, ttl)
	return mustCreate(t, ctx, s, tok)
}

// revoke revokes ns/id and returns the ids revoked. The suite's subtrees
// are small: every store removes them before Revoke returns (Done).
func revoke(t *testing.T, ctx context.Context, s Store, ns, id string) []string {
	t.Helper()
	rv, err := s.Revoke(ctx, ns, id)
	if err != nil {
		t.Fatalf("Revoke(%s/%s): %v", ns, id, err)
	}
	if !rv.Done || rv.Count != len(rv.IDs) || len(rv.IDs) == 0 || rv.IDs[0] != id {
		t.Fatalf("Revoke(%s/%s) = %+v, want it done, counted, the token first", ns, id, rv)
	}
	return rv.IDs
}

func wantErr(t *testing.T, what string, err, want error) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Fatalf("%s: error %v, want %v", what, err, want)
	}
}

func wantLive(t *testing.T, ctx context.Context, s Store, want store.Token) {
	t.Helper()
	got, err := s.Lookup(ctx, want.Namespace, want.ID)
	if err != nil {
		t.Fatalf("Lookup(%s/%s): %v", want.Namespace, want.ID, err)
	}
	equalToken(t, got, want)
}

func wantGone(t *testing.T, ctx context.Context, s Store, ns, id string) {
	t.Helper()
	_, err := s.Lookup(ctx, ns, id)
	wantErr(t, fmt.Sprintf("Lookup(%s/%s)", ns, id), err, store.ErrNotFound)
}

// equalToken compares every field; times must be equal instants and in UTC.
func equalToken(t *testing.T, got, want store.Token) {
	t.Helper()
	if got.ID != want.ID || got.Namespace != want.Namespace || got.Description != want.Description ||
		got.Parent != want.Parent || got.Revision != want.Revision || got.Hash != want.Hash ||
		!slices.Equal(got.Policies, want.Policies) {
		t.Fatalf("token differs:\n got %+v\nwant %+v", got, want)
	}
	if !got.Created.Equal(want.Created) || !got.Expires.Equal(want.Expires) {
		t.Fatalf("token %s times differ: got created %s expires %s, want %s and %s", want.ID,
			got.Created.Format(time.RFC3339Nano), got.Expires.Format(time.RFC3339Nano),
			want.Created.Format(time.RFC3339Nano), want.Expires.Format(time.RFC3339Nano))
	}
	if got.Created.Location() != time.UTC || got.Expires.Location() != time.UTC {
		t.Fatalf("token %s times are in %s/%s, want UTC", want.ID, got.Created.Location(), got.Expires.Location())
	}
}

// listAll pages through namespace with the given page size and returns the
// ids in order, failing on a duplicate.
func listAll(t *testing.T, ctx context.Context, s Store, ns string, limit int) []string {
	t.Helper()
	var ids []string
	seen := map[string]bool{}
	after := ""
	for page := 0; ; page++ {
		if page > 10000 {
			t.Fatal("List never returned an empty next cursor")
		}
		toks, next, err := s.List(ctx, ns, after, limit)
		if err != nil {
			t.Fatalf("List(%s, page %d): %v", ns, page, err)
		}
		if len(toks) > limit {
			t.Fatalf("List returned %d tokens, limit %d", len(toks), limit)
		}
		for _, tok := range toks {
			if seen[tok.ID] {
				t.Fatalf("List returned %s twice", tok.ID)
			}
			if tok.Namespace != ns {
				t.Fatalf("List(%s) returned a token of %s", ns, tok.Namespace)
			}
			seen[tok.ID] = true
			ids = append(ids, tok.ID)
		}
		if next == "" {
			return ids
		}
		after = next
	}
}

func sameSet(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}

func testRoundTrip(t *testing.T, newStore func(t *testing.T) Store) {
	ctx, s, ns := testContext(t), newStore(t), Namespace(t)
	parent := create(t, ctx, s, ns, "", time.Hour)

	tok, sec := MustToken(t, ns, parent.ID, 0)
	// A zone other than UTC and nanoseconds: the store returns the same
	// instants, in UTC.
	zone := time.FixedZone("UTC+2", 2*60*60)
	tok.Created = time.Now().In(zone).Add(-time.Minute).Truncate(time.Second).Add(123456789)
	tok.Expires = tok.Created.Add(90 * time.Minute)
	tok.Description = "déploiement \"ci\" <&> 🚀"
	tok.Policies = []string{"eventsManage", "explorerView", "permissionsManage"}
	tok.Revision = "sha256:0f1e"
	mustCreate(t, ctx, s, tok)

	got, err := s.Lookup(ctx, ns, tok.ID)
	if err != nil {
		t.Fatalf("Lookup: %v", err)
	}
	equalToken(t, got, tok)
	if got.Namespace != sec.Namespace || got.ID != sec.ID || !sec.HashMatches(got.Hash) {
		t.Fatal("the secret does not match its stored record")
	}
	other, _ := MustToken(t, ns, "", time.Hour)
	if other.Hash == got.Hash {
		t.Fatal("two secrets hashed alike")
	}
	// The caller's slices are not shared with the store.
	got.Policies[0] = "changed"
	tok.Policies[1] = "changed"
	again, err := s.Lookup(ctx, ns, tok.ID)
	if err != nil {
		t.Fatalf("Lookup again: %v", err)
	}
	if want := []string{"eventsManage", "explorerView", "permissionsManage"}; !slices.Equal(again.Policies, want) {
		t.Fatalf("policies after editing returned copies = %v, want %v", again.Policies, want)
	}
	wantLive(t, ctx, s, parent)

	// No policies at all round-trips as no policies.
	bare, _ := MustToken(t, ns, "", time.Hour)
	bare.Policies = nil
	mustCreate(t, ctx, s, bare)
	gotBare, err := s.Lookup(ctx, ns, bare.ID)
	if err != nil || len(gotBare.Policies) != 0 {
		t.Fatalf("Lookup of a token without policies = %v, %v", gotBare.Policies, err)
	}
}

func testDuplicate(t *testing.T, newStore func(t *testing.T) Store) {
	ctx, s, ns := testContext(t), newStore(t), Namespace(t)
	tok := create(t, ctx, s, ns, "", time.Hour)

	// The identical record again (a retried request) is accepted and
	// changes nothing.
	if err := s.Create(ctx, tok); err != nil {
		t.Fatalf("Create of the identical record again: %v", err)
	}
	dup := tok
	dup.Description = "impostor"
	dup.Hash = strings.Repeat("ab", 32)
	wantErr(t, "Create with an existing id", s.Create(ctx, dup), store.ErrExists)
	wantLive(t, ctx, s, tok)
	if ids := listAll(t, ctx, s, ns, 10); !slices.Equal(ids, []string{tok.ID}) {
		t.Fatalf("List = %v, want only %s", ids, tok.ID)
	}

	// A revoked id is not given out again, not even to its own record.
	if _, err := s.Revoke(ctx, ns, tok.ID); err != nil {
		t.Fatalf("Revoke: %v", err)
	}
	wantErr(t, "Create of a just revoked id", s.Create(ctx, tok), store.ErrExists)
	wantGone(t, ctx, s, ns, tok.ID)
}

func testParentMustBeLive(t *testing.T, newStore func(t *testing.T) Store) {
	ctx, s := testContext(t), newStore(t)

	t.Run("never existed", func(t *testing.T) {
		ns := Namespace(t)
		missing, _ := MustToken(t, ns, "", time.Hour)
		child, _ := MustToken(t, ns, missing.ID, time.Hour)
		wantErr(t, "Create with a missing parent", s.Create(ctx, child), store.ErrNotFound)
		wantGone(t, ctx, s, ns, child.ID)
		if ids := listAll(t, ctx, s, ns, 10); len(ids) != 0 {
			t.Fatalf("List after a refused create = %v, want none", ids)
		}
	})
	t.Run("revoked", func(t *testing.T) {
		ns := Namespace(t)
		parent := create(t, ctx, s, ns, "", time.Hour)
		if _, err := s.Revoke(ctx, ns, parent.ID); err != nil {
			t.Fatalf("Revoke: %v", err)
		}
		child, _ := MustToken(t, ns, parent.ID, time.Hour)
		wantErr(t, "Create under a revoked parent", s.Create(ctx, child), store.ErrNotFound)
		wantGone(t, ctx, s, ns, child.ID)
		if ids := listAll(t, ctx, s, ns, 10); len(ids) != 0 {
			t.Fatalf("List = %v, want none", ids)
		}
	})
	t.Run("other namespace", func(t *testing.T) {
		ns, other := Namespace(t), Namespace(t)
		parent := create(t, ctx, s, other, "", time.Hour)
		child, _ := MustToken(t, ns, parent.ID, time.Hour)
		wantErr(t, "Create under a parent of another namespace", s.Create(ctx, child), store.ErrNotFound)
		wantGone(t, ctx, s, ns, child.ID)
	})
}

func testInvalid(t *testing.T, newStore func(t *testing.T) Store) {
	ctx, s, ns := testContext(t), newStore(t), Namespace(t)
	parent := create(t, ctx, s, ns, "", time.Hour)
	tests := []struct {
		name string
		edit func(tok *store.Token, sec secret.Secret)
	}{
		{"bad namespace", func(tok *store.Token, _ secret.Secret) { tok.Namespace = "bad_ns_" }},
		{"namespace with hash tag", func(tok *store.Token, _ secret.Secret) { tok.Namespace = "a}b{c" }},
		{"uppercase id", func(tok *store.Token, _ secret.Secret) { tok.ID = strings.ToUpper(tok.ID) }},
		{"empty id", func(tok *store.Token, _ secret.Secret) { tok.ID = "" }},
		{"own parent", func(tok *store.Token, _ secret.Secret) { tok.Parent = tok.ID }},
		{"bad parent", func(tok *store.Token, _ secret.Secret) { tok.Parent = "parent" }},
		{"short hash", func(tok *store.Token, _ secret.Secret) { tok.Hash = tok.Hash[:63] }},
		{"uppercase hash", func(tok *store.Token, _ secret.Secret) { tok.Hash = strings.ToUpper(tok.Hash) }},
		{"secret instead of hash", func(tok *store.Token, sec secret.Secret) { tok.Hash = sec.Token }},
		{"zero created", func(tok *store.Token, _ secret.Secret) { tok.Created = time.Time{} }},
		{"expires before created", func(tok *store.Token, _ secret.Secret) { tok.Expires = tok.Created.Add(-time.Second) }},
		{"already expired", func(tok *store.Token, _ secret.Secret) {
			tok.Created = time.Now().Add(-time.Hour)
			tok.Expires = time.Now().Add(-time.Second)
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tok, sec := MustToken(t, ns, parent.ID, time.Hour)
			tc.edit(&tok, sec)
			err := s.Create(ctx, tok)
			wantErr(t, "Create", err, store.ErrInvalid)
			if strings.Contains(err.Error(), sec.Token) {
				t.Fatalf("error %q contains the secret", err)
			}
			if _, err := s.Lookup(ctx, ns, sec.ID); !errors.Is(err, store.ErrNotFound) {
				t.Fatalf("Lookup after a refused create: %v, want ErrNotFound", err)
			}
		})
	}
	if ids := listAll(t, ctx, s, ns, 100); !slices.Equal(ids, []string{parent.ID}) {
		t.Fatalf("List = %v, want only the parent", ids)
	}
	for _, bad := range [][2]string{{"bad-", parent.ID}, {ns, "x"}, {ns, strings.ToUpper(parent.ID)}} {
		_, err := s.Lookup(ctx, bad[0], bad[1])
		wantErr(t, fmt.Sprintf("Lookup(%q, %q)", bad[0], bad[1]), err, store.ErrInvalid)
		_, err = s.Revoke(ctx, bad[0], bad[1])
		wantErr(t, fmt.Sprintf("Revoke(%q, %q)", bad[0], bad[1]), err, store.ErrInvalid)
	}
}

func testExpiry(t *testing.T, newStore func(t *testing.T) Store) {
	ctx, s, ns := testContext(t), newStore(t), Namespace(t)
	long := create(t, ctx, s, ns, "", time.Hour)
	short := create(t, ctx, s, ns, "", shortTTL)

	wantLive(t, ctx, s, short)
	if ids := listAll(t, ctx, s, ns, 10); !sameSet(ids, []string{long.ID, short.ID}) {
		t.Fatalf("List before expiry = %v, want both tokens", ids)
	}
	time.Sleep(time.Until(short.Expires) + 50*time.Millisecond)

	wantGone(t, ctx, s, ns, short.ID)
	if ids := listAll(t, ctx, s, ns, 10); !slices.Equal(ids, []string{long.ID}) {
		t.Fatalf("List after expiry = %v, want only %s", ids, long.ID)
	}
	_, err := s.Revoke(ctx, ns, short.ID)
	wantErr(t, "Revoke of an expired token", err, store.ErrNotFound)
	child, _ := MustToken(t, ns, short.ID, time.Hour)
	wantErr(t, "Create under an expired parent", s.Create(ctx, child), store.ErrNotFound)
	wantGone(t, ctx, s, ns, child.ID)
	wantLive(t, ctx, s, long)
}

// manyTokens creates n tokens in ns, one after the other, and returns them
// in the order they were stored, the list order. Their Created times run
// backwards, in groups of three sharing one microsecond: the list order is
// the order of storing, not of Created.
func manyTokens(t *testing.T, ctx context.Context, s Store, ns string, n int) []store.Token {
	t.Helper()
	base := time.Now().Add(-time.Hour).Truncate(time.Millisecond)
	toks := make([]store.Token, n)
	for i := range toks {
		tok, _ := MustToken(t, ns, "", 0)
		tok.Created = base.Add(time.Duration(n-i/3)*time.Microsecond + time.Duration(i%3)*time.Nanosecond)
		tok.Expires = time.Now().Add(time.Hour)
		toks[i] = mustCreate(t, ctx, s, tok)
	}
	return toks
}

func idsOf(toks []store.Token) []string {
	ids := make([]string, len(toks))
	for i, tok := range toks {
		ids[i] = tok.ID
	}
	return ids
}

func testListPaging(t *testing.T, newStore func(t *testing.T) Store) {
	ctx, s, ns := testContext(t), newStore(t), Namespace(t)
	const n = 350
	toks := manyTokens(t, ctx, s, ns, n)
	want := idsOf(toks)

	for _, limit := range []int{1, 37, 100, n, store.MaxListLimit} {
		t.Run(fmt.Sprintf("limit %d", limit), func(t *testing.T) {
			if limit == 1 && testing.Short() {
				t.Skip("350 round trips")
			}
			got := listAll(t, ctx, s, ns, limit)
			if !slices.Equal(got, want) {
				t.Fatalf("paging by %d: got %d ids, want %d in the order they were stored; first difference at %d", limit, len(got), len(want), firstDiff(got, want))
			}
		})
	}
	// Full pages until the last one.
	page, next, err := s.List(ctx, ns, "", 37)
	if err != nil || len(page) != 37 || next == "" {
		t.Fatalf("first page of 37 = %d tokens, next %q, %v", len(page), next, err)
	}
	for i, tok := range page {
		if tok.ID != want[i] {
			t.Fatalf("page[%d] = %s, want %s", i, tok.ID, want[i])
		}
		equalToken(t, tok, toks[slices.IndexFunc(toks, func(x store.Token) bool { return x.ID == tok.ID })])
	}
	// The page after the last token is empty and final.
	all, next, err := s.List(ctx, ns, "", n)
	if err != nil || len(all) != n {
		t.Fatalf("List of all = %d tokens, %v", len(all), err)
	}
	if next != "" {
		rest, next2, err := s.List(ctx, ns, next, 10)
		if err != nil || len(rest) != 0 || next2 != "" {
			t.Fatalf("page after the last = %d tokens, next %q, %v", len(rest), next2, err)
		}
	}
}

func firstDiff(a, b []string) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

func testListCursorRevoked(t *testing.T, newStore func(t *testing.T) Store) {
	ctx, s, ns := testContext(t), newStore(t), Namespace(t)
	toks := manyTokens(t, ctx, s, ns, 30)
	want := idsOf(toks)

	// Page 1 ends on want[9], the first of a group of three sharing one
	// microsecond; revoking it must not lose want[10] and want[11].
	page, next, err := s.List(ctx, ns, "", 10)
	if err != nil || len(page) != 10 || next == "" {
		t.Fatalf("first page = %d tokens, next %q, %v", len(page), next, err)
	}
	if page[9].ID != want[9] {
		t.Fatalf("page[9] = %s, want %s", page[9].ID, want[9])
	}
	if _, err := s.Revoke(ctx, ns, want[9]); err != nil {
		t.Fatalf("Revoke: %v", err)
	}
	if _, err := s.Revoke(ctx, ns, want[12]); err != nil {
		t.Fatalf("Revoke: %v", err)
	}
	var got []string
	for next != "" {
		var page []store.Token
		page, next, err = s.List(ctx, ns, next, 10)
		if err != nil {
			t.Fatalf("List: %v", err)
		}
		for _, tok := range page {
			got = append(got, tok.ID)
		}
	}
	wantRest := slices.Concat(want[10:12], want[13:])
	if !slices.Equal(got, wantRest) {
		t.Fatalf("pages after a revoked cursor token: got %v\nwant %v", got, wantRest)
	}
}

func testListArguments(t *testing.T, newStore func(t *testing.T) Store) {
	ctx, s, ns := testContext(t), newStore(t), Namespace(t)
	toks := manyTokens(t, ctx, s, ns, 3)
	page, next, err := s.List(ctx, ns, "", 2)
	if err != nil || len(page) != 2 || next == "" {
		t.Fatalf("List = %d tokens, next %q, %v", len(page), next, err)
	}
	empty, next2, err := s.List(ctx, Namespace(t), "", 10)
	if err != nil || len(empty) != 0 || next2 != "" {
		t.Fatalf("List of an empty namespace = %d tokens, next %q, %v", len(empty), next2, err)
	}
	// A cursor works in any namespace: it is a position, not a token.
	if _, _, err := s.List(ctx, Namespace(t), next, 10); err != nil {
		t.Fatalf("List with a cursor in another namespace: %v", err)
	}
	tests := []struct {
		name, ns, after string
		limit           int
	}{
		{"zero limit", ns, "", 0},
		{"negative limit", ns, "", -1},
		{"limit too big", ns, "", store.MaxListLimit + 1},
		{"bad namespace", "ns-", "", 10},
		{"garbage cursor", ns, "garbage", 10},
		{"cursor without id", ns, "12345.", 10},
		{"cursor with bad time", ns, "-1." + toks[0].ID, 10},
		{"cursor with padded time", ns, "0012." + toks[0].ID, 10},
		{"bare id as cursor", ns, toks[0].ID, 10},
	}
	for _, tc := range tests {
		_, _, err := s.List(ctx, tc.ns, tc.after, tc.limit)
		wantErr(t, "List with "+tc.name, err, store.ErrInvalid)
	}
}

func testRevokeCascade(t *testing.T, newStore func(t *testing.T) Store) {
	ctx, s, ns := testContext(t), newStore(t), Namespace(t)
	root := create(t, ctx, s, ns, "", time.Hour)
	child := create(t, ctx, s, ns, root.ID, time.Hour)
	sibling := create(t, ctx, s, ns, root.ID, time.Hour)
	grandchild := create(t, ctx, s, ns, child.ID, time.Hour)
	great := create(t, ctx, s, ns, grandchild.ID, time.Hour)
	great2 := create(t, ctx, s, ns, grandchild.ID, time.Hour)

	revoked := revoke(t, ctx, s, ns, child.ID)
	want := []string{child.ID, grandchild.ID, great.ID, great2.ID}
	if !slices.Equal(revoked, want) {
		t.Fatalf("Revoke returned %v, want %v (the token first, then in the order they were stored)", revoked, want)
	}
	for _, id := range want {
		wantGone(t, ctx, s, ns, id)
	}
	wantLive(t, ctx, s, root)
	wantLive(t, ctx, s, sibling)
	if ids := listAll(t, ctx, s, ns, 10); !sameSet(ids, []string{root.ID, sibling.ID}) {
		t.Fatalf("List after revoke = %v, want the root and the sibling", ids)
	}
	late, _ := MustToken(t, ns, grandchild.ID, time.Hour)
	wantErr(t, "Create under a revoked grandchild", s.Create(ctx, late), store.ErrNotFound)
	_, err := s.Revoke(ctx, ns, child.ID)
	wantErr(t, "Revoke again", err, store.ErrNotFound)
	_, err = s.Revoke(ctx, ns, great.ID)
	wantErr(t, "Revoke of a revoked descendant", err, store.ErrNotFound)

	if revoked := revoke(t, ctx, s, ns, root.ID); !slices.Equal(revoked, []string{root.ID, sibling.ID}) {
		t.Fatalf("Revoke(root) = %v; want [root sibling]", revoked)
	}
	if ids := listAll(t, ctx, s, ns, 10); len(ids) != 0 {
		t.Fatalf("List after revoking everything = %v", ids)
	}
}

func testRevokeThroughExpired(t *testing.T, newStore func(t *testing.T) Store) {
	ctx, s, ns := testContext(t), newStore(t), Namespace(t)
	root := create(t, ctx, s, ns, "", time.Hour)
	middle := create(t, ctx, s, ns, root.ID, shortTTL)
	leaf := create(t, ctx, s, ns, middle.ID, time.Hour)
	time.Sleep(time.Until(middle.Expires) + 50*time.Millisecond)
	wantGone(t, ctx, s, ns, middle.ID)
	wantLive(t, ctx, s, leaf)

	if revoked := revoke(t, ctx, s, ns, root.ID); !slices.Equal(revoked, []string{root.ID, leaf.ID}) {
		t.Fatalf("Revoke = %v, want [root leaf]: a token minted from an expired token dies with its ancestor", revoked)
	}
	wantGone(t, ctx, s, ns, leaf.ID)
}

func testAncestorLimit(t *testing.T, newStore func(t *testing.T) Store) {
	ctx, s, ns := testContext(t), newStore(t), Namespace(t)
	chain := []store.Token{create(t, ctx, s, ns, "", time.Hour)}
	for len(chain) <= store.MaxAncestors {
		chain = append(chain, create(t, ctx, s, ns, chain[len(chain)-1].ID, time.Hour))
	}
	tooDeep, _ := MustToken(t, ns, chain[len(chain)-1].ID, time.Hour)
	wantErr(t, fmt.Sprintf("Create with %d ancestors", store.MaxAncestors+1), s.Create(ctx, tooDeep), store.ErrInvalid)
	wantGone(t, ctx, s, ns, tooDeep.ID)

	// Revoking the middle of the chain takes everything below it.
	mid := len(chain) / 2
	revoked := revoke(t, ctx, s, ns, chain[mid].ID)
	want := make([]string, 0, len(chain)-mid)
	for _, tok := range chain[mid:] {
		want = append(want, tok.ID)
	}
	if !slices.Equal(revoked, want) {
		t.Fatalf("Revoke of a chain = %d ids, want the %d from the middle down, in order", len(revoked), len(want))
	}
	wantLive(t, ctx, s, chain[mid-1])
}

func testRevokeUnknown(t *testing.T, newStore func(t *testing.T) Store) {
	ctx, s, ns := testContext(t), newStore(t), Namespace(t)
	tok, _ := MustToken(t, ns, "", time.Hour)
	_, err := s.Revoke(ctx, ns, tok.ID)
	wantErr(t, "Revoke of a never created token", err, store.ErrNotFound)
	// A refused revoke leaves no trace: the id can still be created.
	mustCreate(t, ctx, s, tok)
	wantLive(t, ctx, s, tok)
}

// testRevokeRacesCreate checks that a child of a revoked parent is never
// born: every child created while its parent is being revoked is either
// refused or revoked with the parent.
func testRevokeRacesCreate(t *testing.T, newStore func(t *testing.T) Store) {
	ctx, s, ns := testContext(t), newStore(t), Namespace(t)
	parent := create(t, ctx, s, ns, "", time.Hour)
	const n = 60
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		created []string
		revoked []string
	)
	start := make(chan struct{})
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			child, _ := MustToken(t, ns, parent.ID, time.Hour)
			err := s.Create(ctx, child)
			switch {
			case err == nil:
				mu.Lock()
				created = append(created, child.ID)
				mu.Unlock()
			case !errors.Is(err, store.ErrNotFound):
				t.Errorf("Create: %v", err)
			}
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		<-start
		time.Sleep(time.Millisecond)
		rv, err := s.Revoke(ctx, ns, parent.ID)
		if err != nil || !rv.Done {
			t.Errorf("Revoke = %+v, %v; want it done", rv, err)
		}
		revoked = rv.IDs
	}()
	close(start)
	wg.Wait()
	if t.Failed() {
		return
	}
	if len(revoked) == 0 || revoked[0] != parent.ID || !sameSet(revoked[1:], created) {
		t.Fatalf("revoked %d ids, %d children were created: every created child must be revoked", len(revoked), len(created))
	}
	for _, id := range created {
		wantGone(t, ctx, s, ns, id)
	}
	if ids := listAll(t, ctx, s, ns, 100); len(ids) != 0 {
		t.Fatalf("List after the race = %v, want none", ids)
	}
}

type revocation struct{ ns, id string }

func testSubscribe(t *testing.T, newStore func(t *testing.T) Store) {
	ctx, a, b := testContext(t), newStore(t), newStore(t)
	ns, probeNS := Namespace(t), Namespace(t)
	events := make(chan revocation, 100)
	subCtx, stop := context.WithCancel(ctx)
	defer stop()
	done := make(chan error, 1)
	go func() {
		done <- b.Subscribe(subCtx, func(ns, id string) { events <- revocation{ns, id} })
	}()

	// Subscribe gives no signal when it is listening: revoke probes on a
	// until one reaches b.
	deadline := time.Now().Add(10 * time.Second)
probe:
	for {
		if time.Now().After(deadline) {
			t.Fatal("no revocation reached the second instance within 10s")
		}
		p := create(t, ctx, a, probeNS, "", time.Hour)
		if _, err := a.Revoke(ctx, probeNS, p.ID); err != nil {
			t.Fatalf("Revoke probe: %v", err)
		}
		timeout := time.After(100 * time.Millisecond)
		for {
			select {
			case ev := <-events:
				if ev == (revocation{probeNS, p.ID}) {
					break probe
				}
			case err := <-done:
				t.Fatalf("Subscribe returned early: %v", err)
			case <-timeout:
				continue probe
			}
		}
	}

	root := create(t, ctx, a, ns, "", time.Hour)
	kid := create(t, ctx, a, ns, root.ID, time.Hour)
	grandkid := create(t, ctx, a, ns, kid.ID, time.Hour)
	bystander := create(t, ctx, a, ns, "", time.Hour)
	if _, err := a.Revoke(ctx, ns, root.ID); err != nil {
		t.Fatalf("Revoke: %v", err)
	}
	// One notice for the revoked token; its descendants name it among their
	// ancestors (Token.Ancestors), which is how a cache drops them too.
	want := map[revocation]bool{{ns, root.ID}: true}
	for _, d := range []store.Token{kid, grandkid} {
		wantGone(t, ctx, b, ns, d.ID)
	}
	got := map[revocation]bool{}
	timeout := time.After(5 * time.Second)
	for len(got) < len(want) {
		select {
		case ev := <-events:
			if ev.ns == probeNS {
				continue
			}
			if !want[ev] || got[ev] {
				t.Fatalf("unexpected or repeated revocation %v", ev)
			}
			got[ev] = true
		case <-timeout:
			t.Fatalf("second instance saw %d of %d revocations", len(got), len(want))
		}
	}
	wantLive(t, ctx, b, bystander)
	select {
	case ev := <-events:
		if ev.ns != probeNS {
			t.Fatalf("extra revocation %v", ev)
		}
	case <-time.After(200 * time.Millisecond):
	}

	stop()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Subscribe after its context ended = %v, want nil", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Subscribe did not return after its context ended")
	}
}

func testNamespaces(t *testing.T, newStore func(t *testing.T) Store) {
	ctx, s := testContext(t), newStore(t)
	ns1, ns2 := Namespace(t), Namespace(t)
	one := create(t, ctx, s, ns1, "", time.Hour)
	two, _ := MustToken(t, ns2, "", time.Hour)
	two.ID = one.ID // the same id in another namespace is another token
	two.Description = "in ns2"
	mustCreate(t, ctx, s, two)
	only1 := create(t, ctx, s, ns1, "", time.Hour)

	wantLive(t, ctx, s, one)
	wantLive(t, ctx, s, two)
	wantGone(t, ctx, s, ns2, only1.ID)
	if ids := listAll(t, ctx, s, ns2, 10); !slices.Equal(ids, []string{two.ID}) {
		t.Fatalf("List(%s) = %v, want only %s", ns2, ids, two.ID)
	}
	if ids := listAll(t, ctx, s, ns1, 10); !sameSet(ids, []string{one.ID, only1.ID}) {
		t.Fatalf("List(%s) = %v", ns1, ids)
	}
	_, err := s.Revoke(ctx, ns2, only1.ID)
	wantErr(t, "Revoke in the wrong namespace", err, store.ErrNotFound)
	rv, err := s.Revoke(ctx, ns1, one.ID)
	revoked := rv.IDs
	if err != nil || !slices.Equal(revoked, []string{one.ID}) {
		t.Fatalf("Revoke(%s/%s) = %v, %v", ns1, one.ID, revoked, err)
	}
	wantGone(t, ctx, s, ns1, one.ID)
	wantLive(t, ctx, s, two)
	wantLive(t, ctx, s, only1)
}

func testClose(t *testing.T, newStore func(t *testing.T) Store) {
	ctx, s, ns := testContext(t), newStore(t), Namespace(t)
	if err := s.Ping(ctx); err != nil {
		t.Fatalf("Ping: %v", err)
	}
	tok := create(t, ctx, s, ns, "", time.Hour)
	done := make(chan error, 1)
	go func() { done <- s.Subscribe(ctx, func(string, string) {}) }()
	time.Sleep(100 * time.Millisecond)

	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	select {
	case err := <-done:
		wantErr(t, "Subscribe when the store closes", err, store.ErrUnavailable)
	case <-time.After(5 * time.Second):
		t.Fatal("Subscribe did not return when the store closed")
	}
	wantErr(t, "Ping after Close", s.Ping(ctx), store.ErrUnavailable)
	_, err := s.Lookup(ctx, ns, tok.ID)
	wantErr(t, "Lookup after Close", err, store.ErrUnavailable)
	other, _ := MustToken(t, ns, "", time.Hour)
	wantErr(t, "Create after Close", s.Create(ctx, other), store.ErrUnavailable)
	_, _, err = s.List(ctx, ns, "", 10)
	wantErr(t, "List after Close", err, store.ErrUnavailable)
	_, err = s.Revoke(ctx, ns, tok.ID)
	wantErr(t, "Revoke after Close", err, store.ErrUnavailable)
	wantErr(t, "Subscribe after Close", s.Subscribe(ctx, func(string, string) {}), store.ErrUnavailable)
	_ = s.Close() // a second Close must not panic
}
