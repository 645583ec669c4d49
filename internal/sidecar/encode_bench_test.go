package sidecar

import (
	"bytes"
	"encoding/json"
	"testing"

	gojson "github.com/goccy/go-json"

	"github.com/direktiv/direktiv-authz/internal/apierror"
	"github.com/direktiv/direktiv-authz/internal/testutil"
)

// The shapes the sidecar encodes per request, as a mint writes them.
var (
	benchMintResponse = mintResponse{ID: "0f1e2d3c4b5a69788796a5b4c3d2e1f0", Token: "dkt_ns1_0f1e2d3c4b5a69788796a5b4c3d2e1f0_abcdefghijklmnopqrstuvwxyz012345",
		Namespace: "ns1", Description: "bench", Policies: []string{"workflowView", "instancesView"}, Dropped: []string{},
		Created: "2026-11-27T09:30:01Z", Expires: "2026-11-27T10:30:01Z", Warnings: []string{}}
	benchAPIError = &apierror.Error{Code: apierror.Forbidden, Message: `policy "permissionsManage" is not held by the caller; ask for policies you hold`}
)

// The sidecar's encoder (goccy/go-json) against encoding/json, whose bytes
// both must write, on the shapes above; each is checked before it is timed.
func BenchmarkEncodeMintResponse(b *testing.B) {
	r := benchMintResponse
	want, _ := json.Marshal(r)
	testutil.BenchEncoders(b, want, map[string]func(w *bytes.Buffer){
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
	testutil.BenchEncoders(b, want, map[string]func(w *bytes.Buffer){
		"goccy": func(w *bytes.Buffer) { w.Write(apierror.JSON(make([]byte, 0, 160), path, benchAPIError)) },
		"encoding_json": func(w *bytes.Buffer) {
			out, _ := json.Marshal(newErrorBodyV2(benchAPIError))
			w.Write(append(out, '\n'))
		},
	})
}
