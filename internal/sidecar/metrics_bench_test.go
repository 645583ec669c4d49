package sidecar

import "testing"

// BenchmarkMetricsPerRequest is what the metrics add to one forwarded
// request with a minted token: the route family, the request counter, and
// the decision and upstream timings (four clock reads, three atomic adds).
func BenchmarkMetricsPerRequest(b *testing.B) {
	m := newMetrics(&app{engine: nil}, nil)
	method, path := []byte("GET"), []byte("/api/v2/namespaces/ns1/files/workflows/a.yaml")
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			start := mono()
			m.decideRoute.Observe((mono() - start).Seconds())
			m.upstreamDone(m.clock(), nil)
			m.request(routeFamily(method, path), 200)
		}
	})
}
