package sidecar

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/direktiv/direktiv-authz/internal/apierror"
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

// The mint response is encoded byte for byte as json.Marshal encodes it,
// in these bytes: fields in order, optional ones left out, nil lists null,
// '<', '>', '&' and U+2028 escaped.
func TestMintResponseJSONMatchesEncodingJSON(t *testing.T) {
	full := mintResponse{ID: "0f1e", Token: "dkt_abc", Namespace: "MY-NAMESPACE", Description: "ci <&> \"x\" \u2028",
		Policies: []string{"workflowView"}, Dropped: []string{}, Created: "2026-11-27T09:30:01Z", Expires: "2027-11-27T09:30:01Z",
		Warnings: []string{"expires was clamped to --max-ttl"}}
	dry := full
	dry.ID, dry.Token, dry.DryRun = "", "", true
	bare := mintResponse{Namespace: "ns"} // nil lists
	for _, tt := range []struct {
		r    mintResponse
		want string
	}{
		{full, `{"id":"0f1e","token":"dkt_abc","namespace":"MY-NAMESPACE","description":"ci \u003c\u0026\u003e \"x\" \u2028","policies":["workflowView"],"dropped":[],"created":"2026-11-27T09:30:01Z","expires":"2027-11-27T09:30:01Z","warnings":["expires was clamped to --max-ttl"]}`},
		{dry, `{"namespace":"MY-NAMESPACE","description":"ci \u003c\u0026\u003e \"x\" \u2028","policies":["workflowView"],"dropped":[],"created":"2026-11-27T09:30:01Z","expires":"2027-11-27T09:30:01Z","warnings":["expires was clamped to --max-ttl"],"dry_run":true}`},
		{bare, `{"namespace":"ns","description":"","policies":null,"dropped":null,"created":"","expires":"","warnings":null}`},
	} {
		var ctx fasthttp.RequestCtx
		(&app{}).writeJSON(&ctx, fasthttp.StatusCreated, tt.r)
		if got := string(ctx.Response.Body()); got != tt.want+"\n" {
			t.Errorf("mint response\n got %s\nwant %s", got, tt.want)
		}
	}
}

// Any string is escaped as encoding/json escapes it, with its HTML escapes in
// answers and without them in audit lines: goccy/go-json writes both.
func FuzzEncodingMatchesEncodingJSON(f *testing.F) {
	for _, s := range []string{"", "plain", "\x00\x01\x08\x0c\x1f\x7f", "a\"b\\c", "\u2028 \u2029", "<a href='x'>&amp;</a>",
		"bad \xff\xfe utf8 \xe2\x82", "日本語 🚀", "\r\n\t", "déploiement \"ci\" <&> 🚀"} {
		f.Add(s)
	}
	now := time.Date(2026, 11, 27, 9, 30, 1, 123456789, time.UTC)
	f.Fuzz(func(t *testing.T, s string) {
		ae := &apierror.Error{Code: apierror.BadRequest, Message: s}
		want, err := json.Marshal(struct {
			Code    int    `json:"code"`
			Message string `json:"message"`
		}{ae.Status(), s})
		if err != nil {
			t.Fatal(err)
		}
		if got := apierror.JSON(nil, []byte("/api/namespaces"), ae); !bytes.Equal(got, append(want, '\n')) {
			t.Fatalf("error answer for %q\n got %s\nwant %s", s, got, want)
		}

		e := auditEvent{Action: "mint", Reason: s, Requested: []string{s, "workflowView"}}
		var wantLine bytes.Buffer
		enc := json.NewEncoder(&wantLine)
		enc.SetEscapeHTML(false)
		if err := enc.Encode(auditLine{Time: now, Level: "INFO", Msg: "audit", Log: "audit", Action: e.Action, Reason: s,
			Requested: e.Requested, Granted: []string{}, Dropped: []string{}, Revoked: []string{}, Client: s}); err != nil {
			t.Fatal(err)
		}
		var got bytes.Buffer
		newAuditLog(&got).write(now, e, s, "")
		if got.String() != wantLine.String() {
			t.Fatalf("audit line for %q\n got %s\nwant %s", s, got.String(), wantLine.String())
		}
	})
}
