package sidecar

import (
	"bytes"
	"encoding/json"
	"testing"
	"time"

	gojson "github.com/goccy/go-json"

	"github.com/direktiv/direktiv-authz/internal/apierror"
)

// The shapes the sidecar encodes per request, as a mint writes them.
var (
	benchMintResponse = mintResponse{ID: "0f1e2d3c4b5a69788796a5b4c3d2e1f0", Token: "dkt_ns1_0f1e2d3c4b5a69788796a5b4c3d2e1f0_abcdefghijklmnopqrstuvwxyz012345",
		Namespace: "ns1", Description: "bench", Policies: []string{"workflowView", "instancesView"}, Dropped: []string{},
		Created: "2026-11-27T09:30:01Z", Expires: "2026-11-27T10:30:01Z", Warnings: []string{}}
	benchAuditEvent = auditEvent{Action: "mint", Namespace: "ns1", Caller: "admin", Decision: "allow", Status: 201,
		Requested: []string{"workflowView", "instancesView"}, Granted: []string{"workflowView", "instancesView"},
		Token: "0f1e2d3c4b5a69788796a5b4c3d2e1f0"}
	benchAPIError = &apierror.Error{Code: apierror.Forbidden, Message: `policy "permissionsManage" is not held by the caller; ask for policies you hold`}
)

func newAuditLine(now time.Time, e auditEvent, client, revision string) auditLine {
	return auditLine{Time: now, Level: "INFO", Msg: "audit", Log: "audit", Action: e.Action, Namespace: e.Namespace,
		Caller: e.Caller, Decision: e.Decision, Status: e.Status, Reason: e.Reason, Requested: nonNil(e.Requested),
		Granted: nonNil(e.Granted), Dropped: nonNil(e.Dropped), Token: e.Token, Target: e.Target, Revoked: nonNil(e.Revoked),
		Count: e.Count, Complete: e.Complete, Method: e.Method, Path: e.Path, Client: client, Revision: revision}
}

// The sidecar's encoder (goccy/go-json) against encoding/json, whose bytes
// both must write, on the shapes above; each is checked before it is timed.
func BenchmarkEncodeMintResponse(b *testing.B) {
	r := benchMintResponse
	want, _ := json.Marshal(r)
	benchEncoders(b, want, map[string]func(w *bytes.Buffer){
		"goccy": func(w *bytes.Buffer) { // as writeJSON
			out, _ := gojson.Marshal(r)
			w.Write(out)
		},
		"encoding_json": func(w *bytes.Buffer) {
			out, _ := json.Marshal(r)
			w.Write(out)
		},
	})
}

func BenchmarkEncodeAuditLine(b *testing.B) {
	now := time.Date(2026, 11, 27, 9, 30, 1, 123456789, time.UTC)
	line := func() auditLine { return newAuditLine(now, benchAuditEvent, "127.0.0.1:5555", "sha256:abc") }
	var want bytes.Buffer
	e := json.NewEncoder(&want)
	e.SetEscapeHTML(false)
	_ = e.Encode(line())
	l := &auditLog{}
	benchEncoders(b, want.Bytes(), map[string]func(w *bytes.Buffer){
		"goccy": func(w *bytes.Buffer) { // auditLog.write
			l.w = w
			l.write(now, benchAuditEvent, "127.0.0.1:5555", "sha256:abc")
		},
		"encoding_json": func(w *bytes.Buffer) {
			e := json.NewEncoder(w)
			e.SetEscapeHTML(false)
			_ = e.Encode(line())
		},
	})
}

func benchEncoders(b *testing.B, want []byte, encoders map[string]func(w *bytes.Buffer)) {
	for _, name := range []string{"goccy", "encoding_json"} {
		enc := encoders[name]
		b.Run(name, func(b *testing.B) {
			var w bytes.Buffer
			if enc(&w); !bytes.Equal(w.Bytes(), want) {
				b.Fatalf("%s\n got %s\nwant %s", name, w.Bytes(), want)
			}
			b.ReportAllocs()
			for b.Loop() {
				w.Reset()
				enc(&w)
			}
		})
	}
}

// errorBodyV2 is Direktiv's v2 error shape, as encoding/json encodes it.
type errorBodyV2 struct {
	Error struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

func newErrorBodyV2(ae *apierror.Error) errorBodyV2 {
	var e errorBodyV2
	e.Error.Code, e.Error.Message = ae.DirektivCode(), ae.Message
	return e
}

func BenchmarkEncodeErrorBody(b *testing.B) {
	path := []byte("/api/v2/namespaces/ns1/variables")
	want, _ := json.Marshal(newErrorBodyV2(benchAPIError))
	want = append(want, '\n')
	benchEncoders(b, want, map[string]func(w *bytes.Buffer){
		"goccy": func(w *bytes.Buffer) { w.Write(apierror.JSON(make([]byte, 0, 160), path, benchAPIError)) },
		"encoding_json": func(w *bytes.Buffer) {
			out, _ := json.Marshal(newErrorBodyV2(benchAPIError))
			w.Write(append(out, '\n'))
		},
	})
}
