package sidecar

import (
	"testing"

	"github.com/direktiv/direktiv-authz/internal/classify"
)

// BenchmarkMetricsPerRequest is what the metrics add to one forwarded
// request with a minted token: the request counter under the family
// classify read, and the decision and upstream timings (four clock reads,
// three atomic adds).
func BenchmarkMetricsPerRequest(b *testing.B) {
	m := newMetrics(&app{engine: nil}, nil)
	r, err := classify.Read([]byte("GET"), []byte("/api/v2/namespaces/ns1/files/workflows/a.yaml"))
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			start := mono()
			m.decideRoute.Observe((mono() - start).Seconds())
			m.upstreamDone(m.clock(), nil)
			m.request(r.Family, 200)
		}
	})
}
