package engine

import (
	"context"
	"maps"
	"slices"
	"testing"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/storage/inmem"
)

func TestFoldConstants(t *testing.T) {
	modules := map[string]*ast.Module{
		"a.rego": ast.MustParseModuleWithOpts(`package a

import data.b

names := {"x", "y"}

pairs := {n: upper(n) | some n in names}

# A constant built from a function that itself reads nothing.
shout := twice("hi")

twice(s) := concat("", [s, s])

# Reads input, directly or through a function or rule.
who := input.user

greeting := sprintf("hello %s", [who])

method := verb(1)

verb(_) := input.method

# Changes between evaluations.
now := time.now_ns()

# Uses with.
mocked := n if {
	n := names with input as {}
}

# Undefined without input, and defined by more than one rule.
level := 1 if input.x

level := 2 if not input.x

# Defined in pieces: folded as one document.
parts contains "p1"

parts contains "p2"

other := b.value
`, ast.ParserOptions{RegoVersion: ast.RegoV1}),
		"b.rego": ast.MustParseModuleWithOpts(`package b

value := 7

default empty := false
`, ast.ParserOptions{RegoVersion: ast.RegoV1}),
	}
	c := newCompiler(false)
	if c.Compile(modules); c.Failed() {
		t.Fatal(c.Errors)
	}
	folded, values, err := foldConstants(context.Background(), c, inmem.New(), modules)
	if err != nil {
		t.Fatal(err)
	}

	want := map[string]string{
		"data.a.names": `{"x", "y"}`,
		"data.a.pairs": `{"x": "X", "y": "Y"}`,
		"data.a.shout": `"hihi"`,
		"data.a.parts": `{"p1", "p2"}`,
		"data.a.other": `7`,
		"data.b.value": `7`,
		"data.b.empty": `false`,
	}
	if got := slices.Sorted(maps.Keys(values)); !slices.Equal(got, slices.Sorted(maps.Keys(want))) {
		t.Fatalf("folded %q, want %q", got, slices.Sorted(maps.Keys(want)))
	}
	for path, v := range want {
		if got := values[path].String(); got != v {
			t.Errorf("%s = %s, want %s", path, got, v)
		}
	}

	// The folded modules hold one constant rule per folded document and
	// every other rule unchanged; the originals are untouched.
	rules := map[string]int{}
	for _, r := range folded["a.rego"].Rules {
		rules[r.Head.Ref().String()]++
	}
	for name, n := range map[string]int{"names": 1, "pairs": 1, "parts": 1, "level": 2, "who": 1, "now": 1, "twice": 1, "verb": 1} {
		if rules[name] != n {
			t.Errorf("folded a.rego defines %s %d times, want %d (%v)", name, rules[name], n, rules)
		}
	}
	if len(modules["a.rego"].Rules) != 15 {
		t.Errorf("the parsed module changed: %d rules", len(modules["a.rego"].Rules))
	}

	// And they compile and answer as before.
	c2 := newCompiler(false).WithStrict(false)
	if c2.Compile(folded); c2.Failed() {
		t.Fatal(c2.Errors)
	}
	pq, err := prepare(context.Background(), c2, inmem.New(), query("data.a.greeting"))
	if err != nil {
		t.Fatal(err)
	}
	input := ast.NewObject(ast.Item(ast.StringTerm("user"), ast.StringTerm("ann")))
	if got, err := pq.eval(context.Background(), input); err != nil || got.String() != `"hello ann"` {
		t.Errorf("greeting = %v, %v", got, err)
	}
}
