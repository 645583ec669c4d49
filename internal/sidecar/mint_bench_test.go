package sidecar

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/direktiv/direktiv-authz/internal/credential"
)

const benchMintBody = `{"description":"bench","policies":["workflowView","instancesView"],"expires":"PT1H"}`

// BenchmarkMintRequest measures one whole mint through the real server and
// a real Redis: HTTP parsing, authentication, the Rego decision, the expiry,
// the Lua create and the 201 answer, by the admin token and by a minted
// token (its record cached, as it is for a caller minting in a loop).
func BenchmarkMintRequest(b *testing.B) {
	run := func(b *testing.B, s *sidecar, token string) {
		benchRequests(b, s, http.StatusCreated, func(req *fasthttp.Request) {
			req.SetRequestURI("http://" + s.app.addr() + "/api/namespaces/ns1/auth/token")
			req.Header.SetMethod("POST")
			req.Header.Set(credential.HeaderToken, token)
			req.SetBodyString(benchMintBody)
		})
	}
	b.Run("admin", func(b *testing.B) {
		s, _ := startRedisSidecar(b, "--log-level", "error")
		run(b, s, testAdminToken)
	})
	b.Run("minted caller", func(b *testing.B) {
		s, _ := startRedisSidecar(b, "--log-level", "error")
		mgr := s.mintOK(b, "ns1", testAdminToken, `{"policies":["permissionsManage","workflowView","instancesView"],"expires":"P1D"}`)
		run(b, s, mgr["token"].(string))
	})
}

// TestMintRedisRoundTrips counts the commands clients send Redis per mint
// (MONITOR shows each; commands a Lua script runs are marked "lua" and are
// not round trips): a minted caller costs its record lookup (when not
// cached) and one create script, so at most two round trips; a cached caller
// or the admin token, one.
func TestMintRedisRoundTrips(t *testing.T) {
	cases := []struct {
		name   string
		args   []string
		caller string // "admin" or "minted"
		want   int    // client commands per mint
	}{
		{"admin", nil, "admin", 1},
		{"minted, cache off", []string{"--token-cache-ttl", "0"}, "minted", 2},
		{"minted, cache warm", []string{"--token-cache-ttl", "1m"}, "minted", 1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s, srv := startRedisSidecar(t, tc.args...)
			token := testAdminToken
			if tc.caller == "minted" {
				token = s.mintOK(t, "ns1", testAdminToken, `{"policies":["permissionsManage","workflowView"],"expires":"P1D"}`)["token"].(string)
				s.mintOK(t, "ns1", token, benchMintBody) // warms the cache when there is one
			}
			mon := startMonitor(t, srv.Addr())
			const mints = 20
			for range mints {
				s.mintOK(t, "ns1", token, benchMintBody)
			}
			cmds := mon.stop(t)
			if len(cmds) != tc.want*mints {
				t.Fatalf("%d Redis round trips for %d mints, want %d each:\n%s", len(cmds), mints, tc.want, strings.Join(cmds, "\n"))
			}
		})
	}
}

// monitor records the commands clients send a Redis server.
type monitor struct {
	conn net.Conn
	done chan []string
}

func startMonitor(tb testing.TB, addr string) *monitor {
	tb.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		tb.Fatal(err)
	}
	if _, err := io.WriteString(c, "MONITOR\r\n"); err != nil {
		tb.Fatal(err)
	}
	r := bufio.NewReader(c)
	if line, err := r.ReadString('\n'); err != nil || line != "+OK\r\n" {
		tb.Fatalf("MONITOR: %q %v", line, err)
	}
	m := &monitor{conn: c, done: make(chan []string, 1)}
	go func() {
		var cmds []string
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				m.done <- cmds
				return
			}
			// +1700000000.123456 [0 127.0.0.1:5000] "evalsha" ... ; [0 lua] inside scripts
			// Not per mint: scripts' own commands, health checks, and the
			// revocation subscription's connection setup.
			// Nor the sweep's polls of its queue (redis.Store.Sweep).
			if strings.Contains(line, " lua] ") || strings.Contains(line, ":sweepq") {
				continue
			}
			if _, cmd, ok := strings.Cut(line, `] "`); ok {
				name, _, _ := strings.Cut(strings.ToLower(cmd), `"`)
				if name == "ping" || name == "hello" || name == "subscribe" || name == "client" {
					continue
				}
			}
			line = strings.TrimSpace(line)
			if len(line) > 120 {
				line = line[:120] + "..."
			}
			cmds = append(cmds, line)
		}
	}()
	return m
}

// stop ends the monitor and returns what it saw, after a moment for the
// last commands to arrive.
func (m *monitor) stop(tb testing.TB) []string {
	tb.Helper()
	time.Sleep(100 * time.Millisecond)
	m.conn.Close()
	return <-m.done
}
