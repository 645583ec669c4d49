package engine

import (
	"context"
	"net/url"
	"slices"
	"strings"
	"testing"
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
			name: "namespace listing is admin only",
			in:   RouteInput{Caller: runner, Method: "GET", Path: "/api/v2/namespaces"},
			want: RouteDecision{Code: CodeAdminOnly, Reason: "GET /api/v2/namespaces needs the admin token"},
		},
		{
			name: "uncovered",
			in:   RouteInput{Caller: runner, Method: "GET", Path: "/api/namespaces/ns1/tree/wf.yaml", Query: "op=bogus"},
			want: RouteDecision{Code: CodeForbidden, Reason: "no route rule covers GET /api/namespaces/ns1/tree/wf.yaml?op=bogus"},
		},
		{
			name: "admin passes uncovered routes",
			in:   RouteInput{Caller: admin, Method: "OPTIONS", Path: "/whatever"},
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
			if got != tt.want {
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
		case d.Allow && d.Namespace != "" && d.Namespace != caller.Namespace:
			t.Fatalf("Route(%q %q) = %+v: allowed into another namespace", method, path, d)
		case d.Allow && d.Permission != "" && !slices.Contains(e.Effective(caller.Policies), d.Permission):
			t.Fatalf("Route(%q %q) = %+v: allowed without the permission", method, path, d)
		}
	})
}
