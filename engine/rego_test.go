package engine

import (
	"context"
	"strings"
	"testing"
)

// TestRegoPolicies runs every Rego test in policies/ with OPA's tester, as
// New does, so `go test ./...` fails on a broken rule and lists each failing
// Rego test.
func TestRegoPolicies(t *testing.T) {
	files, err := newSource("").read()
	if err != nil {
		t.Fatal(err)
	}
	modules, problems := parseAll(files)
	for _, p := range problems {
		t.Errorf("policies/%s", p)
	}
	count, problems := runTests(context.Background(), modules)
	for _, p := range problems {
		t.Errorf("policies/%s", p)
	}
	if count < 30 {
		t.Errorf("ran %d Rego tests, want the 30 or more in policies/", count)
	}
}

// TestRegoFailuresAreListed shows that runTests reports every failing Rego
// test by file, line and name, with what it printed.
func TestRegoFailuresAreListed(t *testing.T) {
	files := []file{
		{name: "x.rego", content: []byte("package x\n\nanswer := 41\n")},
		{name: "x_test.rego", content: []byte(`package x_test

import data.x

test_answer if {
	print("answer is", x.answer)
	x.answer == 42
}

test_fine if x.answer == 41

test_errors if {
	x.answer == to_number("forty")
}
`)},
	}
	modules, problems := parseAll(files)
	if len(problems) > 0 {
		t.Fatal(problems)
	}
	count, problems := runTests(context.Background(), modules)
	if count != 3 {
		t.Errorf("ran %d tests, want 3", count)
	}
	var got []string
	for _, p := range problems {
		got = append(got, p.String())
	}
	want := []string{
		"x_test.rego:5: Rego test data.x_test.test_answer failed: answer is 41",
		"x_test.rego:12: Rego test data.x_test.test_errors failed",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("problems:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}
