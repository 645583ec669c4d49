package isoduration

import (
	"strings"
	"testing"
	"time"
)

func TestISODurationAddTo(t *testing.T) {
	at := func(s string) time.Time {
		t.Helper()
		v, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	cases := []struct {
		dur, from, want string
	}{
		{"P1Y", "2027-03-01T00:00:00Z", "2028-03-01T00:00:00Z"}, // 366 days: 2028 is a leap year
		{"P1Y", "2026-03-01T00:00:00Z", "2027-03-01T00:00:00Z"}, // 365 days
		{"P1M", "2027-01-31T10:00:00Z", "2027-02-28T10:00:00Z"}, // clamped to the month's end
		{"P1M", "2028-01-31T10:00:00Z", "2028-02-29T10:00:00Z"},
		{"P1Y", "2028-02-29T00:00:00Z", "2029-02-28T00:00:00Z"},
		{"P13M", "2027-01-15T00:00:00Z", "2028-02-15T00:00:00Z"},
		{"P2W", "2027-12-25T00:00:00Z", "2028-01-08T00:00:00Z"},
		{"P1D", "2027-03-27T12:00:00Z", "2027-03-28T12:00:00Z"},
		{"PT36H", "2027-03-01T00:00:00Z", "2027-03-02T12:00:00Z"},
		{"PT1.5H", "2027-03-01T00:00:00Z", "2027-03-01T01:30:00Z"},
		{"PT1.5S", "2027-03-01T00:00:00Z", "2027-03-01T00:00:01.5Z"},
		{"P1Y2M3DT4H5M6S", "2027-01-31T00:00:00Z", "2028-04-03T04:05:06Z"},
		{"P1DT1H", "2027-03-01T23:30:00Z", "2027-03-03T00:30:00Z"},
	}
	for _, tc := range cases {
		t.Run(tc.dur+"@"+tc.from, func(t *testing.T) {
			d, err := Parse(tc.dur)
			if err != nil {
				t.Fatal(err)
			}
			got, ok := d.AddTo(at(tc.from))
			if !ok || !got.Equal(at(tc.want)) {
				t.Errorf("%s + %s = %s (ok %v), want %s", tc.from, tc.dur, got.Format(time.RFC3339Nano), ok, tc.want)
			}
		})
	}
}

func TestISODurationRejects(t *testing.T) {
	cases := map[string]string{
		"":                 "empty",
		"P":                "no components",
		"PT":               "T must be followed",
		"P1DT":             "T must be followed",
		"P0D":              "zero",
		"PT0S":             "zero",
		"PT0.5S":           "shorter than one second",
		"P0Y0M":            "zero",
		"-P1D":             "negative",
		"1Y":               "must start with P",
		"p1y":              "must start with P",
		"P1D1D":            "out of place",
		"P1D1Y":            "out of place",
		"P1H":              "out of place",
		"PT1D":             "out of place",
		"P1.5Y":            "whole numbers",
		"P0.5D":            "whole numbers",
		"P1":               "no unit",
		"P.5D":             "expected a number",
		"P5.D":             "expected a number",
		"P1.2.3D":          "expected a number",
		"PTT1H":            "T appears twice",
		"P1Y ":             "expected a number",
		"P1,5D":            "unexpected character",
		"P١D":              "expected a number",
		"P1e3D":            "unexpected character",
		"P99999999999999D": "too long",
	}
	for in, want := range cases {
		t.Run(in, func(t *testing.T) {
			_, err := Parse(in)
			if err == nil {
				t.Fatalf("%q accepted", in)
			}
			if !strings.Contains(err.Error(), want) {
				t.Errorf("%q: %v, want it to mention %q", in, err, want)
			}
		})
	}
}

func TestISODurationOverflowIsLongerThanAnyMaximum(t *testing.T) {
	for _, in := range []string{"P99999Y", "P999999999999M", "PT999999999999H", "P99999999W"} {
		d, err := Parse(in)
		if err != nil {
			t.Fatalf("%s: %v", in, err)
		}
		if _, ok := d.AddTo(time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC)); ok {
			t.Errorf("%s: AddTo reported ok", in)
		}
	}
}

func FuzzISODuration(f *testing.F) {
	for _, s := range []string{"P1Y", "P30D", "PT12H", "P1Y2M3W4DT5H6M7.5S", "P", "PT", "-P1D", "P1DT", "P1.5Y", "PT0.000001S", "P9999Y", "P1M"} {
		f.Add(s)
	}
	from := time.Date(2027, 3, 1, 0, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, s string) {
		d, err := Parse(s)
		if err != nil {
			return
		}
		if s == "" || s[0] != 'P' {
			t.Fatalf("accepted %q", s)
		}
		got, ok := d.AddTo(from)
		if ok && !got.After(from) {
			t.Fatalf("%q: %s is not after %s", s, got, from)
		}
	})
}
