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
	newAuditLog(&got).write(now, e, "127.0.0.1:5555", "sha256:abc")

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

// The mint response is encoded byte for byte as json.Marshal encodes it.
func TestMintResponseJSONMatchesEncodingJSON(t *testing.T) {
	full := mintResponse{ID: "0f1e", Token: "dkt_abc", Namespace: "MY-NAMESPACE", Description: "ci <&> \"x\" \u2028",
		Policies: []string{"workflowView"}, Dropped: []string{}, Created: "2026-11-27T09:30:01Z", Expires: "2027-11-27T09:30:01Z",
		Warnings: []string{"expires was clamped to --max-ttl"}}
	dry := full
	dry.ID, dry.Token, dry.DryRun = "", "", true
	bare := mintResponse{Namespace: "ns"} // nil lists
	for _, r := range []mintResponse{full, dry, bare} {
		want, err := json.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		if got := r.appendJSON(nil); !bytes.Equal(got, want) {
			t.Errorf("mint response\n got %s\nwant %s", got, want)
		}
	}
}

// The error body the server (writeJSON) and the event loops (Fail) send is
// byte for byte encoding/json's output.
func TestErrorBodyJSONMatchesEncodingJSON(t *testing.T) {
	for _, e := range []errorBody{
		{Code: 502, Message: "the Direktiv API cannot be reached; try again later"},
		{Code: 400, Message: `the path segment "%2F" holds <an> encoded '/' & "quotes" ` + "\u2028\t"},
		{},
	} {
		want, err := json.Marshal(e)
		if err != nil {
			t.Fatal(err)
		}
		if got := e.appendJSON(nil); !bytes.Equal(got, want) {
			t.Errorf("error body\n got %s\nwant %s", got, want)
		}
	}
}
