package sidecar

import (
	"errors"

	"github.com/valyala/fasthttp"

	"github.com/direktiv/direktiv-authz/internal/apierror"
	"github.com/direktiv/direktiv-authz/internal/audit"
	"github.com/direktiv/direktiv-authz/internal/authn"
	"github.com/direktiv/direktiv-authz/internal/authz"
	"github.com/direktiv/direktiv-authz/internal/classify"
	"github.com/direktiv/direktiv-authz/internal/credential"
)

// forward serves every request the sidecar does not own: enforce decides
// whether it may pass and what the upstream gets, then the proxy sends it
// upstream and streams the answer back (or, for the routes the rules mark,
// reads and rewrites it: see direktiv.go). The statuses of the sidecar's
// own are those of enforce (400, 401, 403, 404, 503) and of proxy.forward
// (502, 503, 504); every other status is the upstream's.
func (a *app) forward(ctx *fasthttp.RequestCtx, r classify.Request) {
	d, err := a.enforce(ctx, r)
	if err != nil {
		a.answers.Error(ctx, err)
		return
	}
	start := a.metrics.Clock()
	if d.Route.Transform != "" {
		err = a.forwardTransformed(ctx, d)
	} else {
		err = a.proxy.forward(ctx, d)
	}
	if ae := (*apierror.Error)(nil); !errors.As(err, &ae) || ae.Code != apierror.BadRequest { // a 400: nothing was sent
		a.metrics.UpstreamDone(start, upstreamFailure(err))
	}
	if err != nil {
		a.answers.Error(ctx, err)
	}
}

// enforce decides whether a request may be forwarded, and how:
//
//   - Its credential is read from any of the credential headers
//     (credentialReader); a minted token is authenticated.
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
func (a *app) enforce(ctx *fasthttp.RequestCtx, r classify.Request) (authz.Decision, error) {
	d, err := a.enforceRequest(ctx, r)
	if err != nil {
		a.auditRefusal(ctx, r, d, err)
	}
	return d, err
}

// auditRefusal audits a forward refused with err, on either path.
func (a *app) auditRefusal(ctx *fasthttp.RequestCtx, r classify.Request, d authz.Decision, err error) {
	ae := apierror.As(err)
	a.audits.Request(ctx, audit.Event{
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
func (a *app) enforceRequest(ctx *fasthttp.RequestCtx, r classify.Request) (authz.Decision, error) {
	cred, err := credential.Read(ctx.Request.Header.All(), a.cfg.AdminToken)
	if err != nil {
		return authz.Decision{Req: r}, err
	}
	var who authn.Caller
	var authErr error
	if cred.Kind == credential.Minted {
		who, authErr = a.authn.Authenticate(ctx, cred)
	}
	d, err := a.authz.Decide(cred, who, authErr, r, &ctx.Request.Header)
	if err != nil {
		return d, err
	}
	if len(d.Route.Lookups) > 0 {
		if err := a.checkLookups(d); err != nil {
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
