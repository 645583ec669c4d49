package jsonenc

import (
	"bytes"
	"encoding/json"
	"testing"
	"time"
)

var samples = []string{"", "plain", "\x00\x01\x08\x0c\x1f\x7f", "a\"b\\c", "\u2028 \u2029", "<a href='x'>&amp;</a>",
	"bad \xff\xfe utf8 \xe2\x82", "日本語 🚀", "\r\n\t", "déploiement \"ci\" <&> 🚀"}

// marshal returns encoding/json's encoding of v, without the newline.
func marshal(t *testing.T, v any, escapeHTML bool) []byte {
	t.Helper()
	var b bytes.Buffer
	e := json.NewEncoder(&b)
	e.SetEscapeHTML(escapeHTML)
	if err := e.Encode(v); err != nil {
		t.Fatal(err)
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n"))
}

func TestStringMatchesEncodingJSON(t *testing.T) {
	for _, html := range []bool{true, false} {
		for _, s := range samples {
			if got, want := String(nil, s, html), marshal(t, s, html); !bytes.Equal(got, want) {
				t.Errorf("String(%q, html %v) = %s, want %s", s, html, got, want)
			}
		}
		for _, list := range [][]string{nil, {}, {"one"}, samples} {
			if got, want := Strings(nil, list, html), marshal(t, list, html); !bytes.Equal(got, want) {
				t.Errorf("Strings(%q, html %v) = %s, want %s", list, html, got, want)
			}
		}
	}
}

func TestTimeMatchesEncodingJSON(t *testing.T) {
	for _, tm := range []time.Time{
		time.Date(2026, 11, 27, 9, 30, 1, 0, time.UTC),
		time.Date(2026, 11, 27, 9, 30, 1, 123456789, time.FixedZone("CET", 3600)),
		time.Date(2255, 12, 31, 23, 59, 59, 100, time.UTC),
		time.Unix(0, 0).UTC(),
	} {
		if got, want := Time(nil, tm), marshal(t, tm, true); !bytes.Equal(got, want) {
			t.Errorf("Time(%v) = %s, want %s", tm, got, want)
		}
	}
}

func FuzzString(f *testing.F) {
	for _, s := range samples {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		for _, html := range []bool{true, false} {
			if got, want := String(nil, s, html), marshal(t, s, html); !bytes.Equal(got, want) {
				t.Fatalf("String(%q, html %v) = %s, want %s", s, html, got, want)
			}
		}
	})
}
