//go:build linux

package main

import (
	"bufio"
	"context"
	"strconv"
	"strings"
	"time"
)

// goalEngine bounds one decision's cost against a one-rule indexed Rego
// query benchmarked in the same go test run (the engine target).
const goalEngine = 3.0

// engineBenchmarks are the engine's Go benchmarks compare runs: the memoised
// decisions a busy sidecar makes, the same without the memo (a question asked
// for the first time under a policy set), and the one-rule baseline.
const engineBenchmarks = "^Benchmark(Mint|Route|MintEval|RouteEval|Baseline)$"

// engineRatios runs the engine's benchmarks (go test -bench, from the
// module's source) and returns E1 and E2, one mint and one route decision ÷
// the one-rule query on the same input, and the same without the memo as
// information. Without the source or the go command they are skipped.
func (c *comparison) engineRatios(ctx context.Context) []ratioReport {
	c.logf("engine: go test -run '^$' -bench '%s' -benchtime 1s ./engine", engineBenchmarks)
	out, err := commandOutput(ctx, 5*time.Minute, "go", "test", "-run", "^$", "-bench", engineBenchmarks, "-benchtime", "1s", "./engine")
	ns := parseBenchOutput(out)
	base, ok := ns["Baseline/request"]
	if err != nil || !ok || base <= 0 {
		c.note("the engine benchmarks did not run (%v); E1 and E2 are skipped", err)
		return []ratioReport{
			{ID: "E1", Title: "one mint decision ÷ one-rule query", Goal: goalEngine, AtMost: true, Status: "SKIP", Note: "go test -bench ./engine did not run"},
			{ID: "E2", Title: "one route decision ÷ one-rule query", Goal: goalEngine, AtMost: true, Status: "SKIP", Note: "go test -bench ./engine did not run"},
		}
	}
	r := func(id, title, name string) ratioReport {
		v, ok := ns[name]
		rr := ratioReport{ID: id, Title: title, Numerator: "Benchmark" + name, Denominator: "BenchmarkBaseline/request", Unit: "ns/op",
			NumValue: v, DenValue: base, Value: v / base, Goal: goalEngine, AtMost: true}
		if !ok {
			rr.Status, rr.Note = "SKIP", "Benchmark"+name+" did not report"
		}
		return rr
	}
	rs := []ratioReport{
		r("E1", "one mint decision ÷ one-rule query", "Mint"),
		r("E2", "one route decision ÷ one-rule query", "Route"),
		asInfo(r("E1'", "mint decision, first time (no memo; info)", "MintEval")),
		asInfo(r("E2'", "route decision, first time (no memo; info)", "RouteEval")),
	}
	for _, x := range rs {
		c.logf("  %-4s %-45s %.0f / %.0f ns/op = %.3f", x.ID, x.Title, x.NumValue, x.DenValue, x.Value)
	}
	return rs
}

// parseBenchOutput reads go test -bench output: benchmark name (without the
// "Benchmark" prefix and the -GOMAXPROCS suffix) → ns/op.
func parseBenchOutput(out string) map[string]float64 {
	ns := map[string]float64{}
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 4 || !strings.HasPrefix(f[0], "Benchmark") {
			continue
		}
		name := strings.TrimPrefix(f[0], "Benchmark")
		if i := strings.LastIndexByte(name, '-'); i > 0 {
			if _, err := strconv.Atoi(name[i+1:]); err == nil {
				name = name[:i]
			}
		}
		for i := 2; i+1 < len(f); i++ {
			if f[i+1] == "ns/op" {
				if v, err := strconv.ParseFloat(f[i], 64); err == nil {
					ns[name] = v
				}
				break
			}
		}
	}
	return ns
}
