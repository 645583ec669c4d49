//go:build linux

package main

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

// exactQuantile is the value of the rank HdrHistogram reports for q in
// sorted vs: q·n rounded to the nearest, at least 1.
func exactQuantile(sorted []int64, q float64) int64 {
	rank := int(q*float64(len(sorted)) + 0.5)
	rank = min(max(rank, 1), len(sorted))
	return sorted[rank-1]
}

func TestQuantilesWithinThreeSignificantDigits(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	dists := []struct {
		name string
		draw func() int64
	}{
		{"uniform 0-100µs", func() int64 { return rng.Int64N(100_000) }},
		{"lognormal around 300µs", func() int64 { return int64(math.Exp(rng.NormFloat64()*0.8 + math.Log(300_000))) }},
		{"bimodal 50µs and 40ms", func() int64 {
			if rng.IntN(100) == 0 {
				return 40_000_000 + rng.Int64N(5_000_000)
			}
			return 50_000 + rng.Int64N(10_000)
		}},
		{"tiny exact values", func() int64 { return rng.Int64N(200) }},
		{"seconds", func() int64 { return int64(time.Second) + rng.Int64N(int64(10*time.Second)) }},
	}
	qs := []float64{0.001, 0.1, 0.5, 0.9, 0.99, 0.999, 0.9999}
	for _, d := range dists {
		t.Run(d.name, func(t *testing.T) {
			h := newHistogram()
			vs := make([]int64, 200_000)
			var sum float64
			for i := range vs {
				vs[i] = d.draw()
				sum += float64(vs[i])
				h.record(time.Duration(vs[i]))
			}
			slices.Sort(vs)
			if h.count() != int64(len(vs)) {
				t.Fatalf("count %d, want %d", h.count(), len(vs))
			}
			if h.minValue() != time.Duration(vs[0]) || h.maxValue() != time.Duration(vs[len(vs)-1]) {
				t.Fatalf("min/max %v/%v, want %v/%v", h.minValue(), h.maxValue(), time.Duration(vs[0]), time.Duration(vs[len(vs)-1]))
			}
			if want := sum / float64(len(vs)); math.Abs(float64(h.mean())-want) > 1 {
				t.Fatalf("mean %v, want %v", h.mean(), time.Duration(want))
			}
			for _, q := range qs {
				want := exactQuantile(vs, q)
				got := int64(h.quantile(q))
				// Three significant digits: a bucket is at most 1/1024 of its values wide.
				if diff := math.Abs(float64(got - want)); diff > float64(want)/1024 {
					t.Errorf("q=%v: got %d, want %d (error %.3f%%)", q, got, want, 100*diff/float64(want))
				}
			}
		})
	}
}

func TestMergeEqualsRecordingAll(t *testing.T) {
	a, b, all := newHistogram(), newHistogram(), newHistogram()
	for i := int64(1); i <= 10_000; i++ {
		v := time.Duration(i * i)
		if i%3 == 0 {
			a.record(v)
		} else {
			b.record(v)
		}
		all.record(v)
	}
	a.merge(b)
	a.merge(newHistogram()) // merging an empty one changes nothing
	for _, q := range []float64{0, 0.25, 0.5, 0.99, 1} {
		if a.quantile(q) != all.quantile(q) {
			t.Errorf("q=%v: merged %v, want %v", q, a.quantile(q), all.quantile(q))
		}
	}
	if a.count() != all.count() || a.minValue() != all.minValue() || a.maxValue() != all.maxValue() || a.mean() != all.mean() {
		t.Errorf("merged count/min/max/mean %d/%v/%v/%v, want %d/%v/%v/%v",
			a.count(), a.minValue(), a.maxValue(), a.mean(), all.count(), all.minValue(), all.maxValue(), all.mean())
	}
}

func TestEmptyAndExtremes(t *testing.T) {
	h := newHistogram()
	if h.quantile(0.99) != 0 || h.mean() != 0 || h.minValue() != 0 || h.maxValue() != 0 || h.percentileSpectrum() != nil {
		t.Fatal("an empty histogram reports non-zero values")
	}
	h.record(-5)             // clamped to 0
	h.record(10 * time.Hour) // beyond the recordable range: counted at its top, max exact
	if h.count() != 2 || h.minValue() != 0 || h.maxValue() != 10*time.Hour || h.mean() != 5*time.Hour {
		t.Fatalf("count/min/max/mean %d/%v/%v/%v", h.count(), h.minValue(), h.maxValue(), h.mean())
	}
	if got := h.quantile(1); got != 10*time.Hour {
		t.Fatalf("q=1: %v, want 10h", got)
	}
	if got := h.quantile(0.5); got != 0 {
		t.Fatalf("q=0.5: %v, want 0", got)
	}
	// The clamped value is reported at the top of the range, within its precision.
	if got, top := h.quantile(0.99), time.Duration(maxTrackable); got < top-top/1024 || got > 10*time.Hour {
		t.Fatalf("q=0.99: %v, want about %v", got, top)
	}

	// A single value is every percentile, exactly: the report keeps them within [min, max].
	one := newHistogram()
	one.record(123456789 * time.Nanosecond)
	for _, q := range []float64{0, 0.001, 0.5, 0.999, 1} {
		if got := one.quantile(q); got != 123456789 {
			t.Errorf("one value, q=%v: %v, want 123.456789ms", q, got)
		}
	}
}

func TestPercentileSpectrum(t *testing.T) {
	h := newHistogram()
	for i := 1; i <= 1000; i++ {
		h.record(time.Duration(i) * time.Microsecond)
	}
	sp := h.percentileSpectrum()
	if sp[0][0] != 0 || sp[len(sp)-1][0] != 1 || sp[len(sp)-1][1] != float64(time.Millisecond) {
		t.Fatalf("spectrum ends %v .. %v", sp[0], sp[len(sp)-1])
	}
	for i := 1; i < len(sp); i++ {
		if sp[i][0] <= sp[i-1][0] || sp[i][1] < sp[i-1][1] {
			t.Fatalf("spectrum not increasing at %d: %v then %v", i, sp[i-1], sp[i])
		}
	}
	// 1000 values support quantiles up to 0.999: about 100 points of ten per halving.
	if len(sp) < 90 || len(sp) > 102 {
		t.Fatalf("spectrum has %d points", len(sp))
	}
}

func BenchmarkHistogramRecord(b *testing.B) {
	h := newHistogram()
	for i := 0; b.Loop(); i++ {
		h.record(time.Duration(i&0xfffff) * 97)
	}
}
