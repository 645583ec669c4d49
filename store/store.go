// Package store keeps minted namespace access tokens: in Redis (standalone,
// Sentinel or Cluster) for production, in memory for dev mode. A store never
// sees a secret; it keeps a record with the hash of the secret.
package store

import (
	"errors"
	"time"

	"github.com/direktiv/direktiv-authz/internal/jsonenc"
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

// Token is the stored record of a minted token. It never holds the secret,
// only Hash, the hex SHA-256 of the whole token string (see Secret.Hash).
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
}

// Expired reports whether the token has expired at now.
func (t Token) Expired(now time.Time) bool { return !now.Before(t.Expires) }

// appendJSON appends t's record, byte for byte what json.Marshal(t) writes,
// without reflection (a create encodes one per mint). t must be valid
// (validateRecord): its times then have 4-digit years.
func (t Token) appendJSON(b []byte) []byte {
	b = append(b, `{"id":`...)
	b = jsonenc.String(b, t.ID, true)
	b = append(b, `,"namespace":`...)
	b = jsonenc.String(b, t.Namespace, true)
	b = append(b, `,"description":`...)
	b = jsonenc.String(b, t.Description, true)
	b = append(b, `,"policies":`...)
	b = jsonenc.Strings(b, t.Policies, true)
	if t.Parent != "" {
		b = append(b, `,"parent":`...)
		b = jsonenc.String(b, t.Parent, true)
	}
	b = append(b, `,"created":`...)
	b = jsonenc.Time(b, t.Created)
	b = append(b, `,"expires":`...)
	b = jsonenc.Time(b, t.Expires)
	b = append(b, `,"revision":`...)
	b = jsonenc.String(b, t.Revision, true)
	b = append(b, `,"hash":`...)
	b = jsonenc.String(b, t.Hash, true)
	return append(b, '}')
}
