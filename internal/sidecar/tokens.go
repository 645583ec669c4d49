package sidecar

import (
	"errors"
	"strconv"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/direktiv/direktiv-authz/internal/apierror"
	"github.com/direktiv/direktiv-authz/internal/audit"
	"github.com/direktiv/direktiv-authz/internal/authn"
	"github.com/direktiv/direktiv-authz/internal/classify"
	"github.com/direktiv/direktiv-authz/internal/credential"
	"github.com/direktiv/direktiv-authz/internal/secret"
	"github.com/direktiv/direktiv-authz/store"
)

// Paging of GET /api/namespaces/{ns}/auth/tokens.
const (
	defaultListLimit = 100
	maxListLimit     = store.MaxListLimit
)

// tokenView is a token record as the lifecycle endpoints show it: never the
// secret, never its hash.
type tokenView struct {
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

func viewOf(t store.Token, now time.Time) tokenView {
	return tokenView{
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
func (a *app) authorizeOwn(ctx *fasthttp.RequestCtx, ns, action string) (authn.Caller, error) {
	cred, err := credential.Read(ctx.Request.Header.All(), a.cfg.AdminToken)
	who := authn.Caller{}
	if err == nil {
		who, err = a.authn.Authenticate(ctx, cred)
	}
	if err != nil {
		a.audits.Request(ctx, audit.Event{Action: action, Namespace: ns, Decision: "deny", Reason: apierror.As(err).Message, Status: apierror.As(err).Status()})
		return who, err
	}
	if who.Admin {
		return who, nil
	}
	r, err := classify.Read(ctx.Method(), ctx.Request.Header.RequestURI())
	if err == nil {
		_, err = a.authz.Decide(cred, who, nil, r, &ctx.Request.Header)
	}
	if err != nil {
		if ae := apierror.As(err); ae.Code != apierror.Unavailable {
			a.audits.Request(ctx, audit.Event{Action: action, Namespace: ns, Caller: who.ID(), Decision: "deny", Reason: ae.Message, Status: ae.Status()})
		}
		return who, err
	}
	return who, nil
}

// handleList serves GET /api/namespaces/{ns}/auth/tokens?limit=&after=.
func (a *app) handleList(ctx *fasthttp.RequestCtx, ns string) {
	if _, err := a.authorizeOwn(ctx, ns, "list"); err != nil {
		a.answers.Error(ctx, err)
		return
	}
	limit := defaultListLimit
	if v := ctx.QueryArgs().Peek("limit"); len(v) > 0 {
		n, err := strconv.Atoi(string(v))
		if err != nil || n < 1 || n > maxListLimit {
			a.answers.Error(ctx, apierror.Errorf(apierror.BadRequest, "limit %q: want a whole number from 1 to %d", v, maxListLimit))
			return
		}
		limit = n
	}
	after := string(ctx.QueryArgs().Peek("after"))
	toks, next, err := a.store.List(ctx, ns, after, limit)
	if errors.Is(err, store.ErrInvalid) {
		a.answers.Error(ctx, apierror.Errorf(apierror.BadRequest, "after %q is not a cursor this endpoint returned; start without it", after))
		return
	}
	if err != nil {
		a.answers.Error(ctx, err)
		return
	}
	now := a.now()
	out := struct {
		Tokens []tokenView `json:"tokens"`
		Next   string      `json:"next,omitempty"`
	}{Tokens: make([]tokenView, 0, len(toks)), Next: next}
	for _, t := range toks {
		out.Tokens = append(out.Tokens, viewOf(t, now))
	}
	a.answers.JSON(ctx, fasthttp.StatusOK, out)
}

// handleGet serves GET /api/namespaces/{ns}/auth/tokens/{id}.
func (a *app) handleGet(ctx *fasthttp.RequestCtx, ns, id string) {
	if _, err := a.authorizeOwn(ctx, ns, "get"); err != nil {
		a.answers.Error(ctx, err)
		return
	}
	if !secret.ValidID(id) {
		a.answers.Error(ctx, apierror.Errorf(apierror.BadRequest, "%q is not a token id; ids look like 0b1c7a44-8a3e-4c55-9d2f-6f0e5c1b2a3d", id))
		return
	}
	t, err := a.store.Lookup(ctx, ns, id)
	if errors.Is(err, store.ErrNotFound) {
		a.answers.Error(ctx, apierror.Errorf(apierror.NotFound, "no live token %s in namespace %s", id, ns))
		return
	}
	if err != nil {
		a.answers.Error(ctx, err)
		return
	}
	a.answers.JSON(ctx, fasthttp.StatusOK, viewOf(t, a.now()))
}

// handleWhoami serves GET /api/namespaces/{ns}/auth/token: the caller's own
// record. The admin token has no record; it is described as such.
func (a *app) handleWhoami(ctx *fasthttp.RequestCtx, ns string) {
	who, err := a.authorizeOwn(ctx, ns, "whoami")
	if err != nil {
		a.answers.Error(ctx, err)
		return
	}
	if who.Admin {
		a.answers.JSON(ctx, fasthttp.StatusOK, map[string]any{"id": "admin", "admin": true, "description": "the admin token: every namespace, every policy"})
		return
	}
	a.answers.JSON(ctx, fasthttp.StatusOK, viewOf(who.Token, a.now()))
}

// handleRevoke serves DELETE /api/namespaces/{ns}/auth/tokens/{id}: the
// token and every token minted from it, transitively, are revoked at once:
// refused from the answer on by every replica (within the token cache's
// bound). A token with many descendants answers before their records are
// all removed: "complete" is then false, "count" the tokens removed so far,
// and the removal continues in the background (store.Redis.Sweep), which
// writes an audit line revoke_complete with the total. Revoking an id that
// is not live (never minted, expired, or already revoked) answers 404: the
// outcome, no such live token, is the same.
func (a *app) handleRevoke(ctx *fasthttp.RequestCtx, ns, id string) {
	who, err := a.authorizeOwn(ctx, ns, "revoke")
	if err != nil {
		a.answers.Error(ctx, err)
		return
	}
	if !secret.ValidID(id) {
		a.answers.Error(ctx, apierror.Errorf(apierror.BadRequest, "%q is not a token id; ids look like 0b1c7a44-8a3e-4c55-9d2f-6f0e5c1b2a3d", id))
		return
	}
	rv, err := a.store.Revoke(ctx, ns, id)
	if errors.Is(err, store.ErrNotFound) {
		a.answers.Error(ctx, apierror.Errorf(apierror.NotFound, "no live token %s in namespace %s (never minted, expired or already revoked)", id, ns))
		return
	}
	if err != nil {
		a.answers.Error(ctx, err)
		return
	}
	a.cache.Invalidate(ns, id) // this replica at once (descendants too); the others through Subscribe
	if rv.Done {
		a.metrics.RevokedTokens(rv.Count)
	}
	a.audits.Request(ctx, audit.Event{Action: "revoke", Namespace: ns, Caller: who.ID(), Decision: "allow", Target: id, Revoked: rv.IDs,
		Count: rv.Count, Complete: rv.Done, Status: fasthttp.StatusOK})
	a.answers.JSON(ctx, fasthttp.StatusOK, revokeAnswer{Revoked: nonNil(rv.IDs), Count: rv.Count, Complete: rv.Done})
}

// revokeAnswer is the answer to a revoke.
type revokeAnswer struct {
	Revoked  []string `json:"revoked"`  // the ids removed by the call: the token first
	Count    int      `json:"count"`    // tokens revoked so far, the token included
	Complete bool     `json:"complete"` // false: the removal of descendants continues
}

// revocationDone is called by the background removal when it has removed
// every descendant of a revoked token: the audit line names the token and
// the total.
func (a *app) revocationDone(ns, id string, count int) {
	a.metrics.RevokedTokens(count)
	if a.audits != nil {
		a.audits.Write(time.Now(), audit.Event{Action: "revoke_complete", Namespace: ns, Decision: "allow", Target: id,
			Count: count, Complete: true, Status: fasthttp.StatusOK}, "", a.engine.Revision())
	}
}
