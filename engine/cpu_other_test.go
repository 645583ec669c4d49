//go:build !unix

package engine

// processCPU: not measured here; the benchmarks report no cpu-ns/op.
func processCPU() int64 { return 0 }
