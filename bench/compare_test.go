//go:build linux

package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestMedian(t *testing.T) {
	for _, tt := range []struct {
		in   []float64
		want float64
	}{{nil, 0}, {[]float64{3}, 3}, {[]float64{5, 1, 3}, 3}, {[]float64{4, 1, 3, 2}, 2.5}} {
		if got := median(tt.in); got != tt.want {
			t.Errorf("median(%v) = %v, want %v", tt.in, got, tt.want)
		}
	}
}

func TestRedisBenchmarkOutput(t *testing.T) {
	// redis-benchmark -q redraws a progress line with \r, then prints the result.
	out := "SET: rps=0.0 (overall: nan) avg_msec=nan (overall: nan)\rSET: 98039.22 requests per second, p50=0.263 msec\n"
	m := redisRPSLine.FindAllStringSubmatch(out, -1)
	if len(m) != 1 || m[0][1] != "98039.22" {
		t.Fatalf("parsed %v", m)
	}
}

func TestJudge(t *testing.T) {
	tests := []struct {
		r    ratioReport
		want string
	}{
		{ratioReport{Value: 0.3, Goal: 0.25}, "PASS"},
		{ratioReport{Value: 0.2, Goal: 0.25}, "FAIL"},
		{ratioReport{Value: 1.2, Goal: 1.5, AtMost: true}, "PASS"},
		{ratioReport{Value: 1.6, Goal: 1.5, AtMost: true}, "FAIL"},
		{ratioReport{Value: 0, Goal: 1.5, AtMost: true}, "FAIL"}, // nothing measured is not fast
		{ratioReport{Value: 2, Goal: 1, Invalid: true}, "FAIL"},
		{ratioReport{Status: "SKIP", Goal: 1}, "SKIP"},
		{ratioReport{Value: 0.9, Info: true}, "INFO"},                // no goal: for reading
		{ratioReport{Value: 0.9, Info: true, Invalid: true}, "FAIL"}, // its runs failed too many requests
		{ratioReport{Value: 0.4, Goal: 0.5, Info: true}, "FAIL"},     // an information row with a goal is judged, but is no target
	}
	for _, tt := range tests {
		r := tt.r
		r.judge()
		if r.Status != tt.want {
			t.Errorf("%+v: %s, want %s", tt.r, r.Status, tt.want)
		}
	}
}

func TestMissedTargetIgnoresInformationRows(t *testing.T) {
	pass := ratioReport{ID: "R1", Status: "PASS"}
	infoFail := ratioReport{ID: "R2f", Status: "FAIL", Info: true}
	fail := ratioReport{ID: "R2", Status: "FAIL"}
	skip := ratioReport{ID: "R3", Status: "SKIP"}
	if missedTarget([]ratioReport{pass, infoFail, skip}) {
		t.Error("a failed information row counted as a missed target")
	}
	if !missedTarget([]ratioReport{pass, infoFail, fail}) {
		t.Error("a failed target was not counted")
	}
}

func TestGuardErrorsFailsARatioOverErroredRuns(t *testing.T) {
	c := &comparison{runs: []runReport{
		{Name: "sidecar forward", Loop: "closed", Round: 1, Requests: 1000, Failed: 500},
		{Name: "direct (stub)", Loop: "closed", Round: 1, Requests: 1000},
		{Name: "sidecar mint (token)", Loop: "closed", Round: 1, Requests: 1000, Failed: 5},
	}}
	r2 := ratioReport{ID: "R2", Numerator: "sidecar forward", Denominator: "direct (stub)", Value: 3, Goal: 0.5}
	c.guardErrors(&r2)
	r2.judge()
	if r2.Status != "FAIL" || !strings.Contains(r2.Note, "failed 500 of 1000") {
		t.Fatalf("R2 %s, note %q", r2.Status, r2.Note)
	}
	r1 := ratioReport{ID: "R1", Numerator: "sidecar mint (token)", Denominator: "redis-benchmark SET", Value: 0.5, Goal: 0.25}
	c.guardErrors(&r1)
	r1.judge()
	if r1.Status != "PASS" {
		t.Fatalf("R1 with 0.5%% errors: %s (%s)", r1.Status, r1.Note)
	}
}

func TestParseMix(t *testing.T) {
	m, err := parseMix(" mint=1, forward=8 ,pass=0")
	if err != nil || m["mint"] != 1 || m["forward"] != 8 || m["pass"] != 0 {
		t.Fatalf("%v %v", m, err)
	}
	for _, bad := range []string{"", "mint", "mint=x", "mint=-1", "direct=1", "mint=1,mint=2", "mint=5000"} {
		if _, err := parseMix(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
	sc := scenarioConfig{ns: "bench", token: "t", mintAs: "token", mix: map[string]int{"mint": 0, "pass": 0}}
	if _, err := sc.kinds("mixed"); err == nil {
		t.Error("a mix of zero weights accepted")
	}
}

func TestRedactArgs(t *testing.T) {
	got := strings.Join(redactArgs([]string{"-token", "dkt_x", "-admin-token=sec", "-c", "5", "--token=y"}), " ")
	if want := "-token REDACTED -admin-token=REDACTED -c 5 --token=REDACTED"; got != want {
		t.Fatalf("%q, want %q", got, want)
	}
}

func TestRequireLoopback(t *testing.T) {
	for _, ok := range []string{"127.0.0.1:80", "[::1]:8080", "localhost:1", "127.1.2.3:9"} {
		if err := requireLoopback(ok); err != nil {
			t.Errorf("%s: %v", ok, err)
		}
	}
	for _, bad := range []string{"10.0.0.1:80", "example.com:80", ":8080", "0.0.0.0:80", "nohost"} {
		if err := requireLoopback(bad); err == nil {
			t.Errorf("%s accepted", bad)
		}
	}
}

func TestNiceTicks(t *testing.T) {
	ts := niceTicks(0, 23000, 6, "%g")
	if len(ts) < 4 || ts[0].At != 0 || ts[1].At != 5000 {
		t.Fatalf("%v", ts)
	}
}

func TestAppendResults(t *testing.T) {
	path := filepath.Join(t.TempDir(), "RESULTS.md")
	if err := os.WriteFile(path, []byte("# Results\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	rep := &report{Created: time.Date(2026, 11, 27, 7, 0, 0, 0, time.UTC), Machine: machineInfo{NProc: 2, CPU: "AMD EPYC", GoVersion: "go1.26.8", OS: "linux/amd64"},
		Ratios: []ratioReport{{ID: "R2", Title: "enforced forwarding ÷ direct", Numerator: "sidecar forward", Denominator: "direct (stub)",
			NumValue: 20000, DenValue: 30000, Unit: "req/s", Value: 0.667, Goal: 0.5, Status: "PASS"}},
		Runs: []runReport{{Name: "sidecar forward", Loop: "closed", Throughput: 20000, Charted: true}, {Name: "sidecar forward", Round: 2, Charted: false}}}
	if err := appendResults(path, rep, "bench/out/x"); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(path)
	s := string(b)
	for _, want := range []string{"# Results\n", "## 2026-11-27 07:00 UTC", "nproc 2, AMD EPYC, go1.26.8", "| R2 enforced forwarding ÷ direct | 0.667 | ≥ 0.50 | PASS |", "| sidecar forward | closed | 20000 |"} {
		if !strings.Contains(s, want) {
			t.Errorf("RESULTS.md lacks %q:\n%s", want, s)
		}
	}
	if strings.Count(s, "| sidecar forward |") != 1 {
		t.Errorf("only the charted (median) round belongs in the table:\n%s", s)
	}
}
