//go:build linux

package main

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// CPU cost per request: what each process of a compare run (the generator,
// the sidecar, the stub, Redis, nginx) spent of the machine's CPU per
// request measured, user plus system time, over the measured window of a
// run. On a shared machine it moves less than throughput does, and it says
// where the time goes: a proxy that costs more CPU per request than another
// loses to it as soon as the cores are busy.
//
// Linux only (/proc/<pid>/stat, in clock ticks of 1/100 s: USER_HZ, which is
// 100 on every Linux architecture Go runs on); elsewhere the figures are
// absent. A tick is 10 ms, so a run needs thousands of requests for the
// figure to mean anything: at 5,000 req/s over 8 s one tick is 0.25 µs.

const clockTick = 10 * time.Millisecond

// cpuGroup is a process group (a server the compare run started: the
// group holds nginx's workers too) or, with pgid 0, the generator itself.
type cpuGroup struct {
	name string
	pgid int
}

// cpuSnapshot is the CPU time used so far by each group.
type cpuSnapshot map[string]time.Duration

// snapshotCPU reads the CPU time of every group; a group it cannot read is
// left out (so its figure is absent, never zero).
func snapshotCPU(groups []cpuGroup) cpuSnapshot {
	out := cpuSnapshot{}
	need := map[int]string{}
	for _, g := range groups {
		if g.pgid == 0 {
			var ru syscall.Rusage
			if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err == nil {
				out[g.name] = time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
			}
			continue
		}
		need[g.pgid] = g.name
	}
	if len(need) == 0 {
		return out
	}
	stats, err := filepath.Glob("/proc/[0-9]*/stat")
	if err != nil {
		return out
	}
	found := map[string]bool{}
	for _, p := range stats {
		b, err := os.ReadFile(p)
		if err != nil {
			continue // the process ended meanwhile
		}
		pgrp, ticks, ok := parseProcStat(string(b))
		if !ok {
			continue
		}
		if name, ok := need[pgrp]; ok {
			out[name] += time.Duration(ticks) * clockTick
			found[name] = true
		}
	}
	for _, name := range need {
		if !found[name] {
			delete(out, name)
		}
	}
	return out
}

// parseProcStat reads the process group and utime+stime (in ticks) from a
// /proc/<pid>/stat line. The command name (field 2) may hold spaces and
// parentheses, so fields are counted after its last ')'.
func parseProcStat(line string) (pgrp int, ticks int64, ok bool) {
	i := strings.LastIndexByte(line, ')')
	if i < 0 {
		return 0, 0, false
	}
	f := strings.Fields(line[i+1:])
	// f[0] is field 3 (state): pgrp is field 5, utime 14, stime 15.
	if len(f) < 13 {
		return 0, 0, false
	}
	pg, err1 := strconv.Atoi(f[2])
	ut, err2 := strconv.ParseInt(f[11], 10, 64)
	st, err3 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil || err3 != nil {
		return 0, 0, false
	}
	return pg, ut + st, true
}

// perRequest turns the CPU used between two snapshots into µs per request.
// A group missing from either snapshot is left out; so are groups that
// spent less than 0.05 µs per request (idle during this run).
func perRequest(before, after cpuSnapshot, requests int64) map[string]float64 {
	if requests <= 0 {
		return nil
	}
	out := map[string]float64{}
	for name, a := range after {
		b, ok := before[name]
		if !ok {
			continue
		}
		if us := float64((a - b).Microseconds()) / float64(requests); us >= 0.05 {
			out[name] = us
		}
	}
	if len(out) == 0 {
		return nil
	}
	return out
}

// cpuText formats per-request CPU as "sidecar 56.1, stub 24.9, ...", the
// generator last, the others by name.
func cpuText(m map[string]float64) string {
	names := make([]string, 0, len(m))
	for n := range m {
		if n != "generator" {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	if _, ok := m["generator"]; ok {
		names = append(names, "generator")
	}
	parts := make([]string, len(names))
	for i, n := range names {
		parts[i] = fmt.Sprintf("%s %.1f", n, m[n])
	}
	return strings.Join(parts, ", ")
}
