package sidecar

import (
	"testing"

	"github.com/direktiv/direktiv-authz/internal/relay"
)

// BenchmarkRelayDecide measures the event loops' decision on a forwarded
// request with a minted token: authentication against the token cache, the
// route decision and the token swap, without the network.
func BenchmarkRelayDecide(b *testing.B) {
	up := startUpstream(b)
	s, _ := startEnforcer(b, up.URL(), []string{"--log-level", "error"}, "DIREKTIV_AUTHZ_UPSTREAM_API_KEY="+testUpstreamKey)
	tok := []byte(s.mintToken(b, "ns1", "variablesView"))
	h := relayHandler{s.app}
	header := "Host: sidecar\r\nAccept: */*\r\nDirektiv-Api-Key: " + string(tok) + "\r\nUser-Agent: bench\r\n"
	r := relay.Request{Method: []byte("GET"), Target: []byte("/api/namespaces/ns1/vars?limit=10"), Tokens: [][]byte{tok}, Header: []byte(header)}
	b.ReportAllocs()
	for b.Loop() {
		r.Note = nil
		v := h.Decide(&r)
		if v.Action == relay.Wait { // the cached record expired (--token-cache-ttl)
			r.Note = v.Wait()
			v = h.Decide(&r)
		}
		if v.Action != relay.Forward || v.Token != relay.TokenSet {
			b.Fatalf("verdict %+v, want a forward with the upstream key", v)
		}
	}
}
