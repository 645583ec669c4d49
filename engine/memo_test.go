package engine

import (
	"context"
	"path/filepath"
	"testing"
)

func TestMemoRemembersAndForgetsOnReload(t *testing.T) {
	dir := t.TempDir()
	MustCopyPolicies(t, dir)
	e := MustNew(t, Options{Dir: dir})
	ctx := context.Background()
	in := RouteInput{Caller: Caller{Namespace: "ns1", Policies: []string{"explorerView"}}, Method: "GET", Path: "/api/v2/namespaces/ns1/files/a.yaml"}
	d, err := e.Route(ctx, in)
	if err != nil || !d.Allow {
		t.Fatalf("%+v %v", d, err)
	}
	s := e.current.Load()
	if s.routeMemo == nil || len(s.routeMemo.m) != 1 {
		t.Fatalf("the decision was not remembered")
	}
	// A remembered decision is the one the rules give.
	if d2, _ := e.Route(ctx, in); !sameDecision(d2, d) {
		t.Fatalf("memo answered %+v, rules %+v", d2, d)
	}
	// The memo key tells callers, methods and paths apart.
	other := in
	other.Method = "DELETE"
	if d3, _ := e.Route(ctx, other); d3.Allow {
		t.Fatalf("DELETE allowed with explorerView: %+v", d3)
	}
	if len(s.routeMemo.m) != 2 {
		t.Fatalf("memo has %d entries, want 2", len(s.routeMemo.m))
	}
	// Rules that read the clock are not memoized.
	MustWriteFile(t, filepath.Join(dir, "clock.rego"), "package direktiv.clock\n\nnow := time.now_ns()\n")
	if err := e.Reload(ctx); err != nil {
		t.Fatal(err)
	}
	if e.current.Load().routeMemo != nil {
		t.Fatal("rules calling time.now_ns got a memo")
	}
}

func TestMemoIsBounded(t *testing.T) {
	m := newMemo[int]()
	for i := 0; i < maxMemo+100; i++ {
		m.put([]byte(string(rune(i))+"k"), i)
	}
	if len(m.m) != maxMemo {
		t.Fatalf("%d entries, want %d", len(m.m), maxMemo)
	}
	var nilMemo *memo[int]
	nilMemo.put([]byte("x"), 1)
	if _, ok := nilMemo.get([]byte("x")); ok {
		t.Fatal("a nil memo remembered")
	}
}
