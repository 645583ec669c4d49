package sidecar

import (
	"bytes"
	"encoding/hex"

	"github.com/valyala/fasthttp"

	"github.com/direktiv/direktiv-authz/engine"
	"github.com/direktiv/direktiv-authz/internal/apierror"
	"github.com/direktiv/direktiv-authz/internal/secret"
)

// request is what the sidecar reads of a request before anything is
// decided on it: its method and raw target, once, for the server and the
// event loops alike (classify). The rules decide on exactly these bytes
// and the upstream receives exactly them: where Direktiv's router could
// read them differently from the rules, classify refuses.
type request struct {
	method string // upper-case letters
	path   []byte // as received, percent-encoding kept
	query  []byte // as received, without the '?'
	// own: the path is one of the sidecar's own endpoints,
	// /api/namespaces/{ns}/auth/{rest...}; never forwarded.
	own  bool
	ns   string
	rest []string
	// family labels the request in direktiv_authz_requests_total: read
	// here, refused or not, and counted by whichever path answers it.
	family family
}

// classify reads a request's method and raw target (the request line's,
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
func classify(method, target []byte) (request, error) {
	var r request
	path, _, _ := bytes.Cut(target, []byte{'?'})
	r.family = routeFamily(method, path)
	for _, c := range method {
		if c < 'A' || c > 'Z' {
			return r, apierror.Errorf(apierror.BadRequest, "the method %q is not upper-case letters; Direktiv's methods are GET, POST, PUT, PATCH, DELETE, ...", method)
		}
	}
	if len(method) == 0 {
		return r, apierror.Errorf(apierror.BadRequest, "no method")
	}
	r.method = methodString(method)
	if len(target) == 0 || target[0] != '/' {
		return r, apierror.Errorf(apierror.BadRequest, "the request target %q is not a path; the sidecar forwards requests for /api/...", target)
	}
	if bytes.IndexByte(target, '#') >= 0 {
		return r, apierror.Errorf(apierror.BadRequest, "the request target holds a '#'; a fragment is not sent to a server")
	}
	r.path, r.query, _ = bytes.Cut(target, []byte{'?'})
	// Only a path that may name an own endpoint, or that has segments the
	// rules decode, is split here; the rules split every path they decide.
	if bytes.Contains(r.path, []byte("auth")) || bytes.IndexByte(r.path, '%') >= 0 || bytes.Contains(r.path, []byte("/.")) {
		segs, err := engine.SplitPath(string(r.path))
		if err != nil {
			return r, apierror.Errorf(apierror.BadRequest, "%v", err)
		}
		if len(segs) >= 4 && segs[0] == "api" && segs[1] == "namespaces" && segs[3] == "auth" {
			if !secret.ValidNamespace(segs[2]) {
				return r, apierror.Errorf(apierror.BadRequest, "namespace %q is not a valid namespace name (letters, digits, '-', '_', '.', starting with a letter and ending with a letter or digit, at most 64 characters)", segs[2])
			}
			r.own, r.ns, r.rest = true, segs[2], segs[4:]
			return r, nil
		}
	}
	if i := bytes.Index(r.path, []byte("//")); i >= 0 {
		return r, apierror.Errorf(apierror.BadRequest, "the path %q has an empty segment at byte %d; the rules and Direktiv would read it differently", r.path, i+1)
	}
	if err := encodedUnreserved(r.path); err != nil {
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

// rawTarget is the path and query of the request line, as received:
// what classify reads (fasthttp's URI would read a target such as
// //host/path?x=a://b as a host and a path).
func rawTarget(ctx *fasthttp.RequestCtx) (path, query []byte) {
	path, query, _ = bytes.Cut(ctx.Request.Header.RequestURI(), []byte{'?'})
	return path, query
}
