package tokens

import (
	"testing"

	"github.com/valyala/fasthttp"

	"github.com/direktiv/direktiv-authz/internal/answer"
)

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
		(answer.Writer{}).JSON(&ctx, fasthttp.StatusCreated, tt.r)
		if got := string(ctx.Response.Body()); got != tt.want+"\n" {
			t.Errorf("mint response\n got %s\nwant %s", got, tt.want)
		}
	}
}
