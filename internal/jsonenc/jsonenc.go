// Package jsonenc appends JSON values to byte slices exactly as
// encoding/json writes them, without reflection: for the few fixed shapes on
// the hot paths (a token record, a mint response, an audit line), where
// json.Marshal's reflection cost more than the rest of the work.
package jsonenc

import (
	"time"
	"unicode/utf8"
)

const hex = "0123456789abcdef"

// String appends s as a JSON string, byte for byte as json.Marshal does
// (escapeHTML true) or as a json.Encoder with SetEscapeHTML(false) does:
// '"', '\\' and control characters escaped, invalid UTF-8 as \ufffd, U+2028
// and U+2029 escaped, and with escapeHTML '<', '>' and '&' as \u003c,
// \u003e and \u0026.
func String(dst []byte, s string, escapeHTML bool) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		if b := s[i]; b < utf8.RuneSelf {
			if b >= 0x20 && b != '"' && b != '\\' && (!escapeHTML || (b != '<' && b != '>' && b != '&')) {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch b {
			case '\\', '"':
				dst = append(dst, '\\', b)
			case '\b':
				dst = append(dst, '\\', 'b')
			case '\f':
				dst = append(dst, '\\', 'f')
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hex[b>>4], hex[b&0xF])
			}
			i++
			start = i
			continue
		}
		c, size := utf8.DecodeRuneInString(s[i:])
		if c == utf8.RuneError && size == 1 {
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if c == '\u2028' || c == '\u2029' {
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', 'u', '2', '0', '2', hex[c&0xF])
			i += size
			start = i
			continue
		}
		i += size
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}

// Strings appends list as a JSON array of strings; a nil list is null, as
// json.Marshal writes a nil slice.
func Strings(dst []byte, list []string, escapeHTML bool) []byte {
	if list == nil {
		return append(dst, "null"...)
	}
	dst = append(dst, '[')
	for i, s := range list {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = String(dst, s, escapeHTML)
	}
	return append(dst, ']')
}

// Time appends t as json.Marshal does (RFC 3339 with nanoseconds, quoted).
// t's year must be within 0..9999, where json.Marshal fails.
func Time(dst []byte, t time.Time) []byte {
	dst = append(dst, '"')
	dst = t.AppendFormat(dst, time.RFC3339Nano)
	return append(dst, '"')
}
