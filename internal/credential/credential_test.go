package credential

import (
	"strings"
	"testing"

	"github.com/direktiv/direktiv-authz/internal/apierror"
	"github.com/direktiv/direktiv-authz/internal/secret"
)

// TestReaderDecidesWhichHeaderHoldsWhat reads header fields as the server and
// the loops give them and checks the credential, or the 400 naming why.
func TestReaderDecidesWhichHeaderHoldsWhat(t *testing.T) {
	s, err := secret.New("ns1")
	if err != nil {
		t.Fatal(err)
	}
	minted := s.Token
	other, _ := secret.New("ns1")
	const admin = "the-admin-token"
	for _, tc := range []struct {
		name    string
		fields  [][2]string
		kind    Kind
		value   string
		header  string
		mention string // a refusal: the 400's message mentions it
	}{
		{"none", [][2]string{{"Accept", "*/*"}}, None, "", "", ""},
		{"empty values are none", [][2]string{{"Direktiv-Token", ""}, {"Authorization", ""}}, None, "", "", ""},
		{"admin in Direktiv-Api-Key", [][2]string{{"direktiv-api-key", admin}}, Admin, admin, "direktiv-api-key", ""},
		{"minted in Direktiv-Token", [][2]string{{"Direktiv-Token", minted}}, Minted, minted, "Direktiv-Token", ""},
		{"minted as Bearer, any case", [][2]string{{"AUTHORIZATION", "bearer " + minted}}, Minted, minted, "AUTHORIZATION", ""},
		{"same value twice is one", [][2]string{{"Direktiv-Token", minted}, {"Authorization", "Bearer " + minted}}, Minted, minted, "Direktiv-Token", ""},
		{"Basic is foreign", [][2]string{{"Authorization", "Basic dXNlcjpwdw=="}}, Foreign, "Basic dXNlcjpwdw==", "Authorization", ""},
		{"a look-alike of the admin token", [][2]string{{"Direktiv-Api-Key", admin + "x"}}, Foreign, admin + "x", "Direktiv-Api-Key", ""},
		{"two credentials", [][2]string{{"Direktiv-Token", minted}, {"Direktiv-Api-Key", other.Token}}, 0, "", "", "different credentials"},
		{"minted in another header", [][2]string{{"X-Token", minted}}, 0, "", "", "X-Token header carries a token minted"},
		{"minted with text around it", [][2]string{{"Direktiv-Token", "x" + minted}}, 0, "", "", "other text around it"},
		{"minted under another scheme", [][2]string{{"Authorization", "Token " + minted}}, 0, "", "", `"Token" scheme`},
		{"Bearer without a token", [][2]string{{"Authorization", "Bearer"}}, 0, "", "", "malformed"},
		{"Bearer with two tokens", [][2]string{{"Authorization", "Bearer a b"}}, 0, "", "", "no spaces or commas"},
	} {
		r := Reader{Admin: admin}
		for _, f := range tc.fields {
			if !r.Field([]byte(f[0]), []byte(f[1])) {
				break
			}
		}
		c, err := r.Result()
		if tc.mention != "" {
			ae, ok := err.(*apierror.Error)
			if !ok || ae.Status() != 400 || !strings.Contains(ae.Message, tc.mention) {
				t.Errorf("%s: %v, want a 400 mentioning %q", tc.name, err, tc.mention)
			}
			continue
		}
		if err != nil || c.Kind != tc.kind || string(c.Value) != tc.value || string(c.Header) != tc.header {
			t.Errorf("%s: kind %d value %q header %q (%v), want %d %q %q", tc.name, c.Kind, c.Value, c.Header, err, tc.kind, tc.value, tc.header)
		}
	}
}

// A Reader without an admin token takes no value for it, not even "".
func TestReaderWithoutAdminToken(t *testing.T) {
	r := Reader{}
	r.Field([]byte("Direktiv-Api-Key"), []byte("anything"))
	if c, err := r.Result(); err != nil || c.Kind != Foreign {
		t.Errorf("kind %d, %v; want foreign", c.Kind, err)
	}
}
