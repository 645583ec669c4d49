package tokens

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/valyala/fasthttp"

	"github.com/direktiv/direktiv-authz/engine"
	"github.com/direktiv/direktiv-authz/internal/apierror"
	"github.com/direktiv/direktiv-authz/internal/audit"
	"github.com/direktiv/direktiv-authz/internal/authn"
	"github.com/direktiv/direktiv-authz/internal/credential"
	"github.com/direktiv/direktiv-authz/internal/isoduration"
	"github.com/direktiv/direktiv-authz/internal/secret"
	"github.com/direktiv/direktiv-authz/store"
)

// Limits on a mint request's fields.
const (
	maxDescription = 1024
	maxPolicies    = 128
)

// mintRequest is the body of POST /api/namespaces/{ns}/auth/token, as in
// Direktiv's documentation.
type mintRequest struct {
	Description string    `json:"description"`
	Policies    *[]string `json:"policies"`
	Expires     *string   `json:"expires"`
}

// mintResponse is a superset of what Direktiv answered a create with.
type mintResponse struct {
	ID          string   `json:"id,omitempty"`    // absent in a dry run
	Token       string   `json:"token,omitempty"` // the secret, shown once; absent in a dry run
	Namespace   string   `json:"namespace"`
	Description string   `json:"description"`
	Policies    []string `json:"policies"` // granted
	Dropped     []string `json:"dropped"`
	Created     string   `json:"created"`
	Expires     string   `json:"expires"`
	Warnings    []string `json:"warnings"`
	DryRun      bool     `json:"dry_run,omitempty"` // true: nothing was stored
}

// parseMintRequest decodes and validates a mint body. Every error is
// apierror.BadRequest naming the offending field.
func parseMintRequest(body []byte) (mintRequest, error) {
	var req mintRequest
	if len(bytes.TrimSpace(body)) == 0 {
		return req, apierror.Errorf(apierror.BadRequest, `the request body is empty; send JSON like {"description":"ci","policies":["workflowView"],"expires":"P30D"}`)
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		return req, apierror.Errorf(apierror.BadRequest, "the request body is not a valid mint request: %s; accepted fields: description (string), policies (array of strings), expires (ISO 8601 duration string)", describeJSONError(err))
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return req, apierror.Errorf(apierror.BadRequest, "the request body has data after the JSON object; send exactly one object")
	}
	if !utf8.ValidString(req.Description) || len(req.Description) > maxDescription {
		return req, apierror.Errorf(apierror.BadRequest, "description must be valid UTF-8 of at most %d bytes", maxDescription)
	}
	if req.Policies == nil || len(*req.Policies) == 0 {
		return req, apierror.Errorf(apierror.BadRequest, `policies is missing or empty; name at least one policy, e.g. "policies":["workflowView"]`)
	}
	if len(*req.Policies) > maxPolicies {
		return req, apierror.Errorf(apierror.BadRequest, "policies has %d entries; at most %d are accepted", len(*req.Policies), maxPolicies)
	}
	return req, nil
}

// describeJSONError turns an encoding/json error into a phrase naming the
// field and the expected type, without echoing the input.
func describeJSONError(err error) string {
	var typeErr *json.UnmarshalTypeError
	var syntaxErr *json.SyntaxError
	switch {
	case errors.As(err, &typeErr):
		if typeErr.Field != "" {
			return fmt.Sprintf("field %q must be %s, not %s", typeErr.Field, jsonTypeName(typeErr.Type.String()), typeErr.Value)
		}
		return fmt.Sprintf("the body must be a JSON object, not %s", typeErr.Value)
	case errors.As(err, &syntaxErr):
		return fmt.Sprintf("invalid JSON at byte %d", syntaxErr.Offset)
	case errors.Is(err, io.ErrUnexpectedEOF):
		return "the JSON ends early"
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		return "unknown field " + strings.TrimPrefix(err.Error(), "json: unknown field ")
	default:
		return "invalid JSON"
	}
}

func jsonTypeName(goType string) string {
	switch goType {
	case "string", "*string":
		return "a string"
	case "[]string", "*[]string":
		return "an array of strings"
	default:
		return goType
	}
}

// DrainLimit is the largest declared body readBody reads and drops to
// answer 413 cleanly; beyond it, dropping would cost more than the client
// is owed.
const DrainLimit = 1 << 20

// readBody reads at most limit bytes of the request body, streamed or not.
// A larger body is apierror.TooLarge. One whose declared length is at most
// DrainLimit is read to its end and dropped first, so the client, still
// sending it, gets the 413 rather than a connection reset, and the
// connection stays usable. A larger or undeclared one is not read further:
// the connection is closed.
func readBody(ctx *fasthttp.RequestCtx, limit int) ([]byte, error) {
	tooLarge := apierror.Errorf(apierror.TooLarge, "the request body exceeds %d bytes", limit)
	if cl := ctx.Request.Header.ContentLength(); cl > limit {
		if cl > DrainLimit || !ctx.Request.IsBodyStream() {
			ctx.SetConnectionClose()
			return nil, tooLarge
		}
		if _, err := io.CopyN(io.Discard, ctx.RequestBodyStream(), int64(cl)); err != nil {
			ctx.SetConnectionClose() // short (io.EOF) or broken: the rest is not coming
		}
		return nil, tooLarge
	}
	if !ctx.Request.IsBodyStream() {
		return ctx.Request.Body(), nil
	}
	b, err := io.ReadAll(io.LimitReader(ctx.RequestBodyStream(), int64(limit)+1))
	if err != nil {
		ctx.SetConnectionClose()
		return nil, apierror.Errorf(apierror.BadRequest, "reading the request body failed: %v", err)
	}
	if len(b) > limit {
		ctx.SetConnectionClose()
		return nil, tooLarge
	}
	return b, nil
}

// handleMint serves POST /api/namespaces/{ns}/auth/token: authenticate,
// parse, ask the engine, compute the expiry, store, answer 201 with the
// secret shown this once. With ?dry_run=true it answers 200 with the same
// decision and stores nothing. Every outcome is one audit line. The event
// loops serve it in the same three steps (BeginMint, the store's create,
// EndMint), with the create made without blocking them.
func (e *Endpoints) handleMint(ctx *fasthttp.RequestCtx, ns string) {
	ev := audit.Event{Action: "mint", Namespace: ns, Decision: "deny"}
	plan, err := e.BeginMint(ctx, ns, &ev, func(sec secret.Secret) (store.Token, error) { return e.Authn.FindToken(ctx, sec) })
	if err == nil && !plan.DryRun {
		err = e.Stored(ctx, plan, &ev, e.Store.CreateLimited(ctx, plan.Rec, plan.Limit))
	}
	e.EndMint(ctx, plan, &ev, err)
}

// MintPlan is a mint decided: its answer and, unless a dry run, the token
// to store, with the rate limits its create counts against.
type MintPlan struct {
	DryRun bool
	Rec    store.Token
	Limit  store.Limit
	resp   mintResponse
	secret string
}

// EndMint answers a mint that ended with err (nil: plan.resp), audits and
// counts it.
func (e *Endpoints) EndMint(ctx *fasthttp.RequestCtx, plan *MintPlan, ev *audit.Event, err error) {
	if err != nil {
		ae := apierror.As(err)
		ev.Status, ev.Reason = ae.Status(), ae.Message
		if ev.Status != fasthttp.StatusServiceUnavailable && ev.Status != fasthttp.StatusInternalServerError {
			e.Audits.Request(ctx, *ev)
		}
		e.Metrics.MintOutcome(ev)
		e.Answers.Error(ctx, err)
		return
	}
	status := fasthttp.StatusCreated
	if plan.DryRun {
		status = fasthttp.StatusOK
	}
	ev.Decision, ev.Status = "allow", status
	e.Audits.Request(ctx, *ev)
	e.Metrics.MintOutcome(ev)
	e.Answers.JSON(ctx, status, plan.resp)
}

// BeginMint reads and decides a mint request: authenticated (a minted
// token's record found by find), parsed, decided
// by the engine, its expiry computed. A dry run's plan is its answer;
// otherwise the plan's record is to be stored, and the outcome passed to
// Stored.
func (e *Endpoints) BeginMint(ctx *fasthttp.RequestCtx, ns string, ev *audit.Event, find func(secret.Secret) (store.Token, error)) (*MintPlan, error) {
	plan := &MintPlan{}
	if v := ctx.QueryArgs().Peek("dry_run"); v != nil {
		b, err := strconv.ParseBool(string(v))
		if err != nil {
			return plan, apierror.Errorf(apierror.BadRequest, "dry_run %q: want true or false", v)
		}
		plan.DryRun = b
	}
	if plan.DryRun {
		ev.Action = "dry_run"
	}
	cred, err := credential.FromHeader(&ctx.Request.Header, e.Config.AdminToken)
	if err != nil {
		return plan, err
	}
	who, err := e.Authn.AuthenticateWith(cred, find)
	if err != nil {
		return plan, err
	}
	ev.Caller = who.ID()
	body, err := readBody(ctx, BodyLimit)
	if err != nil {
		return plan, err
	}
	req, err := parseMintRequest(body)
	if err != nil {
		return plan, err
	}
	ev.Requested = *req.Policies
	return plan, e.planMint(ctx, who, ns, req, plan, ev)
}

// planMint decides and, unless a dry run, prepares the token to store. It
// returns apierror.BadRequest for invalid fields and policy names,
// apierror.Forbidden when the rules refuse, and apierror.Unavailable when the engine
// cannot answer.
func (e *Endpoints) planMint(ctx context.Context, who authn.Caller, ns string, req mintRequest, plan *MintPlan, ev *audit.Event) error {
	in := engine.MintInput{Namespace: ns, Requested: *req.Policies, Caller: engine.Caller{Admin: who.Admin}}
	if !who.Admin {
		in.Caller.Namespace = who.Token.Namespace
		in.Caller.Policies = who.Token.Policies
	}
	dec, err := e.Engine.Mint(ctx, in)
	if err != nil {
		return err
	}
	ev.Granted, ev.Dropped = dec.Granted, dec.Dropped
	if !dec.Allow {
		return apierror.Errorf(apierror.FromDecision(dec.Code), "%s", dec.Reason)
	}

	// Times are shown, and expiry computed, in whole seconds. The record
	// keeps the creation time to the microsecond: it orders the list, and
	// tokens minted in the same second then join the Redis index at its end
	// instead of among each other by id (measurably cheaper, see
	// bench/RESULTS.md); shown in seconds it is the same created.
	exact := e.Now().UTC().Truncate(time.Microsecond)
	now := exact.Truncate(time.Second)
	expires, warnings, err := e.expiry(now, req.Expires, who)
	if err != nil {
		return err
	}
	plan.resp = mintResponse{
		Namespace:   ns,
		Description: req.Description,
		Policies:    sortedCopy(dec.Granted),
		Dropped:     nonNil(dec.Dropped),
		Created:     now.Format(time.RFC3339),
		Expires:     expires.Format(time.RFC3339),
		Warnings:    nonNil(warnings),
	}
	if plan.DryRun {
		plan.resp.DryRun = true
		return nil
	}

	sec, err := secret.New(ns)
	if err != nil {
		return err
	}
	plan.Rec = store.Token{
		ID:          sec.ID,
		Namespace:   ns,
		Description: req.Description,
		Policies:    plan.resp.Policies,
		Created:     exact,
		Expires:     expires,
		Revision:    e.Engine.Revision(),
		Hash:        sec.Hash(),
	}
	if !who.Admin {
		plan.Rec.Parent = who.Token.ID
	}
	plan.Limit = e.mintLimit(who)
	plan.secret = sec.Token
	return nil
}

// Stored reads the store's answer to plan's create: apierror.Unauthenticated
// when the minting token was revoked meanwhile, apierror.TooManyRequests when a
// rate limit refuses, apierror.Unavailable when the store cannot answer; nil
// when the token was stored, and plan.resp then carries it.
func (e *Endpoints) Stored(ctx *fasthttp.RequestCtx, plan *MintPlan, ev *audit.Event, err error) error {
	switch {
	case errors.Is(err, store.ErrNotFound):
		// The parent vanished between authentication and creation.
		return apierror.Errorf(apierror.Unauthenticated, "the minting token was revoked or expired while minting; nothing was created")
	case errors.Is(err, store.ErrRateLimited):
		return e.rateLimited(ctx, err)
	case err != nil:
		return err
	}
	plan.resp.ID, plan.resp.Token = plan.Rec.ID, plan.secret
	ev.Token = plan.Rec.ID
	return nil
}

// expiry computes when a new token expires: now plus the requested (or the
// default) duration, clamped to --max-ttl and to the minting token's own
// expiry, with a warning for each clamp.
func (e *Endpoints) expiry(now time.Time, requested *string, who authn.Caller) (time.Time, []string, error) {
	d := e.Config.DefaultExpiry
	if requested != nil {
		var err error
		if d, err = isoduration.Parse(*requested); err != nil {
			return time.Time{}, nil, apierror.Errorf(apierror.BadRequest, "expires %q: %v", *requested, err)
		}
	}
	var warnings []string
	maxAt, _ := e.Config.MaxExpiry.AddTo(now)
	at, ok := d.AddTo(now)
	if !ok || at.After(maxAt) {
		at = maxAt
		warnings = append(warnings, fmt.Sprintf("expires %s is longer than the maximum %s; the token expires at %s", d, e.Config.MaxExpiry, maxAt.Format(time.RFC3339)))
	}
	if !who.Admin && at.After(who.Token.Expires) {
		at = who.Token.Expires.UTC()
		warnings = append(warnings, fmt.Sprintf("a token cannot outlive the token that minted it; the token expires with it at %s", at.Format(time.RFC3339)))
	}
	return at, warnings, nil
}

func sortedCopy(s []string) []string {
	c := append([]string{}, s...)
	sort.Strings(c)
	return c
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}
