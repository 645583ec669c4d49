//go:build linux

package main

import (
	"os/exec"
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

// The generator's own CPU (RUSAGE_SELF) and a process group's from /proc
// both count CPU time, not wall time, and perRequest divides the growth.
//
// The group is a busy child in a process group of its own: the test
// binary's group also holds the go command and every other package's test
// binary running at the same time, whose CPU no bound could predict.
func TestSnapshotCPU(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("/proc is Linux only")
	}
	busy := exec.Command("/bin/sh", "-c", "while :; do :; done")
	busy.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := busy.Start(); err != nil {
		t.Skip("cannot start /bin/sh:", err)
	}
	defer func() { busy.Process.Kill(); busy.Wait() }()

	groups := []cpuGroup{{name: "generator"}, {name: "busy", pgid: busy.Process.Pid}, {name: "nobody", pgid: 1 << 30}}
	before := snapshotCPU(groups)
	if _, ok := before["nobody"]; ok {
		t.Fatal("a process group with no process has a CPU time")
	}
	t0 := time.Now()
	// Burn 100 ms of this process's CPU, however long that takes.
	self := func() time.Duration { return snapshotCPU(groups[:1])["generator"] }
	for start := self(); self()-start < 100*time.Millisecond; {
	}
	for time.Since(t0) < 500*time.Millisecond { // give the child time to run too
		time.Sleep(10 * time.Millisecond)
	}
	after := snapshotCPU(groups)
	wall := time.Since(t0)
	per := perRequest(before, after, 1000)
	// 100 ms of CPU over 1000 requests is 100 µs each.
	if us := per["generator"]; us < 100 || us > 250 {
		t.Errorf("generator: %.1f µs per request, want 100 to 250 (%v)", us, per)
	}
	// A single-threaded shell uses at most the wall time, plus a 10 ms tick;
	// busy-looping for half a second it gets at least one tick.
	if us, max := per["busy"], float64(wall.Microseconds()+10_000)/1000; us <= 0 || us > max {
		t.Errorf("busy child: %.1f µs per request, want above 0 and at most %.1f (%v)", us, max, per)
	}
	if got := cpuText(map[string]float64{"generator": 27.04, "stub": 24.94, "sidecar": 56.1}); got != "sidecar 56.1, stub 24.9, generator 27.0" {
		t.Errorf("cpuText = %q", got)
	}
}
