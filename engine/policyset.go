package engine

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/metrics"
	"github.com/open-policy-agent/opa/v1/rego"
	"github.com/open-policy-agent/opa/v1/storage"
	"github.com/open-policy-agent/opa/v1/storage/inmem"
	"github.com/open-policy-agent/opa/v1/tester"
	"github.com/open-policy-agent/opa/v1/topdown"
)

// The rules the engine asks. A policy directory must define all three.
const (
	closureQuery = "data.direktiv.catalog.closure" // policy name -> set of policies it grants
	mintQuery    = "data.direktiv.mint.decision"   // MintDecision for a mint input
	routeQuery   = "data.direktiv.routes.decision" // RouteDecision for a route input
	// headerParamsQuery, optional: request header -> the query parameter
	// Direktiv reads it as (see RouteInput.Header).
	headerParamsQuery = "data.direktiv.routes.header_params"
)

// testTimeout bounds each Rego test.
const testTimeout = 10 * time.Second

// policySet is one loaded, tested and prepared set of policies. Its rules
// never change once built (a reload builds a new set); only its cache of
// caller terms grows.
type policySet struct {
	revision string
	files    []string
	closure  map[string][]string    // policy -> sorted policies it grants
	grants   map[string][]*ast.Term // the same, as terms for input
	mint     prepared
	route    prepared
	// headerParams are the headers the route rules read, each with the
	// query parameter it stands for, sorted by header.
	headerParams [][2]string

	callersMu sync.RWMutex
	callers   map[string]*ast.Term // see callerTerm

	// Decisions already made, nil when the rules are not deterministic.
	mintMemo  *memo[MintDecision]
	routeMemo *memo[RouteDecision]
}

func (s *policySet) fileNames() string { return strings.Join(s.files, ",") }

// LoadError is why a set of policies was refused.
type LoadError struct {
	Source   string    // the policy directory, or "embedded policies"
	Problems []Problem // at least one
}

// Problem is one reason a set of policies was refused.
type Problem struct {
	File    string // the .rego file it is in, "" when it is in none
	Row     int    // its line in File, 0 when unknown
	Message string
}

func (p Problem) String() string {
	switch {
	case p.File == "":
		return p.Message
	case p.Row == 0:
		return p.File + ": " + p.Message
	default:
		return fmt.Sprintf("%s:%d: %s", p.File, p.Row, p.Message)
	}
}

func (e *LoadError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "policies from %s refused", e.Source)
	for _, p := range e.Problems {
		b.WriteString("; ")
		b.WriteString(p.String())
	}
	return b.String()
}

func isRego(name string) bool { return strings.HasSuffix(name, ".rego") }

func isTest(name string) bool { return strings.HasSuffix(name, "_test.rego") }

// revisionOf hashes the files' names and contents.
func revisionOf(files []file) string {
	h := sha256.New()
	for _, f := range files {
		h.Write([]byte(f.name))
		h.Write([]byte{0})
		h.Write(f.content)
		h.Write([]byte{0})
	}
	return hex.EncodeToString(h.Sum(nil))[:16]
}

// compile parses the files, runs their Rego tests, compiles the rules (the
// files not named *_test.rego), folds their constants (the inheritance
// closure among them, see foldConstants) and prepares the decision
// queries. It returns a *LoadError naming each problem it found.
func compile(ctx context.Context, src source, files []file, logger *slog.Logger) (*policySet, error) {
	refuse := func(problems ...Problem) error {
		return &LoadError{Source: src.String(), Problems: problems}
	}

	all, problems := parseAll(files)
	if len(problems) > 0 {
		return nil, refuse(problems...)
	}
	rules := make(map[string]*ast.Module, len(all))
	for name, m := range all {
		if !isTest(name) {
			rules[name] = m
		}
	}

	tests, problems := testOnce(ctx, files, all)
	if len(problems) > 0 {
		return nil, refuse(problems...)
	}
	if tests == 0 {
		logger.Warn("policies have no Rego tests", "source", src)
	}

	compiler := newCompiler(false)
	if compiler.Compile(rules); compiler.Failed() {
		return nil, refuse(astProblems(compiler.Errors)...)
	}
	for _, q := range []string{closureQuery, mintQuery, routeQuery} {
		if len(compiler.GetRulesExact(ast.MustParseRef(q))) == 0 {
			return nil, refuse(Problem{Message: fmt.Sprintf("no rule defines %s, which the engine asks", q)})
		}
	}

	store := inmem.New()
	folded, constants, err := foldConstants(ctx, compiler, store, rules)
	if err != nil {
		return nil, refuse(Problem{Message: err.Error()})
	}
	logger.Debug("constant documents folded", "source", src, "paths", slices.Sorted(maps.Keys(constants)))
	closureTerm, ok := constants[closureQuery]
	if !ok {
		return nil, refuse(Problem{Message: fmt.Sprintf("%s must be computed from the catalog alone (no input), and be defined", closureQuery)})
	}
	closure, err := decodeClosure(closureTerm)
	if err != nil {
		return nil, refuse(Problem{Message: err.Error()})
	}
	// The folded modules were checked strictly above; folding may leave an
	// import or a helper unused, which strict mode would reject.
	decisions := newCompiler(false).WithStrict(false)
	if decisions.Compile(folded); decisions.Failed() {
		return nil, refuse(astProblems(decisions.Errors)...)
	}

	headerParams, err := decodeHeaderParams(constants, compiler)
	if err != nil {
		return nil, refuse(Problem{Message: err.Error()})
	}
	set := &policySet{
		headerParams: headerParams,
		revision:     revisionOf(files),
		closure:      closure,
		grants:       make(map[string][]*ast.Term, len(closure)),
		callers:      map[string]*ast.Term{},
	}
	if deterministic(compiler.Modules) {
		set.mintMemo, set.routeMemo = newMemo[MintDecision](), newMemo[RouteDecision]()
	}
	for name, granted := range closure {
		for _, g := range granted {
			set.grants[name] = append(set.grants[name], ast.StringTerm(g))
		}
	}
	for _, f := range files {
		set.files = append(set.files, f.name)
	}
	if set.mint, err = prepare(ctx, decisions, store, query(mintQuery)); err != nil {
		return nil, refuse(Problem{Message: err.Error()})
	}
	if set.route, err = prepare(ctx, decisions, store, query(routeQuery)); err != nil {
		return nil, refuse(Problem{Message: err.Error()})
	}
	if err := set.smokeTest(ctx); err != nil {
		return nil, refuse(Problem{Message: err.Error()})
	}
	return set, nil
}

// parseAll parses the files as Rego v1, by file name.
func parseAll(files []file) (map[string]*ast.Module, []Problem) {
	modules := make(map[string]*ast.Module, len(files))
	var problems []Problem
	for _, f := range files {
		m, err := ast.ParseModuleWithOpts(f.name, string(f.content), ast.ParserOptions{RegoVersion: ast.RegoV1})
		if err != nil {
			problems = append(problems, astProblems(err)...)
			continue
		}
		modules[f.name] = m
	}
	return modules, problems
}

// newCompiler returns the compiler both the tests and the rules use: Rego
// v1, strict (as `opa check --strict`), print() kept only for tests.
func newCompiler(forTests bool) *ast.Compiler {
	return ast.NewCompiler().
		WithCapabilities(ast.CapabilitiesForThisVersion()).
		WithDefaultRegoVersion(ast.RegoV1).
		WithStrict(true).
		WithEnablePrintStatements(forTests)
}

// passedRevisions holds the revisions (revisionOf) whose Rego tests passed
// in this process, with how many ran. The tests read nothing but the files,
// so a revision that passed once passes again: reloading it, or starting
// another engine on it (the sidecar's own tests start hundreds), does not
// run them again. A failure is not kept: it is run again, and reported.
var passedRevisions sync.Map // string -> int

// testOnce is runTests for files, parsed as modules, unless their revision
// passed before.
func testOnce(ctx context.Context, files []file, modules map[string]*ast.Module) (int, []Problem) {
	rev := revisionOf(files)
	if n, ok := passedRevisions.Load(rev); ok {
		return n.(int), nil
	}
	n, problems := runTests(ctx, modules)
	if len(problems) == 0 {
		passedRevisions.Store(rev, n)
	}
	return n, problems
}

// runTests runs every test_ rule in modules with OPA's tester and returns
// how many ran and one Problem per failing test (or failing case of a
// data-driven test), or the compile errors that stopped them.
func runTests(ctx context.Context, modules map[string]*ast.Module) (int, []Problem) {
	ch, err := tester.NewRunner().
		SetCompiler(newCompiler(true)).
		SetStore(inmem.New()).
		SetModules(modules).
		SetDefaultRegoVersion(ast.RegoV1).
		SetTimeout(testTimeout).
		RunTests(ctx, nil)
	if err != nil {
		return 0, astProblems(err)
	}
	var problems []Problem
	count := 0
	for r := range ch {
		count++
		if r.Pass() || r.Skip {
			continue
		}
		p := Problem{Message: fmt.Sprintf("Rego test %s.%s failed", r.Package, r.Name)}
		if r.Location != nil {
			p.File, p.Row = r.Location.File, r.Location.Row
		}
		if r.Error != nil {
			p.Message = fmt.Sprintf("Rego test %s.%s errored: %v", r.Package, r.Name, r.Error)
		} else if cases := failedCases(r.SubResults); len(cases) > 0 {
			p.Message += " for " + strings.Join(cases, ", ")
		}
		if out := strings.TrimSpace(string(r.Output)); out != "" {
			p.Message += ": " + out
		}
		problems = append(problems, p)
	}
	slices.SortFunc(problems, func(a, b Problem) int {
		return cmp.Or(strings.Compare(a.File, b.File), cmp.Compare(a.Row, b.Row), strings.Compare(a.Message, b.Message))
	})
	return count, problems
}

// failedCases names the failing cases of a data-driven test, quoted.
func failedCases(results tester.SubResultMap) []string {
	var cases []string
	for name, sr := range results.Iter {
		if sr.Fail && len(sr.SubResults) == 0 {
			cases = append(cases, fmt.Sprintf("%q", strings.Join(name, "/")))
		}
	}
	return cases
}

// astProblems turns OPA's parse and compile errors into Problems.
func astProblems(err error) []Problem {
	var errs ast.Errors
	switch e := err.(type) {
	case ast.Errors:
		errs = e
	case *ast.Error:
		errs = ast.Errors{e}
	default:
		return []Problem{{Message: err.Error()}}
	}
	problems := make([]Problem, 0, len(errs))
	for _, e := range errs {
		p := Problem{Message: e.Code + ": " + e.Message}
		if e.Location != nil {
			p.File, p.Row = e.Location.File, e.Location.Row
		}
		problems = append(problems, p)
	}
	return problems
}

// query is the query for the document at ref.
func query(ref string) ast.Body {
	return ast.NewBody(ast.NewExpr(ast.NewTerm(ast.MustParseRef(ref))))
}

// prepared is a query prepared once per policy set, with what each
// evaluation of it shares.
type prepared struct {
	name string
	pq   rego.PreparedEvalQuery
	// never is a cancel signal nothing raises: it spares each evaluation
	// the goroutine OPA otherwise starts to watch ctx, which eval checks
	// before it starts (decisions take microseconds).
	never topdown.Cancel
}

// prepare prepares query once against the compiled rules. Results come
// back as *ast.Term (see asTerm), not converted to Go maps.
func prepare(ctx context.Context, compiler *ast.Compiler, store storage.Store, query ast.Body) (prepared, error) {
	pq, err := rego.New(
		rego.Compiler(compiler),
		rego.Store(store),
		rego.ParsedQuery(query),
		rego.GenerateJSON(asTerm),
	).PrepareForEval(ctx)
	if err != nil {
		return prepared{}, fmt.Errorf("prepare %s: %w", query, err)
	}
	return prepared{name: query.String(), pq: pq, never: topdown.NewCancel()}, nil
}

// asTerm hands the result term back unconverted; the engine decodes it.
func asTerm(t *ast.Term, _ *rego.EvalContext) (any, error) { return t, nil }

// eval runs the query on input (nil for none) and returns its single
// result. It returns an error wrapping ErrUnavailable when ctx is done,
// evaluation fails, or the result is undefined.
func (p prepared) eval(ctx context.Context, input ast.Value) (*ast.Term, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrUnavailable, p.name, err)
	}
	rs, err := p.pq.Eval(ctx,
		rego.EvalParsedInput(input),
		rego.EvalExternalCancel(p.never),
		rego.EvalMetrics(metrics.NoOp()),
	)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrUnavailable, p.name, err)
	}
	if len(rs) != 1 || len(rs[0].Expressions) != 1 {
		return nil, fmt.Errorf("%w: %s is undefined for this input", ErrUnavailable, p.name)
	}
	t, ok := rs[0].Expressions[0].Value.(*ast.Term)
	if !ok {
		return nil, fmt.Errorf("%w: %s: unexpected result %T", ErrUnavailable, p.name, rs[0].Expressions[0].Value)
	}
	return t, nil
}

// decodeHeaderParams reads header_params, when the rules define it: an
// object of header name to query parameter name, computed without input.
func decodeHeaderParams(constants map[string]*ast.Term, compiler *ast.Compiler) ([][2]string, error) {
	t, ok := constants[headerParamsQuery]
	if !ok {
		if len(compiler.GetRulesExact(ast.MustParseRef(headerParamsQuery))) > 0 {
			return nil, fmt.Errorf("%s must be computed without input", headerParamsQuery)
		}
		return nil, nil
	}
	obj, ok := t.Value.(ast.Object)
	if !ok {
		return nil, fmt.Errorf("%s must be an object of header name to query parameter name, not %s", headerParamsQuery, ast.ValueName(t.Value))
	}
	var out [][2]string
	err := obj.Iter(func(k, v *ast.Term) error {
		h, ok1 := k.Value.(ast.String)
		p, ok2 := v.Value.(ast.String)
		if !ok1 || !ok2 || h == "" || p == "" {
			return fmt.Errorf("%s has %v: %v; want header name: query parameter name", headerParamsQuery, k, v)
		}
		out = append(out, [2]string{string(h), string(p)})
		return nil
	})
	slices.SortFunc(out, func(a, b [2]string) int { return strings.Compare(a[0], b[0]) })
	return out, err
}

// decodeClosure reads the closure rule's value: an object mapping each
// policy name to the set (or array) of names it grants.
func decodeClosure(t *ast.Term) (map[string][]string, error) {
	obj, ok := t.Value.(ast.Object)
	if !ok {
		return nil, fmt.Errorf("%s must be an object of policy name to set of policy names, not %s", closureQuery, ast.ValueName(t.Value))
	}
	closure := make(map[string][]string, obj.Len())
	err := obj.Iter(func(k, v *ast.Term) error {
		name, ok := k.Value.(ast.String)
		if !ok {
			return fmt.Errorf("%s has the key %v; keys must be policy names", closureQuery, k)
		}
		grants, err := decodeStrings(v)
		if err != nil {
			return fmt.Errorf("%s[%q]: %w", closureQuery, string(name), err)
		}
		slices.Sort(grants)
		closure[string(name)] = slices.Compact(grants)
		return nil
	})
	return closure, err
}

// smokeTest asks both decisions one question each, so that rules that are
// defined but never answer are refused at load rather than at the first
// request.
func (s *policySet) smokeTest(ctx context.Context) error {
	admin := Caller{Admin: true}
	if _, err := s.decideMint(ctx, MintInput{Caller: admin, Namespace: "smoke", Requested: []string{}}); err != nil {
		return fmt.Errorf("the mint decision does not answer an admin request: %w", err)
	}
	if _, err := s.decideRoute(ctx, admin, "GET", []string{"api", "version"}, ""); err != nil {
		return fmt.Errorf("the route decision does not answer GET /api/version by the admin: %w", err)
	}
	return nil
}
