package store

import (
	"bytes"
	"encoding/json"
	"testing"
	"time"
)

// A record is stored byte for byte as json.Marshal writes it, so records
// written before and after the hand-built encoder read the same.
func TestRecordJSONMatchesEncodingJSON(t *testing.T) {
	created := time.Date(2026, 11, 27, 9, 30, 1, 0, time.UTC)
	base := Token{ID: "0f1e2d3c4b5a69788796a5b4c3d2e1f0", Namespace: "MY-NAMESPACE", Description: "ci",
		Policies: []string{"instancesView", "workflowView"}, Created: created, Expires: created.Add(time.Hour),
		Revision: "sha256:abc", Hash: "ab"}
	child := base
	child.Parent = "ffeeddccbbaa99887766554433221100"
	child.Description = "déploiement \"ci\" <&> 🚀 \x01 \u2028 bad\xff"
	child.Created = time.Date(2026, 11, 27, 9, 30, 1, 123456789, time.FixedZone("CET", 3600))
	child.Expires = child.Created.AddDate(1, 0, 0)
	bare, empty := base, base
	bare.Policies = nil
	empty.Policies = []string{}
	for _, tok := range []Token{base, child, bare, empty} {
		want, err := json.Marshal(tok)
		if err != nil {
			t.Fatal(err)
		}
		if got := tok.appendJSON(nil); !bytes.Equal(got, want) {
			t.Errorf("record\n got %s\nwant %s", got, want)
		}
	}
}
