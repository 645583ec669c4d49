package engine

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/open-policy-agent/opa/v1/ast"
)

// TestDecodeRoute checks that the decision's public, lookups and transform
// keys are read, a missing key meaning false, none or "", and that a key of
// the wrong type or an unknown kind or transform is refused (fail closed).
func TestDecodeRoute(t *testing.T) {
	tests := []struct {
		rego string
		want RouteDecision
		err  string
	}{
		{`{"allow": true}`, RouteDecision{Allow: true}, ""},
		{`{"allow": true, "public": true, "transform": "status", "lookups": []}`, RouteDecision{Allow: true, Public: true, Transform: TransformStatus}, ""},
		{`{"allow": true, "transform": "namespace_list", "lookups": [{"kind": "variable", "id": "v1"}, {"kind": "event", "id": "e 1"}]}`,
			RouteDecision{Allow: true, Transform: TransformNamespaceList, Lookups: []Lookup{{LookupVariable, "v1"}, {LookupEvent, "e 1"}}}, ""},
		{`{"allow": true, "lookups": [{"kind": "instance", "id": "i1"}, {"kind": "listener", "id": "l1", "note": "ignored"}]}`,
			RouteDecision{Allow: true, Lookups: []Lookup{{LookupInstance, "i1"}, {LookupListener, "l1"}}}, ""},
		{`{"allow": true, "public": "yes"}`, RouteDecision{}, `"public": want a boolean`},
		{`{"allow": true, "transform": 1}`, RouteDecision{}, `"transform": want a string`},
		{`{"allow": true, "transform": "redact"}`, RouteDecision{}, `"transform": unknown transform "redact"`},
		{`{"allow": true, "lookups": {"kind": "variable", "id": "v1"}}`, RouteDecision{}, `"lookups": want an array of lookups`},
		{`{"allow": true, "lookups": {{"kind": "variable", "id": "v1"}}}`, RouteDecision{}, `"lookups": want an array of lookups`},
		{`{"allow": true, "lookups": ["v1"]}`, RouteDecision{}, `"lookups": lookup 0: want an object`},
		{`{"allow": true, "lookups": [{"kind": "variable"}]}`, RouteDecision{}, `"lookups": lookup 0 has no id`},
		{`{"allow": true, "lookups": [{"kind": "variable", "id": 7}]}`, RouteDecision{}, `"lookups": lookup 0: id: want a string`},
		{`{"allow": true, "lookups": [{"kind": "variable", "id": "v"}, {"kind": "secret", "id": "s"}]}`, RouteDecision{}, `"lookups": lookup 1: unknown kind "secret"`},
	}
	for _, tt := range tests {
		t.Run(tt.rego, func(t *testing.T) {
			got, err := decodeRoute(ast.MustParseTerm(tt.rego))
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("decodeRoute(%s) = %+v, %v; want error %q", tt.rego, got, err, tt.err)
				}
				return
			}
			if err != nil || !sameDecision(got, tt.want) {
				t.Errorf("decodeRoute(%s) = %+v, %v; want %+v", tt.rego, got, err, tt.want)
			}
		})
	}
}

// TestRouteUnknownLookupUnavailable checks that rules asking for a lookup
// the sidecar cannot make leave it unable to decide (503), not allowed.
func TestRouteUnknownLookupUnavailable(t *testing.T) {
	files := minimal()
	files["routes.rego"] += `
decision := {"allow": true, "permission": "", "namespace": "", "lookups": [{"kind": "secret", "id": "s"}]} if not input.caller.admin
`
	e := MustNew(t, Options{Dir: MustPolicyDir(t, files)})
	d, err := e.Route(context.Background(), RouteInput{Caller: Caller{Namespace: "ns1"}, Method: "GET", Path: "/api/x"})
	if !errors.Is(err, ErrUnavailable) || d.Allow {
		t.Fatalf("Route() = %+v, %v; want ErrUnavailable", d, err)
	}
}

// TestRouteMemoQuery checks that decisions are remembered per raw query:
// another query is another question.
func TestRouteMemoQuery(t *testing.T) {
	e := MustNew(t, Options{})
	caller := Caller{Namespace: "ns1", Policies: []string{"instancesView"}}
	ask := func(query string) RouteDecision {
		t.Helper()
		d, err := e.Route(context.Background(), RouteInput{Caller: caller, Method: "GET", Path: "/api/v2/namespaces/ns1/logs", Query: query})
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	for range 2 {
		if d := ask("limit=5"); !d.Allow {
			t.Errorf("limit=5: %+v", d)
		}
		if d := ask("limit=x"); d.Allow || d.Code != CodeBadRequest {
			t.Errorf("limit=x: %+v", d)
		}
		if d := ask(""); !d.Allow {
			t.Errorf("no query: %+v", d)
		}
	}
	// A long request is decided, not remembered.
	long := "route=/" + strings.Repeat("a", maxRouteMemoKey)
	if d := ask(long); d.Allow {
		t.Errorf("long route: %+v", d)
	}
	if n := len(e.current.Load().routeMemo.m); n != 3 {
		t.Errorf("memo holds %d decisions, want 3", n)
	}
}
