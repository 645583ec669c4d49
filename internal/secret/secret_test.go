package secret_test

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"log/slog"
	"strings"
	"testing"

	"github.com/direktiv/direktiv-authz/internal/secret"
)

func mustSecret(tb testing.TB, ns string) secret.Secret {
	tb.Helper()
	s, err := secret.New(ns)
	if err != nil {
		tb.Fatalf("New(%q): %v", ns, err)
	}
	return s
}

// payload decodes a token's payload, for tests that forge tokens.
func payload(tb testing.TB, token string) []byte {
	tb.Helper()
	b, err := base64.RawURLEncoding.DecodeString(strings.TrimPrefix(token, secret.Prefix))
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// encode builds a token from a payload, fixing the checksum if asked.
func encode(p []byte, fixSum bool) string {
	p = bytes.Clone(p)
	if fixSum && len(p) >= 4 {
		sum := crc32.Checksum(p[:len(p)-4], crc32.MakeTable(crc32.Castagnoli))
		binary.BigEndian.PutUint32(p[len(p)-4:], sum)
	}
	return secret.Prefix + base64.RawURLEncoding.EncodeToString(p)
}

func TestSecretRoundTrip(t *testing.T) {
	for _, ns := range []string{"a", "ns", "my-namespace.prod_1", strings.Repeat("n", 64)} {
		t.Run(ns, func(t *testing.T) {
			s := mustSecret(t, ns)
			if !strings.HasPrefix(s.Token, secret.Prefix) || !secret.IsMinted(s.Token) {
				t.Fatalf("token %q lacks the prefix", s.Token)
			}
			p := payload(t, s.Token)
			if want := 1 + 1 + len(ns) + 16 + 32 + 4; len(p) != want {
				t.Fatalf("payload is %d bytes, want %d", len(p), want)
			}
			if p[0] != 1 || int(p[1]) != len(ns) || string(p[2:2+len(ns)]) != ns {
				t.Fatalf("payload header % x does not hold version 1 and the namespace", p[:2+len(ns)])
			}
			if !secret.ValidID(s.ID) || s.ID[14] != '4' || !strings.ContainsRune("89ab", rune(s.ID[19])) {
				t.Fatalf("id %q is not a version 4 UUID", s.ID)
			}
			got, err := secret.Parse(s.Token)
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if got != s {
				t.Fatalf("Parse = %#v, want %#v", got, s)
			}
			if got.Hash() != s.Hash() || len(s.Hash()) != 64 {
				t.Fatalf("hash %q", s.Hash())
			}
		})
	}
	a, b := mustSecret(t, "ns"), mustSecret(t, "ns")
	if a.Token == b.Token || a.ID == b.ID || a.Hash() == b.Hash() {
		t.Fatal("two secrets are alike")
	}
}

func TestNewRejectsBadNamespace(t *testing.T) {
	for _, ns := range []string{"", "-A", "1ns", "ns-", "n s", strings.Repeat("n", 65)} {
		if _, err := secret.New(ns); !errors.Is(err, secret.ErrMalformed) {
			t.Errorf("New(%q) = %v, want ErrMalformed", ns, err)
		}
	}
}

func TestParseRejects(t *testing.T) {
	good := mustSecret(t, "ns")
	p := payload(t, good.Token)
	flip := func(i int) []byte { q := bytes.Clone(p); q[i] ^= 0x01; return q }
	withNS := func(ns string) []byte {
		q := []byte{1, byte(len(ns))}
		q = append(q, ns...)
		q = append(q, p[4:]...) // id, random, checksum of "ns"
		return q
	}
	idVersion3 := bytes.Clone(p)
	idVersion3[2+2+6] = idVersion3[2+2+6]&0x0f | 0x30

	tests := []struct {
		name, token, want string
	}{
		{"empty", "", "does not start with"},
		{"admin key", "some-api-key-of-direktiv", "does not start with"},
		{"prefix only", secret.Prefix, "characters long"},
		{"uppercase prefix", "DKT_" + good.Token[4:], "does not start with"},
		{"truncated", good.Token[:len(good.Token)-1], ""},
		{"too long", good.Token + strings.Repeat("A", 200), "characters long"},
		{"padding", good.Token + "==", "invalid character"},
		{"newline", good.Token[:20] + "\n" + good.Token[20:], "invalid character"},
		{"space", good.Token[:20] + " " + good.Token[21:], "invalid character"},
		{"standard base64", secret.Prefix + strings.NewReplacer("-", "+", "_", "/").Replace(good.Token[4:]) + "+/", "invalid character"},
		{"flipped bit in namespace", encode(flip(2), false), "checksum"},
		{"flipped bit in id", encode(flip(10), false), "checksum"},
		{"flipped bit in secret", encode(flip(40), false), "checksum"},
		{"flipped bit in checksum", encode(flip(len(p)-1), false), "checksum"},
		{"version 2", encode(append([]byte{2}, p[1:]...), true), "version"},
		{"length byte too big", encode(append([]byte{1, 3}, p[2:]...), true), "namespace length"},
		{"length byte zero", encode(append([]byte{1, 0}, p[2:]...), true), "namespace length"},
		{"invalid namespace", encode(withNS("N!"), true), "not a valid namespace name"},
		{"not a v4 id", encode(idVersion3, true), "version 4"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := secret.Parse(tc.token)
			if !errors.Is(err, secret.ErrMalformed) {
				t.Fatalf("Parse = %v, want ErrMalformed", err)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q does not say %q", err, tc.want)
			}
			if len(tc.token) > len(secret.Prefix)+4 && strings.Contains(err.Error(), tc.token[len(secret.Prefix):]) {
				t.Fatalf("error %q contains the token", err)
			}
		})
	}
}

func TestSecretNeverPrinted(t *testing.T) {
	s := mustSecret(t, "ns")
	body := s.Token[len(secret.Prefix):]
	var logged bytes.Buffer
	slog.New(slog.NewJSONHandler(&logged, nil)).Info("minted", "secret", s)
	text, _ := json.Marshal(s)
	outputs := map[string]string{
		"%v":       fmt.Sprintf("%v", s),
		"%+v":      fmt.Sprintf("%+v", s),
		"%#v":      fmt.Sprintf("%#v", s),
		"%s":       fmt.Sprintf("%s", s),
		"%v ptr":   fmt.Sprintf("%v", &s),
		"slog":     logged.String(),
		"json":     string(text),
		"in error": fmt.Errorf("minting %v failed", s).Error(),
	}
	for how, out := range outputs {
		if strings.Contains(out, body) {
			t.Errorf("%s prints the token: %s", how, out)
		}
		if !strings.Contains(out, s.ID) {
			t.Errorf("%s does not show the id: %s", how, out)
		}
	}
	if got := s.String(); got != "ns/"+s.ID {
		t.Errorf("String = %q", got)
	}
}

func TestValidNamespace(t *testing.T) {
	valid := []string{"a", "ab", "a1", "a-b", "a.b", "a_b", "a--1", "a.-_z", strings.Repeat("a", 64), "A", "aB", "MY-NAMESPACE"}
	invalid := []string{"", "1", "1a", "-a", ".a", "_a", "a-", "a.", "a_", "a b", "a/b", "a{b", "a}b", "ä", strings.Repeat("a", 65)}
	for _, ns := range valid {
		if !secret.ValidNamespace(ns) {
			t.Errorf("ValidNamespace(%q) = false", ns)
		}
	}
	for _, ns := range invalid {
		if secret.ValidNamespace(ns) {
			t.Errorf("ValidNamespace(%q) = true", ns)
		}
	}
}

func TestValidID(t *testing.T) {
	valid := []string{"00000000-0000-0000-0000-000000000000", "0f1e2d3c-4b5a-4697-8877-a6b5c4d3e2f1", "ffffffff-ffff-ffff-ffff-ffffffffffff"}
	invalid := []string{"", "0F1E2D3C-4B5A-4697-8877-A6B5C4D3E2F1", "0f1e2d3c4b5a469788 77a6b5c4d3e2f1", "0f1e2d3c-4b5a-4697-8877-a6b5c4d3e2f", "0f1e2d3c-4b5a-4697-8877-a6b5c4d3e2f1a",
		"{0f1e2d3c-4b5a-4697-8877-a6b5c4d3e2f}", "0f1e2d3c_4b5a_4697_8877_a6b5c4d3e2f1", "0f1e2d3c-4b5a-4697-8877-a6b5c4d3e2g1"}
	for _, id := range valid {
		if !secret.ValidID(id) {
			t.Errorf("ValidID(%q) = false", id)
		}
	}
	for _, id := range invalid {
		if secret.ValidID(id) {
			t.Errorf("ValidID(%q) = true", id)
		}
	}
}

func BenchmarkParse(b *testing.B) {
	s := mustSecret(b, "my-namespace")
	b.ReportAllocs()
	for b.Loop() {
		if _, err := secret.Parse(s.Token); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkNew(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if _, err := secret.New("my-namespace"); err != nil {
			b.Fatal(err)
		}
	}
}

func TestSecretHashMatches(t *testing.T) {
	sec, err := secret.New("ns1")
	if err != nil {
		t.Fatal(err)
	}
	other, err := secret.New("ns1")
	if err != nil {
		t.Fatal(err)
	}
	h := sec.Hash()
	flipped := []byte(h)
	flipped[len(flipped)-1] ^= 1
	for _, tc := range []struct {
		name string
		hash string
		want bool
	}{
		{"its own hash", h, true},
		{"another token's hash", other.Hash(), false},
		{"one bit off in the last character", string(flipped), false},
		{"upper-case hex", strings.ToUpper(h), h == strings.ToUpper(h)},
		{"truncated", h[:63], false},
		{"longer", h + "0", false},
		{"empty", "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := sec.HashMatches(tc.hash); got != tc.want {
				t.Fatalf("HashMatches(%q) = %v, want %v", tc.hash, got, tc.want)
			}
		})
	}
	if n := testing.AllocsPerRun(100, func() { sec.HashMatches(h) }); n != 0 {
		t.Errorf("HashMatches allocates %v times, want 0", n)
	}
}
