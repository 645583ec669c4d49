package metrics

import (
	"testing"

	"github.com/direktiv/direktiv-authz/internal/classify"
	"github.com/direktiv/direktiv-authz/internal/relay"
)

// BenchmarkMetricsPerRequest is what the metrics add to one forwarded
// request with a minted token: the request counter under the family
// classify read, and the decision and upstream timings (four clock reads,
// three atomic adds).
func BenchmarkMetricsPerRequest(b *testing.B) {
	m := New(Sources{})
	r, err := classify.Read([]byte("GET"), []byte("/api/v2/namespaces/ns1/files/workflows/a.yaml"))
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			start := Mono()
			m.decideRoute.Observe((Mono() - start).Seconds())
			m.UpstreamDone(m.Clock(), relay.NoFailure)
			m.Request(r.Family, 200)
		}
	})
}
