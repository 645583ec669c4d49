// Package store is what a token store is: the Token record, its stored
// form, the rules every store checks, its errors and rate limits, and
// Memory, the store of dev mode. Package store/redis is the production one.
// A store never sees a secret; it keeps a record with the hash of the
// secret. It imports nothing of the HTTP layer.
package store

import (
	"context"
	"errors"
	"time"
)

// Errors every store returns, wrapped with %w so callers test them with
// errors.Is.
var (
	// ErrNotFound: no live token with that namespace and id (never minted,
	// expired, or revoked).
	ErrNotFound = errors.New("token not found")
	// ErrExists: a token with that id already exists in the namespace.
	ErrExists = errors.New("token id already exists")
	// ErrUnavailable: the backing store did not answer; callers fail closed.
	ErrUnavailable = errors.New("token store unavailable")
	// ErrInvalid: an argument no token can have: a namespace or id that is
	// not a valid name, a list cursor or limit out of range, or a record to
	// create that is incomplete (see Create on each store). The store is
	// unchanged; callers answer 400.
	ErrInvalid = errors.New("invalid token store argument")
)

// Revocation is what a Revoke did.
type Revocation struct {
	// IDs are the tokens whose records the call removed: the token first,
	// then descendants, in the order they were stored.
	IDs []string
	// Count is how many tokens are revoked so far, the token included.
	Count int
	// Done reports that every descendant is removed (Count is the total).
	// When false, they are already refused everywhere, and their records
	// are removed in the background (see redis.Store.Sweep).
	Done bool
}

// Token is the stored record of a minted token. It never holds the secret,
// only Hash, the hex SHA-256 of the whole token string (see secret.Secret.Hash).
type Token struct {
	ID          string    `json:"id"`
	Namespace   string    `json:"namespace"`
	Description string    `json:"description"`
	Policies    []string  `json:"policies"`         // granted at mint time, sorted, not closed under inheritance
	Parent      string    `json:"parent,omitempty"` // id of the minting token; "" when minted by the admin token
	Created     time.Time `json:"created"`
	Expires     time.Time `json:"expires"`
	Revision    string    `json:"revision"` // policy revision the token was minted under
	Hash        string    `json:"hash"`
	// Ancestors are the ids of the tokens this one was minted from, oldest
	// first, ending with Parent; nil when the admin token minted it. Create
	// ignores it (the store reads the parent's); Lookup and List fill it.
	Ancestors []string `json:"-"`
}

// Expired reports whether the token has expired at now.
func (t Token) Expired(now time.Time) bool { return !now.Before(t.Expires) }

// Store is what the sidecar needs of a token store; Memory and
// redis.Store are the two.
type Store interface {
	CreateLimited(ctx context.Context, t Token, l Limit) error
	Lookup(ctx context.Context, namespace, id string) (Token, error)
	List(ctx context.Context, namespace, after string, limit int) ([]Token, string, error)
	Revoke(ctx context.Context, namespace, id string) (Revocation, error)
	Subscribe(ctx context.Context, fn func(namespace, id string)) error
	Ping(ctx context.Context) error
	Close() error
}

var _ Store = (*Memory)(nil)

// RevokeMarkerTTL is how long a store refuses to create a token with the ID
// of one it revoked (in Redis, how long the marker <prefix>:{ns}:done:<id>
// lives): longer than go-redis can spend resending one command.
const RevokeMarkerTTL = time.Minute
