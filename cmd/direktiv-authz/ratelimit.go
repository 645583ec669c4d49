package main

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/direktiv/direktiv-authz/store"
)

// Mint rate limits (--mint-rate-per-token, --mint-rate-per-namespace) are
// checked and counted by the store inside the create itself (see
// store.Limit): no extra round trip, shared by every replica on the Redis,
// on the Redis server's clock. Only mints that store a token count; dry runs
// and refused mints count against nothing. The admin token is limited per
// namespace only.

// parseRate parses a rate setting: "N/s", "N/m" or "N/h", where N is also
// the burst; "" or "0" is no limit.
func parseRate(name, v string) (store.Rate, error) {
	if v == "" || v == "0" {
		return store.Rate{}, nil
	}
	bad := fmt.Errorf("%s %q: want N/s, N/m or N/h with N a whole number from 1 to %d (e.g. 10/s or 600/m), or 0 for no limit", name, v, store.MaxRateCount)
	num, unit, ok := strings.Cut(v, "/")
	if !ok {
		return store.Rate{}, bad
	}
	n, err := strconv.Atoi(num)
	if err != nil || n < 1 || n > store.MaxRateCount || strconv.Itoa(n) != num {
		return store.Rate{}, bad
	}
	var per time.Duration
	switch unit {
	case "s":
		per = time.Second
	case "m":
		per = time.Minute
	case "h":
		per = time.Hour
	default:
		return store.Rate{}, bad
	}
	return store.Rate{Count: n, Per: per}, nil
}

// mintLimit is the store.Limit a mint by who in ns counts against.
func (a *app) mintLimit(who caller) store.Limit {
	l := store.Limit{Namespace: a.cfg.mintRatePerNamespace}
	if !who.admin {
		l.Caller, l.CallerID = a.cfg.mintRatePerToken, who.token.ID
	}
	return l
}

// rateLimited turns a store.RateLimitedError into the 429 answer: it sets
// Retry-After (whole seconds, rounded up, at least 1) on ctx's response and
// returns the codeTooManyRequests error naming the limit and its rate.
func (a *app) rateLimited(ctx *fasthttp.RequestCtx, err error) error {
	var rl *store.RateLimitedError
	if !errors.As(err, &rl) {
		return err
	}
	secs := rl.RetryAfterSeconds()
	ctx.Response.Header.Set(fasthttp.HeaderRetryAfter, strconv.FormatInt(secs, 10))
	a.metrics.mintRateLimited(rl.Scope)
	whose, setting := "the minting token's", "--mint-rate-per-token"
	if rl.Scope == store.ScopeNamespace {
		whose, setting = "the namespace's", "--mint-rate-per-namespace"
	}
	return &apiError{
		code:    codeTooManyRequests,
		message: fmt.Sprintf("%s mint rate limit of %s is exceeded (%s); nothing was minted, retry in %d s", whose, rl.Rate, setting, secs),
		err:     err,
	}
}
