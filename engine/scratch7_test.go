package engine

import "testing"

func BenchmarkScratchInput(b *testing.B) {
	s := MustNew(b, Options{}).current.Load()
	segs, _ := splitPath(benchRoute.Path)
	b.Run("caller", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			s.callerTerm(benchRoute.Caller)
		}
	})
	b.Run("routeInput", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			s.routeInput(benchRoute.Caller, "POST", segs, "execute")
		}
	})
	b.Run("split+op", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			splitPath(benchRoute.Path)
			opParam(benchRoute.Query)
		}
	})
}
