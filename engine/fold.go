package engine

import (
	"context"
	"maps"
	"slices"
	"strings"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/storage"
)

// Folding constants.
//
// Much of the Rego is facts and what follows from them alone: the catalog,
// the inheritance closure, the route tables and the lookup tables derived
// from them. None of it reads input, so it has one value per policy set.
// foldConstants computes each such document once, at load, and replaces the
// rules that define it by a single rule holding that value, so a decision
// only looks values up. What a decision means does not change; only when
// the work is done.
//
// A document is folded when every rule defining it, and every rule or
// function those rules use, reads no input, calls no non-deterministic
// built-in (time.now_ns, http.send, rand.intn, ...) and uses no `with`.

// foldConstants returns copies of parsed (the rule modules, not compiled)
// with every constant document replaced by its value, computed with
// compiled (the same modules, compiled), and the folded values by path
// ("data.direktiv.catalog.closure"). A document that is undefined stays as
// it is. It returns an error when evaluating a constant document fails.
func foldConstants(ctx context.Context, compiled *ast.Compiler, store storage.Store, parsed map[string]*ast.Module) (map[string]*ast.Module, map[string]*ast.Term, error) {
	// Group the rules by the document they define.
	docs := map[string][]*ast.Rule{}
	for _, m := range compiled.Modules {
		for _, r := range m.Rules {
			path := r.Ref().GroundPrefix().String()
			docs[path] = append(docs[path], r)
		}
	}
	pure := purity{graph: compiled.Graph, memo: map[*ast.Rule]bool{}}
	paths := slices.Sorted(maps.Keys(docs))
	values := map[string]*ast.Term{}
	for _, path := range paths {
		if !foldable(path, docs[path], paths, &pure) {
			continue
		}
		pq, err := prepare(ctx, compiled, store, query(path))
		if err != nil {
			return nil, nil, err
		}
		v, err := pq.eval(ctx, nil)
		if err != nil {
			continue // undefined without input (or failing): leave it to each decision
		}
		values[path] = v
	}

	out := make(map[string]*ast.Module, len(parsed))
	placed := map[string]bool{}
	for _, name := range slices.Sorted(maps.Keys(parsed)) {
		m := parsed[name].Copy()
		rules := make([]*ast.Rule, 0, len(m.Rules))
		for _, r := range m.Rules {
			path := r.Ref().GroundPrefix().String()
			v, ok := values[path]
			switch {
			case !ok:
				rules = append(rules, r)
			case !placed[path]:
				placed[path] = true
				rules = append(rules, constantRule(m, r, v))
			}
		}
		m.Rules = rules
		out[name] = m
	}
	return out, values, nil
}

// foldable reports whether the document at path, defined by rules, can be
// folded: no functions, nothing nested in or around it, all rules pure.
func foldable(path string, rules []*ast.Rule, paths []string, pure *purity) bool {
	for _, other := range paths {
		if other != path && (strings.HasPrefix(other, path+".") || strings.HasPrefix(other, path+"[") ||
			strings.HasPrefix(path, other+".") || strings.HasPrefix(path, other+"[")) {
			return false
		}
	}
	for _, r := range rules {
		if len(r.Head.Args) > 0 || !pure.of(r) {
			return false
		}
	}
	return true
}

// constantRule is `ref := value` in module m, where like defined ref.
func constantRule(m *ast.Module, like *ast.Rule, value *ast.Term) *ast.Rule {
	ref := like.Head.Ref().GroundPrefix().Copy()
	head := ast.RefHead(ref, value)
	head.Assign = true
	head.Location = like.Head.Location
	return &ast.Rule{
		Head:     head,
		Body:     ast.NewBody(ast.NewExpr(ast.BooleanTerm(true))),
		Module:   m,
		Location: like.Location,
	}
}

// purity decides, and remembers, which rules and functions read neither
// input nor anything that changes between evaluations.
type purity struct {
	graph *ast.Graph
	memo  map[*ast.Rule]bool
}

func (p *purity) of(r *ast.Rule) bool {
	if pure, ok := p.memo[r]; ok {
		return pure
	}
	p.memo[r] = false // rules cannot recurse; this only guards the walk
	pure := true
	for node := r; node != nil && pure; node = node.Else {
		pure = selfPure(node)
	}
	for dep := range p.graph.Dependencies(r) {
		if !pure {
			break
		}
		if d, ok := dep.(*ast.Rule); ok {
			pure = p.of(d)
		}
	}
	p.memo[r] = pure
	return pure
}

// selfPure reports whether r itself (not the rules it uses) reads no
// input, calls no non-deterministic built-in and has no `with`.
func selfPure(r *ast.Rule) bool {
	pure := true
	ast.WalkRefs(r, func(ref ast.Ref) bool {
		if ref[0].Equal(ast.InputRootDocument) {
			pure = false
		}
		return !pure
	})
	ast.WalkExprs(r, func(e *ast.Expr) bool {
		if len(e.With) > 0 {
			pure = false
		}
		if callsNondeterministic(e) {
			pure = false
		}
		return !pure
	})
	return pure
}
