package apierror

import (
	"bytes"
	"encoding/json"
	"testing"
)

// Any string in an error answer is escaped as encoding/json escapes it, HTML
// escapes included: goccy/go-json writes the answers (the audit lines have
// a fuzz test of their own, in internal/audit).
func FuzzErrorAnswerMatchesEncodingJSON(f *testing.F) {
	for _, s := range []string{"", "plain", "\x00\x01\x08\x0c\x1f\x7f", "a\"b\\c", "\u2028 \u2029", "<a href='x'>&amp;</a>",
		"bad \xff\xfe utf8 \xe2\x82", "日本語 🚀", "\r\n\t", "déploiement \"ci\" <&> 🚀"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		ae := &Error{Code: BadRequest, Message: s}
		want, err := json.Marshal(struct {
			Code    int    `json:"code"`
			Message string `json:"message"`
		}{ae.Status(), s})
		if err != nil {
			t.Fatal(err)
		}
		if got := JSON(nil, []byte("/api/namespaces"), ae); !bytes.Equal(got, append(want, '\n')) {
			t.Fatalf("error answer for %q\n got %s\nwant %s", s, got, want)
		}

	})
}
