package redis

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"slices"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/direktiv/direktiv-authz/internal/testutil"
	"github.com/direktiv/direktiv-authz/store"
)

// TestScriptsAreSafeToResend runs the scripts twice with the same
// arguments, as go-redis does when a reply is lost, and checks that the
// second run reports what the first did and changes nothing.
func TestScriptsAreSafeToResend(t *testing.T) {
	srv := testutil.StartRedis(t)
	r := NewWithClient(goredis.NewClient(&goredis.Options{Addr: srv.Addr()}), Options{})
	defer r.Close()
	ctx := context.Background()
	const ns = "ns"
	sum := sha256.Sum256([]byte("secret"))
	now := time.Now().UTC()
	tok := store.Token{ID: "00000000-0000-4000-8000-000000000001", Namespace: ns, Created: now, Expires: now.Add(time.Hour), Hash: hex.EncodeToString(sum[:])}
	create := func(tok store.Token) int64 {
		t.Helper()
		keys, args, _ := r.createArgs(tok, store.Limit{})
		n, err := createScript.Run(ctx, r.client, keys, args...).Int64()
		if err != nil {
			t.Fatalf("create script: %v", err)
		}
		return n
	}
	revoke := func(nonce string) []any {
		t.Helper()
		keys := []string{r.recordKey(ns, tok.ID), r.indexKey(ns), r.markerKey(ns, tok.ID), r.childrenKey(ns), r.sweepStateKey(ns)}
		res, err := revokeScript.Run(ctx, r.client, keys, tok.ID, r.tag(ns), r.channel, ns, nonce, 60000).Slice()
		if err != nil {
			t.Fatalf("revoke script: %v", err)
		}
		return res
	}
	stored := func() string {
		t.Helper()
		got, _ := r.client.Get(ctx, r.recordKey(ns, tok.ID)).Result()
		return got
	}

	if got := create(tok); got != 1 {
		t.Fatalf("first create = %d, want 1", got)
	}
	data := stored()
	if got := create(tok); got != 1 {
		t.Fatalf("resent create = %d, want 1 (the same record is there)", got)
	}
	other := tok
	other.Description = "other"
	if got := create(other); got != 0 {
		t.Fatalf("create of another record with the id = %d, want 0", got)
	}
	if got := stored(); got != data {
		t.Fatalf("record changed to %q", got)
	}

	done := []any{int64(1), tok.ID}
	if got := revoke("n1"); !slices.Equal(got, done) {
		t.Fatalf("first revoke = %v, want %v", got, done)
	}
	if got := revoke("n1"); !slices.Equal(got, done) {
		t.Fatalf("resent revoke = %v, want the first result", got)
	}
	if got := revoke("n2"); len(got) != 0 {
		t.Fatalf("a new revoke of a revoked token = %v, want none", got)
	}
	if got := create(tok); got != 0 {
		t.Fatalf("resent create after the revoke = %d, want 0 (no resurrection)", got)
	}
	if n, _ := r.client.Exists(ctx, r.recordKey(ns, tok.ID)).Result(); n != 0 {
		t.Fatal("the revoked record is back")
	}
}

// TestBatchedCreatesAfterScriptFlush sends one pipeline of creates to a
// Redis that lost its scripts (a restart, a failover): every EVALSHA in it
// gets NOSCRIPT, and each create is sent again with the script and stored.
func TestBatchedCreatesAfterScriptFlush(t *testing.T) {
	srv := testutil.StartRedis(t)
	r := NewWithClient(goredis.NewClient(&goredis.Options{Addr: srv.Addr()}), Options{})
	defer r.Close()
	ctx := context.Background()
	const ns = "ns"
	for round := range 3 {
		if err := r.client.ScriptFlush(ctx).Err(); err != nil {
			t.Fatal(err)
		}
		now := time.Now().UTC()
		toks := make([]store.Token, 16)
		batch := make([]*scriptCall, len(toks))
		for i := range toks {
			sum := sha256.Sum256(fmt.Appendf(nil, "secret %d %d", round, i))
			toks[i] = store.Token{ID: fmt.Sprintf("00000000-0000-4000-8000-%06d%06d", round, i), Namespace: ns,
				Created: now, Expires: now.Add(time.Hour), Hash: hex.EncodeToString(sum[:])}
			keys, args, _ := r.createArgs(toks[i], store.Limit{})
			batch[i] = &scriptCall{keys: keys, args: args}
		}
		r.creates.inflight = 1 // as run counts the pipeline it sends
		r.creates.send(ctx, batch)
		for i, c := range batch {
			if n, err := c.cmd.Int64(); err != nil || n != 1 {
				t.Fatalf("round %d: create %d in the pipeline = %d, %v; want 1", round, i, n, err)
			}
			if _, err := r.Lookup(ctx, ns, toks[i].ID); err != nil {
				t.Fatalf("round %d: Lookup %d: %v", round, i, err)
			}
		}
		if r.creates.inflight != 0 {
			t.Fatalf("round %d: %d pipelines still counted in flight", round, r.creates.inflight)
		}
	}
}
