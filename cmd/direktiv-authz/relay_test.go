package main

import (
	"strings"
	"testing"
)

// TestRelayOwnEndpointsKeepForwardingConnections, with the in-memory dev
// store, where the loops do not serve mints themselves (with Redis they do:
// relay_mint_test.go): a connection that has forwarded before stays on the
// event loops when it mints (the mint is served off the loop: no handoff);
// one that starts with a mint is handed to the server for good. Either way
// each request gets its status, and each mint its secret.
func TestRelayOwnEndpointsKeepForwardingConnections(t *testing.T) {
	up := startUpstream(t)
	s := startForwarder(t, up)
	mint := rawMint(mintTarget("ns1"), testAdminToken, `{"policies":["variablesView"]}`)
	forward := "GET /api/version HTTP/1.1\r\nHost: x\r\nDirektiv-Token: " + testAdminToken + "\r\n\r\n"

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
			c := dialRaw(t, s.app.addr())
			for i, req := range tc.requests {
				r := c.roundTrip(t, req)
				if r.status != tc.want[i] {
					t.Fatalf("request %d: status %d, want %d: %s", i, r.status, tc.want[i], r.body)
				}
				if tc.want[i] == 201 && !strings.Contains(string(r.body), `"token":"dkt_`) {
					t.Fatalf("request %d: no token in %s", i, r.body)
				}
			}
			if got := s.app.relay.Handoffs() - before; got != tc.handoffs {
				t.Errorf("%d connections handed to the server, want %d", got, tc.handoffs)
			}
		})
	}
}
