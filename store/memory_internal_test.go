package store

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"testing"
	"time"
)

func TestMemoryJanitorDropsExpired(t *testing.T) {
	m := newMemory(10 * time.Millisecond)
	defer m.Close()
	ctx := context.Background()
	sum := sha256.Sum256([]byte("x"))
	now := time.Now()
	parent := Token{ID: "00000000-0000-4000-8000-000000000001", Namespace: "ns", Created: now, Expires: now.Add(time.Hour), Hash: hex.EncodeToString(sum[:])}
	child := Token{ID: "00000000-0000-4000-8000-000000000002", Namespace: "ns", Parent: parent.ID, Created: now, Expires: now.Add(100 * time.Millisecond), Hash: parent.Hash}
	for _, tok := range []Token{parent, child} {
		if err := m.Create(ctx, tok); err != nil {
			t.Fatal(err)
		}
	}
	count := func() (records, kids int) {
		m.mu.Lock()
		defer m.mu.Unlock()
		if sp := m.spaces["ns"]; sp != nil {
			return len(sp.records), len(sp.kids)
		}
		return 0, 0
	}
	if r, k := count(); r != 2 || k != 1 {
		t.Fatalf("before expiry: %d records, %d kids sets; want 2, 1", r, k)
	}
	// No reads: only the janitor can drop the expired child.
	deadline := time.Now().Add(5 * time.Second)
	for {
		r, k := count()
		if r == 1 && k == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("janitor left %d records, %d kids sets; want 1, 0", r, k)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-m.done:
	default:
		t.Fatal("Close returned before the janitor stopped")
	}
}
