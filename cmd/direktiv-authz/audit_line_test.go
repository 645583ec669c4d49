package main

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"testing"
	"time"
)

// The hand-built audit line is byte for byte the line slog's JSON handler
// writes for the same attributes, so the format did not change with it.
func TestAuditLineMatchesSlog(t *testing.T) {
	e := auditEvent{Action: "mint", Namespace: "MY-NAMESPACE", Caller: "admin", Decision: "allow", Status: 201,
		Requested: []string{"workflowView", "nope"}, Granted: []string{"workflowView"}, Dropped: []string{"nope"},
		Token: "0f1e2d3c4b5a69788796a5b4c3d2e1f0", Reason: "tab\there, \"quoted\" \\ back, é, line\nbreak"}
	now := time.Date(2026, 11, 27, 9, 30, 1, 123456789, time.FixedZone("CET", 3600))

	var got bytes.Buffer
	newAuditLogger(&got).write(now, e, "127.0.0.1:5555", "sha256:abc")

	var want bytes.Buffer
	h := slog.NewJSONHandler(&want, nil)
	r := slog.NewRecord(now, slog.LevelInfo, "audit", 0)
	r.AddAttrs(slog.String("log", "audit"), slog.String("action", e.Action), slog.String("namespace", e.Namespace),
		slog.String("caller", e.Caller), slog.String("decision", e.Decision), slog.Int("status", e.Status),
		slog.String("reason", e.Reason), slog.Any("requested", nonNil(e.Requested)), slog.Any("granted", nonNil(e.Granted)),
		slog.Any("dropped", nonNil(e.Dropped)), slog.String("token", e.Token), slog.String("target", e.Target),
		slog.Any("revoked", nonNil(e.Revoked)), slog.String("method", e.Method), slog.String("path", e.Path),
		slog.String("client", "127.0.0.1:5555"), slog.String("revision", "sha256:abc"))
	if err := h.Handle(t.Context(), r); err != nil {
		t.Fatal(err)
	}
	if got.String() != want.String() {
		t.Fatalf("audit line\n got %s\nwant %s", got.String(), want.String())
	}
}

// Every string comes out as valid JSON that decodes to the same text
// (invalid UTF-8 as U+FFFD), on one line.
func TestAuditLineEscaping(t *testing.T) {
	for _, s := range []string{"", "plain", "\x00\x01\x1f\x7f", "a\"b\\c", "\u2028\u2029", "<&>", "bad \xff\xfe utf8", "日本語 🚀", "\r\n\t"} {
		b := appendJSONString(nil, s)
		if bytes.ContainsAny(b, "\n\r") {
			t.Errorf("%q encoded across lines: %s", s, b)
		}
		var back string
		if err := json.Unmarshal(b, &back); err != nil {
			t.Errorf("%q encoded as %s: not JSON: %v", s, b, err)
			continue
		}
		// string([]rune(s)) turns each invalid byte into U+FFFD, as the
		// encoder does.
		if want := string([]rune(s)); back != want {
			t.Errorf("%q came back as %q", s, back)
		}
	}
}
