package logwriter

import (
	"bytes"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
)

// gatedWriter counts its writes and, with gate set, holds each until the test lets it go.
type gatedWriter struct {
	mu     sync.Mutex
	b      bytes.Buffer
	writes int
	gate   chan struct{} // when set, each Write waits for a receive
}

func (s *gatedWriter) Write(p []byte) (int, error) {
	if s.gate != nil {
		<-s.gate
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.writes++
	return s.b.Write(p)
}

func (s *gatedWriter) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestLogWriterKeepsEveryLineInOrderPerWriter(t *testing.T) {
	out := &gatedWriter{}
	w := New(out)
	const writers, lines = 8, 500
	var wg sync.WaitGroup
	for g := range writers {
		wg.Go(func() {
			for i := range lines {
				fmt.Fprintf(w, "g%d line %d\n", g, i)
			}
		})
	}
	wg.Wait()
	w.Close()
	got := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
	if len(got) != writers*lines {
		t.Fatalf("%d lines written, want %d", len(got), writers*lines)
	}
	next := make([]int, writers)
	for _, l := range got {
		var g, i int
		if _, err := fmt.Sscanf(l, "g%d line %d", &g, &i); err != nil {
			t.Fatalf("line %q is not whole: %v", l, err)
		}
		if i != next[g] {
			t.Fatalf("writer %d: line %d came where %d was due", g, i, next[g])
		}
		next[g]++
	}
	if out.writes >= writers*lines {
		t.Fatalf("%d writes for %d lines: nothing was gathered", out.writes, writers*lines)
	}
	t.Logf("%d lines in %d writes", writers*lines, out.writes)
}

func TestLogWriterFlushAndClose(t *testing.T) {
	out := &gatedWriter{}
	w := New(out)
	fmt.Fprint(w, "one\n")
	w.Flush()
	if got := out.String(); got != "one\n" {
		t.Fatalf("after Flush: %q, want %q", got, "one\n")
	}
	fmt.Fprint(w, "two\n")
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if got := out.String(); got != "one\ntwo\n" {
		t.Fatalf("after Close: %q", got)
	}
	// After Close a line is written directly, and Close again is harmless.
	fmt.Fprint(w, "three\n")
	w.Close()
	if got := out.String(); got != "one\ntwo\nthree\n" {
		t.Fatalf("after a write following Close: %q", got)
	}
}

// A blocked output holds at most maxLogBuffer bytes (plus the batch being
// written) and then makes writers wait; nothing is dropped.
func TestLogWriterBoundedWhenOutputBlocks(t *testing.T) {
	out := &gatedWriter{gate: make(chan struct{})}
	w := New(out)
	line := strings.Repeat("x", 1023) + "\n"
	fmt.Fprint(w, line) // taken by the writer, which blocks in out.Write
	var written sync.WaitGroup
	stuck := make(chan int, 1)
	written.Go(func() {
		n := 0
		for range 3 * maxLogBuffer / len(line) {
			fmt.Fprint(w, line)
			n++
			if n == maxLogBuffer/len(line) {
				stuck <- n // the buffer is full: the next write must wait
			}
		}
	})
	<-stuck
	time.Sleep(50 * time.Millisecond)
	w.mu.Lock()
	queued := len(w.buf)
	w.mu.Unlock()
	if queued != maxLogBuffer {
		t.Fatalf("%d bytes queued while the output is blocked, want %d (full, the next write waiting)", queued, maxLogBuffer)
	}
	close(out.gate) // unblock every write
	written.Wait()
	w.Close()
	if got, want := len(out.String()), (1+3*maxLogBuffer/len(line))*len(line); got != want {
		t.Fatalf("%d bytes written, want %d: lines were lost", got, want)
	}
}
