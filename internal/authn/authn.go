// Package authn resolves a request's credential (internal/credential) to a
// caller: the admin token, or a live token minted here, its record found in
// the token cache or the store. It decides nothing about what the caller may
// do (the rules do), and it imports nothing of the HTTP layer.
package authn

import (
	"context"
	"errors"
	"time"

	"github.com/direktiv/direktiv-authz/internal/apierror"
	"github.com/direktiv/direktiv-authz/internal/credential"
	"github.com/direktiv/direktiv-authz/internal/secret"
	"github.com/direktiv/direktiv-authz/internal/tokencache"
	"github.com/direktiv/direktiv-authz/store"
)

// Caller is who sent a request: the admin token or a live minted token.
type Caller struct {
	Admin  bool
	Secret secret.Secret // minted callers only
	Token  store.Token   // minted callers only
}

// ID names the caller in logs and records: "admin" or the token id.
func (c Caller) ID() string {
	if c.Admin {
		return "admin"
	}
	return c.Token.ID
}

// Authenticator finds the callers of requests.
type Authenticator struct {
	Store store.Store
	Cache *tokencache.Cache // recently authenticated records; nil: none
	Now   func() time.Time
}

// Authenticate resolves the credential of a request to a caller. It
// returns apierror.Unauthenticated for a missing, foreign, unknown, malformed,
// revoked or expired credential and apierror.Unavailable (fail closed) when the
// store cannot answer.
func (a *Authenticator) Authenticate(ctx context.Context, cred credential.Credential) (Caller, error) {
	return a.AuthenticateWith(cred, func(sec secret.Secret) (store.Token, error) { return a.FindToken(ctx, sec) })
}

// FindToken returns sec's record from the token cache (at most
// --token-cache-ttl old) or from the store.
func (a *Authenticator) FindToken(ctx context.Context, sec secret.Secret) (store.Token, error) {
	rec, gen, cached := a.Cache.Get(sec.Namespace, sec.ID)
	if cached {
		return rec, nil
	}
	return a.LookupToken(ctx, sec, gen)
}

// AuthenticateWith is Authenticate with find for the record of a minted
// token (FindToken, or on the event loops the record found before).
func (a *Authenticator) AuthenticateWith(cred credential.Credential, find func(secret.Secret) (store.Token, error)) (Caller, error) {
	switch cred.Kind {
	case credential.None:
		return Caller{}, &apierror.Error{Code: apierror.Unauthenticated, V2Code: "access_token_missing", Message: "no credential: send the admin token or a namespace token in " + credential.HeaderList}
	case credential.Admin:
		return Caller{Admin: true}, nil
	case credential.Foreign:
		return Caller{}, apierror.Errorf(apierror.Unauthenticated, "the credential in the %s header is neither the admin token nor a token this sidecar minted", cred.Header)
	}
	sec, err := secret.Parse(string(cred.Value))
	if err != nil {
		return Caller{}, apierror.Errorf(apierror.Unauthenticated, "the token in the %s header is malformed (bad checksum or encoding); check it was copied whole", cred.Header)
	}
	// The hash is compared whether the record was cached or not.
	rec, err := find(sec)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return Caller{}, apierror.Errorf(apierror.Unauthenticated, "the token in the %s header is unknown, expired or revoked", cred.Header)
	case err != nil:
		return Caller{}, err
	}
	if !a.Live(sec, rec) {
		return Caller{}, apierror.Errorf(apierror.Unauthenticated, "the token in the %s header is unknown, expired or revoked", cred.Header)
	}
	return Caller{Secret: sec, Token: rec}, nil
}

// LookupToken asks the store for sec's record and caches it when it is
// sec's and live; gen is what the cache miss (Cache.Get) returned.
func (a *Authenticator) LookupToken(ctx context.Context, sec secret.Secret, gen uint64) (store.Token, error) {
	rec, err := a.Store.Lookup(ctx, sec.Namespace, sec.ID)
	if err == nil && a.Live(sec, rec) {
		a.Cache.Fill(rec, gen)
	}
	return rec, err
}

// Live reports whether rec is the record of sec (its hash, compared in
// constant time) and has not expired.
func (a *Authenticator) Live(sec secret.Secret, rec store.Token) bool {
	return sec.HashMatches(rec.Hash) && !rec.Expired(a.Now())
}
