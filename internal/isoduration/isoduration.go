// Package isoduration reads ISO 8601 durations (P30D, PT12H) and adds them
// to a time as calendar arithmetic. It imports nothing of the project.
package isoduration

import (
	"errors"
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/sosodev/duration"
)

// Duration is a validated, positive ISO 8601 duration.
//
// Years, months, weeks and days are calendar units: they are added to a date
// in UTC, so P1Y from 2027-03-01 ends on 2028-03-01 (366 days later). When a
// month is added to a day the target month lacks (Jan 31 + P1M), the result
// is clamped to the month's last day (Feb 28 or 29), as ISO 8601 date
// arithmetic, java.time and PostgreSQL do, rather than spilling into the next
// month. Hours, minutes and seconds are elapsed time. Calendar units must be
// whole numbers; the time part may have a fraction (PT1.5H).
type Duration struct {
	text string
	d    duration.Duration
}

func (d Duration) String() string { return d.text }

// Bounds that keep arithmetic exact: no token lives for ten thousand years,
// and the time part stays far inside time.Duration's range.
const (
	maxCalendarYears = 10000
	maxTimeSeconds   = 100 * 366 * 24 * 3600
)

// Parse accepts the strict ISO 8601 duration grammar
// PnYnMnWnDTnHnMnS (components in that order, each at most once, at least
// one, a T only before a time component) with a positive total. The error
// says what was wrong and what is accepted.
func Parse(s string) (Duration, error) {
	if err := checkISOSyntax(s); err != nil {
		return Duration{}, err
	}
	d, err := duration.Parse(s)
	if err != nil {
		return Duration{}, fmt.Errorf("not an ISO 8601 duration (%v); use e.g. P1Y, P30D, PT12H", err)
	}
	for _, v := range []float64{d.Years, d.Months, d.Weeks, d.Days} {
		if v != math.Trunc(v) {
			return Duration{}, errors.New("years, months, weeks and days must be whole numbers; use a fraction only in hours, minutes or seconds (e.g. PT36H)")
		}
	}
	if d.Years == 0 && d.Months == 0 && d.Weeks == 0 && d.Days == 0 && d.Hours == 0 && d.Minutes == 0 && d.Seconds == 0 {
		return Duration{}, errors.New("the duration is zero; give a positive duration, e.g. P30D")
	}
	if d.Years == 0 && d.Months == 0 && d.Weeks == 0 && d.Days == 0 && d.Hours*3600+d.Minutes*60+d.Seconds < 1 {
		return Duration{}, errors.New("the duration is shorter than one second; give e.g. PT1H")
	}
	return Duration{text: s, d: *d}, nil
}

// checkISOSyntax is the grammar check sosodev/duration leaves out (it takes
// "P", "P1D1D" and "P1DT").
func checkISOSyntax(s string) error {
	const accepted = "use e.g. P1Y, P6M, P2W, P30D, PT12H or P1DT12H"
	if s == "" {
		return errors.New("empty; " + accepted)
	}
	if s[0] == '-' {
		return errors.New("negative durations are not accepted; " + accepted)
	}
	if s[0] != 'P' {
		return errors.New("must start with P; " + accepted)
	}
	dateUnits, timeUnits := "YMWD", "HMS"
	units, inTime, components, timeComponents := dateUnits, false, 0, 0
	pos := 0 // next unit allowed at index >= pos in units
	i := 1
	for i < len(s) {
		if s[i] == 'T' {
			if inTime {
				return errors.New("T appears twice; " + accepted)
			}
			inTime, units, pos = true, timeUnits, 0
			i++
			continue
		}
		start, dots := i, 0
		for i < len(s) && (s[i] >= '0' && s[i] <= '9' || s[i] == '.') {
			if s[i] == '.' {
				dots++
			}
			i++
		}
		num := s[start:i]
		if num == "" || dots > 1 || num[0] == '.' || num[len(num)-1] == '.' {
			return fmt.Errorf("expected a number at position %d; %s", start+1, accepted)
		}
		if len(num) > 12 {
			return fmt.Errorf("the number %s is too long; %s", num, accepted)
		}
		if i == len(s) {
			return fmt.Errorf("the number %s has no unit; %s", num, accepted)
		}
		if !strings.ContainsRune("YMWDHS", rune(s[i])) {
			return fmt.Errorf("unexpected character %q at position %d; %s", s[i], i+1, accepted)
		}
		k := -1
		for j := pos; j < len(units); j++ {
			if units[j] == s[i] {
				k = j
				break
			}
		}
		if k < 0 {
			return fmt.Errorf("unit %q is out of place; components go in the order %s, then T and %s, each at most once; %s", s[i], dateUnits, timeUnits, accepted)
		}
		pos = k + 1
		components++
		if inTime {
			timeComponents++
		}
		i++
	}
	if inTime && timeComponents == 0 {
		return errors.New("T must be followed by hours, minutes or seconds; " + accepted)
	}
	if components == 0 {
		return errors.New("has no components; " + accepted)
	}
	return nil
}

// AddTo returns t plus the duration in UTC, calendar units first. ok is false
// when the result would leave the representable range, which callers treat
// as "longer than any maximum".
func (d Duration) AddTo(t time.Time) (time.Time, bool) {
	years, months := d.d.Years, d.d.Months
	totalMonths := years*12 + months
	if totalMonths > maxCalendarYears*12 || d.d.Weeks*7+d.d.Days > maxCalendarYears*366 {
		return time.Time{}, false
	}
	secs := d.d.Hours*3600 + d.d.Minutes*60 + d.d.Seconds
	if secs > maxTimeSeconds {
		return time.Time{}, false
	}
	t = t.UTC()
	t = addMonthsClamped(t, int(totalMonths))
	t = t.AddDate(0, 0, int(d.d.Weeks)*7+int(d.d.Days))
	t = t.Add(time.Duration(math.Round(secs * float64(time.Second))))
	if t.Year() > 9999 {
		return time.Time{}, false
	}
	return t, true
}

// addMonthsClamped adds n months, clamping the day to the target month's
// last day.
func addMonthsClamped(t time.Time, n int) time.Time {
	if n == 0 {
		return t
	}
	y, m, day := t.Date()
	first := time.Date(y, m+time.Month(n), 1, t.Hour(), t.Minute(), t.Second(), t.Nanosecond(), time.UTC)
	last := first.AddDate(0, 1, -1).Day()
	if day > last {
		day = last
	}
	return first.AddDate(0, 0, day-1)
}
