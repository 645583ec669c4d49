// Package secret is the format of the tokens direktiv-authz mints: their
// generation, parsing, checksum and hash. It knows no store: a record
// holds only a token's hash (store.Token.Hash).
package secret

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"log/slog"
	"unsafe"
)

// Prefix starts every token minted by direktiv-authz. It tells a minted
// token apart from Direktiv's admin API key without a store lookup.
const Prefix = "dkt_"

// ErrMalformed: a string presented as a minted token is not one (wrong
// prefix, bad encoding, wrong length or version, bad checksum or namespace).
// Its messages never contain the token text.
var ErrMalformed = errors.New("malformed token")

// Token payload layout, before base64url (no padding) encoding:
//
//	version (1) | namespace length n (1) | namespace (n) | id (16) | random (32) | CRC-32C (4)
//
// The checksum covers every byte before it, in big-endian order.
const (
	secretVersion     = 0x01
	maxNamespaceLen   = 64
	secretIDLen       = 16
	secretRandomLen   = 32
	secretChecksumLen = 4
	secretFixedLen    = 1 + 1 + secretIDLen + secretRandomLen + secretChecksumLen
	secretMinPayload  = secretFixedLen + 1
	secretMaxPayload  = secretFixedLen + maxNamespaceLen
)

var (
	secretEncoding = base64.RawURLEncoding.Strict()
	castagnoli     = crc32.MakeTable(crc32.Castagnoli)
	// Bounds on the length of a whole token string, prefix included.
	secretMinLen = len(Prefix) + secretEncoding.EncodedLen(secretMinPayload)
	secretMaxLen = len(Prefix) + secretEncoding.EncodedLen(secretMaxPayload)
)

// Secret is a minted token: Token is the string handed to the client once,
// Namespace and ID name the stored record it belongs to.
//
// String, GoString, LogValue and MarshalJSON never show Token, so a careless
// log line or error cannot leak it; read s.Token explicitly where the secret
// must be shown.
type Secret struct {
	Token     string
	Namespace string
	ID        string // canonical lowercase UUID text, version 4
}

// New mints a token for namespace with a fresh random id and 256 random
// bits from crypto/rand. It returns an error wrapping ErrMalformed if namespace
// is not a valid Direktiv namespace name (see ValidNamespace), or the error of
// the random source.
func New(namespace string) (Secret, error) {
	if !ValidNamespace(namespace) {
		return Secret{}, fmt.Errorf("%w: namespace %s is not a valid namespace name (lowercase letters, digits, '_', '-', '.', starting with a letter, at most 64 bytes)", ErrMalformed, quote(namespace))
	}
	n := len(namespace)
	payload := make([]byte, secretFixedLen+n)
	payload[0] = secretVersion
	payload[1] = byte(n)
	copy(payload[2:], namespace)
	// One read fills the id and the 256-bit secret.
	if _, err := rand.Read(payload[2+n : 2+n+secretIDLen+secretRandomLen]); err != nil {
		return Secret{}, fmt.Errorf("reading random bytes: %w", err)
	}
	id := payload[2+n : 2+n+secretIDLen]
	id[6] = id[6]&0x0f | 0x40 // version 4
	id[8] = id[8]&0x3f | 0x80 // RFC 4122 variant
	sum := crc32.Checksum(payload[:len(payload)-secretChecksumLen], castagnoli)
	binary.BigEndian.PutUint32(payload[len(payload)-secretChecksumLen:], sum)

	buf := make([]byte, len(Prefix)+secretEncoding.EncodedLen(len(payload)))
	copy(buf, Prefix)
	secretEncoding.Encode(buf[len(Prefix):], payload)
	return Secret{Token: string(buf), Namespace: namespace, ID: formatUUID(id)}, nil
}

// Parse checks a token string and returns the namespace and id it names.
// It does no store lookup: the caller looks the record up and compares hashes
// (see Secret.Matches). Every failure wraps ErrMalformed; the message says
// what is wrong but never contains the token text.
func Parse(token string) (Secret, error) {
	if !IsMinted(token) {
		return Secret{}, fmt.Errorf("%w: does not start with %q", ErrMalformed, Prefix)
	}
	if len(token) < secretMinLen || len(token) > secretMaxLen {
		return Secret{}, fmt.Errorf("%w: %d characters long, want %d to %d", ErrMalformed, len(token), secretMinLen, secretMaxLen)
	}
	body := token[len(Prefix):]
	// The base64 decoder skips '\r' and '\n'; refusing every character
	// outside the alphabet keeps the encoding canonical, so a token that
	// parses is byte-for-byte the token that was minted.
	for i := 0; i < len(body); i++ {
		if !isBase64URL(body[i]) {
			return Secret{}, fmt.Errorf("%w: invalid character at offset %d", ErrMalformed, len(Prefix)+i)
		}
	}
	var buf [secretMaxPayload + 2]byte
	n, err := secretEncoding.Decode(buf[:], []byte(body))
	if err != nil {
		return Secret{}, fmt.Errorf("%w: not canonical base64url", ErrMalformed)
	}
	payload := buf[:n]
	if payload[0] != secretVersion {
		return Secret{}, fmt.Errorf("%w: unsupported version %d", ErrMalformed, payload[0])
	}
	nsLen := int(payload[1])
	if nsLen < 1 || nsLen > maxNamespaceLen || len(payload) != secretFixedLen+nsLen {
		return Secret{}, fmt.Errorf("%w: namespace length does not match token length", ErrMalformed)
	}
	signed := payload[:len(payload)-secretChecksumLen]
	if crc32.Checksum(signed, castagnoli) != binary.BigEndian.Uint32(payload[len(signed):]) {
		return Secret{}, fmt.Errorf("%w: checksum mismatch", ErrMalformed)
	}
	ns := payload[2 : 2+nsLen]
	if !validNamespace(ns) {
		return Secret{}, fmt.Errorf("%w: namespace is not a valid namespace name", ErrMalformed)
	}
	id := payload[2+nsLen : 2+nsLen+secretIDLen]
	if id[6]&0xf0 != 0x40 || id[8]&0xc0 != 0x80 {
		return Secret{}, fmt.Errorf("%w: id is not a version 4 UUID", ErrMalformed)
	}
	return Secret{Token: token, Namespace: string(ns), ID: formatUUID(id)}, nil
}

// IsMinted reports whether token has the minted-token prefix. It is a cheap
// test to route a Direktiv-Token header value; it does not validate the token.
func IsMinted(token string) bool {
	return len(token) >= len(Prefix) && token[:len(Prefix)] == Prefix
}

// Hash returns the hex SHA-256 of s.Token: the value a record stores
// (store.Token.Hash).
func (s Secret) Hash() string {
	sum := sha256.Sum256([]byte(s.Token))
	return hex.EncodeToString(sum[:])
}

// HashMatches reports whether hash (a record's Hash) is the hex SHA-256 of
// s.Token, in constant time and without allocating: it is asked on every
// forwarded request.
func (s Secret) HashMatches(hash string) bool {
	sum := sha256.Sum256(unsafe.Slice(unsafe.StringData(s.Token), len(s.Token))) // read only
	var want [2 * sha256.Size]byte
	hex.Encode(want[:], sum[:])
	if len(hash) != len(want) {
		return false
	}
	var diff byte
	for i := range want {
		diff |= want[i] ^ hash[i]
	}
	return diff == 0
}

// String returns "namespace/id", never the token.
func (s Secret) String() string { return s.Namespace + "/" + s.ID }

// GoString keeps %#v from printing the token.
func (s Secret) GoString() string {
	return fmt.Sprintf("secret.Secret{Namespace:%q, ID:%q, Token:<redacted>}", s.Namespace, s.ID)
}

// LogValue makes slog log the namespace and id, never the token.
func (s Secret) LogValue() slog.Value {
	return slog.GroupValue(slog.String("namespace", s.Namespace), slog.String("id", s.ID))
}

// MarshalJSON encodes the namespace and id only, never the token.
func (s Secret) MarshalJSON() ([]byte, error) {
	return json.Marshal(struct {
		Namespace string `json:"namespace"`
		ID        string `json:"id"`
	}{s.Namespace, s.ID})
}

// ValidNamespace reports whether ns is a namespace name the sidecar accepts:
// Direktiv's ^(([a-z][a-z0-9_\-\.]*[a-z0-9])|([a-z]))$, at most 64 bytes,
// with upper-case letters allowed too, so that the documentation's
// MY-NAMESPACE placeholder works as pasted. Names are case-sensitive.
func ValidNamespace(ns string) bool { return validNamespace(ns) }

func validNamespace[S string | []byte](ns S) bool {
	n := len(ns)
	if n == 0 || n > maxNamespaceLen || !isLetter(ns[0]) {
		return false
	}
	if last := ns[n-1]; !isLetter(last) && !isDigit(last) {
		return false
	}
	for i := 1; i < n-1; i++ {
		if c := ns[i]; !isLetter(c) && !isDigit(c) && c != '_' && c != '-' && c != '.' {
			return false
		}
	}
	return true
}

func isLetter(c byte) bool { return isLower(c) || 'A' <= c && c <= 'Z' }

// ValidID reports whether id is a UUID in canonical lowercase text form
// (8-4-4-4-12 hex digits). Any UUID version is accepted.
func ValidID(id string) bool {
	if len(id) != 36 {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		switch i {
		case 8, 13, 18, 23:
			if c != '-' {
				return false
			}
		default:
			if !isDigit(c) && (c < 'a' || c > 'f') {
				return false
			}
		}
	}
	return true
}

func formatUUID(b []byte) string {
	const digits = "0123456789abcdef"
	var out [36]byte
	j := 0
	for i, v := range b[:16] {
		if i == 4 || i == 6 || i == 8 || i == 10 {
			out[j] = '-'
			j++
		}
		out[j] = digits[v>>4]
		out[j+1] = digits[v&0x0f]
		j += 2
	}
	return string(out[:])
}

func isLower(c byte) bool { return c >= 'a' && c <= 'z' }
func isDigit(c byte) bool { return c >= '0' && c <= '9' }

func isBase64URL(c byte) bool {
	return isLower(c) || isDigit(c) || (c >= 'A' && c <= 'Z') || c == '-' || c == '_'
}

// quote quotes a caller-supplied value for an error message, cut to a length
// a person can read.
func quote(s string) string {
	const max = 80
	if len(s) > max {
		return fmt.Sprintf("%q...", s[:max])
	}
	return fmt.Sprintf("%q", s)
}
