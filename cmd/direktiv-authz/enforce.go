package main

import (
	"bytes"
	"context"
	"crypto/subtle"

	"github.com/valyala/fasthttp"

	"github.com/direktiv/direktiv-authz/engine"
	"github.com/direktiv/direktiv-authz/store"
)

// forward serves every request the sidecar does not own: enforce decides
// whether it may pass, then the proxy sends it upstream and streams the
// answer back. The statuses of the sidecar's own are those of enforce (400,
// 401, 403, 503) and of proxy.forward (502, 503, 504); every other status is
// the upstream's.
func (a *app) forward(ctx *fasthttp.RequestCtx) {
	if err := a.enforce(ctx); err != nil {
		a.writeError(ctx, err)
		return
	}
	start := a.metrics.clock()
	err := a.proxy.forward(ctx)
	a.metrics.upstreamDone(start, err)
	if err != nil {
		a.writeError(ctx, err)
	}
}

// enforce decides whether a request may be forwarded, and if so rewrites
// its Direktiv-Token for the upstream:
//
//   - A minted token is authenticated and the route rules are asked whether
//     it may make this request. If so, the token is replaced by the upstream
//     API key (or removed when none is configured): the minted secret never
//     reaches the upstream.
//   - The admin token, any other token and no token pass unchanged; Direktiv
//     judges them. With --strict only the admin token passes, and anything
//     that is neither it nor a minted token is refused.
//
// It returns codeUnauthenticated (401) for a minted token that is malformed,
// unknown, expired or revoked, and with --strict for a missing or foreign
// token; codeForbidden (403) or codeBadRequest (400) when the rules refuse,
// with their reason, which names the permission the route needs;
// codeBadRequest when several Direktiv-Token headers carry a minted token;
// codeUnavailable (503) when the store or the engine cannot answer (fail
// closed). Every refusal is audited; nothing refused reaches the upstream.
func (a *app) enforce(ctx *fasthttp.RequestCtx) error {
	who, err := a.enforceToken(ctx)
	if err != nil {
		ae := asAPIError(err)
		a.audit(ctx, auditEvent{
			Action:    "forward",
			Namespace: routeNamespace(ctx.Request.URI().PathOriginal()),
			Caller:    who.id(),
			Decision:  "deny",
			Reason:    ae.message,
			Status:    statusOf[ae.code],
			Method:    string(ctx.Method()),
			Path:      string(ctx.Request.URI().PathOriginal()),
		})
	}
	return err
}

// enforceToken is enforce without the audit. The caller it returns is the
// zero caller unless a minted token authenticated.
func (a *app) enforceToken(ctx *fasthttp.RequestCtx) (caller, error) {
	values := ctx.Request.Header.PeekAll(headerToken)
	if who, minted, err := a.screenTokens(values); !minted {
		return who, err
	}
	who, err := a.authenticate(ctx, values[0])
	if err != nil {
		return caller{}, err
	}
	if err := a.routeAllowed(ctx, who); err != nil {
		return who, err
	}
	if key := a.cfg.upstreamAPIKey; key != "" {
		ctx.Request.Header.Set(headerToken, key)
	} else {
		ctx.Request.Header.Del(headerToken)
	}
	return who, nil
}

// mintedPrefix is store.SecretPrefix, to test header bytes with.
var mintedPrefix = []byte(store.SecretPrefix)

// screenTokens applies the rules on a request's Direktiv-Token values that
// need no store, for enforce and the event loops alike. It reports minted
// when values is exactly one minted token, which is then to be
// authenticated; otherwise the request passes unchanged (err nil; who is
// the admin caller for the admin token) or is refused: codeBadRequest when
// several headers carry a minted token, codeUnauthenticated with --strict
// for a missing or foreign token.
func (a *app) screenTokens(values [][]byte) (who caller, minted bool, err error) {
	n := 0
	for _, v := range values {
		if bytes.HasPrefix(v, mintedPrefix) {
			n++
		}
	}
	switch {
	case n > 0 && len(values) > 1:
		// Which one would count, and would the other reach the upstream?
		return caller{}, false, errorf(codeBadRequest, "the request has %d %s headers; send exactly one", len(values), headerToken)
	case n > 0:
		return caller{}, true, nil
	case !a.cfg.Strict:
		return caller{}, false, nil // unchanged
	case len(values) == 0:
		return caller{}, false, errorf(codeUnauthenticated, "missing %s header: this sidecar runs in strict mode and forwards only requests with the admin token or a token it minted", headerToken)
	case len(values) == 1 && subtle.ConstantTimeCompare(values[0], []byte(a.cfg.adminToken)) == 1:
		return caller{admin: true}, false, nil // unchanged
	}
	return caller{}, false, errorf(codeUnauthenticated, "the %s is neither the admin token nor a token this sidecar minted; this sidecar runs in strict mode and forwards no other token", headerToken)
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

// routeAllowed asks the route rules whether the minted caller who may make
// this request. It returns the rules' refusal with their reason (which names
// the permission the route needs) as codeForbidden or codeBadRequest, and
// codeUnavailable when the engine cannot decide (fail closed).
func (a *app) routeAllowed(ctx *fasthttp.RequestCtx, who caller) error {
	return a.routeAllows(who.token, string(ctx.Method()), string(ctx.Request.URI().PathOriginal()), string(ctx.Request.URI().QueryString()))
}

// routeAllows is routeAllowed for the minted token rec and a request given
// by its method, raw path and raw query.
func (a *app) routeAllows(rec store.Token, method, path, query string) error {
	dec, err := a.engine.Route(context.Background(), engine.RouteInput{
		Caller: engine.Caller{Namespace: rec.Namespace, Policies: rec.Policies},
		Method: method,
		Path:   path,
		Query:  query,
	})
	if err != nil {
		return &apiError{code: codeUnavailable, message: "the policy engine could not decide on this request; nothing was done, try again later", err: err}
	}
	if !dec.Allow {
		return errorf(decisionCode(dec.Code), "%s", dec.Reason)
	}
	return nil
}
