package main

import (
	"runtime"
	"syscall"
	"testing"
	"time"
)

func TestParseProcStat(t *testing.T) {
	// A command name with spaces and a parenthesis, as the kernel writes it.
	line := "4242 (nginx: worker (x)) S 4200 4200 4200 0 -1 4194624 100 0 0 0 1234 567 0 0 20 0 1 0 100 0 0"
	pgrp, ticks, ok := parseProcStat(line)
	if !ok || pgrp != 4200 || ticks != 1234+567 {
		t.Fatalf("parseProcStat = %d, %d, %v; want 4200, 1801, true", pgrp, ticks, ok)
	}
	if _, _, ok := parseProcStat("garbage"); ok {
		t.Fatal("parseProcStat accepted a line without a command name")
	}
}

// The generator's own CPU (RUSAGE_SELF) and this test process's group from
// /proc both grow while it burns CPU, and perRequest divides the growth.
func TestSnapshotCPU(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("/proc is Linux only")
	}
	groups := []cpuGroup{{name: "generator"}, {name: "self", pgid: syscall.Getpgrp()}, {name: "nobody", pgid: 1 << 30}}
	before := snapshotCPU(groups)
	if _, ok := before["nobody"]; ok {
		t.Fatal("a process group with no process has a CPU time")
	}
	end := time.Now().Add(100 * time.Millisecond)
	for x := 0; time.Now().Before(end); x++ {
		_ = x * x
	}
	after := snapshotCPU(groups)
	per := perRequest(before, after, 1000)
	// 100 ms of CPU over 1000 requests is 100 µs each; ticks are 10 ms.
	for _, name := range []string{"generator", "self"} {
		if us := per[name]; us < 50 || us > 400 {
			t.Errorf("%s: %.1f µs per request, want about 100 (%v)", name, us, per)
		}
	}
	if got := cpuText(map[string]float64{"generator": 27.04, "stub": 24.94, "sidecar": 56.1}); got != "sidecar 56.1, stub 24.9, generator 27.0" {
		t.Errorf("cpuText = %q", got)
	}
}
