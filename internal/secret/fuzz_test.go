package secret_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/direktiv/direktiv-authz/internal/secret"
)

// FuzzParse: Parse never panics, refuses with ErrMalformed only,
// never quotes the token, and whatever it accepts round-trips: the same
// token parses to the same secret, and its namespace and id are valid.
func FuzzParse(f *testing.F) {
	for _, ns := range []string{"a", "ns", "my-namespace.prod_1", strings.Repeat("z", 64)} {
		s, err := secret.New(ns)
		if err != nil {
			f.Fatal(err)
		}
		tok := s.Token
		f.Add(tok)
		f.Add(tok[:len(tok)-1])
		f.Add(tok + "A")
		f.Add(tok[:10] + "\n" + tok[10:])
		f.Add(strings.ToUpper(tok))
		f.Add(tok[:len(tok)-2] + "AA")
	}
	f.Add("")
	f.Add("dkt_")
	f.Add("dkt_AQJucw")
	f.Add("not-a-minted-token")
	f.Fuzz(func(t *testing.T, token string) {
		s, err := secret.Parse(token)
		if err != nil {
			if !errors.Is(err, secret.ErrMalformed) {
				t.Fatalf("error %v does not wrap ErrMalformed", err)
			}
			if len(token) > 16 && strings.Contains(err.Error(), token[len(token)-12:]) {
				t.Fatalf("error %q quotes the token", err)
			}
			return
		}
		if s.Token != token || !secret.IsMinted(token) {
			t.Fatalf("accepted %q as %q", token, s.Token)
		}
		if !secret.ValidNamespace(s.Namespace) || !secret.ValidID(s.ID) {
			t.Fatalf("accepted a token naming %q/%q", s.Namespace, s.ID)
		}
		again, err := secret.Parse(s.Token)
		if err != nil || again != s {
			t.Fatalf("round trip: %#v, %v; want %#v", again, err, s)
		}
	})
}
