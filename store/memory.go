package store

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"sync"
	"time"
)

// memorySweepInterval is how often the janitor of a Memory drops expired
// records. Reads never depend on it: they check expiry themselves.
const memorySweepInterval = time.Second

// Memory is a token store held in process memory, for dev mode and tests.
// It behaves like Redis (same errors, ordering, cursors and cascade) but
// forgets everything on restart and is not shared between processes: two
// Memory values are two separate stores. Records are kept as JSON, as in
// Redis, so both return identical Token values.
//
// A Memory is safe for concurrent use. Close stops its janitor goroutine.
type Memory struct {
	mu     sync.Mutex
	spaces map[string]*memSpace
	subs   map[*memSub]struct{}
	closed bool

	closeOnce sync.Once
	stop      chan struct{}
	done      chan struct{}
}

type memSpace struct {
	records map[string]*memRecord
	// kids maps a token id to the ids minted from it. Like the Redis kids
	// sets, a set lives as long as the longest-lived of its descendants, so
	// a cascade walks through tokens that have expired.
	kids map[string]*memKids
	// revoked holds, for a minute, the ids passed to Revoke, which Create
	// refuses, as the Redis store's revoke markers do.
	revoked map[string]time.Time
	// limits holds the theoretical arrival time of each rate limit (see
	// CreateLimited) by key: "ns" or "tok:<id>", until its bucket is full.
	limits map[string]time.Time
	seq    uint64 // records stored so far: the list order
}

type memRecord struct {
	id      string
	data    []byte // the record, as in Redis (record.go)
	key     cursor // (0, the order it was stored in)
	expires time.Time
	up      []string // ancestors, oldest first, ending with the parent
}

type memKids struct {
	ids     map[string]struct{}
	expires time.Time
}

// memSub is one Subscribe call: revocations queue here and are delivered on
// the subscriber's goroutine, so a slow or re-entrant callback never blocks
// Revoke.
type memSub struct {
	mu    sync.Mutex
	queue []revocation
	wake  chan struct{}
}

type revocation struct{ namespace, id string }

// NewMemory returns an empty in-memory store and starts its janitor.
func NewMemory() *Memory { return newMemory(memorySweepInterval) }

func newMemory(sweep time.Duration) *Memory {
	m := &Memory{
		spaces: make(map[string]*memSpace),
		subs:   make(map[*memSub]struct{}),
		stop:   make(chan struct{}),
		done:   make(chan struct{}),
	}
	go m.janitor(sweep)
	return m
}

func (m *Memory) janitor(every time.Duration) {
	defer close(m.done)
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		select {
		case <-m.stop:
			return
		case now := <-tick.C:
			m.mu.Lock()
			m.sweep(now)
			m.mu.Unlock()
		}
	}
}

// sweep drops every record and kids set expired at now. m.mu must be held.
func (m *Memory) sweep(now time.Time) {
	for ns, sp := range m.spaces {
		for id, r := range sp.records {
			if !now.Before(r.expires) {
				delete(sp.records, id)
			}
		}
		for id, k := range sp.kids {
			if !now.Before(k.expires) {
				delete(sp.kids, id)
			}
		}
		for id, until := range sp.revoked {
			if !now.Before(until) {
				delete(sp.revoked, id)
			}
		}
		for k, tat := range sp.limits {
			if !now.Before(tat) {
				delete(sp.limits, k)
			}
		}
		if len(sp.records) == 0 && len(sp.kids) == 0 && len(sp.revoked) == 0 && len(sp.limits) == 0 {
			delete(m.spaces, ns)
		}
	}
}

// live returns the record of ns/id if it exists and has not expired at now,
// deleting it if it has. m.mu must be held.
func (m *Memory) live(ns, id string, now time.Time) (*memRecord, bool) {
	sp := m.spaces[ns]
	if sp == nil {
		return nil, false
	}
	r, ok := sp.records[id]
	if !ok {
		return nil, false
	}
	if !now.Before(r.expires) {
		delete(sp.records, id)
		return nil, false
	}
	return r, true
}

var errMemoryClosed = fmt.Errorf("%w: memory store is closed", ErrUnavailable)

// Create stores t. It returns an error wrapping ErrInvalid if t is incomplete
// (see ValidateRecord), ErrExists if a token with t's namespace and id
// exists or was revoked in the last RevokeMarkerTTL, ErrNotFound if t.Parent
// is set and that token is not live (so a child of a revoked or expired
// parent is never stored), and ErrUnavailable after Close. On error nothing
// is stored. Creating the identical record again is a no-op, as in Redis.
func (m *Memory) Create(ctx context.Context, t Token) error {
	return m.CreateLimited(ctx, t, Limit{})
}

// CreateLimited is Create counted against the rate limits l, as
// redis.Store.CreateLimited: a *RateLimitedError (errors.Is ErrRateLimited)
// when a limit refuses, the create counted only when the token is stored. The
// limits are this Memory's own, on the process clock.
func (m *Memory) CreateLimited(_ context.Context, t Token, l Limit) error {
	now := time.Now()
	t, err := ValidateRecord(t, now)
	if err != nil {
		return err
	}
	if err := ValidateLimit(l); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return errMemoryClosed
	}
	var up []string
	var parentLive bool
	if t.Parent != "" {
		var p *memRecord
		p, parentLive = m.live(t.Namespace, t.Parent, now)
		if parentLive {
			up = append(slices.Clip(p.up), t.Parent)
		}
	}
	data := t.encodeRecord(up)
	if r, ok := m.live(t.Namespace, t.ID, now); ok {
		if bytes.Equal(r.data, data) {
			return nil
		}
		return fmt.Errorf("%w: %s/%s", ErrExists, t.Namespace, t.ID)
	}
	if sp := m.spaces[t.Namespace]; sp != nil && now.Before(sp.revoked[t.ID]) {
		return fmt.Errorf("%w: %s/%s was just revoked", ErrExists, t.Namespace, t.ID)
	}
	if t.Parent != "" {
		if !parentLive {
			return fmt.Errorf("%w: parent %s/%s of token %s", ErrNotFound, t.Namespace, t.Parent, t.ID)
		}
		if len(up) > MaxAncestors {
			return fmt.Errorf("%w: token %s would have more than %d ancestors", ErrInvalid, t.ID, MaxAncestors)
		}
	}
	sp := m.spaces[t.Namespace]
	if sp == nil {
		sp = &memSpace{records: make(map[string]*memRecord), kids: make(map[string]*memKids), revoked: make(map[string]time.Time), limits: make(map[string]time.Time)}
		m.spaces[t.Namespace] = sp
	}
	if err := sp.takeLimits(l, now); err != nil {
		return err
	}
	sp.seq++
	sp.records[t.ID] = &memRecord{id: t.ID, data: data, key: cursor{seq: sp.seq}, expires: t.Expires, up: up}
	if t.Parent != "" {
		k := sp.kids[t.Parent]
		if k == nil {
			k = &memKids{ids: make(map[string]struct{})}
			sp.kids[t.Parent] = k
		}
		k.ids[t.ID] = struct{}{}
		// Every link from the oldest ancestor down lives as long as t.
		for _, a := range up {
			if k := sp.kids[a]; k != nil && t.Expires.After(k.expires) {
				k.expires = t.Expires
			}
		}
	}
	return nil
}

// Lookup returns the live token namespace/id. It returns an error wrapping
// ErrInvalid if namespace or id is not a valid name, ErrNotFound if the token
// was never stored, has expired or was revoked, and ErrUnavailable after
// Close.
func (m *Memory) Lookup(_ context.Context, namespace, id string) (Token, error) {
	if err := ValidateName(namespace, id); err != nil {
		return Token{}, err
	}
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return Token{}, errMemoryClosed
	}
	r, ok := m.live(namespace, id, time.Now())
	var data []byte
	if ok {
		data = r.data
	}
	m.mu.Unlock()
	if !ok {
		return Token{}, fmt.Errorf("%w: %s/%s", ErrNotFound, namespace, id)
	}
	t, err := DecodeRecord(data, namespace, id)
	if err != nil {
		return Token{}, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	return t, nil
}

// List returns up to limit live tokens of namespace in the order they were
// stored, starting after the cursor after ("" = from the
// start). next is the cursor for the following page, "" when there is none.
// Expired records found on the way are dropped. It returns an error wrapping
// ErrInvalid for an invalid namespace, a limit outside 1..MaxListLimit or a
// cursor List did not return, and ErrUnavailable after Close.
func (m *Memory) List(_ context.Context, namespace, after string, limit int) ([]Token, string, error) {
	from, hasFrom, err := validateList(namespace, after, limit)
	if err != nil {
		return nil, "", err
	}
	now := time.Now()
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return nil, "", errMemoryClosed
	}
	var page []*memRecord
	if sp := m.spaces[namespace]; sp != nil {
		for id, r := range sp.records {
			if !now.Before(r.expires) {
				delete(sp.records, id)
				continue
			}
			if hasFrom && !from.before(r.key) {
				continue
			}
			page = append(page, r)
		}
	}
	m.mu.Unlock()

	slices.SortFunc(page, func(a, b *memRecord) int {
		switch {
		case a.key.before(b.key):
			return -1
		case b.key.before(a.key):
			return 1
		}
		return 0
	})
	next := ""
	if len(page) > limit {
		page = page[:limit]
		next = page[limit-1].key.String()
	}
	out := make([]Token, 0, len(page))
	for _, r := range page {
		t, err := DecodeRecord(r.data, namespace, r.id)
		if err != nil {
			return nil, "", fmt.Errorf("%w: %w", ErrUnavailable, err)
		}
		out = append(out, t)
	}
	return out, next, nil
}

// Revoke deletes the live token namespace/id and every token minted from it,
// transitively (also through minted tokens that have since expired), in one
// step under the store's lock, then tells every Subscribe of this Memory
// (the token: its descendants name it among their ancestors). The
// Revocation lists the ids revoked, id first, then the descendants in the
// order they were stored, and is always Done. It returns an error wrapping
// ErrInvalid if namespace or id is not a valid name, ErrNotFound if
// namespace/id is not live, and ErrUnavailable after Close.
func (m *Memory) Revoke(_ context.Context, namespace, id string) (Revocation, error) {
	if err := ValidateName(namespace, id); err != nil {
		return Revocation{}, err
	}
	now := time.Now()
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return Revocation{}, errMemoryClosed
	}
	if _, ok := m.live(namespace, id, now); !ok {
		m.mu.Unlock()
		return Revocation{}, fmt.Errorf("%w: %s/%s", ErrNotFound, namespace, id)
	}
	sp := m.spaces[namespace]
	sp.revoked[id] = now.Add(RevokeMarkerTTL)
	var gone []*memRecord
	queue := []string{id}
	seen := map[string]bool{id: true}
	for len(queue) > 0 {
		cur := queue[0]
		queue = queue[1:]
		if k := sp.kids[cur]; k != nil {
			for kid := range k.ids {
				if !seen[kid] {
					seen[kid] = true
					queue = append(queue, kid)
				}
			}
			delete(sp.kids, cur)
		}
		if r, ok := m.live(namespace, cur, now); ok && cur != id {
			gone = append(gone, r)
		}
		delete(sp.records, cur)
	}
	slices.SortFunc(gone, func(a, b *memRecord) int { return int(a.key.seq) - int(b.key.seq) })
	revoked := []string{id}
	for _, r := range gone {
		revoked = append(revoked, r.id)
	}
	subs := make([]*memSub, 0, len(m.subs))
	for s := range m.subs {
		subs = append(subs, s)
	}
	m.mu.Unlock()

	for _, s := range subs {
		s.mu.Lock()
		s.queue = append(s.queue, revocation{namespace, id})
		s.mu.Unlock()
		select {
		case s.wake <- struct{}{}:
		default:
		}
	}
	return Revocation{IDs: revoked, Count: len(revoked), Done: true}, nil
}

// Subscribe calls fn for every Revoke in this Memory from now on, one call per
// revoked token (not per descendant), in revocation order, on the caller's
// goroutine. It blocks until ctx is done and then returns nil; it returns an
// error wrapping ErrUnavailable once the store is closed. fn may call the
// store.
func (m *Memory) Subscribe(ctx context.Context, fn func(namespace, id string)) error {
	s := &memSub{wake: make(chan struct{}, 1)}
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return errMemoryClosed
	}
	m.subs[s] = struct{}{}
	m.mu.Unlock()
	defer func() {
		m.mu.Lock()
		delete(m.subs, s)
		m.mu.Unlock()
	}()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-m.stop:
			return errMemoryClosed
		case <-s.wake:
			s.mu.Lock()
			batch := s.queue
			s.queue = nil
			s.mu.Unlock()
			for _, r := range batch {
				fn(r.namespace, r.id)
			}
		}
	}
}

// Ping returns nil, or an error wrapping ErrUnavailable after Close.
func (m *Memory) Ping(context.Context) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return errMemoryClosed
	}
	return nil
}

// Close stops the janitor and ends every Subscribe; later calls return
// ErrUnavailable. Close is idempotent and always returns nil.
func (m *Memory) Close() error {
	m.closeOnce.Do(func() {
		m.mu.Lock()
		m.closed = true
		m.spaces = make(map[string]*memSpace)
		m.mu.Unlock()
		close(m.stop)
		<-m.done
	})
	return nil
}
