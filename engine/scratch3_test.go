package engine

import (
	"context"
	"testing"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/rego"
	"github.com/open-policy-agent/opa/v1/topdown"
)

func TestScratchTrace(t *testing.T) {
	e := MustNew(t, Options{})
	s := e.current.Load()
	segs, _ := splitPath(benchRoute.Path)
	for _, q := range []struct {
		pq    prepared
		input ast.Object
	}{{s.route, s.routeInput(benchRoute.Caller, "POST", segs, "execute")}, {s.mint, s.mintInput(benchMint)}} {
		buf := topdown.NewBufferTracer()
		_, err := q.pq.pq.Eval(context.Background(), rego.EvalParsedInput(q.input), rego.EvalQueryTracer(buf))
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, ev := range *buf {
			if ev.Op == topdown.EvalOp {
				n++
				t.Log(ev.Location, ev.Node)
			}
		}
		t.Log(n, "eval steps", len(*buf), "events")
	}
}
