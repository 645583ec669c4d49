package engine

import (
	"context"
	"fmt"
	"slices"
	"strconv"

	"github.com/open-policy-agent/opa/v1/ast"
)

// Mint asks the rules whether in.Caller may mint, in in.Namespace, a token
// holding in.Requested, and which of those policies the token gets. A
// refusal is a decision (Allow false, with Code and Reason), not an error.
// Decisions are remembered per policy set (see memo): the slices of the
// answer are shared and must not be modified.
// The error, when there is one, wraps ErrUnavailable: ctx was done, the
// rules failed or gave no answer of MintDecision's shape.
func (e *Engine) Mint(ctx context.Context, in MintInput) (MintDecision, error) {
	return e.current.Load().decideMint(ctx, in)
}

func (s *policySet) decideMint(ctx context.Context, in MintInput) (MintDecision, error) {
	var buf [512]byte
	key := appendString(callerKey(buf[:0], in.Caller), in.Namespace)
	for _, p := range in.Requested {
		key = appendString(key, p)
	}
	if d, ok := s.mintMemo.get(key); ok {
		return d, nil
	}
	d, err := s.evalMint(ctx, in)
	if err == nil {
		s.mintMemo.put(key, d)
	}
	return d, err
}

func (s *policySet) evalMint(ctx context.Context, in MintInput) (MintDecision, error) {
	t, err := s.mint.eval(ctx, s.mintInput(in))
	if err != nil {
		return MintDecision{}, err
	}
	d, err := decodeMint(t)
	if err != nil {
		return MintDecision{}, fmt.Errorf("%w: %s: %w", ErrUnavailable, mintQuery, err)
	}
	return d, nil
}

// mintInput is the input the mint decision reads.
func (s *policySet) mintInput(in MintInput) ast.Object {
	return ast.NewObject(
		ast.Item(ast.InternedTerm("caller"), s.callerTerm(in.Caller)),
		ast.Item(ast.InternedTerm("namespace"), ast.InternedTerm(in.Namespace)),
		ast.Item(ast.InternedTerm("requested"), setTerm(in.Requested)),
	)
}

// decodeMint reads a MintDecision from the rule's object.
func decodeMint(t *ast.Term) (MintDecision, error) {
	obj, ok := t.Value.(ast.Object)
	if !ok {
		return MintDecision{}, fmt.Errorf("the decision is %s, not an object", ast.ValueName(t.Value))
	}
	d := MintDecision{Granted: []string{}, Dropped: []string{}, Unknown: []string{}}
	var hasAllow bool
	err := obj.Iter(func(k, v *ast.Term) error {
		var err error
		key, _ := k.Value.(ast.String)
		switch key {
		case "allow":
			d.Allow, err = decodeBool(v)
			hasAllow = true
		case "code":
			d.Code, err = decodeString(v)
		case "reason":
			d.Reason, err = decodeString(v)
		case "granted":
			d.Granted, err = decodeSortedStrings(v)
		case "dropped":
			d.Dropped, err = decodeSortedStrings(v)
		case "unknown":
			d.Unknown, err = decodeSortedStrings(v)
		}
		if err != nil {
			return fmt.Errorf("%s: %w", key, err)
		}
		return nil
	})
	if err != nil {
		return MintDecision{}, err
	}
	if err := checkVerdict(hasAllow, d.Allow, d.Code); err != nil {
		return MintDecision{}, err
	}
	return d, nil
}

// checkVerdict insists on the two fields every decision needs.
func checkVerdict(hasAllow, allow bool, code string) error {
	if !hasAllow {
		return fmt.Errorf("the decision has no allow field")
	}
	if !allow && code == "" {
		return fmt.Errorf("the decision denies without a code")
	}
	return nil
}

// callerTerm is the input's caller object: admin, namespace, the set of
// policies, and the set of policies those grant (effective), from the
// closure computed at load. Callers come back request after request with
// the same token, so the terms (immutable once built) are kept, up to
// maxCallers of them per policy set.
func (s *policySet) callerTerm(c Caller) *ast.Term {
	var buf [256]byte
	key := callerKey(buf[:0], c)
	s.callersMu.RLock()
	t, ok := s.callers[string(key)]
	s.callersMu.RUnlock()
	if ok {
		return t
	}

	effective := ast.NewSetWithCapacity(2 * len(c.Policies))
	for _, p := range c.Policies {
		for _, g := range s.grants[p] {
			effective.Add(g)
		}
	}
	t = ast.NewTerm(ast.NewObject(
		ast.Item(ast.InternedTerm("admin"), ast.InternedTerm(c.Admin)),
		ast.Item(ast.InternedTerm("namespace"), ast.InternedTerm(c.Namespace)),
		ast.Item(ast.InternedTerm("policies"), setTerm(c.Policies)),
		ast.Item(ast.InternedTerm("effective"), ast.NewTerm(effective)),
	))
	s.callersMu.Lock()
	if len(s.callers) < maxCallers {
		s.callers[string(key)] = t
	}
	s.callersMu.Unlock()
	return t
}

// maxCallers bounds the caller terms a policy set keeps.
const maxCallers = 10000

// callerKey appends an unambiguous encoding of c to buf: every string is
// length-prefixed, so no choice of names makes two callers collide.
func callerKey(buf []byte, c Caller) []byte {
	if c.Admin {
		buf = append(buf, 'A')
	} else {
		buf = append(buf, 'T')
	}
	buf = appendString(buf, c.Namespace)
	for _, p := range c.Policies {
		buf = appendString(buf, p)
	}
	return buf
}

func appendString(buf []byte, s string) []byte {
	buf = strconv.AppendInt(buf, int64(len(s)), 10)
	buf = append(buf, ':')
	return append(buf, s...)
}

// setTerm is a set of strings.
func setTerm(ss []string) *ast.Term {
	set := ast.NewSetWithCapacity(len(ss))
	for _, s := range ss {
		set.Add(ast.InternedTerm(s))
	}
	return ast.NewTerm(set)
}

// stringsTerm is an array of strings; nil becomes the empty array.
func stringsTerm(ss []string) *ast.Term {
	terms := make([]*ast.Term, len(ss))
	for i, s := range ss {
		terms[i] = ast.InternedTerm(s)
	}
	return ast.ArrayTerm(terms...)
}

func decodeBool(t *ast.Term) (bool, error) {
	b, ok := t.Value.(ast.Boolean)
	if !ok {
		return false, fmt.Errorf("want a boolean, got %s", ast.ValueName(t.Value))
	}
	return bool(b), nil
}

func decodeString(t *ast.Term) (string, error) {
	s, ok := t.Value.(ast.String)
	if !ok {
		return "", fmt.Errorf("want a string, got %s", ast.ValueName(t.Value))
	}
	return string(s), nil
}

// decodeStrings reads an array or set of strings.
func decodeStrings(t *ast.Term) ([]string, error) {
	var out []string
	add := func(e *ast.Term) error {
		s, err := decodeString(e)
		out = append(out, s)
		return err
	}
	switch v := t.Value.(type) {
	case *ast.Array:
		out = make([]string, 0, v.Len())
		for i := range v.Len() {
			if err := add(v.Elem(i)); err != nil {
				return nil, err
			}
		}
	case ast.Set:
		out = make([]string, 0, v.Len())
		if err := v.Iter(add); err != nil {
			return nil, err
		}
	default:
		return nil, fmt.Errorf("want an array or set of strings, got %s", ast.ValueName(t.Value))
	}
	return out, nil
}

// decodeSortedStrings reads strings, sorted and deduplicated.
func decodeSortedStrings(t *ast.Term) ([]string, error) {
	out, err := decodeStrings(t)
	if err != nil {
		return nil, err
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}
