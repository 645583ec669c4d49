package tokens

import (
	"errors"
	"fmt"
	"strconv"

	"github.com/valyala/fasthttp"

	"github.com/direktiv/direktiv-authz/internal/apierror"
	"github.com/direktiv/direktiv-authz/internal/authn"
	"github.com/direktiv/direktiv-authz/store"
)

// Mint rate limits (--mint-rate-per-token, --mint-rate-per-namespace) are
// checked and counted by the store inside the create itself (see
// store.Limit): no extra round trip, shared by every replica on the Redis,
// on the Redis server's clock. Only mints that store a token count; dry runs
// and refused mints count against nothing. The admin token is limited per
// namespace only.

// mintLimit is the store.Limit a mint by who in ns counts against.
func (e *Endpoints) mintLimit(who authn.Caller) store.Limit {
	l := store.Limit{Namespace: e.Config.NamespaceRate}
	if !who.Admin {
		l.Caller, l.CallerID = e.Config.TokenRate, who.Token.ID
	}
	return l
}

// rateLimited turns a store.RateLimitedError into the 429 answer: it sets
// Retry-After (whole seconds, rounded up, at least 1) on ctx's response and
// returns the apierror.TooManyRequests error naming the limit and its rate.
func (e *Endpoints) rateLimited(ctx *fasthttp.RequestCtx, err error) error {
	var rl *store.RateLimitedError
	if !errors.As(err, &rl) {
		return err
	}
	secs := rl.RetryAfterSeconds()
	ctx.Response.Header.Set(fasthttp.HeaderRetryAfter, strconv.FormatInt(secs, 10))
	e.Metrics.MintRateLimited(rl.Scope)
	whose, setting := "the minting token's", "--mint-rate-per-token"
	if rl.Scope == store.ScopeNamespace {
		whose, setting = "the namespace's", "--mint-rate-per-namespace"
	}
	return &apierror.Error{
		Code:    apierror.TooManyRequests,
		Message: fmt.Sprintf("%s mint rate limit of %s is exceeded (%s); nothing was minted, retry in %d s", whose, rl.Rate, setting, secs),
		Err:     err,
	}
}
