package store_test

import (
	"testing"
	"time"

	"github.com/direktiv/direktiv-authz/store"
	"github.com/direktiv/direktiv-authz/store/storetest"
)

func TestMemory(t *testing.T) {
	// Two "instances" on one backend are the same Memory: it is in-process.
	storetest.Run(t, storetest.PerTest(func(t *testing.T) storetest.Store {
		m := store.NewMemory()
		t.Cleanup(func() { _ = m.Close() })
		return m
	}))
}

// TestMemoryFastJanitor runs the suite with a janitor that sweeps all the
// time, so nothing it drops can still be needed.
func TestMemoryFastJanitor(t *testing.T) {
	storetest.Run(t, storetest.PerTest(func(t *testing.T) storetest.Store {
		m := store.NewMemoryWithSweep(time.Millisecond)
		t.Cleanup(func() { _ = m.Close() })
		return m
	}))
}
