package engine

import (
	"context"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
)

// sameDecision reports whether two route decisions are the same, Lookups
// included (RouteDecision holds a slice, so == does not compile).
func sameDecision(a, b RouteDecision) bool { return reflect.DeepEqual(a, b) }

// Permissions of direktivRoute besides catalog names.
const (
	anyToken  = ""       // any valid token of the route's namespace (any token at all when it has none)
	adminOnly = "admin"  // the admin token only
	public    = "public" // anyone, without a credential
)

// direktivRoute is a route Direktiv serves and the permission a careful
// admin expects it to need.
type direktivRoute struct {
	method     string // "*": any method (chi's Handle)
	pattern    string // chi's pattern, prefixes of Route and Mount included
	permission string // a catalog name, anyToken, adminOnly or public
	query      string // a query to send, when the route reads one
	lookups    []Lookup
	transform  string
}

// Ids the routes are asked with.
const (
	uuidA = "0b8c6c1d-5a8a-4a0e-b4d1-1f2d3c4b5a69"
	uuidB = "6f9619ff-8b86-d011-b42d-00c04fc964ff"
)

// direktivV010 is every route Direktiv v0.10.0's API server serves, from its
// source (github.com/direktiv/direktiv, tag v0.10.0): the chi routes of
// pkg/api/api.go (Initialize) and of the mountRouter of each controller
// in pkg/api/namespaces.go, instances.go, mirrors.go, secrets.go,
// variables.go, filesystem.go, services.go, registries.go,
// plattformlogs.go, notifications.go, metrics.go, events.go and jx.go;
// for the gateway (mounted with Handle at
// /api/v2/namespaces/{namespace}/gateway/* and /ns/{namespace}/*), the
// answers of pkg/gateway/gateway.go's ServeHTTP: a path ending in /routes,
// /consumers or /info, else the endpoint (pkg/gateway/router.go); and the
// catch-all /* that serves the web UI's files.
var direktivV010 = []direktivRoute{
	// api.go
	{method: "GET", pattern: "/api/v2/status", permission: public, transform: TransformStatus},
	{method: "*", pattern: "/ns/{namespace}/*", permission: public},
	{method: "*", pattern: "/*", permission: public},
	// namespaces.go, under /api/v2/namespaces
	{method: "GET", pattern: "/api/v2/namespaces/{name}", permission: anyToken},
	{method: "DELETE", pattern: "/api/v2/namespaces/{name}", permission: "deleteNamespace"},
	{method: "PATCH", pattern: "/api/v2/namespaces/{name}", permission: "nsconfigManage"},
	{method: "GET", pattern: "/api/v2/namespaces/", permission: anyToken, transform: TransformNamespaceList},
	{method: "POST", pattern: "/api/v2/namespaces/", permission: adminOnly},
	// instances.go
	{method: "GET", pattern: "/api/v2/namespaces/{namespace}/instances/{instanceID}/subscribe", permission: "instancesView"},
	{method: "GET", pattern: "/api/v2/namespaces/{namespace}/instances/{instanceID}/input", permission: "instancesView"},
	{method: "GET", pattern: "/api/v2/namespaces/{namespace}/instances/{instanceID}/output", permission: "instancesView"},
	{method: "GET", pattern: "/api/v2/namespaces/{namespace}/instances/{instanceID}/metadata", permission: "instancesView"},
	{method: "GET", pattern: "/api/v2/namespaces/{namespace}/instances/{instanceID}", permission: "instancesView"},
	{method: "PATCH", pattern: "/api/v2/namespaces/{namespace}/instances/{instanceID}", permission: "instancesManage"},
	{method: "GET", pattern: "/api/v2/namespaces/{namespace}/instances/", permission: "instancesView", query: "limit=10&offset=0&filter.field=AS&filter.type=CONTAINS&filter.val=x"},
	{method: "POST", pattern: "/api/v2/namespaces/{namespace}/instances/", permission: "workflowExecute", query: "path=/wf.yaml&wait=true"},
	// mirrors.go
	{method: "GET", pattern: "/api/v2/namespaces/{namespace}/syncs/", permission: "nsconfigView"},
	{method: "POST", pattern: "/api/v2/namespaces/{namespace}/syncs/", permission: "nsconfigManage"},
	// secrets.go
	{method: "GET", pattern: "/api/v2/namespaces/{namespace}/secrets/{secretName}", permission: "secretsView"},
	{method: "DELETE", pattern: "/api/v2/namespaces/{namespace}/secrets/{secretName}", permission: "secretsManage"},
	{method: "PATCH", pattern: "/api/v2/namespaces/{namespace}/secrets/{secretName}", permission: "secretsManage"},
	{method: "GET", pattern: "/api/v2/namespaces/{namespace}/secrets/", permission: "secretsView"},
	{method: "POST", pattern: "/api/v2/namespaces/{namespace}/secrets/", permission: "secretsManage"},
	// variables.go: looked up by id alone, whatever the namespace
	{method: "GET", pattern: "/api/v2/namespaces/{namespace}/variables/{variableID}", permission: "variablesView", query: "raw=true",
		lookups: []Lookup{{LookupVariable, uuidA}}},
	{method: "DELETE", pattern: "/api/v2/namespaces/{namespace}/variables/{variableID}", permission: "variablesManage",
		lookups: []Lookup{{LookupVariable, uuidA}}},
	{method: "PATCH", pattern: "/api/v2/namespaces/{namespace}/variables/{variableID}", permission: "variablesManage",
		lookups: []Lookup{{LookupVariable, uuidA}}},
	{method: "GET", pattern: "/api/v2/namespaces/{namespace}/variables/", permission: "variablesView", query: "instanceId=" + uuidB,
		lookups: []Lookup{{LookupInstance, uuidB}}},
	{method: "POST", pattern: "/api/v2/namespaces/{namespace}/variables/", permission: "variablesManage"},
	{method: "DELETE", pattern: "/api/v2/namespaces/{namespace}/variables/", permission: "variablesManage", query: "ids=" + uuidA + "," + uuidB,
		lookups: []Lookup{{LookupVariable, uuidA}, {LookupVariable, uuidB}}},
	// filesystem.go
	{method: "GET", pattern: "/api/v2/namespaces/{namespace}/files/*", permission: "explorerView"},
	{method: "DELETE", pattern: "/api/v2/namespaces/{namespace}/files/*", permission: "explorerManage"},
	{method: "POST", pattern: "/api/v2/namespaces/{namespace}/files/*", permission: "explorerManage"},
	{method: "PATCH", pattern: "/api/v2/namespaces/{namespace}/files/*", permission: "explorerManage"},
	// services.go
	{method: "GET", pattern: "/api/v2/namespaces/{namespace}/services/", permission: "servicesView"},
	{method: "GET", pattern: "/api/v2/namespaces/{namespace}/services/{serviceID}/pods", permission: "servicesView"},
	{method: "GET", pattern: "/api/v2/namespaces/{namespace}/services/{serviceID}/pods/{podID}/logs", permission: "servicesView"},
	{method: "POST", pattern: "/api/v2/namespaces/{namespace}/services/{serviceID}/actions/rebuild", permission: "servicesManage"},
	// registries.go
	{method: "GET", pattern: "/api/v2/namespaces/{namespace}/registries/", permission: "registriesView"},
	{method: "DELETE", pattern: "/api/v2/namespaces/{namespace}/registries/{id}", permission: "registriesManage"},
	{method: "POST", pattern: "/api/v2/namespaces/{namespace}/registries/", permission: "registriesManage"},
	{method: "POST", pattern: "/api/v2/namespaces/{namespace}/registries/test", permission: "registriesManage"},
	// plattformlogs.go
	{method: "GET", pattern: "/api/v2/namespaces/{namespace}/logs/subscribe", permission: "instancesView", query: "instance=" + uuidA + "&after=2026-12-06T01:16:52.633Z"},
	{method: "GET", pattern: "/api/v2/namespaces/{namespace}/logs/", permission: "instancesView", query: "route=/my/route&last=50"},
	{method: "POST", pattern: "/api/v2/namespaces/{namespace}/logs/", permission: "instancesManage", query: "instance=" + uuidA},
	// notifications.go: the web UI asks on every page
	{method: "GET", pattern: "/api/v2/namespaces/{namespace}/notifications/", permission: anyToken},
	// metrics.go
	{method: "GET", pattern: "/api/v2/namespaces/{namespace}/metrics/instances", permission: "instancesView", query: "workflowPath=/wf.yaml"},
	// events.go
	{method: "GET", pattern: "/api/v2/namespaces/{namespace}/events/history/", permission: "eventsView", query: "before=2026-12-06T01:16:52Z"},
	{method: "GET", pattern: "/api/v2/namespaces/{namespace}/events/history/subscribe", permission: "eventsView"},
	{method: "GET", pattern: "/api/v2/namespaces/{namespace}/events/history/{eventID}", permission: "eventsView",
		lookups: []Lookup{{LookupEvent, "e1"}}},
	{method: "POST", pattern: "/api/v2/namespaces/{namespace}/events/history/replay/{eventID}", permission: "eventsManage",
		lookups: []Lookup{{LookupEvent, "e1"}}},
	{method: "GET", pattern: "/api/v2/namespaces/{namespace}/events/listeners/", permission: "eventsView", query: "limit=10&offset=0"},
	{method: "GET", pattern: "/api/v2/namespaces/{namespace}/events/listeners/{eventListenerID}", permission: "eventsView",
		lookups: []Lookup{{LookupListener, uuidB}}},
	{method: "POST", pattern: "/api/v2/namespaces/{namespace}/events/broadcast/", permission: "eventsSend"},
	// gateway.go under /api/v2/namespaces/{namespace}/gateway/*: /routes and
	// /info describe the gateway, /consumers hands out the consumers'
	// credentials, whatever the method; anything else runs the endpoint.
	{method: "*", pattern: "/api/v2/namespaces/{namespace}/gateway/*", permission: "workflowExecute"},
	{method: "*", pattern: "/api/v2/namespaces/{namespace}/gateway/routes", permission: "explorerView", query: "path=/x"},
	{method: "*", pattern: "/api/v2/namespaces/{namespace}/gateway/info", permission: "explorerView", query: "expand=true"},
	{method: "*", pattern: "/api/v2/namespaces/{namespace}/gateway/consumers", permission: "secretsView"},
	// and the same answers under /ns/{namespace}/*
	{method: "*", pattern: "/ns/{namespace}/routes", permission: "explorerView"},
	{method: "*", pattern: "/ns/{namespace}/info", permission: "explorerView"},
	{method: "*", pattern: "/ns/{namespace}/consumers", permission: "secretsView"},
	// jx.go, under /api/v2/jx
	{method: "POST", pattern: "/api/v2/jx/", permission: anyToken},
}

// paramValues are what each path parameter is asked with.
var paramValues = map[string]string{
	"{namespace}":       "ns1",
	"{name}":            "ns1",
	"{instanceID}":      uuidA,
	"{secretName}":      "s1",
	"{variableID}":      uuidA,
	"{serviceID}":       "svc",
	"{podID}":           "p1",
	"{id}":              "r1",
	"{eventID}":         "e1",
	"{eventListenerID}": uuidB,
	"*":                 "dir/wf.yaml",
}

// paths are the paths a pattern is asked with: each parameter replaced by
// its value, and a * also by nothing and by a deeper path.
func (r direktivRoute) paths() []string {
	p := r.pattern
	for param, value := range paramValues {
		if param != "*" {
			p = strings.ReplaceAll(p, param, value)
		}
	}
	if r.pattern == "/*" {
		return []string{"/", "/assets/index-3f9c.js", "/n/ns1/explorer/tree/wf.yaml", "/favicon.ico"}
	}
	if strings.HasSuffix(p, "/*") {
		base := strings.TrimSuffix(p, "*")
		return []string{base + paramValues["*"], base, base + "a/b/c.yaml"}
	}
	return []string{p}
}

// methods are the methods a route is asked with.
func (r direktivRoute) methods() []string {
	if r.method == "*" {
		return []string{"GET", "POST", "PUT", "DELETE", "OPTIONS"}
	}
	return []string{r.method}
}

// namespace is the namespace the route names, "" for none.
func (r direktivRoute) namespace() string {
	if strings.Contains(r.pattern, "{namespace}") || strings.HasPrefix(r.pattern, "/api/v2/namespaces/{name}") {
		return "ns1"
	}
	return ""
}

// TestDirektivRoutes asks for every route Direktiv v0.10.0 serves with the
// callers that matter: a token of the namespace holding exactly the
// route's permission, one holding nothing, one of another namespace
// holding everything, an anonymous caller and the admin.
func TestDirektivRoutes(t *testing.T) {
	e := MustNew(t, Options{})
	catalog := slices.Sorted(func(yield func(string) bool) {
		for name := range e.current.Load().closure {
			if !yield(name) {
				return
			}
		}
	})
	admin := Caller{Admin: true}
	anonymous := Caller{}
	nothing := Caller{Namespace: "ns1"}
	other := Caller{Namespace: "ns2", Policies: catalog}
	credential := "needs a credential: send the admin token or a token minted by this sidecar in Direktiv-Api-Key, Direktiv-Token or Authorization: Bearer"

	for _, r := range direktivV010 {
		ns := r.namespace()
		permission := r.permission // as a decision names it
		if permission == adminOnly || permission == public {
			permission = ""
		}
		holder := Caller{Namespace: "ns1"}
		if slices.Contains(catalog, r.permission) {
			holder.Policies = []string{r.permission}
		}
		for _, method := range r.methods() {
			for _, path := range r.paths() {
				t.Run(method+" "+path, func(t *testing.T) {
					ask := func(c Caller) RouteDecision {
						t.Helper()
						d, err := e.Route(context.Background(), RouteInput{Caller: c, Method: method, Path: path, Query: r.query})
						if err != nil {
							t.Fatal(err)
						}
						return d
					}
					request := fmt.Sprintf("%s /%s", method, strings.Trim(path, "/"))
					if strings.Trim(path, "/") == "" {
						request = method + " /"
					}

					// The admin may call every route; it is not asked for lookups.
					if d := ask(admin); !d.Allow || d.Permission != permission || d.Namespace != ns || d.Lookups != nil || d.Transform != r.transform {
						t.Errorf("admin: %+v", d)
					}

					if r.permission == public {
						want := RouteDecision{Allow: true, Public: true, Namespace: ns, Transform: r.transform}
						for name, c := range map[string]Caller{"anonymous": anonymous, "nothing": nothing, "other namespace": other, "admin": admin} {
							if d := ask(c); !sameDecision(d, want) {
								t.Errorf("%s: %+v, want %+v", name, d, want)
							}
						}
						return
					}

					// Anonymous callers must send a credential.
					want := RouteDecision{Code: CodeUnauthenticated, Permission: permission, Namespace: ns,
						Reason: request + " " + credential}
					if d := ask(anonymous); !sameDecision(d, want) {
						t.Errorf("anonymous: %+v\nwant %+v", d, want)
					}

					if r.permission == adminOnly {
						for name, c := range map[string]Caller{"nothing": nothing, "other namespace": other} {
							if d := ask(c); d.Allow || d.Code != CodeAdminOnly {
								t.Errorf("%s: %+v, want %s", name, d, CodeAdminOnly)
							}
						}
						return
					}

					// A token holding exactly the permission.
					want = RouteDecision{Allow: true, Permission: permission, Namespace: ns, Lookups: r.lookups, Transform: r.transform}
					if d := ask(holder); !sameDecision(d, want) {
						t.Errorf("holder of %q: %+v\nwant %+v", r.permission, d, want)
					}

					// A token holding nothing.
					d := ask(nothing)
					switch {
					case r.permission == anyToken:
						if !d.Allow {
							t.Errorf("token holding nothing on an any-token route: %+v", d)
						}
					case d.Allow || d.Code != CodeForbidden || d.Permission != r.permission ||
						!strings.Contains(d.Reason, "needs the "+r.permission+" policy"):
						t.Errorf("token holding nothing: %+v, want %s naming %s", d, CodeForbidden, r.permission)
					}

					// A token of another namespace, holding everything.
					d = ask(other)
					switch {
					case ns == "":
						if !d.Allow {
							t.Errorf("token of another namespace on a route of none: %+v", d)
						}
					case d.Allow || d.Code != CodeForbidden || d.Namespace != ns:
						t.Errorf("token of another namespace: %+v, want %s", d, CodeForbidden)
					}
				})
			}
		}
	}
}

// TestDirektivRoutesUncovered asks for requests Direktiv does not serve:
// refused to tokens (no route rule) and to anonymous callers (no
// credential), passed for the admin.
func TestDirektivRoutesUncovered(t *testing.T) {
	e := MustNew(t, Options{})
	everything := Caller{Namespace: "ns1", Policies: e.Effective([]string{
		"explorerManage", "workflowManage", "workflowExecute", "instancesManage", "variablesManage", "secretsManage",
		"registriesManage", "servicesManage", "eventsManage", "eventsSend", "nsconfigManage", "permissionsManage", "deleteNamespace",
	})}
	for _, in := range []RouteInput{
		{Method: "GET", Path: "/api/v2/namespaces/ns1/bogus"},
		{Method: "PUT", Path: "/api/v2/namespaces/ns1/variables"},
		{Method: "PUT", Path: "/api/v2/namespaces/ns1/secrets/s1"},
		{Method: "HEAD", Path: "/api/v2/namespaces/ns1/instances"},
		{Method: "GET", Path: "/api/v2/namespaces/ns1/events/broadcast"},
		{Method: "GET", Path: "/api/v2/namespaces/ns1/services/svc"},
		{Method: "POST", Path: "/api/v2/namespaces/ns1/logs/subscribe"},
		{Method: "GET", Path: "/api/v2/namespaces/ns1/metrics"},
		{Method: "GET", Path: "/api/v2/logs"},
		{Method: "GET", Path: "/api/v2"},
		{Method: "GET", Path: "/api"},
		{Method: "DELETE", Path: "/api/v2/namespaces"},
	} {
		t.Run(in.Method+" "+in.Path, func(t *testing.T) {
			request := in.Method + " " + in.Path
			for _, c := range []struct {
				caller Caller
				want   RouteDecision
			}{
				{everything, RouteDecision{Code: CodeForbidden, Reason: "no route rule covers " + request}},
				{Caller{}, RouteDecision{Code: CodeUnauthenticated, Reason: request + " needs a credential: send the admin token or a token minted by this sidecar in Direktiv-Api-Key, Direktiv-Token or Authorization: Bearer"}},
				{Caller{Admin: true}, RouteDecision{Allow: true}},
			} {
				in.Caller = c.caller
				d, err := e.Route(context.Background(), in)
				if err != nil || !sameDecision(d, c.want) {
					t.Errorf("Route(%+v) = %+v, %v\nwant %+v", in, d, err, c.want)
				}
			}
		})
	}
}

// TestDirektivLookups checks the lookups of every request that names an
// object Direktiv looks up by id: exactly those, for minted tokens only,
// and ids that must be UUIDs refused otherwise, to everyone.
func TestDirektivLookups(t *testing.T) {
	e := MustNew(t, Options{})
	token := Caller{Namespace: "ns1", Policies: []string{"variablesManage", "eventsManage"}}
	vars := "/api/v2/namespaces/ns1/variables"
	tests := []struct {
		method, path, query string
		want                []Lookup // nil: none
		bad                 string   // the reason of a bad request
	}{
		{"GET", vars + "/" + uuidA, "", []Lookup{{LookupVariable, uuidA}}, ""},
		{"GET", vars + "/" + strings.ToUpper(uuidA), "raw=true", []Lookup{{LookupVariable, strings.ToUpper(uuidA)}}, ""},
		{"PATCH", vars + "/" + uuidB, "", []Lookup{{LookupVariable, uuidB}}, ""},
		{"DELETE", vars + "/" + uuidB, "", []Lookup{{LookupVariable, uuidB}}, ""},
		{"DELETE", vars, "ids=" + uuidA, []Lookup{{LookupVariable, uuidA}}, ""},
		{"DELETE", vars, "ids=" + uuidA + "," + uuidB + "&ids=" + uuidB, []Lookup{{LookupVariable, uuidA}, {LookupVariable, uuidB}, {LookupVariable, uuidB}}, ""},
		{"DELETE", vars, "ids=" + uuidA + "%2C" + uuidB, []Lookup{{LookupVariable, uuidA}, {LookupVariable, uuidB}}, ""},
		{"DELETE", vars, "", nil, ""},     // Direktiv answers 400 itself
		{"DELETE", vars, "ids=", nil, ""}, // so it does to this
		{"GET", vars, "instanceId=" + uuidB + "&workflowPath=/wf.yaml", []Lookup{{LookupInstance, uuidB}}, ""},
		{"GET", vars, "instanceId=" + uuidA + "&instanceId=" + uuidB, []Lookup{{LookupInstance, uuidA}, {LookupInstance, uuidB}}, ""},
		{"GET", vars, "workflowPath=/wf.yaml", nil, ""},
		{"POST", vars, "instanceId=x", nil, ""}, // creation reads its instance from the body
		{"GET", "/api/v2/namespaces/ns1/events/history/" + "ev%201", "", []Lookup{{LookupEvent, "ev 1"}}, ""},
		{"POST", "/api/v2/namespaces/ns1/events/history/replay/e2", "", []Lookup{{LookupEvent, "e2"}}, ""},
		{"GET", "/api/v2/namespaces/ns1/events/history/subscribe", "", nil, ""},
		{"GET", "/api/v2/namespaces/ns1/events/listeners/" + uuidA, "", []Lookup{{LookupListener, uuidA}}, ""},
		{"GET", vars + "/x", "", nil, `the path segment {id} must be a UUID (8-4-4-4-12 hexadecimal digits), not "x"`},
		{"GET", vars + "/" + strings.ReplaceAll(uuidA, "-", ""), "", nil, `the path segment {id} must be a UUID (8-4-4-4-12 hexadecimal digits), not "0b8c6c1d5a8a4a0eb4d11f2d3c4b5a69"`},
		{"DELETE", vars + "/%7B" + uuidA + "%7D", "", nil, `the path segment {id} must be a UUID (8-4-4-4-12 hexadecimal digits), not "{` + uuidA + `}"`},
		{"DELETE", vars, "ids=" + uuidA + ",x", nil, `the query parameter ids (values separated by ",") must be a UUID (8-4-4-4-12 hexadecimal digits), not "x"`},
		{"DELETE", vars, "ids=" + uuidA + "&ids=urn:uuid:" + uuidB, nil, `the query parameter ids (values separated by ",") must be a UUID (8-4-4-4-12 hexadecimal digits), not "urn:uuid:` + uuidB + `"`},
		{"GET", vars, "instanceId=" + uuidA + "%20", nil, `the query parameter instanceId must be a UUID (8-4-4-4-12 hexadecimal digits), not "` + uuidA + ` "`},
		{"GET", "/api/v2/namespaces/ns1/events/listeners/l1", "", nil, `the path segment {id} must be a UUID (8-4-4-4-12 hexadecimal digits), not "l1"`},
	}
	for _, tt := range tests {
		t.Run(tt.method+" "+tt.path+"?"+tt.query, func(t *testing.T) {
			for _, c := range []Caller{token, {Admin: true}, {}} {
				d, err := e.Route(context.Background(), RouteInput{Caller: c, Method: tt.method, Path: tt.path, Query: tt.query})
				if err != nil {
					t.Fatal(err)
				}
				if tt.bad != "" {
					if d.Allow || d.Code != CodeBadRequest || d.Reason != tt.bad {
						t.Errorf("%+v: %+v, want %s %q", c, d, CodeBadRequest, tt.bad)
					}
					continue
				}
				want := tt.want
				if c.Namespace == "" {
					want = nil // the admin and anonymous callers get none
				}
				if !reflect.DeepEqual(d.Lookups, want) {
					t.Errorf("%+v: lookups %v, want %v", c, d.Lookups, want)
				}
				if c.Namespace != "" && !d.Allow {
					t.Errorf("%+v: refused: %+v", c, d)
				}
			}
		})
	}
}

// TestDirektivLogParams checks each parameter Direktiv pastes into its
// log backend's query: accepted in the shapes it documents, refused
// otherwise (to everyone, each value, on each of the three routes).
func TestDirektivLogParams(t *testing.T) {
	e := MustNew(t, Options{})
	tests := []struct {
		param string
		good  []string // query-escaped
		bad   []string // query-escaped
	}{
		{"limit", []string{"50", "0", "999999999"}, []string{"-1", "1e3", "1234567890", "5%20%7C%20delete", "0x10"}},
		{"first", []string{"10"}, []string{"ten", "1.5"}},
		{"last", []string{"50"}, []string{"50%20by%20(_time)"}},
		{"after", []string{"2026-12-06T01:16:52.633823Z", "2026-12-06T01:16:52.633823123Z", "2026-12-06T01:16:52.633Z",
			"2026-12-06T01:16:52Z", "2026-12-06T01:16:52%2B01:00", "2026-12-06T01:16:52-05:00"},
			[]string{"2026-01-01T00:00:00Z%20%7C%20delete", "2026-01-01T00:00:00Z+|+delete", "2026-12-06T01:16:52+01:00",
				"2026-12-06", "2026-12-06T01:16:52", "2026-12-06T01:16:52.1234567890Z", "now", "2026-12-06T01:16:52Z%0A"}},
		{"before", []string{"2026-12-06T01:16:52.000000000Z"}, []string{"*", "2026-12-06T01:16:52Z%20or%20_time:*"}},
		{"lastEventId", []string{"2026-12-06T01:16:52.000000000Z"}, []string{"x%20OR%20y"}},
		{"instance", []string{uuidA, strings.ToUpper(uuidB)}, []string{"x", uuidA + "%2F*%20or%20*", strings.ReplaceAll(uuidA, "-", "")}},
		{"activity", []string{uuidB}, []string{"activity-1"}},
		{"route", []string{"/my/route", "/a_b-c.d/e", "my-route", "/" + strings.Repeat("a", 255)},
			[]string{"/x%22%20or%201", "%2Fx%22+or+1", "/x%27", "/x%20%7C%20delete", "/x:y", "/x(y)", "/x%20y", "/x%7Cy", "/x*", "/x%5C", "/x%0A",
				"/" + strings.Repeat("a", 256)}},
		{"direction", []string{"asc", "desc"}, []string{"ASC", "up", "asc%20%7C%20delete"}},
	}
	routes := []struct{ method, path string }{
		{"GET", "/api/v2/namespaces/ns1/logs"},
		{"GET", "/api/v2/namespaces/ns1/logs/subscribe"},
		{"POST", "/api/v2/namespaces/ns1/logs"},
	}
	reader := Caller{Namespace: "ns1", Policies: []string{"instancesManage"}}
	for _, tt := range tests {
		t.Run(tt.param, func(t *testing.T) {
			for _, r := range routes {
				for _, v := range tt.good {
					query := "direction=asc&" + tt.param + "=" + v + "&trace=anything%20at%20all"
					d, err := e.Route(context.Background(), RouteInput{Caller: reader, Method: r.method, Path: r.path, Query: query})
					if err != nil || !d.Allow {
						t.Errorf("%s %s?%s: %+v, %v; want allowed", r.method, r.path, query, d, err)
					}
				}
				for _, v := range tt.bad {
					for _, query := range []string{tt.param + "=" + v, tt.param + "=&" + tt.param + "=" + v, "limit=1&" + tt.param + "=" + v} {
						for _, c := range []Caller{reader, {Admin: true}, {}} {
							d, err := e.Route(context.Background(), RouteInput{Caller: c, Method: r.method, Path: r.path, Query: query})
							if err != nil || d.Allow || d.Code != CodeBadRequest ||
								!strings.HasPrefix(d.Reason, "the query parameter "+tt.param+" must be ") {
								t.Errorf("%+v %s %s?%s: %+v, %v; want %s naming %s", c, r.method, r.path, query, d, err, CodeBadRequest, tt.param)
							}
						}
					}
				}
			}
		})
	}
}

// TestV1SemicolonOp checks that an op parameter Direktiv up to v0.8.6
// reads differently from Go's net/url is refused on v1 routes: with it, a
// token that may only read would execute a workflow.
func TestV1SemicolonOp(t *testing.T) {
	e := MustNew(t, Options{})
	reader := Caller{Namespace: "ns1", Policies: []string{"explorerView", "workflowView"}}
	runner := Caller{Namespace: "ns1", Policies: []string{"workflowExecute"}}
	tree := "/api/namespaces/ns1/tree/wf.yaml"
	for _, tt := range []struct {
		caller Caller
		method string
		query  string
		allow  bool // else a bad request
	}{
		{reader, "POST", "x;op=wait", false},
		{reader, "GET", "x;op=wait", false},
		{reader, "GET", "op=refs;op=wait", false},
		{reader, "GET", "op=refs;x=1&op=execute", false},
		{reader, "GET", "op=%zz;op=wait&op=refs", false},
		{runner, "POST", "x;op=execute", false},
		{Caller{Admin: true}, "POST", "x;op=wait", false},
		{Caller{}, "POST", "x;op=wait", false},
		{reader, "GET", "a=1;b=2&op=refs", true},
		{reader, "GET", "op=refs&x=1;y=2", true},
		{reader, "GET", "x=%3B&op=refs", true},
		{runner, "POST", "op=execute&ref=latest;x", true},
	} {
		d, err := e.Route(context.Background(), RouteInput{Caller: tt.caller, Method: tt.method, Path: tree, Query: tt.query})
		switch {
		case err != nil:
			t.Errorf("%s ?%s: %v", tt.method, tt.query, err)
		case tt.allow && !d.Allow:
			t.Errorf("%+v %s ?%s: %+v, want allowed", tt.caller, tt.method, tt.query, d)
		case !tt.allow && (d.Allow || d.Code != CodeBadRequest || !strings.Contains(d.Reason, "the op query parameter") ||
			!strings.Contains(d.Reason, "';' is ambiguous")):
			t.Errorf("%+v %s ?%s: %+v, want %s", tt.caller, tt.method, tt.query, d, CodeBadRequest)
		}
	}
}
