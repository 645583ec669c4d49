// Package credential decides which header of a request holds which
// credential, and what kind it is: none, the admin token, a token minted
// here, or a foreign one. It is the one reading of credential headers for
// the server and the event loops; it imports only apierror and the token
// format.
package credential

import (
	"bytes"
	"crypto/subtle"
	"strings"

	"github.com/valyala/fasthttp"

	"github.com/direktiv/direktiv-authz/internal/apierror"
	"github.com/direktiv/direktiv-authz/internal/secret"
)

// The headers a client may send its credential in, on every path: the one
// Direktiv up to 0.8.10 reads, the one Direktiv 0.9 and later, its CLI and
// its open-source web UI send, and the one its enterprise web UI sends
// ("Bearer <key>"). Names are matched case-insensitively.
const (
	HeaderToken         = "Direktiv-Token"
	HeaderAPIKey        = "Direktiv-Api-Key"
	HeaderAuthorization = "Authorization"
)

// Headers lists them, lower-case, for the event loops and for
// removing every one of them before a request goes upstream.
var Headers = []string{"direktiv-token", "direktiv-api-key", "authorization"}

// HeaderList names them for messages.
const HeaderList = "Direktiv-Api-Key, Direktiv-Token or Authorization: Bearer"

// Kind is what a request's credential is.
type Kind uint8

const (
	None    Kind = iota // no credential header (or only empty ones)
	Foreign             // neither the admin token nor a minted token: Direktiv's own key, a gateway's Basic credentials, junk
	Admin               // the admin token
	Minted              // a token minted here (it may still be unknown, revoked or malformed)
)

// Credential is the credential a request carries.
type Credential struct {
	Kind   Kind
	Value  []byte // the credential (for Authorization: Bearer, the token after the scheme); valid as long as the request
	Header []byte // the header it came in first, as the client spelled it, for messages; nil for none; valid as long as the request
}

// Reader reads the credential of a request from its header
// fields, given one at a time to Field in order (name, value without
// surrounding whitespace); Result is the credential. It is the one place
// that decides which header carries what, for the server and the event
// loops alike; the loops give it fields
// without an allocation.
//
// A credential may come in Direktiv-Token, Direktiv-Api-Key or
// Authorization: Bearer; the same value in several of them (or repeated)
// is one credential. Result returns apierror.BadRequest, naming the headers,
// when they carry different values, when an Authorization header is
// malformed, or when any other header carries a token minted here (it
// would reach Direktiv as it is). An Authorization of another scheme
// (Basic, say) is a foreign credential: the public gateway's endpoints may
// take it.
type Reader struct {
	Admin string // the admin token; "": none
	c     Credential
	err   error
}

// Field reads one header field; false means the request is refused
// already and the other fields need not be read.
func (r *Reader) Field(name, value []byte) bool {
	var v []byte
	switch {
	case EqualFoldName(name, Headers[0]), EqualFoldName(name, Headers[1]):
		v = value
	case EqualFoldName(name, Headers[2]):
		if v, r.err = bearer(value); r.err != nil {
			return false
		}
	default:
		if holdsMinted(value) {
			r.err = apierror.Errorf(apierror.BadRequest, "the %s header carries a token minted by this sidecar; send it only in %s", name, HeaderList)
			return false
		}
		return true
	}
	switch {
	case len(v) == 0:
	case !bytes.HasPrefix(v, mintedPrefix) && holdsMinted(v):
		r.err = apierror.Errorf(apierror.BadRequest, "the %s header carries a token minted by this sidecar with other text around it; send the token alone", name)
		return false
	case r.c.Header == nil:
		r.c.Value, r.c.Header = v, name
	case !bytes.Equal(r.c.Value, v):
		r.err = apierror.Errorf(apierror.BadRequest, "the request carries different credentials in its %s and %s headers; send one Credential, in one of %s", r.c.Header, name, HeaderList)
		return false
	}
	return true
}

// Result is the request's credential once every field was read.
func (r *Reader) Result() (Credential, error) {
	if r.err != nil {
		return Credential{}, r.err
	}
	c, admin := r.c, r.Admin
	switch {
	case c.Header == nil:
		c.Kind = None
	case admin != "" && subtle.ConstantTimeCompare(c.Value, []byte(admin)) == 1:
		c.Kind = Admin
	case bytes.HasPrefix(c.Value, mintedPrefix):
		c.Kind = Minted
	default:
		c.Kind = Foreign
	}
	return c, nil
}

// mintedPrefix is secret.Prefix, to test header bytes with.
var mintedPrefix = []byte(secret.Prefix)

// bearer reads an Authorization value: the token of "Bearer <token>"
// (scheme case-insensitive, RFC 9110 11.4), the whole value for another
// scheme (a foreign credential), nothing for an empty value. It returns
// apierror.BadRequest for a value that is not "<scheme> <token68>", or a
// Bearer scheme without a token.
func bearer(value []byte) ([]byte, error) {
	if len(value) == 0 {
		return nil, nil
	}
	scheme, rest, _ := bytes.Cut(value, []byte{' '})
	rest = bytes.TrimLeft(rest, " ")
	if !isToken(scheme) || len(rest) == 0 {
		return nil, apierror.Errorf(apierror.BadRequest, "the Authorization header is malformed: want \"Bearer <token>\"")
	}
	if !bytes.EqualFold(scheme, []byte("Bearer")) {
		if holdsMinted(rest) {
			return nil, apierror.Errorf(apierror.BadRequest, "the Authorization header carries a token minted by this sidecar under the %q scheme; send \"Bearer <token>\"", scheme)
		}
		return value, nil
	}
	if !isToken68(rest) {
		return nil, apierror.Errorf(apierror.BadRequest, "the Authorization header is malformed: want \"Bearer <token>\", one token with no spaces or commas")
	}
	return rest, nil
}

// holdsMinted reports whether v holds a token minted here (one that parses,
// checksum included) anywhere in it.
func holdsMinted(v []byte) bool {
	for {
		i := bytes.Index(v, mintedPrefix)
		if i < 0 {
			return false
		}
		v = v[i:]
		n := len(mintedPrefix)
		for n < len(v) && isBase64URLByte(v[n]) {
			n++
		}
		if _, err := secret.Parse(string(v[:n])); err == nil {
			return true
		}
		v = v[len(mintedPrefix):]
	}
}

func isBase64URLByte(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_'
}

// isToken reports an RFC 9110 token (an auth scheme).
func isToken(b []byte) bool {
	if len(b) == 0 {
		return false
	}
	for _, c := range b {
		if !(isBase64URLByte(c) || strings.IndexByte("!#$%&'*+.^`|~", c) >= 0) {
			return false
		}
	}
	return true
}

// isToken68 reports an RFC 9110 token68: the credentials of Bearer.
func isToken68(b []byte) bool {
	i := 0
	for i < len(b) && (isBase64URLByte(b[i]) || b[i] == '.' || b[i] == '~' || b[i] == '+' || b[i] == '/') {
		i++
	}
	if i == 0 {
		return false
	}
	for i < len(b) && b[i] == '=' {
		i++
	}
	return i == len(b)
}

// EqualFoldName compares a header name with a lower-case one, ASCII
// letters case-insensitively and every other byte exactly.
func EqualFoldName(name []byte, lower string) bool {
	if len(name) != len(lower) {
		return false
	}
	for i, c := range name {
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != lower[i] {
			return false
		}
	}
	return true
}

// FromHeader reads the credential of a request the server parsed. (The
// event loops give a Reader their fields themselves: a loop over a function
// value passed in would allocate per request.)
func FromHeader(h *fasthttp.RequestHeader, admin string) (Credential, error) {
	r := Reader{Admin: admin}
	for name, value := range h.All() {
		if !r.Field(name, value) {
			break
		}
	}
	return r.Result()
}
