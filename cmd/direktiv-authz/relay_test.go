package main

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
)

// TestRelayOwnEndpointsKeepForwardingConnections, with the in-memory dev
// store, where the loops do not serve mints themselves (with Redis they do:
// relay_mint_test.go): a connection that has forwarded before stays on the
// event loops when it mints (the mint is served off the loop); one that
// starts with a mint is handed to the server for good. Every answer is the
// same either way.
func TestRelayOwnEndpointsKeepForwardingConnections(t *testing.T) {
	up := startUpstream(t)
	s := startForwarder(t, up)
	mint := "POST /api/namespaces/ns1/auth/token HTTP/1.1\r\nHost: x\r\nDirektiv-Token: " + testAdminToken +
		"\r\nContent-Type: application/json\r\nContent-Length: 36\r\n\r\n" + `{"policies":["variablesView"]}` + "      "
	forward := "GET /api/version HTTP/1.1\r\nHost: x\r\n\r\n"

	for _, tc := range []struct {
		name     string
		requests []string
		want     []int
		handoffs uint64
	}{
		{"forward, mint, forward", []string{forward, mint, forward}, []int{200, 201, 200}, 0},
		{"mint first", []string{mint, forward, mint}, []int{201, 200, 201}, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := s.app.relay.Handoffs()
			c, err := net.Dial("tcp", s.app.addr())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			br := bufio.NewReader(c)
			for i, req := range tc.requests {
				if _, err := io.WriteString(c, req); err != nil {
					t.Fatal(err)
				}
				res, err := http.ReadResponse(br, nil)
				if err != nil {
					t.Fatalf("request %d: %v", i, err)
				}
				body, _ := io.ReadAll(res.Body)
				res.Body.Close()
				if res.StatusCode != tc.want[i] {
					t.Fatalf("request %d: status %d, want %d: %s", i, res.StatusCode, tc.want[i], body)
				}
				if tc.want[i] == 201 && !strings.Contains(string(body), `"token":"dkt_`) {
					t.Fatalf("request %d: no token in %s", i, body)
				}
			}
			if got := s.app.relay.Handoffs() - before; got != tc.handoffs {
				t.Errorf("%d connections handed to the server, want %d", got, tc.handoffs)
			}
		})
	}
}
