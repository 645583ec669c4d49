package audit

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"testing"
	"time"

	"github.com/direktiv/direktiv-authz/internal/testutil"
)

// The hand-built audit line is byte for byte the line slog's JSON handler
// writes for the same attributes, so the format did not change with it.
func TestAuditLineMatchesSlog(t *testing.T) {
	e := Event{Action: "mint", Namespace: "MY-NAMESPACE", Caller: "admin", Decision: "allow", Status: 201,
		Requested: []string{"workflowView", "nope"}, Granted: []string{"workflowView"}, Dropped: []string{"nope"},
		Token: "0f1e2d3c4b5a69788796a5b4c3d2e1f0", Reason: "tab\there, \"quoted\" \\ back, é, line\nbreak"}
	now := time.Date(2026, 11, 27, 9, 30, 1, 123456789, time.FixedZone("CET", 3600))

	var got bytes.Buffer
	New(&got).Write(now, e, "127.0.0.1:5555", "sha256:abc")

	var want bytes.Buffer
	h := slog.NewJSONHandler(&want, nil)
	r := slog.NewRecord(now, slog.LevelInfo, "audit", 0)
	r.AddAttrs(slog.String("log", "audit"), slog.String("action", e.Action), slog.String("namespace", e.Namespace),
		slog.String("caller", e.Caller), slog.String("decision", e.Decision), slog.Int("status", e.Status),
		slog.String("reason", e.Reason), slog.Any("requested", nonNil(e.Requested)), slog.Any("granted", nonNil(e.Granted)),
		slog.Any("dropped", nonNil(e.Dropped)), slog.String("token", e.Token), slog.String("target", e.Target),
		slog.Any("revoked", nonNil(e.Revoked)), slog.Int("count", e.Count), slog.Bool("complete", e.Complete),
		slog.String("method", e.Method), slog.String("path", e.Path),
		slog.String("client", "127.0.0.1:5555"), slog.String("revision", "sha256:abc"))
	if err := h.Handle(t.Context(), r); err != nil {
		t.Fatal(err)
	}
	if got.String() != want.String() {
		t.Fatalf("audit line\n got %s\nwant %s", got.String(), want.String())
	}
}

// Any string in an audit line is escaped as encoding/json's Encoder with
// SetEscapeHTML(false) escapes it: goccy/go-json writes the lines.
func FuzzAuditLineMatchesEncodingJSON(f *testing.F) {
	for _, s := range []string{"", "plain", "\x00\x01\x08\x0c\x1f\x7f", "a\"b\\c", "\u2028 \u2029", "<a href='x'>&amp;</a>",
		"bad \xff\xfe utf8 \xe2\x82", "日本語 🚀", "\r\n\t", "déploiement \"ci\" <&> 🚀"} {
		f.Add(s)
	}
	now := time.Date(2026, 11, 27, 9, 30, 1, 123456789, time.UTC)
	f.Fuzz(func(t *testing.T, s string) {
		e := Event{Action: "mint", Reason: s, Requested: []string{s, "workflowView"}}
		var wantLine bytes.Buffer
		enc := json.NewEncoder(&wantLine)
		enc.SetEscapeHTML(false)
		if err := enc.Encode(line{Time: now, Level: "INFO", Msg: "audit", Log: "audit", Action: e.Action, Reason: s,
			Requested: e.Requested, Granted: []string{}, Dropped: []string{}, Revoked: []string{}, Client: s}); err != nil {
			t.Fatal(err)
		}
		var got bytes.Buffer
		New(&got).Write(now, e, s, "")
		if got.String() != wantLine.String() {
			t.Fatalf("audit line for %q\n got %s\nwant %s", s, got.String(), wantLine.String())
		}
	})
}

// The line of a mint, as the sidecar writes it per request.
var benchEvent = Event{Action: "mint", Namespace: "ns1", Caller: "admin", Decision: "allow", Status: 201,
	Requested: []string{"workflowView", "instancesView"}, Granted: []string{"workflowView", "instancesView"},
	Token: "0f1e2d3c4b5a69788796a5b4c3d2e1f0"}

func newLine(now time.Time, e Event, client, revision string) line {
	return line{Time: now, Level: "INFO", Msg: "audit", Log: "audit", Action: e.Action, Namespace: e.Namespace,
		Caller: e.Caller, Decision: e.Decision, Status: e.Status, Reason: e.Reason, Requested: nonNil(e.Requested),
		Granted: nonNil(e.Granted), Dropped: nonNil(e.Dropped), Token: e.Token, Target: e.Target, Revoked: nonNil(e.Revoked),
		Count: e.Count, Complete: e.Complete, Method: e.Method, Path: e.Path, Client: client, Revision: revision}
}

func BenchmarkEncodeAuditLine(b *testing.B) {
	now := time.Date(2026, 11, 27, 9, 30, 1, 123456789, time.UTC)
	line := func() line { return newLine(now, benchEvent, "127.0.0.1:5555", "sha256:abc") }
	var want bytes.Buffer
	e := json.NewEncoder(&want)
	e.SetEscapeHTML(false)
	_ = e.Encode(line())
	l := &Log{}
	testutil.BenchEncoders(b, want.Bytes(), map[string]func(w *bytes.Buffer){
		"goccy": func(w *bytes.Buffer) { // Log.Write
			l.w = w
			l.Write(now, benchEvent, "127.0.0.1:5555", "sha256:abc")
		},
		"encoding_json": func(w *bytes.Buffer) {
			e := json.NewEncoder(w)
			e.SetEscapeHTML(false)
			_ = e.Encode(line())
		},
	})
}
