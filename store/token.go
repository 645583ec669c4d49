package store

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/direktiv/direktiv-authz/internal/secret"
)

// MaxListLimit is the largest page List returns.
const MaxListLimit = 1000

// MaxAncestors bounds the chain of tokens minted from tokens: a token may
// have at most this many ancestors (parent, its parent, ...). Create refuses
// a deeper token with ErrInvalid. It bounds the work of a create and of a
// cascade revoke.
const MaxAncestors = 32

// maxSortKey bounds Token.Created in microseconds so that it is exact as a
// Redis sorted-set score (a float64): 2^53-1 µs is in the year 2255.
const maxSortKey = 1<<53 - 1

// ValidateName returns an error wrapping ErrInvalid unless namespace and id
// are a valid namespace name and a canonical UUID.
func ValidateName(namespace, id string) error {
	if !secret.ValidNamespace(namespace) {
		return fmt.Errorf("%w: namespace %s is not a valid namespace name", ErrInvalid, Quote(namespace))
	}
	if !secret.ValidID(id) {
		return fmt.Errorf("%w: id %s is not a lowercase UUID", ErrInvalid, Quote(id))
	}
	return nil
}

// ValidateRecord checks a record before Create stores it and returns it with
// its times in UTC without monotonic reading, the form every store returns.
// The store keeps the record as JSON, so it never shares t.Policies.
func ValidateRecord(t Token, now time.Time) (Token, error) {
	if err := ValidateName(t.Namespace, t.ID); err != nil {
		return Token{}, err
	}
	if t.Parent != "" {
		if !secret.ValidID(t.Parent) {
			return Token{}, fmt.Errorf("%w: parent %s is not a lowercase UUID", ErrInvalid, Quote(t.Parent))
		}
		if t.Parent == t.ID {
			return Token{}, fmt.Errorf("%w: token %s names itself as parent", ErrInvalid, t.ID)
		}
	}
	if len(t.Hash) != 64 || !isLowerHex(t.Hash) {
		// Never quote Hash: a caller that mixed up fields may have put the
		// secret here.
		return Token{}, fmt.Errorf("%w: hash of token %s is not a hex SHA-256 (64 lowercase hex digits)", ErrInvalid, t.ID)
	}
	if t.Created.IsZero() || t.Created.UnixMicro() < 0 || t.Created.UnixMicro() > maxSortKey {
		return Token{}, fmt.Errorf("%w: token %s has created time %s outside 1970..2255", ErrInvalid, t.ID, t.Created.Format(time.RFC3339Nano))
	}
	if !t.Expires.After(t.Created) {
		return Token{}, fmt.Errorf("%w: token %s expires (%s) before it is created (%s)", ErrInvalid, t.ID, t.Expires.Format(time.RFC3339Nano), t.Created.Format(time.RFC3339Nano))
	}
	if t.Expired(now) {
		return Token{}, fmt.Errorf("%w: token %s expired at %s, before it was stored", ErrInvalid, t.ID, t.Expires.Format(time.RFC3339Nano))
	}
	if t.Expires.UnixMilli() > maxSortKey/1000 {
		return Token{}, fmt.Errorf("%w: token %s expires after 2255", ErrInvalid, t.ID)
	}
	t.Created = t.Created.UTC().Round(0)
	t.Expires = t.Expires.UTC().Round(0)
	return t, nil
}

func isLowerHex(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; !isDigit(c) && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// decodeJSONRecord parses a record of the JSON format (before format 2) and
// checks that it is the record of namespace/id.
func decodeJSONRecord(b []byte, namespace, id string) (Token, error) {
	var t Token
	if err := json.Unmarshal(b, &t); err != nil {
		return Token{}, fmt.Errorf("record of %s/%s does not parse: %w", namespace, id, err)
	}
	if t.Namespace != namespace || t.ID != id {
		return Token{}, fmt.Errorf("record stored for %s/%s names %s/%s", namespace, id, Quote(t.Namespace), Quote(t.ID))
	}
	if t.Parent != "" {
		t.Ancestors = []string{t.Parent} // older ones were in an up key
	}
	return t, nil
}

// cursor is a position in a namespace's list order, the order its tokens
// were stored: a Redis stream id (milliseconds and a sequence number; the
// Memory store uses 0 and its own sequence). Its text form "<ms>-<seq>" is
// opaque to callers.
type cursor struct {
	ms, seq uint64
}

func (c cursor) String() string {
	return strconv.FormatUint(c.ms, 10) + "-" + strconv.FormatUint(c.seq, 10)
}

// before reports whether c sorts before d.
func (c cursor) before(d cursor) bool {
	if c.ms != d.ms {
		return c.ms < d.ms
	}
	return c.seq < d.seq
}

// parseCursor parses a cursor's text form; ok is false for "".
func parseCursor(s string) (c cursor, ok bool, err error) {
	if s == "" {
		return cursor{}, false, nil
	}
	ms, seq, found := strings.Cut(s, "-")
	a, aerr := strconv.ParseUint(ms, 10, 64)
	b, berr := strconv.ParseUint(seq, 10, 64)
	if !found || aerr != nil || berr != nil || strconv.FormatUint(a, 10) != ms || strconv.FormatUint(b, 10) != seq {
		return cursor{}, false, fmt.Errorf("%w: list cursor %s is not one List returned", ErrInvalid, Quote(s))
	}
	return cursor{ms: a, seq: b}, true, nil
}

// ValidateList returns an error wrapping ErrInvalid unless namespace, after
// and limit are valid arguments of List: a valid namespace name, a limit in
// 1..MaxListLimit, and "" or a cursor in the text form List returns (which
// is then also its canonical form).
func ValidateList(namespace, after string, limit int) error {
	_, _, err := validateList(namespace, after, limit)
	return err
}

// validateList checks the arguments of List and returns the cursor after.
func validateList(namespace, after string, limit int) (cursor, bool, error) {
	if !secret.ValidNamespace(namespace) {
		return cursor{}, false, fmt.Errorf("%w: namespace %s is not a valid namespace name", ErrInvalid, Quote(namespace))
	}
	if limit < 1 || limit > MaxListLimit {
		return cursor{}, false, fmt.Errorf("%w: list limit %d outside 1..%d", ErrInvalid, limit, MaxListLimit)
	}
	return parseCursor(after)
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// Quote quotes a caller-supplied value for an error message, cut to a length
// a person can read.
func Quote(s string) string {
	const max = 80
	if len(s) > max {
		return fmt.Sprintf("%q...", s[:max])
	}
	return fmt.Sprintf("%q", s)
}
