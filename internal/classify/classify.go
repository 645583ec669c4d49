// Package classify reads what the sidecar needs of a request before anything
// is decided on it: its method and raw target, once, for the server and the
// event loops alike, and the route family that labels it in the metrics. It
// imports only apierror, the engine's path splitting and the token format.
package classify

import (
	"bytes"
	"encoding/hex"

	"github.com/direktiv/direktiv-authz/engine"
	"github.com/direktiv/direktiv-authz/internal/apierror"
	"github.com/direktiv/direktiv-authz/internal/secret"
)

// Request is what the sidecar reads of a request before anything is
// decided on it: its method and raw target, once, for the server and the
// event loops alike (Read). The rules decide on exactly these bytes
// and the upstream receives exactly them: where Direktiv's router could
// read them differently from the rules, classify refuses.
type Request struct {
	Method string // upper-case letters
	Path   []byte // as received, percent-encoding kept
	Query  []byte // as received, without the '?'
	// Own: the path is one of the sidecar's own endpoints,
	// /api/namespaces/{ns}/auth/{rest...}; never forwarded.
	Own  bool
	NS   string
	Rest []string
	// Family labels the request in direktiv_authz_requests_total: read
	// here, refused or not, and counted by whichever path answers it.
	Family Family
}

// Read reads a request's method and raw target (the request line's,
// as received). It refuses with apierror.BadRequest:
//
//   - a method that is not upper-case letters (Direktiv's router matches
//     methods case-sensitively; the rules read them upper-case);
//   - a target that is not a path (absolute-form, '*'), or holds a '#';
//   - a path whose segments do not read one way (engine.SplitPath: bad
//     escapes, "." or "..", an encoded '/');
//   - for a path that is forwarded: an empty segment other than a trailing
//     "/" (the rules skip it, Direktiv's router does not), and a
//     percent-encoded unreserved character (the rules decode it, Direktiv's
//     router routes on the encoded path).
//
// The sidecar's own endpoints are never forwarded: a path such as
// //api/namespaces/{ns}/auth/token reaches them as its segments read.
func Read(method, target []byte) (Request, error) {
	var r Request
	path, _, _ := bytes.Cut(target, []byte{'?'})
	r.Family = routeFamily(method, path)
	for _, c := range method {
		if c < 'A' || c > 'Z' {
			return r, apierror.Errorf(apierror.BadRequest, "the method %q is not upper-case letters; Direktiv's methods are GET, POST, PUT, PATCH, DELETE, ...", method)
		}
	}
	if len(method) == 0 {
		return r, apierror.Errorf(apierror.BadRequest, "no method")
	}
	r.Method = methodString(method)
	if len(target) == 0 || target[0] != '/' {
		return r, apierror.Errorf(apierror.BadRequest, "the request target %q is not a path; the sidecar forwards requests for /api/...", target)
	}
	if bytes.IndexByte(target, '#') >= 0 {
		return r, apierror.Errorf(apierror.BadRequest, "the request target holds a '#'; a fragment is not sent to a server")
	}
	r.Path, r.Query, _ = bytes.Cut(target, []byte{'?'})
	// Only a path that may name an own endpoint, or that has segments the
	// rules decode, is split here; the rules split every path they decide.
	if bytes.Contains(r.Path, []byte("auth")) || bytes.IndexByte(r.Path, '%') >= 0 || bytes.Contains(r.Path, []byte("/.")) {
		segs, err := engine.SplitPath(string(r.Path))
		if err != nil {
			return r, apierror.Errorf(apierror.BadRequest, "%v", err)
		}
		if len(segs) >= 4 && segs[0] == "api" && segs[1] == "namespaces" && segs[3] == "auth" {
			if !secret.ValidNamespace(segs[2]) {
				return r, apierror.Errorf(apierror.BadRequest, "namespace %q is not a valid namespace name (letters, digits, '-', '_', '.', starting with a letter and ending with a letter or digit, at most 64 characters)", segs[2])
			}
			r.Own, r.NS, r.Rest = true, segs[2], segs[4:]
			return r, nil
		}
	}
	if i := bytes.Index(r.Path, []byte("//")); i >= 0 {
		return r, apierror.Errorf(apierror.BadRequest, "the path %q has an empty segment at byte %d; the rules and Direktiv would read it differently", r.Path, i+1)
	}
	if err := encodedUnreserved(r.Path); err != nil {
		return r, err
	}
	return r, nil
}

// encodedUnreserved refuses a percent-encoded letter, digit, '-', '.', '_'
// or '~' in path: no client needs to encode one (RFC 3986, 2.3), and the
// rules would read "n%61mespaces" as namespaces where Direktiv's router
// does not.
func encodedUnreserved(path []byte) error {
	for i := bytes.IndexByte(path, '%'); i >= 0 && i+2 < len(path); {
		var c [1]byte
		if _, err := hex.Decode(c[:], path[i+1:i+3]); err == nil && unreserved(c[0]) {
			return apierror.Errorf(apierror.BadRequest, "the path %q encodes %q as %s; send it as is", path, c[0], path[i:i+3])
		}
		j := bytes.IndexByte(path[i+1:], '%')
		if j < 0 {
			break
		}
		i += 1 + j
	}
	return nil
}

func unreserved(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '.' || c == '_' || c == '~'
}

// methodString is string(m) without an allocation for the common methods.
func methodString(m []byte) string {
	for _, s := range [...]string{"GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"} {
		if string(m) == s {
			return s
		}
	}
	return string(m)
}
