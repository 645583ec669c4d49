package engine

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

func TestNewEmbedded(t *testing.T) {
	e := MustNew(t, Options{})
	if !regexp.MustCompile(`^[0-9a-f]{16}$`).MatchString(e.Revision()) {
		t.Errorf("Revision() = %q, want 16 hex digits", e.Revision())
	}
	if ok, failed := e.Reloads(); ok != 0 || failed != 0 {
		t.Errorf("Reloads() = %d, %d, want 0, 0", ok, failed)
	}
	if err := e.Watch(t.Context()); err != nil {
		t.Errorf("Watch() on embedded policies = %v, want nil at once", err)
	}
}

func TestRevisionFollowsContent(t *testing.T) {
	dir := t.TempDir()
	MustCopyPolicies(t, dir)
	embedded := MustNew(t, Options{}).Revision()
	copied := MustNew(t, Options{Dir: dir})
	if copied.Revision() != embedded {
		t.Errorf("a copy of the embedded policies has revision %s, embedded %s", copied.Revision(), embedded)
	}
	MustEdit(t, filepath.Join(dir, "catalog.rego"), "# names is the set", "# names: the set")
	if got := MustNew(t, Options{Dir: dir}).Revision(); got == embedded {
		t.Errorf("an edited comment left the revision at %s", got)
	}
}

func TestEffective(t *testing.T) {
	e := MustNew(t, Options{})
	tests := []struct {
		name     string
		policies []string
		want     []string
	}{
		{"nil", nil, []string{}},
		{"view alone", []string{"secretsView"}, []string{"secretsView"}},
		{"manage inherits view", []string{"permissionsManage"}, []string{"permissionsManage", "permissionsView"}},
		{"merged and sorted", []string{"workflowManage", "eventsSend", "workflowView"}, []string{"eventsSend", "workflowManage", "workflowView"}},
		{"no edges for deleteNamespace", []string{"deleteNamespace"}, []string{"deleteNamespace"}},
		{"unknown names grant nothing", []string{"nope", "opaManage"}, []string{"opaManage", "opaView"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := e.Effective(tt.policies); !slices.Equal(got, tt.want) || got == nil {
				t.Errorf("Effective(%q) = %#v, want %#v", tt.policies, got, tt.want)
			}
		})
	}
}

func TestNewRefuses(t *testing.T) {
	broken := func(edit func(files map[string]string)) map[string]string {
		files := minimal()
		edit(files)
		return files
	}
	tests := []struct {
		name  string
		files map[string]string
		want  []string // substrings of the error
	}{
		{"no rego files", map[string]string{"README.md": "hi"}, []string{"no .rego files"}},
		{"parse error", broken(func(f map[string]string) {
			f["routes.rego"] += "decision := {\n"
		}), []string{"routes.rego:5: rego_parse_error: unexpected eof token"}},
		{"compile error", broken(func(f map[string]string) {
			f["routes.rego"] += "x := y\n"
		}), []string{"routes.rego:4: rego_unsafe_var_error", "var y is unsafe"}},
		{"strict error", broken(func(f map[string]string) {
			f["routes.rego"] = strings.Replace(f["routes.rego"], "package direktiv.routes\n", "package direktiv.routes\n\nimport data.direktiv.catalog\n", 1)
		}), []string{"routes.rego:3: rego_compile_error: import data.direktiv.catalog unused"}},
		{"failing rego test", broken(func(f map[string]string) {
			f["routes_test.rego"] = "package direktiv.routes_test\n\nimport data.direktiv.routes\n\ntest_denies if {\n\tprint(\"decided\", routes.decision)\n\troutes.decision.allow == false with input as {\"caller\": {\"admin\": true}}\n}\n"
		}), []string{"routes_test.rego:5: Rego test data.direktiv.routes_test.test_denies failed", "decided"}},
		{"missing decision", broken(func(f map[string]string) {
			delete(f, "mint.rego")
		}), []string{"no rule defines data.direktiv.mint.decision"}},
		{"closure reads input", broken(func(f map[string]string) {
			f["catalog.rego"] = "package direktiv.catalog\n\nclosure := {input.x: {\"a\"}}\n"
		}), []string{"data.direktiv.catalog.closure must be computed from the catalog alone"}},
		{"closure of the wrong shape", broken(func(f map[string]string) {
			f["catalog.rego"] = "package direktiv.catalog\n\nclosure := {\"a\": 1}\n"
		}), []string{`data.direktiv.catalog.closure["a"]: want an array or set of strings, got number`}},
		{"decision that never answers", broken(func(f map[string]string) {
			f["routes.rego"] = "package direktiv.routes\n\ndecision := {\"allow\": true} if input.method == \"NEVER\"\n"
		}), []string{"the route decision does not answer GET /api/version by the admin", "undefined"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := MustPolicyDir(t, tt.files)
			e, err := New(context.Background(), Options{Dir: dir})
			if err == nil {
				t.Fatalf("New() = %v, nil; want an error", e)
			}
			for _, want := range tt.want {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("New() error = %q, want it to contain %q", err, want)
				}
			}
		})
	}
}

func TestNewRefusesMissingDir(t *testing.T) {
	_, err := New(context.Background(), Options{Dir: filepath.Join(t.TempDir(), "nope")})
	if err == nil || !strings.Contains(err.Error(), "read policies from") {
		t.Fatalf("New() error = %v, want a read error", err)
	}
}

func TestLoadErrorNamesEachProblem(t *testing.T) {
	files := minimal()
	files["a.rego"] = "package a\n\nx := y\n"
	files["b.rego"] = "package b\n\nz := w\n"
	_, err := New(context.Background(), Options{Dir: MustPolicyDir(t, files)})
	var le *LoadError
	if !errors.As(err, &le) {
		t.Fatalf("New() error = %v (%T), want a *LoadError", err, err)
	}
	var got []string
	for _, p := range le.Problems {
		got = append(got, fmt.Sprintf("%s:%d", p.File, p.Row))
	}
	slices.Sort(got)
	if want := []string{"a.rego:3", "b.rego:3"}; !slices.Equal(got, want) {
		t.Errorf("problems at %q, want %q (%v)", got, want, err)
	}
}

func TestErrUnavailable(t *testing.T) {
	files := minimal()
	// A conflict (two answers) is an evaluation error; an unmatched input
	// leaves the decision undefined; an answer without "allow" is malformed.
	files["routes.rego"] += `
decision := {"allow": false, "code": "forbidden"} if input.method == "DELETE"

decision := {"code": "forbidden"} if input.method == "PATCH"
`
	files["mint.rego"] += `
decision := {"allow": false, "reason": "no code"} if input.namespace == "nocode"
`
	e := MustNew(t, Options{Dir: MustPolicyDir(t, files)})
	admin := Caller{Admin: true}
	token := Caller{Namespace: "ns1", Policies: []string{"a"}}
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()

	routes := []struct {
		name string
		ctx  context.Context
		in   RouteInput
		want string
	}{
		{"conflict", context.Background(), RouteInput{Caller: admin, Method: "DELETE", Path: "/api/x"}, "eval_conflict_error"},
		{"undefined", context.Background(), RouteInput{Caller: token, Method: "GET", Path: "/api/x"}, "undefined"},
		{"malformed", context.Background(), RouteInput{Caller: token, Method: "PATCH", Path: "/api/x"}, "no allow field"},
		{"cancelled", cancelled, RouteInput{Caller: admin, Method: "GET", Path: "/api/x"}, "context canceled"},
	}
	for _, tt := range routes {
		t.Run("route "+tt.name, func(t *testing.T) {
			d, err := e.Route(tt.ctx, tt.in)
			if !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Route() = %+v, %v; want ErrUnavailable mentioning %q", d, err, tt.want)
			}
			if !sameDecision(d, RouteDecision{}) {
				t.Errorf("Route() decision = %+v with an error, want the zero decision", d)
			}
		})
	}

	mints := []struct {
		name string
		ctx  context.Context
		in   MintInput
		want string
	}{
		{"undefined", context.Background(), MintInput{Caller: token, Namespace: "ns1", Requested: []string{"a"}}, "undefined"},
		{"deny without code", context.Background(), MintInput{Caller: token, Namespace: "nocode"}, "denies without a code"},
		{"cancelled", cancelled, MintInput{Caller: admin, Namespace: "ns1"}, "context canceled"},
	}
	for _, tt := range mints {
		t.Run("mint "+tt.name, func(t *testing.T) {
			d, err := e.Mint(tt.ctx, tt.in)
			if !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Mint() = %+v, %v; want ErrUnavailable mentioning %q", d, err, tt.want)
			}
			if d.Allow || d.Granted != nil {
				t.Errorf("Mint() decision = %+v with an error, want the zero decision", d)
			}
		})
	}
}

// The Rego tests of a revision run once per process while they pass; a
// revision whose tests fail is refused on every load, its tests run again.
func TestRegoTestsRunOncePerPassingRevision(t *testing.T) {
	files := minimal()
	files["mint_test.rego"] = `package direktiv.mint_test

import data.direktiv.mint

test_admin_mints if mint.decision.allow with input as {"caller": {"admin": true}, "requested": ["a"]}
`
	e := MustNew(t, Options{Dir: MustPolicyDir(t, files)})
	n, ok := passedRevisions.Load(e.Revision())
	if !ok || n.(int) != 1 {
		t.Fatalf("passed revisions hold %v for %s, want 1 test", n, e.Revision())
	}
	MustNew(t, Options{Dir: MustPolicyDir(t, files)}) // the same revision, from the memo

	files["mint_test.rego"] += "\ntest_fails if false\n"
	dir := MustPolicyDir(t, files)
	for i := range 2 { // a failing revision kept as passed would load the second time
		if _, err := New(context.Background(), Options{Dir: dir}); err == nil || !strings.Contains(err.Error(), "test_fails") {
			t.Fatalf("load %d with a failing Rego test: %v", i+1, err)
		}
	}
}
