// Package authz is the one decision on a request the sidecar forwards or
// answers itself: the route rules' answer for its caller, and what becomes
// of its credential headers. The server, the event loops and the sidecar's
// own token endpoints execute it; nothing else decides. It imports the
// engine, authn and the lower packages, never the HTTP layer.
package authz

import (
	"context"

	"github.com/direktiv/direktiv-authz/engine"
	"github.com/direktiv/direktiv-authz/internal/apierror"
	"github.com/direktiv/direktiv-authz/internal/authn"
	"github.com/direktiv/direktiv-authz/internal/classify"
	"github.com/direktiv/direktiv-authz/internal/credential"
	"github.com/direktiv/direktiv-authz/internal/relay"
)

// Authorizer decides requests.
type Authorizer struct {
	Engine engine.Decider
	Authn  *authn.Authenticator
	// Unsafe is --unsafe-forward-unauthenticated: a request without a
	// minted token passes unchanged and unasked.
	Unsafe bool
	// UpstreamKey: an upstream API key is configured; it replaces the
	// credential headers of authorized requests.
	UpstreamKey bool
}

// Decision is what the sidecar does with a request it forwards: the
// request as classify read it, and what the rules made of it.
type Decision struct {
	Req   classify.Request
	Who   authn.Caller         // the authenticated caller; zero when anonymous or public
	Route engine.RouteDecision // the rules' answer (Allow true)
	Creds CredentialPlan       // what becomes of the credential headers
}

// CredentialPlan is what becomes of a forwarded request's credential
// headers (Direktiv-Token, Direktiv-Api-Key, Authorization), for the server
// (forward.Proxy) and the event loops (relay.Verdict) alike.
type CredentialPlan = relay.TokenMode

const (
	CredsKeep = relay.TokenKeep // forwarded as the client sent them
	CredsKey  = relay.TokenSet  // every one removed, the upstream API key added in --upstream-api-key-header
	CredsDrop = relay.TokenDrop // every one removed
)

// Decide decides a request once its credential is read and, for a
// minted one, authenticated (who, or the failure authErr); header gives
// the request's headers the rules read. It is the one decision the server,
// the event loops and the sidecar's own token endpoints execute. A minted
// token that does not authenticate still reaches a public route (without
// it); anywhere else its failure is the answer.
func (z *Authorizer) Decide(cred credential.Credential, who authn.Caller, authErr error, r classify.Request, header engine.Header) (Decision, error) {
	if z.Unsafe && cred.Kind != credential.Minted {
		return Decision{Req: r, Who: who, Route: engine.RouteDecision{Allow: true}, Creds: CredsKeep}, nil
	}
	in := engine.RouteInput{Method: r.Method, Path: string(r.Path), Query: string(r.Query), Header: header}
	switch {
	case cred.Kind == credential.Admin:
		who = authn.Caller{Admin: true}
		in.Caller = engine.Caller{Admin: true}
	case cred.Kind == credential.Minted && authErr == nil:
		in.Caller = engine.Caller{Namespace: who.Token.Namespace, Policies: who.Token.Policies}
	}
	dec, err := z.Engine.Route(context.Background(), in)
	if err != nil {
		return Decision{Req: r, Who: who}, &apierror.Error{Code: apierror.Unavailable, Message: "the policy engine could not decide on this request; nothing was done, try again later", Err: err}
	}
	d := Decision{Req: r, Who: who, Route: dec}
	switch {
	case dec.Allow && dec.Public:
		d.Who = authn.Caller{}
		if cred.Kind == credential.Minted {
			d.Creds = CredsDrop
		}
		return d, nil
	case authErr != nil:
		return Decision{Req: r}, authErr
	case !dec.Allow && dec.Code == engine.CodeUnauthenticated && (cred.Kind == credential.None || cred.Kind == credential.Foreign):
		// No caller the rules know: the rules' reason names the route, and
		// a foreign credential is named too.
		if cred.Kind == credential.None {
			return d, &apierror.Error{Code: apierror.Unauthenticated, V2Code: "access_token_missing", Message: dec.Reason}
		}
		_, err := z.Authn.AuthenticateWith(cred, nil)
		return d, apierror.Errorf(apierror.Unauthenticated, "%s; %s", apierror.As(err).Message, dec.Reason)
	case !dec.Allow:
		return d, apierror.Errorf(apierror.FromDecision(dec.Code), "%s", dec.Reason)
	case z.UpstreamKey:
		d.Creds = CredsKey
	case cred.Kind == credential.Minted:
		d.Creds = CredsDrop
	}
	return d, nil
}
