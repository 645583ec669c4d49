// Package testutil holds what the tests of several packages share: waiting
// for something asynchronous, a log sink safe to read while written, the
// recording stand-in for Direktiv (Upstream), real redis-server processes
// (StartRedis, StartRedisCluster, StartRedisSentinel, StartRedisTLS) and a
// CA for test certificates. Only tests import it; it imports nothing of the
// project's.
package testutil

import (
	"bytes"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// Timeout bounds a wait for something asynchronous: generous, as the tests
// may share the machine with others; a test that passes never waits for it.
const Timeout = 30 * time.Second

// Eventually polls cond until it holds, failing tb after Timeout.
func Eventually(tb testing.TB, what string, cond func() bool) {
	tb.Helper()
	Within(tb, Timeout, what, cond)
}

// Within polls cond until it holds and returns how long that took, failing
// tb after timeout. It polls at once, then ever less often, up to every
// 50ms.
func Within(tb testing.TB, timeout time.Duration, what string, cond func() bool) time.Duration {
	tb.Helper()
	start := time.Now()
	pause := time.Millisecond
	for !cond() {
		if time.Since(start) > timeout {
			tb.Fatalf("%s: not within %s", what, timeout)
		}
		time.Sleep(pause)
		pause = min(2*pause, 50*time.Millisecond)
	}
	return time.Since(start)
}

// SyncBuffer is a bytes.Buffer for a log written by one goroutine and read
// by another.
type SyncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *SyncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// String is what was written so far.
func (b *SyncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// WriteFile writes content to dir/name (mode 0600) and returns its path.
func WriteFile(tb testing.TB, dir, name, content string) string {
	tb.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		tb.Fatal(err)
	}
	return p
}

// BenchEncoders benchmarks each encoder of encoders ("goccy" and
// "encoding_json"), after checking that it writes want.
func BenchEncoders(b *testing.B, want []byte, encoders map[string]func(w *bytes.Buffer)) {
	for _, name := range []string{"goccy", "encoding_json"} {
		enc := encoders[name]
		b.Run(name, func(b *testing.B) {
			var w bytes.Buffer
			if enc(&w); !bytes.Equal(w.Bytes(), want) {
				b.Fatalf("%s\n got %s\nwant %s", name, w.Bytes(), want)
			}
			b.ReportAllocs()
			for b.Loop() {
				w.Reset()
				enc(&w)
			}
		})
	}
}

// ClosedAddr returns a loopback address nothing listens on.
func ClosedAddr(tb testing.TB) string {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}
