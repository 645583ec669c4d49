package redis_test

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/direktiv/direktiv-authz/internal/testutil"
	"github.com/direktiv/direktiv-authz/store"
	"github.com/direktiv/direktiv-authz/store/redis"
	"github.com/direktiv/direktiv-authz/store/storetest"
)

// benchRedis starts a server and a store on it for one benchmark.
func benchRedis(b *testing.B) *redis.Store {
	b.Helper()
	srv := testutil.StartRedis(b)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	r, err := redis.New(ctx, srv.URL(), redis.Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = r.Close() })
	return r
}

// benchTokens mints n records in namespace ns, outside the timed loop.
func benchTokens(b *testing.B, ns, parent string, n int) []store.Token {
	b.Helper()
	toks := make([]store.Token, n)
	for i := range toks {
		toks[i], _ = storetest.MustToken(b, ns, parent, time.Hour)
	}
	return toks
}

func BenchmarkCreate(b *testing.B) {
	r := benchRedis(b)
	ctx, ns := context.Background(), storetest.Namespace(b)
	toks := benchTokens(b, ns, "", b.N)
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		if err := r.Create(ctx, toks[i]); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkCreateChild(b *testing.B) {
	r := benchRedis(b)
	ctx, ns := context.Background(), storetest.Namespace(b)
	parent, _ := storetest.MustToken(b, ns, "", 2*time.Hour)
	if err := r.Create(ctx, parent); err != nil {
		b.Fatal(err)
	}
	toks := benchTokens(b, ns, parent.ID, b.N)
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		if err := r.Create(ctx, toks[i]); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkCreateParallel(b *testing.B) {
	r := benchRedis(b)
	ctx, ns := context.Background(), storetest.Namespace(b)
	toks := make(chan store.Token, b.N)
	for _, tok := range benchTokens(b, ns, "", b.N) {
		toks <- tok
	}
	close(toks)
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := r.Create(ctx, <-toks); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// lookupFixture stores 1000 tokens to look up.
func lookupFixture(b *testing.B) (*redis.Store, []store.Token) {
	r := benchRedis(b)
	ctx, ns := context.Background(), storetest.Namespace(b)
	toks := benchTokens(b, ns, "", 1000)
	for _, tok := range toks {
		if err := r.Create(ctx, tok); err != nil {
			b.Fatal(err)
		}
	}
	return r, toks
}

func BenchmarkLookup(b *testing.B) {
	r, toks := lookupFixture(b)
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		tok := toks[i%len(toks)]
		if _, err := r.Lookup(ctx, tok.Namespace, tok.ID); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkLookupParallel(b *testing.B) {
	r, toks := lookupFixture(b)
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			tok := toks[i%len(toks)]
			i++
			if _, err := r.Lookup(ctx, tok.Namespace, tok.ID); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

func BenchmarkList100(b *testing.B) {
	r, toks := lookupFixture(b)
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		page, _, err := r.List(ctx, toks[0].Namespace, "", 100)
		if err != nil || len(page) != 100 {
			b.Fatal(len(page), err)
		}
	}
}
