//go:build linux

package main

import (
	"math"
	"math/bits"
	"time"
)

// histogram records latencies in nanoseconds in log-linear buckets, the
// layout of Gil Tene's HdrHistogram: every power of two is split into
// subCount equal buckets, so a bucket's width is at most 1/subCount of its
// lower bound. A value is reported as the middle of its bucket, which puts
// it within 1/(2*subCount) = 0.39% of the recorded value; values below
// subCount nanoseconds are exact. min, max, count and sum are kept exactly.
//
// A histogram is not safe for concurrent use: each load worker records into
// its own and they are merged at the end.
type histogram struct {
	counts []int64
	total  int64
	sum    float64 // ns, for the mean
	min    int64
	max    int64
}

const (
	subBits  = 7 // 128 buckets per power of two: bucket width ≤ 0.78% of its value
	subCount = 1 << subBits
	// maxBits bounds the recordable range to 2^44 ns (4.9 hours); larger
	// values are clamped to it (and max still records them exactly).
	maxBits = 44
)

func newHistogram() *histogram {
	return &histogram{counts: make([]int64, bucketIndex(1<<maxBits-1)+1), min: math.MaxInt64}
}

// bucketIndex maps a value to its bucket. Values below 2*subCount map to
// themselves; above, each power of two [2^k, 2^(k+1)) holds subCount buckets
// of width 2^(k-subBits).
func bucketIndex(v uint64) int {
	if v < 2*subCount {
		return int(v)
	}
	shift := bits.Len64(v) - 1 - subBits // ≥ 1
	return (shift+1)*subCount + int(v>>uint(shift)) - subCount
}

// bucketBounds is the inclusive value range [lo, hi] of bucket i.
func bucketBounds(i int) (lo, hi uint64) {
	if i < 2*subCount {
		return uint64(i), uint64(i)
	}
	shift := uint(i/subCount - 1)
	sub := uint64(i%subCount + subCount)
	lo = sub << shift
	return lo, lo + (1 << shift) - 1
}

// record adds one latency.
func (h *histogram) record(d time.Duration) {
	v := int64(d)
	if v < 0 {
		v = 0
	}
	if v < h.min {
		h.min = v
	}
	if v > h.max {
		h.max = v
	}
	u := uint64(v)
	if u >= 1<<maxBits {
		u = 1<<maxBits - 1
	}
	h.counts[bucketIndex(u)]++
	h.total++
	h.sum += float64(v)
}

// merge adds every value recorded in o.
func (h *histogram) merge(o *histogram) {
	if o.total == 0 {
		return
	}
	for i, c := range o.counts {
		h.counts[i] += c
	}
	h.total += o.total
	h.sum += o.sum
	if o.min < h.min {
		h.min = o.min
	}
	if o.max > h.max {
		h.max = o.max
	}
}

func (h *histogram) count() int64 { return h.total }

// mean is the exact mean; 0 when empty.
func (h *histogram) mean() time.Duration {
	if h.total == 0 {
		return 0
	}
	return time.Duration(h.sum / float64(h.total))
}

// maxValue and minValue are exact; 0 when empty.
func (h *histogram) maxValue() time.Duration { return time.Duration(h.max) }

func (h *histogram) minValue() time.Duration {
	if h.total == 0 {
		return 0
	}
	return time.Duration(h.min)
}

// quantile is the value at or below which a fraction q (0..1) of the
// recorded values lie: the value of rank ceil(q*count), reported as the
// middle of its bucket and kept within [min, max]. 0 when empty.
func (h *histogram) quantile(q float64) time.Duration {
	if h.total == 0 {
		return 0
	}
	if q <= 0 {
		return time.Duration(h.min)
	}
	if q >= 1 {
		return time.Duration(h.max)
	}
	rank := int64(math.Ceil(q * float64(h.total)))
	if rank < 1 {
		rank = 1
	}
	var seen int64
	for i, c := range h.counts {
		seen += c
		if seen >= rank {
			lo, hi := bucketBounds(i)
			v := int64(lo + (hi-lo)/2)
			v = max(v, h.min)
			v = min(v, h.max)
			return time.Duration(v)
		}
	}
	return time.Duration(h.max)
}

// percentileSpectrum is the latency at quantiles spread evenly on the
// 1/(1-q) log scale HdrHistogram plots use (0, 0.5, 0.75, 0.875, ...), ten
// points per halving of the tail, up to the largest quantile the sample size
// supports, then the max. Each point is (q, latency).
func (h *histogram) percentileSpectrum() [][2]float64 {
	if h.total == 0 {
		return nil
	}
	var out [][2]float64
	// The tail beyond q holds (1-q)*count values; stop when it is under one.
	for step := 0; step <= 10*40; step++ {
		q := 1 - math.Pow(2, -float64(step)/10)
		if (1-q)*float64(h.total) < 1 {
			break
		}
		out = append(out, [2]float64{q, float64(h.quantile(q))})
	}
	return append(out, [2]float64{1, float64(h.max)})
}
