//go:build linux

package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"html/template"
	"io"
	"math"
	"os"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"time"
)

// report is everything one invocation measured: a single run, or the whole
// compare. It is written as text, JSON and a self-contained HTML page.
type report struct {
	Title    string        `json:"title"`
	Heading  string        `json:"-"` // after the date in RESULTS.md's section heading; "" for none
	Created  time.Time     `json:"created"`
	Machine  machineInfo   `json:"machine"`
	Settings []setting     `json:"settings,omitempty"`
	Ratios   []ratioReport `json:"ratios,omitempty"`
	Runs     []runReport   `json:"runs"`
	Notes    []string      `json:"notes,omitempty"`
}

type setting struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

type machineInfo struct {
	NProc     int    `json:"nproc"`
	CPU       string `json:"cpu"`
	GoVersion string `json:"go_version"`
	OS        string `json:"os"`
	Kernel    string `json:"kernel,omitempty"`
}

func (m machineInfo) String() string {
	s := fmt.Sprintf("%d × %s, %s %s", m.NProc, m.CPU, m.GoVersion, m.OS)
	if m.Kernel != "" {
		s += ", Linux " + m.Kernel
	}
	return s
}

// latencyMs is a latency summary in milliseconds.
type latencyMs struct {
	Min  float64 `json:"min_ms"`
	Mean float64 `json:"mean_ms"`
	P50  float64 `json:"p50_ms"`
	P90  float64 `json:"p90_ms"`
	P99  float64 `json:"p99_ms"`
	P999 float64 `json:"p99_9_ms"`
	Max  float64 `json:"max_ms"`
}

func summarize(h *histogram) latencyMs {
	ms := func(d time.Duration) float64 { return float64(d) / 1e6 }
	return latencyMs{Min: ms(h.minValue()), Mean: ms(h.mean()), P50: ms(h.quantile(0.5)), P90: ms(h.quantile(0.9)),
		P99: ms(h.quantile(0.99)), P999: ms(h.quantile(0.999)), Max: ms(h.maxValue())}
}

// runReport is one load run.
type runReport struct {
	Name         string            `json:"name"`
	Scenario     string            `json:"scenario"`
	Target       string            `json:"target"`
	Loop         string            `json:"loop"` // "closed" or "open"
	Round        int               `json:"round,omitempty"`
	Connections  int               `json:"connections"`
	RatePerS     float64           `json:"intended_rate_per_s,omitempty"`
	WarmupS      float64           `json:"warmup_s"`
	WindowS      float64           `json:"window_s"`
	Requests     int64             `json:"requests"`
	OK           int64             `json:"ok"`
	Failed       int64             `json:"failed"`
	Unsent       int64             `json:"unsent,omitempty"`
	Throughput   float64           `json:"ok_per_s"`
	Latency      latencyMs         `json:"latency"`
	Errors       map[string]int64  `json:"errors,omitempty"`
	ErrorSamples map[string]string `json:"error_samples,omitempty"`
	Kinds        []kindReport      `json:"kinds,omitempty"`
	Percentiles  [][2]float64      `json:"percentiles"` // [quantile, ms]
	Timeline     []timePoint       `json:"timeline"`
	Interrupted  bool              `json:"interrupted,omitempty"`
	// CPU is what each process spent per measured request, in µs (see
	// cpu.go); compare runs only, Linux only.
	CPU     map[string]float64 `json:"cpu_us_per_request,omitempty"`
	Charted bool               `json:"-"` // drawn in the HTML charts

	hist *histogram // kept for pooling rounds; not exported
}

type kindReport struct {
	Name    string    `json:"name"`
	Weight  int       `json:"weight"`
	OK      int64     `json:"ok"`
	Failed  int64     `json:"failed"`
	Latency latencyMs `json:"latency"`
}

func newRunReport(res *loadResult) runReport {
	s := res.spec
	r := runReport{Name: s.name, Scenario: s.scenario, Target: s.target, Loop: "closed", Connections: s.conns,
		WarmupS: s.warmup.Seconds(), WindowS: res.window.Seconds(), Requests: res.requests(), OK: res.ok, Failed: res.failed,
		Unsent: res.unsent, Throughput: res.throughput(), Latency: summarize(res.all), Errors: res.errors,
		ErrorSamples: res.samples, Timeline: res.timeline, Interrupted: res.interrupted, Charted: true, hist: res.all}
	if s.rate > 0 {
		r.Loop, r.RatePerS = "open", s.rate
	}
	for _, p := range res.all.percentileSpectrum() {
		r.Percentiles = append(r.Percentiles, [2]float64{p[0], p[1] / 1e6})
	}
	if len(s.kinds) > 1 {
		for i, k := range s.kinds {
			st := res.kinds[i]
			r.Kinds = append(r.Kinds, kindReport{Name: k.name, Weight: k.weight, OK: st.ok, Failed: st.failed, Latency: summarize(st.hist)})
		}
	}
	return r
}

// ratioReport is one headline target: a ratio of two runs of the same run.
type ratioReport struct {
	ID          string    `json:"id"`
	Title       string    `json:"title"`
	Numerator   string    `json:"numerator"`
	Denominator string    `json:"denominator"`
	NumValue    float64   `json:"numerator_value"`
	DenValue    float64   `json:"denominator_value"`
	Unit        string    `json:"unit"`
	Value       float64   `json:"value"`
	Rounds      []float64 `json:"rounds,omitempty"` // the ratio in each round; Value is their median
	Goal        float64   `json:"goal"`
	AtMost      bool      `json:"at_most"`           // the goal is an upper bound (latency)
	Status      string    `json:"status"`            // PASS, FAIL, SKIP, or INFO for an information row with no goal
	Info        bool      `json:"info,omitempty"`    // for reading: a FAIL here is no missed target (-strict ignores it)
	Invalid     bool      `json:"invalid,omitempty"` // a run behind it failed too many requests: FAIL whatever the value
	Note        string    `json:"note,omitempty"`
}

func (r ratioReport) goalText() string {
	if r.Info && r.Goal == 0 {
		return "–"
	}
	if r.AtMost {
		return fmt.Sprintf("≤ %.2f", r.Goal)
	}
	return fmt.Sprintf("≥ %.2f", r.Goal)
}

// asInfo marks r as a ratio reported for reading: it is no target.
func asInfo(r ratioReport) ratioReport {
	r.Info = true
	return r
}

// judge sets Status from Value and Goal unless the ratio was skipped.
func (r *ratioReport) judge() {
	if r.Status == "SKIP" {
		return
	}
	if r.Info && r.Goal == 0 {
		r.Status = "INFO"
		if r.Invalid {
			r.Status = "FAIL" // its runs failed too many requests
		}
		return
	}
	pass := r.Value >= r.Goal
	if r.AtMost {
		pass = r.Value <= r.Goal && r.Value > 0
	}
	if r.Invalid || math.IsNaN(r.Value) || math.IsInf(r.Value, 0) {
		pass = false
	}
	r.Status = map[bool]string{true: "PASS", false: "FAIL"}[pass]
}

// machine describes where the run happened.
func machine() machineInfo {
	m := machineInfo{NProc: runtime.NumCPU(), CPU: "unknown", GoVersion: runtime.Version(), OS: runtime.GOOS + "/" + runtime.GOARCH}
	if f, err := os.Open("/proc/cpuinfo"); err == nil {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPU = strings.TrimSpace(v)
				break
			}
		}
		f.Close()
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	return m
}

// writeText prints the run table, the error table and the ratios.
func writeText(w io.Writer, rep *report) {
	fmt.Fprintf(w, "%s — %s\n", rep.Title, rep.Created.UTC().Format("2006-01-02 15:04:05 UTC"))
	fmt.Fprintf(w, "machine: %s\n", rep.Machine)
	for _, s := range rep.Settings {
		fmt.Fprintf(w, "  %s: %s\n", s.Name, s.Value)
	}
	fmt.Fprintln(w)
	fmt.Fprintf(w, "%-26s %-6s %5s %8s %9s %10s %8s %8s %8s %8s %9s %7s\n",
		"run", "loop", "conns", "rate/s", "requests", "ok/s", "p50 ms", "p90 ms", "p99 ms", "p99.9 ms", "max ms", "errors")
	for _, r := range rep.Runs {
		name := r.Name
		if r.Round > 0 {
			name = fmt.Sprintf("%s #%d", r.Name, r.Round)
		}
		rate := "-"
		if r.RatePerS > 0 {
			rate = fmt.Sprintf("%.0f", r.RatePerS)
		}
		fmt.Fprintf(w, "%-26s %-6s %5d %8s %9d %10.0f %8.3f %8.3f %8.3f %8.3f %9.3f %7d\n",
			truncate(name, 26), r.Loop, r.Connections, rate, r.Requests, r.Throughput, r.Latency.P50, r.Latency.P90,
			r.Latency.P99, r.Latency.P999, r.Latency.Max, r.Failed)
		for _, k := range r.Kinds {
			fmt.Fprintf(w, "  %-24s %-6s %5s %8s %9d %10s %8.3f %8.3f %8.3f %8.3f %9.3f %7d\n",
				fmt.Sprintf("%s (weight %d)", k.Name, k.Weight), "", "", "", k.OK+k.Failed, "", k.Latency.P50, k.Latency.P90,
				k.Latency.P99, k.Latency.P999, k.Latency.Max, k.Failed)
		}
	}
	var errLines []string
	for _, r := range rep.Runs {
		keys := make([]string, 0, len(r.Errors))
		for k := range r.Errors {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			errLines = append(errLines, fmt.Sprintf("  %-26s %-44s %8d  e.g. %.120s", truncate(r.Name, 26), truncate(k, 44), r.Errors[k], r.ErrorSamples[k]))
		}
	}
	if len(errLines) > 0 {
		fmt.Fprintln(w, "\nerrors by status:")
		for _, l := range errLines {
			fmt.Fprintln(w, l)
		}
	}
	if len(rep.Ratios) > 0 {
		fmt.Fprintln(w, "\ntargets:")
		for _, r := range rep.Ratios {
			val := "-"
			if r.Status != "SKIP" {
				val = fmt.Sprintf("%.3f", r.Value)
			}
			fmt.Fprintf(w, "  %-4s %-36s %7s  goal %-7s %-4s  %s\n", r.ID, r.Title, val, r.goalText(), r.Status, ratioDetail(r))
		}
	}
	for _, n := range rep.Notes {
		fmt.Fprintf(w, "note: %s\n", n)
	}
}

// ratioDetail explains a ratio in one line: what over what, per round.
func ratioDetail(r ratioReport) string {
	s := fmt.Sprintf("%s %.0f / %s %.0f %s", r.Numerator, r.NumValue, r.Denominator, r.DenValue, r.Unit)
	if r.Unit == "ms" {
		s = fmt.Sprintf("%s %.3f / %s %.3f ms", r.Numerator, r.NumValue, r.Denominator, r.DenValue)
	}
	if len(r.Rounds) > 1 {
		parts := make([]string, len(r.Rounds))
		for i, v := range r.Rounds {
			parts[i] = fmt.Sprintf("%.3f", v)
		}
		s += " (median of rounds " + strings.Join(parts, ", ") + ")"
	}
	if r.Note != "" {
		s += "; " + r.Note
	}
	return s
}

func writeJSON(path string, rep *report) error {
	b, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}

// palette colours the series of a chart, in order.
var palette = []string{"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#7f7f7f", "#bcbd22"}

type series struct {
	Name   string
	Color  string
	Points [][2]float64 // data coordinates, already transformed for log axes
}

type tick struct {
	At    float64
	Label string
}

// svgChart draws a line chart as an inline SVG. xs and ys map data to the
// axes' [0,1] range; the caller transforms log axes beforehand.
func svgChart(title, xLabel, yLabel string, ss []series, xMin, xMax, yMin, yMax float64, xTicks, yTicks []tick) template.HTML {
	const W, H, left, right, top, bottom = 760.0, 380.0, 70.0, 170.0, 34.0, 48.0
	pw, ph := W-left-right, H-top-bottom
	if xMax <= xMin {
		xMax = xMin + 1
	}
	if yMax <= yMin {
		yMax = yMin + 1
	}
	px := func(x float64) float64 { return left + (x-xMin)/(xMax-xMin)*pw }
	py := func(y float64) float64 { return top + ph - (y-yMin)/(yMax-yMin)*ph }
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 %.0f %.0f" width="%.0f" height="%.0f" role="img" aria-label="%s">`, W, H, W, H, template.HTMLEscapeString(title))
	fmt.Fprintf(&b, `<text x="%.0f" y="20" class="t">%s</text>`, left, template.HTMLEscapeString(title))
	fmt.Fprintf(&b, `<rect x="%.0f" y="%.0f" width="%.0f" height="%.0f" class="plot"/>`, left, top, pw, ph)
	for _, t := range yTicks {
		if t.At < yMin || t.At > yMax {
			continue
		}
		y := py(t.At)
		fmt.Fprintf(&b, `<line x1="%.1f" x2="%.1f" y1="%.1f" y2="%.1f" class="grid"/><text x="%.1f" y="%.1f" class="yl">%s</text>`,
			left, left+pw, y, y, left-6, y+4, template.HTMLEscapeString(t.Label))
	}
	for _, t := range xTicks {
		if t.At < xMin || t.At > xMax {
			continue
		}
		x := px(t.At)
		fmt.Fprintf(&b, `<line x1="%.1f" x2="%.1f" y1="%.1f" y2="%.1f" class="grid"/><text x="%.1f" y="%.1f" class="xl">%s</text>`,
			x, x, top, top+ph, x, top+ph+16, template.HTMLEscapeString(t.Label))
	}
	fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" class="xl">%s</text>`, left+pw/2, H-8, template.HTMLEscapeString(xLabel))
	fmt.Fprintf(&b, `<text transform="translate(16 %.1f) rotate(-90)" class="xl">%s</text>`, top+ph/2, template.HTMLEscapeString(yLabel))
	for i, s := range ss {
		var pts strings.Builder
		for _, p := range s.Points {
			x, y := p[0], p[1]
			if math.IsNaN(x) || math.IsNaN(y) || math.IsInf(x, 0) || math.IsInf(y, 0) {
				continue
			}
			x = min(max(x, xMin), xMax)
			y = min(max(y, yMin), yMax)
			fmt.Fprintf(&pts, "%.1f,%.1f ", px(x), py(y))
		}
		fmt.Fprintf(&b, `<polyline fill="none" stroke="%s" stroke-width="1.8" points="%s"><title>%s</title></polyline>`,
			s.Color, strings.TrimSpace(pts.String()), template.HTMLEscapeString(s.Name))
		ly := top + 8 + float64(i)*18
		fmt.Fprintf(&b, `<line x1="%.1f" x2="%.1f" y1="%.1f" y2="%.1f" stroke="%s" stroke-width="3"/><text x="%.1f" y="%.1f" class="lg">%s</text>`,
			left+pw+12, left+pw+30, ly, ly, s.Color, left+pw+36, ly+4, template.HTMLEscapeString(truncate(s.Name, 22)))
	}
	b.WriteString(`</svg>`)
	return template.HTML(b.String())
}

// latencyChart plots latency against percentile on HdrHistogram's axes:
// x is log10(1/(1-q)), so 90%, 99%, 99.9% are evenly spaced; y is log10(ms).
func latencyChart(title string, runs []runReport) template.HTML {
	var ss []series
	xMax, yLo, yHi := 1.0, math.Inf(1), math.Inf(-1)
	for i, r := range runs {
		s := series{Name: r.Name, Color: palette[i%len(palette)]}
		for _, p := range r.Percentiles {
			if p[0] >= 1 || p[1] <= 0 {
				continue // the max is in the table; q=1 has no place on this axis
			}
			x := math.Log10(1 / (1 - p[0]))
			y := math.Log10(p[1])
			s.Points = append(s.Points, [2]float64{x, y})
			xMax = max(xMax, x)
			yLo, yHi = min(yLo, y), max(yHi, y)
		}
		ss = append(ss, s)
	}
	if math.IsInf(yLo, 0) {
		yLo, yHi = -1, 1
	}
	yLo, yHi = math.Floor(yLo), math.Ceil(yHi)
	if yHi == yLo {
		yHi++
	}
	var xt, yt []tick
	labels := []string{"0%", "90%", "99%", "99.9%", "99.99%", "99.999%", "99.9999%"}
	for d := 0; d <= int(math.Ceil(xMax)) && d < len(labels); d++ {
		xt = append(xt, tick{float64(d), labels[d]})
	}
	for d := yLo; d <= yHi; d++ {
		for _, m := range []float64{1, 2, 5} {
			v := math.Log10(m) + d
			if v <= yHi {
				yt = append(yt, tick{v, fmtMs(math.Pow(10, v))})
			}
		}
	}
	return svgChart(title, "percentile", "latency (ms, log scale)", ss, 0, math.Ceil(xMax), yLo, yHi, xt, yt)
}

// throughputChart plots successful responses per second over the run.
func throughputChart(runs []runReport) template.HTML {
	var ss []series
	xMax, yMax := 1.0, 1.0
	for i, r := range runs {
		s := series{Name: r.Name, Color: palette[i%len(palette)]}
		prev := 0.0
		for i, p := range r.Timeline {
			if i > 1 && i == len(r.Timeline)-1 && p.T-prev < 0.5*(prev-r.Timeline[i-2].T) {
				break // a sliver of a last tick: its rate is noise
			}
			okRate := p.Rate
			if p.Requests > 0 {
				okRate = p.Rate * float64(p.Requests-p.Errors) / float64(p.Requests)
			}
			// a step: flat across the tick
			s.Points = append(s.Points, [2]float64{prev, okRate}, [2]float64{p.T, okRate})
			prev = p.T
			xMax, yMax = max(xMax, p.T), max(yMax, okRate)
		}
		ss = append(ss, s)
	}
	return svgChart("Throughput over time (successful responses)", "seconds into the measured window", "req/s", ss, 0, xMax, 0, yMax*1.08,
		niceTicks(0, xMax, 8, "%g s"), niceTicks(0, yMax*1.08, 6, "%g"))
}

// niceTicks spreads about n ticks over [lo, hi] at 1-2-5 steps.
func niceTicks(lo, hi float64, n int, format string) []tick {
	if hi <= lo || n < 1 {
		return nil
	}
	raw := (hi - lo) / float64(n)
	mag := math.Pow(10, math.Floor(math.Log10(raw)))
	step := mag
	for _, m := range []float64{1, 2, 5, 10} {
		if m*mag >= raw {
			step = m * mag
			break
		}
	}
	var out []tick
	for v := math.Ceil(lo/step) * step; v <= hi+step/1e9 && len(out) < 100; v += step {
		out = append(out, tick{v, fmt.Sprintf(format, math.Round(v/step)*step)})
	}
	return out
}

func fmtMs(ms float64) string {
	g := func(v float64) string { return strconv.FormatFloat(v, 'g', 3, 64) }
	switch {
	case ms >= 1000:
		return g(ms/1000) + "s"
	case ms >= 1:
		return g(ms) + "ms"
	default:
		return g(ms*1000) + "µs"
	}
}

var htmlPage = template.Must(template.New("report").Funcs(template.FuncMap{
	"f1":   func(v float64) string { return fmt.Sprintf("%.1f", v) },
	"f3":   func(v float64) string { return fmt.Sprintf("%.3f", v) },
	"f0":   func(v float64) string { return fmt.Sprintf("%.0f", v) },
	"goal": func(r ratioReport) string { return r.goalText() },
	"detail": func(r ratioReport) string {
		return ratioDetail(r)
	},
	"when": func(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05 UTC") },
	"sortedErrors": func(m map[string]int64) []string {
		keys := make([]string, 0, len(m))
		for k := range m {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		return keys
	},
	"index2": func(m map[string]int64, k string) int64 { return m[k] },
	"sample": func(m map[string]string, k string) string { return m[k] },
}).Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{{.R.Title}}</title>
<style>
body{font:14px/1.45 system-ui,sans-serif;margin:24px auto;max-width:1100px;color:#222;padding:0 16px}
h1{font-size:22px;margin-bottom:4px} h2{font-size:17px;margin-top:28px}
table{border-collapse:collapse;margin:8px 0;font-variant-numeric:tabular-nums}
td,th{border-bottom:1px solid #ddd;padding:3px 9px;text-align:right;white-space:nowrap}
td:first-child,th:first-child{text-align:left} td.l{text-align:left;white-space:normal}
.PASS{color:#fff;background:#2a8a3e;font-weight:600} .FAIL{color:#fff;background:#c0392b;font-weight:600} .SKIP{background:#ccc}
.meta{color:#555} svg{max-width:100%;height:auto;margin:8px 0}
svg .plot{fill:#fafafa;stroke:#999} svg .grid{stroke:#e3e3e3} svg text{font:11px system-ui,sans-serif;fill:#333}
svg .t{font-size:13px;font-weight:600} svg .xl{text-anchor:middle} svg .yl{text-anchor:end} svg .lg{text-anchor:start}
code{background:#f3f3f3;padding:1px 4px}
</style></head><body>
<h1>{{.R.Title}}</h1>
<div class="meta">{{when .R.Created}} · {{.R.Machine}}</div>
{{if .R.Settings}}<div class="meta">{{range .R.Settings}}{{.Name}}: <code>{{.Value}}</code> {{end}}</div>{{end}}
{{if .R.Ratios}}<h2>Targets</h2>
<table><tr><th>target</th><th>what</th><th>ratio</th><th>goal</th><th>result</th><th>from</th></tr>
{{range .R.Ratios}}<tr><td>{{.ID}}</td><td class="l">{{.Title}}</td><td>{{if ne .Status "SKIP"}}{{f3 .Value}}{{else}}–{{end}}</td><td>{{goal .}}</td><td class="{{.Status}}">{{.Status}}</td><td class="l">{{detail .}}</td></tr>
{{end}}</table>{{end}}
<h2>Charts</h2>
{{range .Charts}}{{.}}
{{end}}
<h2>Runs</h2>
<table><tr><th>run</th><th>loop</th><th>conns</th><th>rate/s</th><th>requests</th><th>ok/s</th><th>p50 ms</th><th>p90 ms</th><th>p99 ms</th><th>p99.9 ms</th><th>max ms</th><th>mean ms</th><th>errors</th></tr>
{{range .R.Runs}}<tr><td>{{.Name}}{{if .Round}} #{{.Round}}{{end}}</td><td>{{.Loop}}</td><td>{{.Connections}}</td><td>{{if .RatePerS}}{{f0 .RatePerS}}{{else}}–{{end}}</td><td>{{.Requests}}</td><td>{{f0 .Throughput}}</td>
<td>{{f3 .Latency.P50}}</td><td>{{f3 .Latency.P90}}</td><td>{{f3 .Latency.P99}}</td><td>{{f3 .Latency.P999}}</td><td>{{f3 .Latency.Max}}</td><td>{{f3 .Latency.Mean}}</td><td>{{.Failed}}</td></tr>
{{range .Kinds}}<tr><td>&nbsp;&nbsp;{{.Name}} (weight {{.Weight}})</td><td></td><td></td><td></td><td>{{.OK}}</td><td></td><td>{{f3 .Latency.P50}}</td><td>{{f3 .Latency.P90}}</td><td>{{f3 .Latency.P99}}</td><td>{{f3 .Latency.P999}}</td><td>{{f3 .Latency.Max}}</td><td>{{f3 .Latency.Mean}}</td><td>{{.Failed}}</td></tr>
{{end}}{{end}}</table>
{{if .HasErrors}}<h2>Errors by status</h2>
<table><tr><th>run</th><th>error</th><th>count</th><th>example</th></tr>
{{range .R.Runs}}{{$r := .}}{{range sortedErrors .Errors}}<tr><td>{{$r.Name}}{{if $r.Round}} #{{$r.Round}}{{end}}</td><td class="l">{{.}}</td><td>{{index2 $r.Errors .}}</td><td class="l"><code>{{sample $r.ErrorSamples .}}</code></td></tr>
{{end}}{{end}}</table>{{end}}
{{if .R.Notes}}<h2>Notes</h2><ul>{{range .R.Notes}}<li>{{.}}</li>{{end}}</ul>{{end}}
<p class="meta">Latency of closed-loop runs is measured from each request's send; of open-loop runs from its intended send time on the fixed schedule, so a stall counts against every request that should have gone out during it. Warm-up requests are not recorded. Percentiles come from an HdrHistogram with three significant digits: within 0.1% of the recorded value.</p>
</body></html>
`))

func writeHTML(path string, rep *report) error {
	var closed, open []runReport
	hasErrors := false
	for _, r := range rep.Runs {
		switch {
		case !r.Charted:
		case r.Loop == "open":
			open = append(open, r)
		default:
			closed = append(closed, r)
		}
		if len(r.Errors) > 0 {
			hasErrors = true
		}
	}
	var charts []template.HTML
	if len(closed) > 0 {
		charts = append(charts, latencyChart("Latency by percentile, closed loop (each request from its send)", closed), throughputChart(closed))
	}
	if len(open) > 0 {
		charts = append(charts, latencyChart("Latency by percentile, open loop (each request from its intended send time)", open), throughputChart(open))
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	err = htmlPage.Execute(f, map[string]any{"R": rep, "Charts": charts, "HasErrors": hasErrors})
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}
