package engine

import (
	"context"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/direktiv/direktiv-authz/policies"
)

// MustNew returns an Engine for opts or fails the test.
func MustNew(tb testing.TB, opts Options) *Engine {
	tb.Helper()
	e, err := New(context.Background(), opts)
	if err != nil {
		tb.Fatalf("New(%+v): %v", opts, err)
	}
	return e
}

// MustCopyPolicies writes the embedded policies into dir.
func MustCopyPolicies(tb testing.TB, dir string) {
	tb.Helper()
	entries, err := fs.ReadDir(policies.FS, ".")
	if err != nil {
		tb.Fatal(err)
	}
	for _, e := range entries {
		b, err := fs.ReadFile(policies.FS, e.Name())
		if err != nil {
			tb.Fatal(err)
		}
		MustWriteFile(tb, filepath.Join(dir, e.Name()), string(b))
	}
}

// MustWriteFile writes content to path.
func MustWriteFile(tb testing.TB, path, content string) {
	tb.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		tb.Fatal(err)
	}
}

// MustEdit replaces the one occurrence of old in the file at path by new.
func MustEdit(tb testing.TB, path, old, new string) {
	tb.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		tb.Fatal(err)
	}
	if n := strings.Count(string(b), old); n != 1 {
		tb.Fatalf("%s holds %q %d times, want once", path, old, n)
	}
	MustWriteFile(tb, path, strings.Replace(string(b), old, new, 1))
}

// minimal is the smallest policy set the engine accepts, as file name ->
// content; tests add the quirks they need.
func minimal() map[string]string {
	return map[string]string{
		"catalog.rego": `package direktiv.catalog

closure := {"a": {"a", "b"}, "b": {"b"}}
`,
		"mint.rego": `package direktiv.mint

decision := {"allow": true, "granted": input.requested, "dropped": [], "unknown": []} if input.caller.admin
`,
		"routes.rego": `package direktiv.routes

decision := {"allow": true, "permission": "", "namespace": ""} if input.caller.admin
`,
	}
}

// MustPolicyDir writes files into a new temporary directory.
func MustPolicyDir(tb testing.TB, files map[string]string) string {
	tb.Helper()
	dir := tb.TempDir()
	for name, content := range files {
		MustWriteFile(tb, filepath.Join(dir, name), content)
	}
	return dir
}
