package metrics

import (
	"strings"
	"testing"

	"github.com/direktiv/direktiv-authz/internal/audit"
	"github.com/direktiv/direktiv-authz/internal/relay"
)

// Each relay failure kind is counted under one upstream_errors_total kind,
// and an answered exchange in the latency histogram; mints by outcome.
func TestUpstreamFailuresAndMintOutcomesByKind(t *testing.T) {
	m := New(Sources{})
	for _, f := range []relay.Failure{relay.NoFailure, relay.Unreachable, relay.DialTimeout, relay.Timeout, relay.Busy, relay.Broken, relay.Broken} {
		m.UpstreamTook(0, f)
	}
	for _, ev := range []audit.Event{
		{Action: "mint", Status: 201},
		{Action: "mint", Status: 201, Dropped: []string{"x"}},
		{Action: "mint", Status: 403},
		{Action: "mint", Status: 429},
		{Action: "mint", Status: 503},
		{Action: "dry_run", Status: 200}, // not a mint: not counted
	} {
		m.MintOutcome(&ev)
	}
	want := map[string]float64{
		`direktiv_authz_mints_total{outcome="dropped"}`:            1,
		`direktiv_authz_mints_total{outcome="granted"}`:            1,
		`direktiv_authz_mints_total{outcome="refused"}`:            2,
		`direktiv_authz_mints_total{outcome="unavailable"}`:        1,
		`direktiv_authz_upstream_errors_total{kind="broken"}`:      2,
		`direktiv_authz_upstream_errors_total{kind="busy"}`:        1,
		`direktiv_authz_upstream_errors_total{kind="timeout"}`:     2,
		`direktiv_authz_upstream_errors_total{kind="unreachable"}`: 1,
		`direktiv_authz_upstream_duration_seconds_count`:           1,
	}
	got := samples(t, m)
	for name, v := range want {
		if got[name] != v {
			t.Errorf("%s = %v, want %v", name, got[name], v)
		}
	}
}

// samples gathers m's counters and histogram counts as name{labels} -> value.
func samples(t *testing.T, m *Metrics) map[string]float64 {
	t.Helper()
	families, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, f := range families {
		for _, s := range f.GetMetric() {
			var labels []string
			for _, l := range s.GetLabel() {
				labels = append(labels, l.GetName()+`="`+l.GetValue()+`"`)
			}
			name := f.GetName()
			if len(labels) > 0 {
				name += "{" + strings.Join(labels, ",") + "}"
			}
			switch {
			case s.GetCounter() != nil:
				out[name] = s.GetCounter().GetValue()
			case s.GetHistogram() != nil:
				out[f.GetName()+"_count"] = float64(s.GetHistogram().GetSampleCount())
			}
		}
	}
	return out
}

// A nil *Metrics (no --ops-listen) records nothing and reads no clock.
func TestNilMetricsRecordNothing(t *testing.T) {
	var m *Metrics
	if m.Clock() != 0 {
		t.Error("a nil Metrics read the clock")
	}
	m.Request(0, 200)
	m.UpstreamDone(0, relay.Broken)
	m.MintOutcome(&audit.Event{Action: "mint", Status: 201})
	m.MintRateLimited("token")
	m.RevokedTokens(3)
	m.CreateDone(0, nil)
}
