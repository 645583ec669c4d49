//go:build linux

package main

import (
	"math"
	"time"

	hdrhistogram "github.com/HdrHistogram/hdrhistogram-go"
)

// histogram records latencies in nanoseconds in an HdrHistogram with three
// significant digits: a percentile is reported within 0.1% of the recorded
// value, values below 2048 ns exactly. Around it min, max, count and sum are
// kept exactly, so min, max and mean are exact and a percentile never lies
// outside [min, max].
//
// A histogram is not safe for concurrent use: each load worker records into
// its own and they are merged at the end. Each takes about 290 KB.
type histogram struct {
	h   *hdrhistogram.Histogram
	sum float64 // ns, for the mean
	min int64
	max int64
}

const (
	sigDigits = 3
	// maxTrackable bounds the recordable range to 2^44 ns (4.9 hours); larger
	// values are counted as it (and max still records them exactly).
	maxTrackable = 1<<44 - 1
)

func newHistogram() *histogram {
	return &histogram{h: hdrhistogram.New(1, maxTrackable, sigDigits), min: math.MaxInt64}
}

// record adds one latency; a negative one counts as 0.
func (h *histogram) record(d time.Duration) {
	v := max(int64(d), 0)
	h.min = min(h.min, v)
	h.max = max(h.max, v)
	h.sum += float64(v)
	_ = h.h.RecordValue(min(v, maxTrackable)) // in range: cannot fail
}

// merge adds every value recorded in o.
func (h *histogram) merge(o *histogram) {
	if o.count() == 0 {
		return
	}
	h.h.Merge(o.h) // the same range: drops nothing
	h.sum += o.sum
	h.min = min(h.min, o.min)
	h.max = max(h.max, o.max)
}

func (h *histogram) count() int64 { return h.h.TotalCount() }

// mean is the exact mean; 0 when empty.
func (h *histogram) mean() time.Duration {
	if h.count() == 0 {
		return 0
	}
	return time.Duration(h.sum / float64(h.count()))
}

// maxValue and minValue are exact; 0 when empty.
func (h *histogram) maxValue() time.Duration { return time.Duration(h.max) }

func (h *histogram) minValue() time.Duration {
	if h.count() == 0 {
		return 0
	}
	return time.Duration(h.min)
}

// quantile is the value at or below which a fraction q (0..1) of the
// recorded values lie, as HdrHistogram reports it (the highest value
// equivalent to the value of rank q·count, rounded), kept within [min, max].
// 0 when empty.
func (h *histogram) quantile(q float64) time.Duration {
	if h.count() == 0 {
		return 0
	}
	if q <= 0 {
		return time.Duration(h.min)
	}
	if q >= 1 {
		return time.Duration(h.max)
	}
	v := h.h.ValueAtQuantile(q * 100)
	return time.Duration(min(max(v, h.min), h.max))
}

// percentileSpectrum is the latency at quantiles spread evenly on the
// 1/(1-q) log scale HdrHistogram plots use (0, 0.5, 0.75, 0.875, ...), ten
// points per halving of the tail, up to the largest quantile the sample size
// supports, then the max. Each point is (q, latency).
func (h *histogram) percentileSpectrum() [][2]float64 {
	if h.count() == 0 {
		return nil
	}
	var out [][2]float64
	// The tail beyond q holds (1-q)*count values; stop when it is under one.
	for step := 0; step <= 10*40; step++ {
		q := 1 - math.Pow(2, -float64(step)/10)
		if (1-q)*float64(h.count()) < 1 {
			break
		}
		out = append(out, [2]float64{q, float64(h.quantile(q))})
	}
	return append(out, [2]float64{1, float64(h.max)})
}
