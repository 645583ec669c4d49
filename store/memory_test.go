package store_test

import (
	"sync"
	"testing"
	"time"

	"github.com/direktiv/direktiv-authz/store"
	"github.com/direktiv/direktiv-authz/store/storetest"
)

func TestMemory(t *testing.T) {
	// Two "instances" on one backend are the same Memory: it is in-process.
	storetest.Run(t, perTest(func(t *testing.T) storetest.Store {
		m := store.NewMemory()
		t.Cleanup(func() { _ = m.Close() })
		return m
	}))
}

// TestMemoryFastJanitor runs the suite with a janitor that sweeps all the
// time, so nothing it drops can still be needed.
func TestMemoryFastJanitor(t *testing.T) {
	storetest.Run(t, perTest(func(t *testing.T) storetest.Store {
		m := store.NewMemoryWithSweep(time.Millisecond)
		t.Cleanup(func() { _ = m.Close() })
		return m
	}))
}

// perTest returns a function that calls mk once per test and hands out that
// result to every later call with the same test.
func perTest[T any](mk func(t *testing.T) T) func(t *testing.T) T {
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
