package store

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"time"

	"github.com/direktiv/direktiv-authz/internal/secret"
)

// Rate is a rate limit on creates: Count per Per, with bursts of up to
// Count. It is enforced as a generic cell rate algorithm (GCRA): each create
// costs Per/Count of a bucket that holds Count, and the bucket refills
// continuously, so "2/m" lets two creates through at once, then one every
// 30 seconds. The zero Rate limits nothing.
type Rate struct {
	Count int
	Per   time.Duration
}

// Limits on a Rate, checked by Valid.
const (
	MaxRateCount = 1_000_000
	minInterval  = time.Microsecond
)

// IsZero reports whether r limits nothing.
func (r Rate) IsZero() bool { return r.Count == 0 && r.Per == 0 }

// Valid reports whether r is the zero Rate or a usable one: Count from 1 to
// MaxRateCount and Per/Count at least a microsecond.
func (r Rate) Valid() bool {
	return r.IsZero() || (r.Count >= 1 && r.Count <= MaxRateCount && r.Per >= time.Duration(r.Count)*minInterval)
}

// Interval is what one create costs: Per/Count.
func (r Rate) Interval() time.Duration { return r.Per / time.Duration(r.Count) }

// String formats r as "N/s", "N/m" or "N/h" where Per is one of those units,
// else as "N per <Per>".
func (r Rate) String() string {
	n := strconv.Itoa(r.Count)
	switch r.Per {
	case time.Second:
		return n + "/s"
	case time.Minute:
		return n + "/m"
	case time.Hour:
		return n + "/h"
	}
	return n + " per " + r.Per.String()
}

// Limit names the rate limits one create counts against. Only creates that
// succeed are counted; a refused create (rate limited or for any other
// reason) counts against nothing. The zero Limit limits nothing.
type Limit struct {
	// Namespace limits every create in the token's namespace, whoever asks.
	Namespace Rate
	// Caller limits the creates of CallerID in the token's namespace. It
	// applies only when CallerID is set.
	Caller Rate
	// CallerID names who is creating: the id of the minting token. ""
	// (the admin token) is limited by Namespace only.
	CallerID string
}

// Scopes of a RateLimitedError.
const (
	ScopeNamespace = "namespace" // Limit.Namespace
	ScopeToken     = "token"     // Limit.Caller
)

// ErrRateLimited is matched (errors.Is) by every *RateLimitedError.
var ErrRateLimited = errors.New("rate limit exceeded")

// RateLimitedError is the error of a create refused by a Limit. Nothing was
// stored and nothing was counted.
type RateLimitedError struct {
	Scope      string        // ScopeNamespace or ScopeToken: which limit refused
	Rate       Rate          // that limit
	RetryAfter time.Duration // when the create would pass, if nothing else is created meanwhile
}

func (e *RateLimitedError) Error() string {
	return fmt.Sprintf("%s: %s limit %s, retry in %s", ErrRateLimited, e.Scope, e.Rate, e.RetryAfter)
}

// Is makes errors.Is(err, ErrRateLimited) true.
func (e *RateLimitedError) Is(target error) bool { return target == ErrRateLimited }

// ValidateLimit checks l: both rates valid, and a caller id that can be part
// of a key when the caller is limited. Errors wrap ErrInvalid.
func ValidateLimit(l Limit) error {
	if !l.Namespace.Valid() || !l.Caller.Valid() {
		return fmt.Errorf("%w: rate limit %+v: want a count from 1 to %d and at least a microsecond per create", ErrInvalid, l, MaxRateCount)
	}
	if l.CallerID != "" && !l.Caller.IsZero() && !secret.ValidID(l.CallerID) {
		return fmt.Errorf("%w: rate-limited caller id %s is not a token id", ErrInvalid, Quote(l.CallerID))
	}
	return nil
}

// gcra is one step of the generic cell rate algorithm. tat is the
// theoretical arrival time the bucket is at (zero: full). It returns how
// long to wait before a create passes (0: it passes now) and the tat to keep
// if it does.
func gcra(tat, now time.Time, r Rate) (wait time.Duration, next time.Time) {
	if tat.Before(now) {
		tat = now
	}
	iv := r.Interval()
	wait = tat.Sub(now) - time.Duration(r.Count-1)*iv
	if wait < 0 {
		wait = 0
	}
	return wait, tat.Add(iv)
}

// ceilSeconds rounds d up to whole seconds, at least 1: what an HTTP
// Retry-After header says.
func ceilSeconds(d time.Duration) int64 {
	s := int64(math.Ceil(d.Seconds()))
	if s < 1 {
		s = 1
	}
	return s
}

// RetryAfterSeconds is RetryAfter rounded up to whole seconds, at least 1,
// as an HTTP Retry-After header carries it.
func (e *RateLimitedError) RetryAfterSeconds() int64 { return ceilSeconds(e.RetryAfter) }

// takeLimits checks l against the namespace's limits at now and, if every
// one lets the create through, counts it; else it returns the
// *RateLimitedError of the limit furthest from passing and counts nothing.
// The Memory's lock must be held.
func (sp *memSpace) takeLimits(l Limit, now time.Time) error {
	type step struct {
		key   string
		scope string
		rate  Rate
	}
	steps := make([]step, 0, 2)
	if !l.Namespace.IsZero() {
		steps = append(steps, step{"ns", ScopeNamespace, l.Namespace})
	}
	if l.CallerID != "" && !l.Caller.IsZero() {
		steps = append(steps, step{"tok:" + l.CallerID, ScopeToken, l.Caller})
	}
	var refused *RateLimitedError
	next := make([]time.Time, len(steps))
	for i, s := range steps {
		wait, tat := gcra(sp.limits[s.key], now, s.rate)
		if wait > 0 && (refused == nil || wait > refused.RetryAfter) {
			refused = &RateLimitedError{Scope: s.scope, Rate: s.rate, RetryAfter: wait}
		}
		next[i] = tat
	}
	if refused != nil {
		return refused
	}
	for i, s := range steps {
		sp.limits[s.key] = next[i]
	}
	return nil
}
