package engine

import (
	"context"
	"net/url"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/open-policy-agent/opa/v1/ast"
)

func TestRoute(t *testing.T) {
	e := MustNew(t, Options{})
	admin := Caller{Admin: true}
	runner := Caller{Namespace: "ns1", Policies: []string{"workflowExecute", "explorerManage"}}
	tokens := Caller{Namespace: "ns1", Policies: []string{"permissionsManage"}}

	tests := []struct {
		name string
		in   RouteInput
		want RouteDecision
	}{
		{
			name: "execute, doubled slash, encoded space, lower-case method",
			in:   RouteInput{Caller: runner, Method: "post", Path: "//api/namespaces/ns1/tree/my%20dir/wf.yaml", Query: "op=execute&ref=latest"},
			want: RouteDecision{Allow: true, Permission: "workflowExecute", Namespace: "ns1"},
		},
		{
			name: "explorerView through explorerManage",
			in:   RouteInput{Caller: runner, Method: "GET", Path: "/api/namespaces/ns1/tree/dir"},
			want: RouteDecision{Allow: true, Permission: "explorerView", Namespace: "ns1"},
		},
		{
			name: "missing permission",
			in:   RouteInput{Caller: runner, Method: "GET", Path: "/api/namespaces/ns1/secrets"},
			want: RouteDecision{Code: CodeForbidden, Permission: "secretsView", Namespace: "ns1",
				Reason: "GET /api/namespaces/ns1/secrets needs the secretsView policy, which this token does not hold (it holds [explorerManage, explorerView, workflowExecute])"},
		},
		{
			name: "other namespace",
			in:   RouteInput{Caller: runner, Method: "POST", Path: "/api/v2/namespaces/ns2/instances"},
			want: RouteDecision{Code: CodeForbidden, Permission: "workflowExecute", Namespace: "ns2",
				Reason: `this token belongs to namespace "ns1" and cannot be used in namespace "ns2"`},
		},
		{
			name: "token list",
			in:   RouteInput{Caller: tokens, Method: "GET", Path: "/api/namespaces/ns1/auth/tokens"},
			want: RouteDecision{Allow: true, Permission: "permissionsView", Namespace: "ns1"},
		},
		{
			name: "token revoke",
			in:   RouteInput{Caller: tokens, Method: "DELETE", Path: "/api/namespaces/ns1/auth/tokens/4f1c"},
			want: RouteDecision{Allow: true, Permission: "permissionsManage", Namespace: "ns1"},
		},
		{
			name: "who am I needs any token of the namespace",
			in:   RouteInput{Caller: Caller{Namespace: "ns1"}, Method: "GET", Path: "/api/namespaces/ns1/auth/token"},
			want: RouteDecision{Allow: true, Namespace: "ns1"},
		},
		{
			name: "version needs any token",
			in:   RouteInput{Caller: Caller{Namespace: "ns9"}, Method: "GET", Path: "/api/version"},
			want: RouteDecision{Allow: true},
		},
		{
			name: "namespace listing needs any token, and is filtered",
			in:   RouteInput{Caller: runner, Method: "GET", Path: "/api/v2/namespaces"},
			want: RouteDecision{Allow: true, Transform: TransformNamespaceList},
		},
		{
			name: "namespace creation is admin only",
			in:   RouteInput{Caller: runner, Method: "POST", Path: "/api/v2/namespaces"},
			want: RouteDecision{Code: CodeAdminOnly, Reason: "POST /api/v2/namespaces needs the admin token"},
		},
		{
			name: "the admin gets the transform",
			in:   RouteInput{Caller: admin, Method: "GET", Path: "/api/v2/namespaces"},
			want: RouteDecision{Allow: true, Transform: TransformNamespaceList},
		},
		{
			name: "status is public",
			in:   RouteInput{Caller: Caller{}, Method: "GET", Path: "/api/v2/status"},
			want: RouteDecision{Allow: true, Public: true, Transform: TransformStatus},
		},
		{
			name: "the web UI's files are public",
			in:   RouteInput{Caller: Caller{}, Method: "GET", Path: "/assets/index.js"},
			want: RouteDecision{Allow: true, Public: true},
		},
		{
			name: "the public gateway is public, to tokens of other namespaces too",
			in:   RouteInput{Caller: runner, Method: "POST", Path: "/ns/ns2/hook", Query: "x=1"},
			want: RouteDecision{Allow: true, Public: true, Namespace: "ns2"},
		},
		{
			name: "the public gateway's consumers are not",
			in:   RouteInput{Caller: Caller{}, Method: "GET", Path: "/ns/ns1/consumers"},
			want: RouteDecision{Code: CodeUnauthenticated, Permission: "secretsView", Namespace: "ns1",
				Reason: "GET /ns/ns1/consumers needs a credential: send the admin token or a token minted by this sidecar in Direktiv-Api-Key, Direktiv-Token or Authorization: Bearer"},
		},
		{
			name: "anonymous on a v1 route",
			in:   RouteInput{Caller: Caller{}, Method: "POST", Path: "/api/namespaces/ns1/tree/wf.yaml", Query: "op=execute"},
			want: RouteDecision{Code: CodeUnauthenticated, Permission: "workflowExecute", Namespace: "ns1",
				Reason: "POST /api/namespaces/ns1/tree/wf.yaml?op=execute needs a credential: send the admin token or a token minted by this sidecar in Direktiv-Api-Key, Direktiv-Token or Authorization: Bearer"},
		},
		{
			name: "anonymous on an uncovered route",
			in:   RouteInput{Caller: Caller{}, Method: "GET", Path: "/api/v2/namespaces/ns1/bogus"},
			want: RouteDecision{Code: CodeUnauthenticated,
				Reason: "GET /api/v2/namespaces/ns1/bogus needs a credential: send the admin token or a token minted by this sidecar in Direktiv-Api-Key, Direktiv-Token or Authorization: Bearer"},
		},
		{
			name: "a variable is looked up",
			in:   RouteInput{Caller: Caller{Namespace: "ns1", Policies: []string{"variablesManage"}}, Method: "PATCH", Path: "/api/v2/namespaces/ns1/variables/0b8c6c1d-5a8a-4a0e-b4d1-1f2d3c4b5a69"},
			want: RouteDecision{Allow: true, Permission: "variablesManage", Namespace: "ns1",
				Lookups: []Lookup{{Kind: LookupVariable, ID: "0b8c6c1d-5a8a-4a0e-b4d1-1f2d3c4b5a69"}}},
		},
		{
			name: "the admin's variables are not looked up",
			in:   RouteInput{Caller: admin, Method: "PATCH", Path: "/api/v2/namespaces/ns1/variables/0b8c6c1d-5a8a-4a0e-b4d1-1f2d3c4b5a69"},
			want: RouteDecision{Allow: true, Permission: "variablesManage", Namespace: "ns1"},
		},
		{
			name: "a log parameter of the wrong shape is refused, to the admin too",
			in:   RouteInput{Caller: admin, Method: "GET", Path: "/api/v2/namespaces/ns1/logs", Query: "route=%2Fx%22%20or%201"},
			want: RouteDecision{Code: CodeBadRequest, Permission: "instancesView", Namespace: "ns1",
				Reason: `the query parameter route must be a gateway route path of at most 256 letters, digits, '/', '_', '.' and '-', not "/x\" or 1"`},
		},
		{
			name: "an op after ';' on a v1 route is ambiguous",
			in:   RouteInput{Caller: Caller{Namespace: "ns1", Policies: []string{"explorerView"}}, Method: "POST", Path: "/api/namespaces/ns1/tree/wf.yaml", Query: "x;op=wait"},
			want: RouteDecision{Code: CodeBadRequest,
				Reason: `the op query parameter reads "wait" as Direktiv up to v0.8.6 splits the query (on ';' as on '&') and "" as Go's net/url does (pairs holding ';' dropped); ';' is ambiguous: separate parameters with '&' and write a ';' in a value as %3B`},
		},
		{
			name: "';' elsewhere on a v1 route is fine when op reads alike",
			in:   RouteInput{Caller: runner, Method: "POST", Path: "/api/namespaces/ns1/tree/wf.yaml", Query: "a=1;b=2&op=execute"},
			want: RouteDecision{Allow: true, Permission: "workflowExecute", Namespace: "ns1"},
		},
		{
			name: "';' on a v2 route is Direktiv's to drop",
			in:   RouteInput{Caller: runner, Method: "GET", Path: "/api/v2/namespaces/ns1/files/wf.yaml", Query: "x;op=wait"},
			want: RouteDecision{Allow: true, Permission: "explorerView", Namespace: "ns1"},
		},
		{
			name: "uncovered",
			in:   RouteInput{Caller: runner, Method: "GET", Path: "/api/namespaces/ns1/tree/wf.yaml", Query: "op=bogus"},
			want: RouteDecision{Code: CodeForbidden, Reason: "no route rule covers GET /api/namespaces/ns1/tree/wf.yaml?op=bogus"},
		},
		{
			name: "admin passes uncovered routes",
			in:   RouteInput{Caller: admin, Method: "OPTIONS", Path: "/api/whatever"},
			want: RouteDecision{Allow: true},
		},
		{
			name: "admin gets the permission named",
			in:   RouteInput{Caller: admin, Method: "DELETE", Path: "/api/namespaces/ns1"},
			want: RouteDecision{Allow: true, Permission: "deleteNamespace", Namespace: "ns1"},
		},
		{
			name: "dot-dot is refused before the rules, even for the admin",
			in:   RouteInput{Caller: admin, Method: "GET", Path: "/api/namespaces/ns1/tree/%2e%2e/x"},
			want: RouteDecision{Code: CodeBadRequest, Reason: `the path segment "%2e%2e" is ".."; paths with . or .. segments are not accepted`},
		},
		{
			name: "encoded slash is refused",
			in:   RouteInput{Caller: runner, Method: "GET", Path: "/api/namespaces/ns1%2Fx/tree"},
			want: RouteDecision{Code: CodeBadRequest, Reason: `the path segment "ns1%2Fx" holds an encoded '/'; use a literal / between segments`},
		},
		{
			name: "bad op encoding is refused",
			in:   RouteInput{Caller: runner, Method: "POST", Path: "/api/namespaces/ns1/tree/wf", Query: "op=exec%zzute"},
			want: RouteDecision{Code: CodeBadRequest, Reason: `the op query parameter "exec%zzute" is not valid percent-encoding`},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := e.Route(context.Background(), tt.in)
			if err != nil {
				t.Fatal(err)
			}
			if !sameDecision(got, tt.want) {
				t.Errorf("Route(%+v)\n got %#v\nwant %#v", tt.in, got, tt.want)
			}
		})
	}
}

func TestSplitPath(t *testing.T) {
	tests := []struct {
		path string
		want []string
		err  string
	}{
		{"", []string{}, ""},
		{"/", []string{}, ""},
		{"/api/version", []string{"api", "version"}, ""},
		{"//api//namespaces///ns1/", []string{"api", "namespaces", "ns1"}, ""},
		{"api/version", []string{"api", "version"}, ""},
		{"/api/namespaces/ns1/tree/a%20b/c+d.yaml", []string{"api", "namespaces", "ns1", "tree", "a b", "c+d.yaml"}, ""},
		{"/api/namespaces/%6es1", []string{"api", "namespaces", "ns1"}, ""},
		{"/api/namespaces/ns1/tree/...", []string{"api", "namespaces", "ns1", "tree", "..."}, ""},
		{"/api/./version", nil, `the path segment "." is "."`},
		{"/api/namespaces/../version", nil, `the path segment ".." is ".."`},
		{"/api/namespaces/%2E/x", nil, `the path segment "%2E" is "."`},
		{"/api/namespaces/.%2e/x", nil, `the path segment ".%2e" is ".."`},
		{"/api/namespaces/a%2fb", nil, `the path segment "a%2fb" holds an encoded '/'`},
		{"/api/namespaces/a%2", nil, `the path segment "a%2" is not valid percent-encoding`},
		{"/api/namespaces/%zz", nil, `the path segment "%zz" is not valid percent-encoding`},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			got, err := SplitPath(tt.path)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("SplitPath(%q) = %q, %v; want error %q", tt.path, got, err, tt.err)
				}
				return
			}
			if err != nil || !slices.Equal(got, tt.want) {
				t.Errorf("SplitPath(%q) = %q, %v; want %q", tt.path, got, err, tt.want)
			}
		})
	}
}

func TestOpParam(t *testing.T) {
	tests := []struct {
		query, want, err string
	}{
		{"", "", ""},
		{"op=execute", "execute", ""},
		{"ref=latest&op=wait&op=execute", "wait", ""},
		{"op=", "", ""},
		{"op", "", ""},
		{"&&op=tags", "tags", ""},
		{"%6Fp=refs", "refs", ""},          // the key is decoded too, as net/url does
		{"op=a+b%21", "a b!", ""},          // query unescaping: '+' is a space
		{"op=refs;x&op=tags", "tags", ""},  // net/url skips pairs holding ';'
		{"o%zzp=refs&op=tags", "tags", ""}, // and pairs whose key does not decode
		{"op=%zz&op=tags", "", `the op query parameter "%zz" is not valid percent-encoding`},
	}
	for _, tt := range tests {
		t.Run(tt.query, func(t *testing.T) {
			got, err := opParam(tt.query)
			if tt.err != "" {
				if err == nil || err.Error() != tt.err {
					t.Fatalf("opParam(%q) = %q, %v; want error %q", tt.query, got, err, tt.err)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Errorf("opParam(%q) = %q, %v; want %q", tt.query, got, err, tt.want)
			}
			// Agree with net/url, which Direktiv reads the query with.
			if values, _ := url.ParseQuery(tt.query); values.Get("op") != got {
				t.Errorf("opParam(%q) = %q, net/url reads %q", tt.query, got, values.Get("op"))
			}
		})
	}
}

func TestV1Op(t *testing.T) {
	tests := []struct{ query, want string }{
		{"", ""},
		{"op=execute", "execute"},
		{"x;op=wait", "wait"},
		{"op=refs;op=wait", "refs"},
		{"a=1;b=2&op=tags", "tags"},
		{"op=%zz;op=wait", "wait"}, // a pair that does not decode is dropped
		{"o%zzp=refs;op=tags", "tags"},
		{"%6Fp=a+b", "a b"},
		{";;&&op=x", "x"},
		{"op", ""},
	}
	for _, tt := range tests {
		if got := v1Op(tt.query); got != tt.want {
			t.Errorf("v1Op(%q) = %q, want %q", tt.query, got, tt.want)
		}
	}
}

// TestQueryTerm checks that the rules read a query exactly as net/url
// (so Direktiv v2) does.
func TestQueryTerm(t *testing.T) {
	for _, query := range []string{
		"",
		"a=1",
		"a=1&b=2&a=3",
		"a=1;b=2&c=3",
		"x;op=wait",
		"a=%zz&b=1",
		"%zz=1&b=2",
		"a&b=&=c&&",
		"ids=a%2Cb,c&name=x+y%20z",
		"route=%2Fx%22%20or%201",
		"a=%E2%82%AC&%F0%9F%98%80=1",
		"a=1&a=&a=2",
		"%00=%00",
	} {
		t.Run(query, func(t *testing.T) {
			want, _ := url.ParseQuery(query)
			if got := queryValues(t, queryTerm(query, nil)); !reflect.DeepEqual(got, map[string][]string(want)) {
				t.Errorf("queryTerm(%q) = %v, net/url reads %v", query, got, want)
			}
		})
	}
}

// queryValues reads a term queryTerm made back into Go.
func queryValues(tb testing.TB, t *ast.Term) map[string][]string {
	tb.Helper()
	obj, ok := t.Value.(ast.Object)
	if !ok {
		tb.Fatalf("queryTerm gave %v, not an object", t)
	}
	out := map[string][]string{}
	for _, k := range obj.Keys() {
		key, ok := k.Value.(ast.String)
		arr, ok2 := obj.Get(k).Value.(*ast.Array)
		if !ok || !ok2 {
			tb.Fatalf("queryTerm gave %v", t)
		}
		for i := range arr.Len() {
			v, ok := arr.Elem(i).Value.(ast.String)
			if !ok {
				tb.Fatalf("queryTerm gave %v", t)
			}
			out[string(key)] = append(out[string(key)], string(v))
		}
	}
	return out
}

// FuzzQueryTerm checks queryTerm against net/url on any query.
func FuzzQueryTerm(f *testing.F) {
	for _, seed := range []string{"a=1&b=2", "x;op=wait", "ids=a,b&ids=c", "a=%zz&b=%41", "route=%2Fx%22+or+1"} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, query string) {
		values, _ := url.ParseQuery(query)
		if strings.Count(query, "&") >= 10000 {
			return // net/url refuses so many parameters
		}
		got := queryValues(t, queryTerm(query, nil))
		if len(got) != len(values) {
			t.Fatalf("queryTerm(%q) = %v, net/url reads %v", query, got, values)
		}
		for k, vs := range values {
			if !slices.Equal(got[k], vs) {
				t.Fatalf("queryTerm(%q) = %v, net/url reads %v", query, got, values)
			}
		}
	})
}

// FuzzRoutePath checks that no path breaks path splitting or the route
// decision: splitting yields only clean segments, or refuses the path with
// a reason; the engine always answers, with a code whenever it denies.
func FuzzRoutePath(f *testing.F) {
	for _, seed := range []string{
		"/api/namespaces/ns1/tree/dir/wf.yaml",
		"//api/namespaces/ns1/tree/wf.yaml",
		"/api/namespaces/ns1/instances/0b8c6c1d-5a8a-4a0e-b4d1-1f2d3c4b5a69/cancel",
		"/api/namespaces/ns1/instances/0b8c/vars/myvar",
		"/api/namespaces/ns1/vars/my%20var",
		"/api/namespaces/ns1/secrets/KEY",
		"/api/namespaces/ns1/broadcast",
		"/api/namespaces/ns1/metrics/invoked",
		"/api/namespaces/ns1/auth/tokens/4f1c",
		"/api/namespaces/ns1",
		"/api/namespaces",
		"/api/functions/namespaces/ns1/function/svc",
		"/api/v2/namespaces/ns1/files/dir/wf.yaml",
		"/api/v2/namespaces/ns1/instances?path=/wf.yaml",
		"/api/v2/namespaces/ns1/events/broadcast",
		"/api/v2/status",
		"/api/version",
		"/api/jq",
		"/api/namespaces/ns1/tree/%2e%2e/etc",
		"/api/namespaces/ns1%2Fns2/tree",
		"/api/namespaces/%zz",
		"",
	} {
		f.Add("POST", seed, "op=execute")
	}
	e := MustNew(f, Options{})
	caller := Caller{Namespace: "ns1", Policies: []string{"workflowExecute", "explorerView"}}
	f.Fuzz(func(t *testing.T, method, path, query string) {
		segments, err := SplitPath(path)
		if err == nil {
			var escaped []string
			for _, s := range segments {
				if s == "" || s == "." || s == ".." || strings.Contains(s, "/") {
					t.Fatalf("SplitPath(%q) yielded segment %q", path, s)
				}
				escaped = append(escaped, url.PathEscape(s))
			}
			again, err := SplitPath("/" + strings.Join(escaped, "/"))
			if err != nil || !slices.Equal(again, segments) {
				t.Fatalf("SplitPath(%q) = %q, but its escaped form splits into %q, %v", path, segments, again, err)
			}
		}
		d, rerr := e.Route(context.Background(), RouteInput{Caller: caller, Method: method, Path: path, Query: query})
		if rerr != nil {
			t.Fatalf("Route(%q %q ?%q): %v", method, path, query, rerr)
		}
		switch {
		case err != nil && (d.Allow || d.Code != CodeBadRequest || d.Reason != err.Error()):
			t.Fatalf("Route(%q %q) = %+v for a path SplitPath refuses (%v)", method, path, d, err)
		case d.Allow && (d.Code != "" || d.Reason != ""):
			t.Fatalf("Route(%q %q) = %+v: allowed, with a code", method, path, d)
		case !d.Allow && (d.Code == "" || d.Reason == ""):
			t.Fatalf("Route(%q %q) = %+v: denied, without a code or reason", method, path, d)
		case d.Allow && !d.Public && d.Namespace != "" && d.Namespace != caller.Namespace:
			t.Fatalf("Route(%q %q) = %+v: allowed into another namespace", method, path, d)
		case d.Allow && d.Permission != "" && !slices.Contains(e.Effective(caller.Policies), d.Permission):
			t.Fatalf("Route(%q %q) = %+v: allowed without the permission", method, path, d)
		}
	})
}

// The headers header_params names reach the rules as the query parameter
// Direktiv reads them as: Last-Event-ID is checked as lastEventId is, on
// the log stream, and changes the decision only there.
func TestRouteHeaderParams(t *testing.T) {
	e := MustNew(t, Options{})
	logs := Caller{Namespace: "ns1", Policies: []string{"instancesView"}}
	header := func(v string) Header { return lastEventID(v) }
	for _, tt := range []struct {
		path, value string
		allow       bool
	}{
		{"/api/v2/namespaces/ns1/logs/subscribe", "2026-12-06T01:16:52.633823000Z", true},
		{"/api/v2/namespaces/ns1/logs/subscribe", "2026-01-01T00:00:00Z | delete", false},
		{"/api/v2/namespaces/ns1/logs", "x", false},
		{"/api/v2/namespaces/ns1/instances", "x", true}, // not read there
	} {
		for _, c := range []Caller{logs, {Admin: true}} {
			d, err := e.Route(context.Background(), RouteInput{Caller: c, Method: "GET", Path: tt.path, Header: header(tt.value)})
			if err != nil {
				t.Fatal(err)
			}
			if c.Admin && tt.path == "/api/v2/namespaces/ns1/instances" {
				continue
			}
			if d.Allow != tt.allow || (!tt.allow && (d.Code != CodeBadRequest || !strings.Contains(d.Reason, "lastEventId"))) {
				t.Fatalf("%s with Last-Event-ID %q (admin %v): %+v, want allow %v or a bad request naming lastEventId", tt.path, tt.value, c.Admin, d, tt.allow)
			}
		}
	}
	// The memo keeps the header apart: the same request without it is allowed.
	d, err := e.Route(context.Background(), RouteInput{Caller: logs, Method: "GET", Path: "/api/v2/namespaces/ns1/logs"})
	if err != nil || !d.Allow {
		t.Fatalf("without the header: %+v, %v", d, err)
	}
}

// lastEventID is a request's headers holding only Last-Event-ID.
type lastEventID string

func (h lastEventID) PeekAll(name string) [][]byte {
	if strings.EqualFold(name, "Last-Event-ID") {
		return [][]byte{[]byte(h)}
	}
	return nil
}
