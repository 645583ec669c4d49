package engine

import (
	"context"
	"testing"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/storage/inmem"
)

// The decisions a busy sidecar makes most: a namespace token minting a
// token with a few policies, and a namespace token executing a workflow.
var (
	benchMint = MintInput{
		Caller:    Caller{Namespace: "ns1", Policies: []string{"permissionsManage", "workflowManage", "workflowExecute", "eventsSend"}},
		Namespace: "ns1",
		Requested: []string{"workflowView", "workflowExecute", "secretsView"},
	}
	benchRoute = RouteInput{
		Caller: Caller{Namespace: "ns1", Policies: []string{"workflowView", "workflowExecute"}},
		Method: "POST",
		Path:   "/api/namespaces/ns1/tree/dir/wf.yaml",
		Query:  "op=execute&wait=true",
	}
)

func BenchmarkMint(b *testing.B) {
	e := MustNew(b, Options{})
	ctx := context.Background()
	loop(b, func() {
		d, err := e.Mint(ctx, benchMint)
		if err != nil || !d.Allow {
			b.Fatal(d, err)
		}
	})
}

func BenchmarkRoute(b *testing.B) {
	e := MustNew(b, Options{})
	ctx := context.Background()
	loop(b, func() {
		d, err := e.Route(ctx, benchRoute)
		if err != nil || !d.Allow {
			b.Fatal(d, err)
		}
	})
}

// BenchmarkMintEval and BenchmarkRouteEval are the decisions without the
// memo: every iteration is a full Rego evaluation, the cost of a question
// asked for the first time under a policy set.
func BenchmarkMintEval(b *testing.B) {
	s := MustNew(b, Options{}).current.Load()
	ctx := context.Background()
	loop(b, func() {
		d, err := s.evalMint(ctx, benchMint)
		if err != nil || !d.Allow {
			b.Fatal(d, err)
		}
	})
}

func BenchmarkRouteEval(b *testing.B) {
	s := MustNew(b, Options{}).current.Load()
	ctx := context.Background()
	loop(b, func() {
		segments, err := SplitPath(benchRoute.Path)
		if err != nil {
			b.Fatal(err)
		}
		d, err := s.decideRoute(ctx, benchRoute.Caller, benchRoute.Method, segments, "execute")
		if err != nil || !d.Allow {
			b.Fatal(d, err)
		}
	})
}

// BenchmarkBaseline is the floor the decisions are measured against: a
// one-rule, indexed Rego query (allow if input.method == "POST"), compiled,
// prepared and evaluated the way the engine compiles, prepares and
// evaluates its own (input built as AST, the result read as AST). It runs
// on the input BenchmarkRoute sends (request), and on {"method": "POST"}
// alone (method).
func BenchmarkBaseline(b *testing.B) {
	ctx := context.Background()
	m := ast.MustParseModuleWithOpts(`package bench

allow if input.method == "POST"`, ast.ParserOptions{RegoVersion: ast.RegoV1})
	c := newCompiler(false)
	if c.Compile(map[string]*ast.Module{"bench.rego": m}); c.Failed() {
		b.Fatal(c.Errors)
	}
	pq, err := prepare(ctx, c, inmem.New(), query("data.bench.allow"))
	if err != nil {
		b.Fatal(err)
	}
	s := MustNew(b, Options{}).current.Load()
	segments, err := SplitPath(benchRoute.Path)
	if err != nil {
		b.Fatal(err)
	}
	inputs := []struct {
		name  string
		input func() ast.Object
	}{
		{"request", func() ast.Object { return s.routeInput(benchRoute.Caller, benchRoute.Method, segments, "execute") }},
		{"method", func() ast.Object {
			return ast.NewObject(ast.Item(ast.InternedTerm("method"), ast.InternedTerm(benchRoute.Method)))
		}},
	}
	for _, in := range inputs {
		b.Run(in.name, func(b *testing.B) {
			loop(b, func() {
				t, err := pq.eval(ctx, in.input())
				if err != nil || !t.Equal(ast.InternedTerm(true)) {
					b.Fatal(t, err)
				}
			})
		})
	}
}

// loop runs f b.N times and reports, besides time and allocations, the CPU
// time each run took (user+system, all threads, GC included), which stays
// meaningful on a shared, busy machine where wall time does not.
func loop(b *testing.B, f func()) {
	b.Helper()
	b.ReportAllocs()
	before := processCPU()
	n := 0
	for b.Loop() {
		f()
		n++
	}
	if cpu := processCPU() - before; cpu > 0 {
		b.ReportMetric(float64(cpu)/float64(n), "cpu-ns/op")
	}
}
