package tokens

import (
	"bytes"
	"encoding/json"
	"testing"

	gojson "github.com/goccy/go-json"

	"github.com/direktiv/direktiv-authz/internal/testutil"
)

// The mint response as a mint writes it.
var benchMintResponse = mintResponse{ID: "0f1e2d3c4b5a69788796a5b4c3d2e1f0", Token: "dkt_ns1_0f1e2d3c4b5a69788796a5b4c3d2e1f0_abcdefghijklmnopqrstuvwxyz012345",
	Namespace: "ns1", Description: "bench", Policies: []string{"workflowView", "instancesView"}, Dropped: []string{},
	Created: "2026-11-27T09:30:01Z", Expires: "2026-11-27T10:30:01Z", Warnings: []string{}}

// The sidecar's encoder (goccy/go-json) against encoding/json, whose bytes
// both must write; each is checked before it is timed.
func BenchmarkEncodeMintResponse(b *testing.B) {
	r := benchMintResponse
	want, _ := json.Marshal(r)
	testutil.BenchEncoders(b, want, map[string]func(w *bytes.Buffer){
		"goccy": func(w *bytes.Buffer) { // as answer.Writer.JSON
			out, _ := gojson.Marshal(r)
			w.Write(out)
		},
		"encoding_json": func(w *bytes.Buffer) {
			out, _ := json.Marshal(r)
			w.Write(out)
		},
	})
}
