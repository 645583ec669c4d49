package engine

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/direktiv/direktiv-authz/internal/testutil"
)

// The edits the reload tests make. The good edit adds a route for bogus:
// a row in routes.rego and its case in routes_test.rego.
const (
	lintRow   = `	"api/namespaces/{ns}/lint/*": {"read": "workflowView"},`
	bogusRow  = lintRow + "\n" + `	"api/namespaces/{ns}/bogus/*": {"read": "workflowView"},`
	lintCase  = `	["api/namespaces/{ns}/lint/*", "GET", "/api/namespaces/ns1/lint", "workflowView", {}],`
	bogusCase = lintCase + "\n" + `	["api/namespaces/{ns}/bogus/*", "GET", "/api/namespaces/ns1/bogus", "workflowView", {}],`
	// failingEdit breaks what routes_test.rego expects of lint.
	failingEdit = `	"api/namespaces/{ns}/lint/*": {"read": "workflowManage"},`
	// syntaxEdit does not parse.
	syntaxEdit = `	"api/namespaces/{ns}/lint/*": {"read": "workflowView"`
)

// mustEditGood makes the good edit to the policies in dir.
func mustEditGood(tb testing.TB, dir string) {
	tb.Helper()
	MustEdit(tb, filepath.Join(dir, "routes_test.rego"), lintCase, bogusCase)
	MustEdit(tb, filepath.Join(dir, "routes.rego"), lintRow, bogusRow)
}

var (
	bogus = RouteInput{Caller: Caller{Namespace: "ns1", Policies: []string{"workflowView"}}, Method: "GET", Path: "/api/namespaces/ns1/bogus"}
	lint  = RouteInput{Caller: Caller{Namespace: "ns1", Policies: []string{"workflowView"}}, Method: "GET", Path: "/api/namespaces/ns1/lint"}
)

func newLogger() (*slog.Logger, *testutil.SyncBuffer) {
	buf := &testutil.SyncBuffer{}
	return slog.New(slog.NewTextHandler(buf, nil)), buf
}

// mustRoute asks e about in and returns whether it is allowed.
func mustRoute(tb testing.TB, e *Engine, in RouteInput) RouteDecision {
	tb.Helper()
	d, err := e.Route(context.Background(), in)
	if err != nil {
		tb.Fatal(err)
	}
	return d
}

func TestReload(t *testing.T) {
	dir := t.TempDir()
	MustCopyPolicies(t, dir)
	routes := filepath.Join(dir, "routes.rego")
	logger, logs := newLogger()
	e := MustNew(t, Options{Dir: dir, Logger: logger})
	ctx := context.Background()

	if d := mustRoute(t, e, bogus); d.Allow || d.Reason != "no route rule covers GET /api/namespaces/ns1/bogus" {
		t.Fatalf("before the edit: %+v", d)
	}

	// Unchanged files: nothing happens.
	set := e.current.Load()
	if err := e.Reload(ctx); err != nil || e.current.Load() != set {
		t.Fatalf("Reload() of unchanged policies = %v, swapped %v", err, e.current.Load() != set)
	}

	// A good edit replaces the prepared queries.
	mustEditGood(t, dir)
	if err := e.Reload(ctx); err != nil {
		t.Fatalf("Reload() after a good edit: %v", err)
	}
	if e.current.Load() == set {
		t.Fatal("a good edit left the old policy set in place")
	}
	want := RouteDecision{Allow: true, Permission: "workflowView", Namespace: "ns1"}
	if d := mustRoute(t, e, bogus); !sameDecision(d, want) {
		t.Fatalf("after the good edit: %+v, want %+v", d, want)
	}
	if ok, failed := e.Reloads(); ok != 1 || failed != 0 {
		t.Fatalf("Reloads() = %d, %d; want 1, 0", ok, failed)
	}
	good := e.current.Load()
	revision := e.Revision()

	// Bad edits are refused and change nothing.
	bad := []struct {
		name       string
		edit       func()
		wantErr    string
		wantLogs   string
		remembered bool
	}{
		{"syntax", func() { MustEdit(t, routes, lintRow, syntaxEdit) },
			"routes.rego:", "file=routes.rego", true},
		{"failing Rego test", func() { MustEdit(t, routes, lintRow, failingEdit) },
			"Rego test data.direktiv.routes_test.test_route_allowed_with_its_permission failed", "file=routes_test.rego", true},
		{"no .rego files", func() {
			for _, name := range []string{"catalog.rego", "catalog_test.rego", "mint.rego", "mint_test.rego", "routes.rego", "routes_test.rego"} {
				if err := os.Rename(filepath.Join(dir, name), filepath.Join(dir, name+".off")); err != nil {
					t.Fatal(err)
				}
			}
		}, "no .rego files", "no .rego files", false},
	}
	for i, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			original, err := os.ReadFile(routes)
			if err != nil {
				t.Fatal(err)
			}
			tt.edit()
			err = e.Reload(ctx)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Reload() = %v, want an error containing %q", err, tt.wantErr)
			}
			if e.current.Load() != good || e.Revision() != revision {
				t.Fatal("a refused reload replaced the policy set")
			}
			if d := mustRoute(t, e, bogus); !sameDecision(d, want) {
				t.Fatalf("after a refused reload: %+v, want %+v", d, want)
			}
			if d := mustRoute(t, e, lint); d.Permission != "workflowView" || !d.Allow {
				t.Fatalf("lint after a refused reload: %+v", d)
			}
			if ok, failed := e.Reloads(); ok != 1 || failed != uint64(i+1) {
				t.Fatalf("Reloads() = %d, %d; want 1, %d", ok, failed, i+1)
			}
			if !strings.Contains(logs.String(), tt.wantLogs) || !strings.Contains(logs.String(), "previous policies stay active") {
				t.Errorf("logs do not name %q:\n%s", tt.wantLogs, logs.String())
			}
			if tt.remembered {
				// Unchanged refused policies are not tried, counted or logged again.
				logged := logs.String()
				if again := e.Reload(ctx); again != err {
					t.Errorf("Reload() again = %v, want the same error %v", again, err)
				}
				if _, failed := e.Reloads(); failed != uint64(i+1) || logs.String() != logged {
					t.Errorf("a repeated refusal counted (failed %d) or logged again", failed)
				}
			}
			MustWriteFile(t, routes, string(original))
		})
	}
}

func TestWatchRenameWrite(t *testing.T) {
	dir := t.TempDir()
	MustCopyPolicies(t, dir)
	e := MustNew(t, Options{Dir: dir, Debounce: 20 * time.Millisecond})
	stop := watch(t, e)

	// An editor writes a new file beside the old one and renames it over.
	renameWrite := func(name, old, new string) {
		path := filepath.Join(dir, name)
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		tmp := filepath.Join(dir, "."+name+".swp")
		MustWriteFile(t, tmp, strings.Replace(string(b), old, new, 1))
		if err := os.Rename(tmp, path); err != nil {
			t.Fatal(err)
		}
	}
	// The case first, then the row: a reload between the two is refused.
	renameWrite("routes_test.rego", lintCase, bogusCase)
	renameWrite("routes.rego", lintRow, bogusRow)
	testutil.Eventually(t, "the good edit to take effect", func() bool { return mustRoute(t, e, bogus).Allow })
	revision := e.Revision()
	_, refused := e.Reloads()

	renameWrite("routes.rego", lintRow, syntaxEdit)
	testutil.Eventually(t, "the bad edit to be refused", func() bool { _, failed := e.Reloads(); return failed == refused+1 })
	if !mustRoute(t, e, bogus).Allow || e.Revision() != revision {
		t.Fatal("the refused edit changed the decision")
	}
	if err := stop(); err != nil {
		t.Fatalf("Watch() = %v, want nil after cancel", err)
	}
}

func TestWatchKubernetesConfigMap(t *testing.T) {
	// A ConfigMap volume: the data lives in a timestamped directory,
	// "..data" links to it, and each file links through "..data". An update
	// writes a new directory and swaps "..data" with a rename.
	dir := t.TempDir()
	generation := 0
	publish := func(edit func(dir string)) {
		generation++
		ts := filepath.Join(dir, "..2026_01_0"+string(rune('0'+generation)))
		if err := os.Mkdir(ts, 0o755); err != nil {
			t.Fatal(err)
		}
		MustCopyPolicies(t, ts)
		if edit != nil {
			edit(ts)
		}
		tmp := filepath.Join(dir, "..data_tmp")
		if err := os.Symlink(filepath.Base(ts), tmp); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, filepath.Join(dir, "..data")); err != nil {
			t.Fatal(err)
		}
	}
	publish(nil)
	entries, err := os.ReadDir(filepath.Join(dir, "..data"))
	if err != nil {
		t.Fatal(err)
	}
	for _, entry := range entries {
		if err := os.Symlink(filepath.Join("..data", entry.Name()), filepath.Join(dir, entry.Name())); err != nil {
			t.Fatal(err)
		}
	}

	e := MustNew(t, Options{Dir: dir, Debounce: 20 * time.Millisecond})
	if mustRoute(t, e, bogus).Allow {
		t.Fatal("bogus allowed before any edit")
	}
	stop := watch(t, e)

	publish(func(dir string) { mustEditGood(t, dir) })
	testutil.Eventually(t, "the swapped ConfigMap to take effect", func() bool { return mustRoute(t, e, bogus).Allow })
	good := e.current.Load()

	publish(func(dir string) { MustEdit(t, filepath.Join(dir, "routes.rego"), lintRow, syntaxEdit) })
	testutil.Eventually(t, "the bad ConfigMap to be refused", func() bool { _, failed := e.Reloads(); return failed == 1 })
	if e.current.Load() != good || !mustRoute(t, e, bogus).Allow {
		t.Fatal("the refused ConfigMap replaced the policy set")
	}
	if ok, _ := e.Reloads(); ok != 1 {
		t.Errorf("Reloads() ok = %d, want 1", ok)
	}
	if err := stop(); err != nil {
		t.Fatalf("Watch() = %v, want nil after cancel", err)
	}
}

// watch runs e.Watch until the returned stop is called; stop returns what
// Watch returned.
func watch(t *testing.T, e *Engine) (stop func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.Watch(ctx) }()
	stopped := false
	stop = func() error {
		if stopped {
			return errors.New("stopped twice")
		}
		stopped = true
		cancel()
		select {
		case err := <-done:
			return err
		case <-time.After(10 * time.Second):
			return errors.New("Watch did not return after cancel")
		}
	}
	t.Cleanup(func() { _ = stop() })
	return stop
}
