package main

// Review tests of mints served on the event loops (relay.go answerMint,
// mint.go, internal/relay backend.go) against the server path.

import (
	"context"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/direktiv/direktiv-authz/store/redistest"
)

// rawChunkedMint is a mint whose body is chunked: the loops hand such a
// request (and its connection) to the server.
func rawChunkedMint(target, token, body string) string {
	return "POST " + target + " HTTP/1.1\r\nHost: sidecar\r\nDirektiv-Token: " + token +
		"\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n" +
		fmt.Sprintf("%x\r\n%s\r\n0\r\n\r\n", len(body), body)
}

// TestReviewMintAnsweredAtOnceThenHandoff: a mint the loop answers at once
// (a dry run, or any refusal: no create to send) pipelined with a request
// the loop hands to the server (a chunked body) must get its own answer
// first (the loops once lost it: it sat unwritten in the connection's
// buffer when the handoff released it, and the client read the second
// request's answer as the first's).
func TestReviewMintAnsweredAtOnceThenHandoff(t *testing.T) {
	onBothPaths(t, func(t *testing.T, loops string) {
		s, _ := startMintSidecar(t, loops)
		for _, first := range []struct {
			name   string
			req    string
			status int
		}{
			{"dry run", rawMint(mintTarget("ns1")+"?dry_run=true", testAdminToken, `{"description":"dry","policies":["workflowView"]}`), 200},
			{"refused", rawMint(mintTarget("ns1"), testAdminToken, `{"policies":[]}`), 400},
		} {
			t.Run(first.name, func(t *testing.T) {
				var handoffs uint64
				if s.app.relay != nil {
					handoffs = s.app.relay.Handoffs()
				}
				c := dialRaw(t, s.app.addr())
				c.c.SetDeadline(time.Now().Add(5 * time.Second))
				if _, err := io.WriteString(c.c, first.req+rawChunkedMint(mintTarget("ns1"), testAdminToken, `{"description":"chunked","policies":["workflowView"]}`)); err != nil {
					t.Fatal(err)
				}
				r1 := c.read(t)
				if r1.status != first.status {
					t.Fatalf("first answer: %d %s, want %d (the pipelined second request's answer came instead)", r1.status, r1.body, first.status)
				}
				r2 := c.read(t)
				if r2.status != 201 || !strings.Contains(string(r2.body), `"description":"chunked"`) {
					t.Fatalf("second answer: %d %s", r2.status, r2.body)
				}
				// The case is the one above only if the chunked request was
				// handed to the server.
				if s.app.relay != nil {
					if got := s.app.relay.Handoffs() - handoffs; got != 1 {
						t.Errorf("%d connections handed to the server, want 1 (the chunked mint's)", got)
					}
				}
			})
		}
	})
}

// delayProxy is a TCP proxy to a Redis that, while hold is set, holds each
// reply for delay before passing it on: the commands reach Redis and run at
// once, their replies arrive late.
type delayProxy struct {
	addr  string
	hold  atomic.Bool
	delay time.Duration
}

func newDelayProxy(t *testing.T, target string, delay time.Duration) *delayProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &delayProxy{addr: ln.Addr().String(), delay: delay}
	var mu sync.Mutex
	var conns []net.Conn
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
	})
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			r, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			mu.Lock()
			conns = append(conns, c, r)
			mu.Unlock()
			go func() { io.Copy(r, c); r.Close() }()
			go func() {
				buf := make([]byte, 64<<10)
				for {
					n, err := r.Read(buf)
					if n > 0 {
						if p.hold.Load() {
							time.Sleep(p.delay)
						}
						if _, werr := c.Write(buf[:n]); werr != nil {
							break
						}
					}
					if err != nil {
						break
					}
				}
				c.Close()
			}()
		}
	}()
	return p
}

// TestReviewMintOfClientGoneAuditedAtShutdown: a client sends a mint and
// leaves while its create's reply is on its way (Redis ran it; the reply is
// held back by a proxy), and the sidecar is stopped meanwhile. The server
// finishes the handler within the grace period: the token is stored and
// audited. So on the loops: Shutdown waits for the calls in flight, not
// only for open client connections (it once did not, and a token was
// stored that no audit line and no metric recorded).
func TestReviewMintOfClientGoneAuditedAtShutdown(t *testing.T) {
	onBothPaths(t, func(t *testing.T, loops string) {
		srv := redistest.Start(t)
		px := newDelayProxy(t, srv.Addr(), 400*time.Millisecond)
		s := startMintSidecarOn(t, "redis://"+px.addr, loops, "--shutdown-grace", "5s")
		rdb := redisClient(t, srv.Addr(), redis.Options{})
		ctx := context.Background()
		audits := len(auditLines(s))
		px.hold.Store(true)
		c, err := net.Dial("tcp", s.app.addr())
		if err != nil {
			t.Fatal(err)
		}
		io.WriteString(c, rawMint(mintTarget("ns1"), testAdminToken, `{"description":"gone","policies":["workflowView"]}`))
		eventually(t, "the token stored", func() bool {
			keys, _ := rdb.Keys(ctx, "*:tok:*").Result()
			return len(keys) == 1
		})
		c.Close()
		time.Sleep(20 * time.Millisecond)
		s.cancel()
		select {
		case <-s.done:
		case <-time.After(10 * time.Second):
			t.Fatal("the sidecar did not stop")
		}
		s.done <- nil // for the cleanup's stop
		if lines := auditLines(s)[audits:]; len(lines) != 1 {
			t.Fatalf("a token stored by a mint, %d audit lines for it, want 1: %q", len(lines), lines)
		}
	})
}

// TestReviewMintThenHalfClose: a client that writes one mint and shuts
// down its sending side (printf '...' | nc -N, or any client that
// half-closes after its request) gets the answer, with the secret, on both
// paths. (On the loops the FIN that arrived while the create was in flight
// once closed the connection: the token was stored and audited as granted,
// and the client never saw the secret it was to be shown once.)
func TestReviewMintThenHalfClose(t *testing.T) {
	onBothPaths(t, func(t *testing.T, loops string) {
		// The cache off: the minted caller's record is looked up first,
		// and the FIN comes during that lookup (a Wait on the loops).
		s, srv := startMintSidecar(t, loops, "--token-cache-ttl", "0")
		rdb := redisClient(t, srv.Addr(), redis.Options{})
		mgr := s.mintOK(t, "ns1", testAdminToken, `{"policies":["permissionsManage","workflowView"]}`)["token"].(string)
		for _, caller := range []struct{ name, token string }{{"admin, the create in flight", testAdminToken}, {"minted, its lookup in flight", mgr}} {
			t.Run(caller.name, func(t *testing.T) {
				c := dialRaw(t, s.app.addr())
				c.c.SetDeadline(time.Now().Add(5 * time.Second))
				if err := rdb.ClientPause(context.Background(), 300*time.Millisecond).Err(); err != nil {
					t.Fatal(err)
				}
				if _, err := io.WriteString(c.c, rawMint(mintTarget("ns1"), caller.token, `{"description":"fin","policies":["workflowView"]}`)); err != nil {
					t.Fatal(err)
				}
				time.Sleep(100 * time.Millisecond) // Redis holds the create or the lookup
				wantPending(t, c.c, "the mint before the client's FIN")
				c.c.SetDeadline(time.Now().Add(5 * time.Second))
				if err := c.c.(*net.TCPConn).CloseWrite(); err != nil {
					t.Fatal(err)
				}
				b, err := io.ReadAll(c.br)
				if err != nil {
					t.Fatalf("reading until the sidecar closes: %v (after %q)", err, b)
				}
				if !strings.HasPrefix(string(b), "HTTP/1.1 201 ") || !strings.Contains(string(b), `"token":"dkt_`) {
					t.Fatalf("after the mint and the client's FIN: read %q, %v; want the 201 with the secret", b, err)
				}
			})
		}
	})
}
