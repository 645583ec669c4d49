package storetest

import (
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/direktiv/direktiv-authz/store"
)

// testConcurrentCreates sends many creates at once, across namespaces and
// with every kind of answer mixed in, so that a store that batches them
// (the Redis store pipelines concurrent creates) must still give each
// create its own answer and store exactly the ones it accepted.
func testConcurrentCreates(t *testing.T, newStore func(t *testing.T) Store) {
	ctx, s := testContext(t), newStore(t)
	const perNamespace = 60
	type job struct {
		tok  store.Token
		want error // nil: stored
	}
	var jobs []job
	stored := map[string][]string{} // namespace: ids that must be listed
	for range 3 {
		ns := Namespace(t)
		live := create(t, ctx, s, ns, "", time.Hour)
		dead := create(t, ctx, s, ns, "", time.Hour)
		if _, err := s.Revoke(ctx, ns, dead.ID); err != nil {
			t.Fatalf("Revoke: %v", err)
		}
		stored[ns] = []string{live.ID}
		for i := range perNamespace {
			var j job
			switch i % 5 {
			case 0, 1: // a root token
				j.tok, _ = MustToken(t, ns, "", time.Hour)
			case 2: // a child of a live token
				j.tok, _ = MustToken(t, ns, live.ID, time.Hour)
			case 3: // a child of a revoked token
				j.tok, _ = MustToken(t, ns, dead.ID, time.Hour)
				j.want = store.ErrNotFound
			case 4: // another record under the live token's id
				j.tok, _ = MustToken(t, ns, "", time.Hour)
				j.tok.ID = live.ID
				j.want = store.ErrExists
			}
			if j.want == nil {
				stored[ns] = append(stored[ns], j.tok.ID)
			}
			jobs = append(jobs, j)
		}
	}

	errs := make([]error, len(jobs))
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i, j := range jobs {
		wg.Go(func() {
			<-start
			errs[i] = s.Create(ctx, j.tok)
		})
	}
	close(start)
	wg.Wait()

	for i, j := range jobs {
		if j.want == nil && errs[i] != nil {
			t.Errorf("Create(%s/%s parent %q): %v, want success", j.tok.Namespace, j.tok.ID, j.tok.Parent, errs[i])
		}
		if j.want != nil && !errors.Is(errs[i], j.want) {
			t.Errorf("Create(%s/%s parent %q): %v, want %v", j.tok.Namespace, j.tok.ID, j.tok.Parent, errs[i], j.want)
		}
	}
	if t.Failed() {
		return
	}
	for _, j := range jobs {
		if j.want == nil {
			wantLive(t, ctx, s, j.tok)
		}
	}
	for ns, want := range stored {
		if got := listAll(t, ctx, s, ns, 50); !sameSet(got, want) {
			t.Fatalf("List(%s): %d ids, want the %d stored (%v missing or extra)", ns, len(got), len(want),
				slices.DeleteFunc(slices.Clone(got), func(id string) bool { return slices.Contains(want, id) }))
		}
	}
}
