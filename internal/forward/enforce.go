// Package forward serves every request the sidecar does not own: it
// enforces the one decision (authz) on it, checks the objects the rules
// name, and forwards it to Direktiv over a pool of connections (Proxy),
// streaming bodies both ways. The event loops forward the plain requests
// themselves, from the same decision; this package is the server's path.
// It imports nothing of the token endpoints or the event loops' glue.
package forward

import (
	"errors"

	"github.com/valyala/fasthttp"

	"github.com/direktiv/direktiv-authz/engine"
	"github.com/direktiv/direktiv-authz/internal/answer"
	"github.com/direktiv/direktiv-authz/internal/apierror"
	"github.com/direktiv/direktiv-authz/internal/audit"
	"github.com/direktiv/direktiv-authz/internal/authn"
	"github.com/direktiv/direktiv-authz/internal/authz"
	"github.com/direktiv/direktiv-authz/internal/classify"
	"github.com/direktiv/direktiv-authz/internal/credential"
	"github.com/direktiv/direktiv-authz/internal/metrics"
)

// Forwarder enforces and forwards the requests the server serves.
type Forwarder struct {
	Proxy      *Proxy
	Authn      *authn.Authenticator
	Authz      *authz.Authorizer
	Metrics    *metrics.Metrics // nil: none
	Audits     *audit.Log       // nil: none
	Answers    answer.Writer
	AdminToken string
}

// Forward serves every request the sidecar does not own: enforce decides
// whether it may pass and what the upstream gets, then the proxy sends it
// upstream and streams the answer back (or, for the routes the rules mark,
// reads and rewrites it: see direktiv.go). The statuses of the sidecar's
// own are those of enforce (400, 401, 403, 404, 503) and of Proxy.forward
// (502, 503, 504); every other status is the upstream's.
func (f *Forwarder) Forward(ctx *fasthttp.RequestCtx, r classify.Request) {
	d, err := f.enforce(ctx, r)
	if err != nil {
		f.Answers.Error(ctx, err)
		return
	}
	start := f.Metrics.Clock()
	if d.Route.Transform != "" {
		err = f.forwardTransformed(ctx, d)
	} else {
		err = f.Proxy.forward(ctx, d)
	}
	if ae := (*apierror.Error)(nil); !errors.As(err, &ae) || ae.Code != apierror.BadRequest { // a 400: nothing was sent
		f.Metrics.UpstreamDone(start, upstreamFailure(err))
	}
	if err != nil {
		f.Answers.Error(ctx, err)
	}
}

// enforce decides whether a request may be forwarded, and how:
//
//   - Its credential is read from any of the credential headers
//     (credential.FromHeader); a minted token is authenticated.
//   - The route rules are asked, for every caller: the admin token, a
//     minted token, or none (no credential, or one that is neither). Without
//     a valid credential only a route the rules name public passes (the
//     web UI's files, GET /api/v2/status, the public gateway); with
//     --unsafe-forward-unauthenticated every request without a minted
//     token passes unchanged and unasked, as Direktiv would judge it.
//   - Objects the rules name (a variable looked up by id alone) are checked
//     to belong to the token's namespace (checkLookups).
//
// A minted secret never goes upstream: on an authorized route every
// credential header is replaced by the upstream API key (or removed when
// none is configured; the admin token then passes as sent); on a public
// route a minted token is removed and any other credential passes as sent,
// for the gateway's own authentication.
//
// It returns apierror.BadRequest for conflicting or malformed credential
// headers and for what the rules cannot read; apierror.Unauthenticated (401)
// for a missing, foreign, malformed, unknown, expired or revoked credential
// on a route that is not public; apierror.Forbidden (403) with the rules'
// reason, which names the permission the route needs; apierror.NotFound for an
// object of another namespace; apierror.Unavailable (503) when the store, the
// engine or the upstream's lookup cannot answer (fail closed). Every
// refusal is audited; nothing refused reaches the upstream.
func (f *Forwarder) enforce(ctx *fasthttp.RequestCtx, r classify.Request) (authz.Decision, error) {
	d, err := f.enforceRequest(ctx, r)
	if err != nil {
		f.AuditRefusal(ctx, r, d, err)
	}
	return d, err
}

// AuditRefusal audits a forward refused with err, on either path.
func (f *Forwarder) AuditRefusal(ctx *fasthttp.RequestCtx, r classify.Request, d authz.Decision, err error) {
	ae := apierror.As(err)
	f.Audits.Request(ctx, audit.Event{
		Action:    "forward",
		Namespace: routeNamespace(r.Path),
		Caller:    d.Who.ID(),
		Decision:  "deny",
		Reason:    ae.Message,
		Status:    ae.Status(),
		Method:    r.Method,
		Path:      string(r.Path),
	})
}

// enforceRequest is enforce without the audit.
func (f *Forwarder) enforceRequest(ctx *fasthttp.RequestCtx, r classify.Request) (authz.Decision, error) {
	cred, err := credential.FromHeader(&ctx.Request.Header, f.AdminToken)
	if err != nil {
		return authz.Decision{Req: r}, err
	}
	var who authn.Caller
	var authErr error
	if cred.Kind == credential.Minted {
		who, authErr = f.Authn.Authenticate(ctx, cred)
	}
	d, err := f.Authz.Decide(cred, who, authErr, r, &ctx.Request.Header)
	if err != nil {
		return d, err
	}
	if len(d.Route.Lookups) > 0 {
		if err := f.checkLookups(d); err != nil {
			return d, err
		}
	}
	return d, nil
}

// routeNamespace is the namespace a Direktiv API path names
// (/api/namespaces/{ns}/... or /api/v2/namespaces/{ns}/...), "" for any
// other path, for the audit trail.
func routeNamespace(path []byte) string {
	segs, err := splitPath(path)
	if err != nil {
		return ""
	}
	switch {
	case len(segs) >= 3 && segs[0] == "api" && segs[1] == "namespaces":
		return segs[2]
	case len(segs) >= 4 && segs[0] == "api" && segs[1] == "v2" && segs[2] == "namespaces":
		return segs[3]
	}
	return ""
}

// splitPath splits a raw request path the way the route rules see it
// (engine.SplitPath): empty segments dropped, each percent-decoded; a path
// that cannot be read safely is apierror.BadRequest.
func splitPath(raw []byte) ([]string, error) {
	segs, err := engine.SplitPath(string(raw))
	if err != nil {
		return nil, apierror.Errorf(apierror.BadRequest, "%v", err)
	}
	return segs, nil
}
