// Package tokens serves the sidecar's own endpoints under
// /api/namespaces/{ns}/auth/: mint (POST token), whoami (GET token), list
// (GET tokens), get and revoke (GET, DELETE tokens/{id}). Each is
// authenticated (authn), decided (authz for the lifecycle calls, the
// engine's mint rules for mints), audited and counted. It never forwards
// anything, and imports nothing of the server, the proxy or the event
// loops.
package tokens

import (
	"errors"
	"strconv"
	"strings"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/direktiv/direktiv-authz/engine"
	"github.com/direktiv/direktiv-authz/internal/answer"
	"github.com/direktiv/direktiv-authz/internal/apierror"
	"github.com/direktiv/direktiv-authz/internal/audit"
	"github.com/direktiv/direktiv-authz/internal/authn"
	"github.com/direktiv/direktiv-authz/internal/authz"
	"github.com/direktiv/direktiv-authz/internal/classify"
	"github.com/direktiv/direktiv-authz/internal/config"
	"github.com/direktiv/direktiv-authz/internal/credential"
	"github.com/direktiv/direktiv-authz/internal/metrics"
	"github.com/direktiv/direktiv-authz/internal/secret"
	"github.com/direktiv/direktiv-authz/internal/tokencache"
	"github.com/direktiv/direktiv-authz/store"
)

// Endpoints serves the token endpoints.
type Endpoints struct {
	Config  config.Config // expiries, mint rates, the admin token
	Store   store.Store
	Engine  engine.Decider
	Authn   *authn.Authenticator
	Authz   *authz.Authorizer
	Cache   *tokencache.Cache // a revoke drops its subtree here at once
	Metrics *metrics.Metrics  // nil: none
	Audits  *audit.Log        // nil: none
	Answers answer.Writer
	Now     func() time.Time
}

// Paging of GET /api/namespaces/{ns}/auth/tokens.
const (
	defaultListLimit = 100
	maxListLimit     = store.MaxListLimit
)

// View is a token record as the lifecycle endpoints show it: never the
// secret, never its hash.
type View struct {
	ID          string   `json:"id"`
	Namespace   string   `json:"namespace"`
	Description string   `json:"description"`
	Policies    []string `json:"policies"`
	Created     string   `json:"created"`
	Expires     string   `json:"expires"`
	Expired     bool     `json:"expired"`
	Parent      string   `json:"parent"` // "" when the admin token minted it
	Revision    string   `json:"revision"`
}

func viewOf(t store.Token, now time.Time) View {
	return View{
		ID:          t.ID,
		Namespace:   t.Namespace,
		Description: t.Description,
		Policies:    nonNil(t.Policies),
		Created:     t.Created.UTC().Format(time.RFC3339),
		Expires:     t.Expires.UTC().Format(time.RFC3339),
		Expired:     t.Expired(now),
		Parent:      t.Parent,
		Revision:    t.Revision,
	}
}

// authorizeOwn authenticates the caller of one of the sidecar's own token
// endpoints and asks the route rules whether it may call it. Errors:
// apierror.Unauthenticated, apierror.Forbidden (with the rule's reason), apierror.BadRequest
// and apierror.Unavailable.
func (e *Endpoints) authorizeOwn(ctx *fasthttp.RequestCtx, r classify.Request, action string) (authn.Caller, error) {
	ns := r.NS
	cred, err := credential.FromHeader(&ctx.Request.Header, e.Config.AdminToken)
	who := authn.Caller{}
	if err == nil {
		who, err = e.Authn.Authenticate(ctx, cred)
	}
	if err != nil {
		e.Audits.Request(ctx, audit.Event{Action: action, Namespace: ns, Decision: "deny", Reason: apierror.As(err).Message, Status: apierror.As(err).Status()})
		return who, err
	}
	if who.Admin {
		return who, nil
	}
	if _, err := e.Authz.Decide(cred, who, nil, r, &ctx.Request.Header); err != nil {
		if ae := apierror.As(err); ae.Code != apierror.Unavailable {
			e.Audits.Request(ctx, audit.Event{Action: action, Namespace: ns, Caller: who.ID(), Decision: "deny", Reason: ae.Message, Status: ae.Status()})
		}
		return who, err
	}
	return who, nil
}

// handleList serves GET /api/namespaces/{ns}/auth/tokens?limit=&after=.
func (e *Endpoints) handleList(ctx *fasthttp.RequestCtx, r classify.Request) {
	ns := r.NS
	if _, err := e.authorizeOwn(ctx, r, "list"); err != nil {
		e.Answers.Error(ctx, err)
		return
	}
	limit := defaultListLimit
	if v := ctx.QueryArgs().Peek("limit"); len(v) > 0 {
		n, err := strconv.Atoi(string(v))
		if err != nil || n < 1 || n > maxListLimit {
			e.Answers.Error(ctx, apierror.Errorf(apierror.BadRequest, "limit %q: want a whole number from 1 to %d", v, maxListLimit))
			return
		}
		limit = n
	}
	after := string(ctx.QueryArgs().Peek("after"))
	toks, next, err := e.Store.List(ctx, ns, after, limit)
	if errors.Is(err, store.ErrInvalid) {
		e.Answers.Error(ctx, apierror.Errorf(apierror.BadRequest, "after %q is not a cursor this endpoint returned; start without it", after))
		return
	}
	if err != nil {
		e.Answers.Error(ctx, err)
		return
	}
	now := e.Now()
	out := struct {
		Tokens []View `json:"tokens"`
		Next   string `json:"next,omitempty"`
	}{Tokens: make([]View, 0, len(toks)), Next: next}
	for _, t := range toks {
		out.Tokens = append(out.Tokens, viewOf(t, now))
	}
	e.Answers.JSON(ctx, fasthttp.StatusOK, out)
}

// handleGet serves GET /api/namespaces/{ns}/auth/tokens/{id}.
func (e *Endpoints) handleGet(ctx *fasthttp.RequestCtx, r classify.Request, id string) {
	ns := r.NS
	if _, err := e.authorizeOwn(ctx, r, "get"); err != nil {
		e.Answers.Error(ctx, err)
		return
	}
	if !secret.ValidID(id) {
		e.Answers.Error(ctx, apierror.Errorf(apierror.BadRequest, "%q is not a token id; ids look like 0b1c7a44-8a3e-4c55-9d2f-6f0e5c1b2a3d", id))
		return
	}
	t, err := e.Store.Lookup(ctx, ns, id)
	if errors.Is(err, store.ErrNotFound) {
		e.Answers.Error(ctx, apierror.Errorf(apierror.NotFound, "no live token %s in namespace %s", id, ns))
		return
	}
	if err != nil {
		e.Answers.Error(ctx, err)
		return
	}
	e.Answers.JSON(ctx, fasthttp.StatusOK, viewOf(t, e.Now()))
}

// handleWhoami serves GET /api/namespaces/{ns}/auth/token: the caller's own
// record. The admin token has no record; it is described as such.
func (e *Endpoints) handleWhoami(ctx *fasthttp.RequestCtx, r classify.Request) {
	who, err := e.authorizeOwn(ctx, r, "whoami")
	if err != nil {
		e.Answers.Error(ctx, err)
		return
	}
	if who.Admin {
		e.Answers.JSON(ctx, fasthttp.StatusOK, map[string]any{"id": "admin", "admin": true, "description": "the admin token: every namespace, every policy"})
		return
	}
	e.Answers.JSON(ctx, fasthttp.StatusOK, viewOf(who.Token, e.Now()))
}

// handleRevoke serves DELETE /api/namespaces/{ns}/auth/tokens/{id}: the
// token and every token minted from it, transitively, are revoked at once:
// refused from the answer on by every replica (within the token cache's
// bound). A token with many descendants answers before their records are
// all removed: "complete" is then false, "count" the tokens removed so far,
// and the removal continues in the background (redis.Store.Sweep), which
// writes an audit line revoke_complete with the total. Revoking an id that
// is not live (never minted, expired, or already revoked) answers 404: the
// outcome, no such live token, is the same.
func (e *Endpoints) handleRevoke(ctx *fasthttp.RequestCtx, r classify.Request, id string) {
	ns := r.NS
	who, err := e.authorizeOwn(ctx, r, "revoke")
	if err != nil {
		e.Answers.Error(ctx, err)
		return
	}
	if !secret.ValidID(id) {
		e.Answers.Error(ctx, apierror.Errorf(apierror.BadRequest, "%q is not a token id; ids look like 0b1c7a44-8a3e-4c55-9d2f-6f0e5c1b2a3d", id))
		return
	}
	rv, err := e.Store.Revoke(ctx, ns, id)
	if errors.Is(err, store.ErrNotFound) {
		e.Answers.Error(ctx, apierror.Errorf(apierror.NotFound, "no live token %s in namespace %s (never minted, expired or already revoked)", id, ns))
		return
	}
	if err != nil {
		e.Answers.Error(ctx, err)
		return
	}
	e.Cache.Invalidate(ns, id) // this replica at once (descendants too); the others through Subscribe
	if rv.Done {
		e.Metrics.RevokedTokens(rv.Count)
	}
	e.Audits.Request(ctx, audit.Event{Action: "revoke", Namespace: ns, Caller: who.ID(), Decision: "allow", Target: id, Revoked: rv.IDs,
		Count: rv.Count, Complete: rv.Done, Status: fasthttp.StatusOK})
	e.Answers.JSON(ctx, fasthttp.StatusOK, revokeAnswer{Revoked: nonNil(rv.IDs), Count: rv.Count, Complete: rv.Done})
}

// revokeAnswer is the answer to a revoke.
type revokeAnswer struct {
	Revoked  []string `json:"revoked"`  // the ids removed by the call: the token first
	Count    int      `json:"count"`    // tokens revoked so far, the token included
	Complete bool     `json:"complete"` // false: the removal of descendants continues
}

// RevocationDone is called by the background removal when it has removed
// every descendant of a revoked token: the audit line names the token and
// the total.
func (e *Endpoints) RevocationDone(ns, id string, count int) {
	e.Metrics.RevokedTokens(count)
	if e.Audits != nil {
		e.Audits.Write(time.Now(), audit.Event{Action: "revoke_complete", Namespace: ns, Decision: "allow", Target: id,
			Count: count, Complete: true, Status: fasthttp.StatusOK}, "", e.Engine.Revision())
	}
}

// BodyLimit bounds the body of the sidecar's own endpoints.
const BodyLimit = 64 << 10

// Serve serves /api/namespaces/{ns}/auth/{rest...}, r as classify read it
// (Own: true, the namespace's name checked).
func (e *Endpoints) Serve(ctx *fasthttp.RequestCtx, r classify.Request) {
	ns, rest := r.NS, r.Rest
	switch {
	case len(rest) == 1 && rest[0] == "token":
		switch string(ctx.Method()) {
		case fasthttp.MethodPost:
			e.handleMint(ctx, ns)
		case fasthttp.MethodGet:
			e.handleWhoami(ctx, r)
		default:
			e.methodNotAllowed(ctx, "GET, POST")
		}
	case len(rest) == 1 && rest[0] == "tokens":
		switch string(ctx.Method()) {
		case fasthttp.MethodGet:
			e.handleList(ctx, r)
		default:
			e.methodNotAllowed(ctx, "GET")
		}
	case len(rest) == 2 && rest[0] == "tokens":
		switch string(ctx.Method()) {
		case fasthttp.MethodGet:
			e.handleGet(ctx, r, rest[1])
		case fasthttp.MethodDelete:
			e.handleRevoke(ctx, r, rest[1])
		default:
			e.methodNotAllowed(ctx, "GET, DELETE")
		}
	default:
		e.Answers.Error(ctx, apierror.Errorf(apierror.NotFound, "no token endpoint /api/namespaces/%s/auth/%s; the sidecar serves auth/token (POST mint, GET whoami), auth/tokens (GET list) and auth/tokens/{id} (GET, DELETE)", ns, strings.Join(rest, "/")))
	}
}

func (e *Endpoints) methodNotAllowed(ctx *fasthttp.RequestCtx, allow string) {
	ctx.Response.Header.Set("Allow", allow)
	e.Answers.Error(ctx, apierror.Errorf(apierror.MethodNotAllowed, "method %s is not allowed here; allowed: %s", ctx.Method(), allow))
}
