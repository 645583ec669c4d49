package engine

import (
	"context"
	"testing"
)

// benchRoutes are v2 questions of each kind the route rules answer: a
// minted token on a plain route, on one with lookups, on one with checked
// parameters, under a * pattern; the web UI's files and the public
// gateway for anonymous callers; a route no row covers.
var benchRoutes = []struct {
	name string
	in   RouteInput
}{
	{"v2-token", RouteInput{Caller: benchRoute.Caller, Method: "POST", Path: "/api/v2/namespaces/ns1/instances", Query: "path=/wf.yaml&wait=true"}},
	{"v2-lookup", RouteInput{Caller: Caller{Namespace: "ns1", Policies: []string{"variablesManage"}}, Method: "DELETE",
		Path: "/api/v2/namespaces/ns1/variables", Query: "ids=" + uuidA + "," + uuidB}},
	{"v2-logs", RouteInput{Caller: Caller{Namespace: "ns1", Policies: []string{"instancesView"}}, Method: "GET",
		Path: "/api/v2/namespaces/ns1/logs/subscribe", Query: "instance=" + uuidA + "&after=2026-12-06T01:16:52.633Z"}},
	{"v2-star", RouteInput{Caller: Caller{Namespace: "ns1", Policies: []string{"explorerView"}}, Method: "GET", Path: "/api/v2/namespaces/ns1/files/dir/sub/wf.yaml"}},
	{"v2-admin", RouteInput{Caller: Caller{Admin: true}, Method: "GET", Path: "/api/v2/namespaces"}},
	{"ui-anonymous", RouteInput{Method: "GET", Path: "/assets/index-3f9c.js"}},
	{"gateway-anonymous", RouteInput{Method: "POST", Path: "/ns/ns1/hooks/github"}},
	{"uncovered", RouteInput{Caller: benchRoute.Caller, Method: "GET", Path: "/api/v2/namespaces/ns1/bogus"}},
}

// BenchmarkRouteEvalV2 is BenchmarkRouteEval for benchRoutes: each
// iteration reads the request and evaluates the rules, without the memo.
func BenchmarkRouteEvalV2(b *testing.B) {
	s := MustNew(b, Options{}).current.Load()
	ctx := context.Background()
	for _, r := range benchRoutes {
		b.Run(r.name, func(b *testing.B) {
			loop(b, func() {
				req, err := readRequest(r.in.Path, r.in.Query, nil)
				if err != nil {
					b.Fatal(err)
				}
				if _, err := s.decide(ctx, s.input(r.in.Caller, r.in.Method, req)); err != nil {
					b.Fatal(err)
				}
			})
		})
	}
}

// BenchmarkRouteMemo is BenchmarkRoute for benchRoutes: a question asked
// before, with its query.
func BenchmarkRouteMemo(b *testing.B) {
	e := MustNew(b, Options{})
	ctx := context.Background()
	for _, r := range benchRoutes {
		b.Run(r.name, func(b *testing.B) {
			loop(b, func() {
				if _, err := e.Route(ctx, r.in); err != nil {
					b.Fatal(err)
				}
			})
		})
	}
}
