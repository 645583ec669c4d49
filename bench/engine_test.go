//go:build linux

package main

import "testing"

func TestParseBenchOutput(t *testing.T) {
	out := `goos: linux
goarch: amd64
pkg: github.com/direktiv/direktiv-authz/engine
BenchmarkMint-2        	 8383530	       224.6 ns/op	       133.3 cpu-ns/op	       0 B/op	       0 allocs/op
BenchmarkRoute-2       	 4773776	       307.1 ns/op	       142.7 cpu-ns/op	       0 B/op	       0 allocs/op
BenchmarkBaseline/request-2         	   96728	     20066 ns/op	     11591 cpu-ns/op	    4042 B/op	      76 allocs/op
BenchmarkBaseline/method         	   59958	     20993 ns/op
PASS
ok  	github.com/direktiv/direktiv-authz/engine	9.1s
`
	got := parseBenchOutput(out)
	want := map[string]float64{"Mint": 224.6, "Route": 307.1, "Baseline/request": 20066, "Baseline/method": 20993}
	if len(got) != len(want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s: %v, want %v", k, got[k], v)
		}
	}
}
