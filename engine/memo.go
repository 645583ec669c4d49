package engine

import (
	"sync"

	"github.com/open-policy-agent/opa/v1/ast"
)

// memo remembers the decisions of one policy set by their input. A decision
// is a pure function of the input and the rules, so once asked it never
// changes while the set is active; a reload builds a new set with an empty
// memo. Rules that call a non-deterministic built-in (time.now_ns,
// http.send, rand.intn, ...) are not pure: for them the set has no memo and
// every decision is evaluated (see deterministic).
//
// The hot paths ask the same few questions over and over (one token, a
// handful of routes), so a hit saves the whole Rego evaluation, which costs
// tens of microseconds. Memory is bounded by maxMemo entries per memo; past
// that, an arbitrary entry makes room (Go's map iteration order is random).
type memo[V any] struct {
	mu sync.RWMutex
	m  map[string]V
}

// maxMemo bounds each memo.
const maxMemo = 16384

func newMemo[V any]() *memo[V] { return &memo[V]{m: make(map[string]V)} }

// get returns the decision remembered for key. A nil memo remembers nothing.
func (m *memo[V]) get(key []byte) (V, bool) {
	if m == nil {
		var zero V
		return zero, false
	}
	m.mu.RLock()
	v, ok := m.m[string(key)] // no allocation: the compiler elides the conversion
	m.mu.RUnlock()
	return v, ok
}

// put remembers v for key.
func (m *memo[V]) put(key []byte, v V) {
	if m == nil {
		return
	}
	m.mu.Lock()
	if len(m.m) >= maxMemo {
		for k := range m.m {
			delete(m.m, k)
			break
		}
	}
	m.m[string(key)] = v
	m.mu.Unlock()
}

// deterministic reports whether no rule in modules calls a built-in that OPA
// marks non-deterministic, so that a decision depends on its input alone.
// modules must be compiled: the compiler lifts every call, a nested one
// included, into an expression of its own.
func deterministic(modules map[string]*ast.Module) bool {
	for _, m := range modules {
		found := false
		ast.WalkExprs(m, func(e *ast.Expr) bool {
			found = found || callsNondeterministic(e)
			return found
		})
		if found {
			return false
		}
	}
	return true
}

// callsNondeterministic reports whether e calls a built-in whose answer can
// change between two evaluations with the same input (time.now_ns,
// http.send, rand.intn, ...).
func callsNondeterministic(e *ast.Expr) bool {
	op := e.Operator()
	if op == nil {
		return false
	}
	b, ok := ast.BuiltinMap[op.String()]
	return ok && b.Nondeterministic
}
