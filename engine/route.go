package engine

import (
	"context"
	"fmt"
	"net/url"
	"strings"

	"github.com/open-policy-agent/opa/v1/ast"
)

// Route asks the rules whether in.Caller may send in.Method in.Path?in.Query
// upstream, which permission that needs, and what the sidecar must check
// or change on the way (RouteDecision). Every request is asked about: the
// admin token, minted tokens and anonymous callers (the zero Caller) alike.
//
// The path is split and decoded here first (see SplitPath) and the query
// read as Go's net/url reads it (see queryTerm); a path or op parameter
// that cannot be read safely is denied with CodeBadRequest before the rules
// are asked, whoever the caller (the admin too: such a path could reach a
// route other than the one it names). So is an op parameter that Direktiv
// up to v0.8.6 reads differently, on its v1 routes (see v1Op). A refusal is
// a decision, not an error. The error, when there is one, wraps
// ErrUnavailable: ctx was done, the rules failed or gave no answer of
// RouteDecision's shape.
//
// Decisions are remembered per caller, method, raw path and raw query, so a
// question asked before costs a map lookup.
func (e *Engine) Route(ctx context.Context, in RouteInput) (RouteDecision, error) {
	method := in.Method
	if !isUpper(method) {
		method = strings.ToUpper(method)
	}
	s := e.current.Load()
	var buf [512]byte
	key := appendString(appendString(appendString(callerKey(buf[:0], in.Caller), method), in.Path), in.Query)
	// The headers the rules read (header_params) are query parameters to
	// them, after the query's own.
	var headers [][2]string
	if in.Header != nil {
		for _, hp := range s.headerParams {
			for _, v := range in.Header.PeekAll(hp[0]) {
				headers = append(headers, [2]string{hp[1], string(v)})
				key = appendString(appendString(key, hp[0]), string(v))
			}
		}
	}
	if d, ok := s.routeMemo.get(key); ok {
		return d, nil // the path and query read cleanly when the decision was made
	}
	req, err := readRequest(in.Path, in.Query, headers)
	if err != nil {
		return RouteDecision{Code: CodeBadRequest, Reason: err.Error()}, nil
	}
	d, err := s.decide(ctx, s.input(in.Caller, method, req))
	if err == nil && len(key) <= maxRouteMemoKey {
		s.routeMemo.put(key, d)
	}
	return d, err
}

// maxRouteMemoKey bounds the keys of the decisions Route remembers, so that
// anonymous callers sending long paths or queries cannot fill the memo with
// large keys; longer requests are evaluated each time.
const maxRouteMemoKey = 1024

// request is a request read for the route rules.
type request struct {
	segments []string
	op       string
	query    *ast.Term
}

// readRequest reads a request's raw path and query for the rules. It
// returns an error, a reason for a bad request, when the path does not
// split cleanly (see SplitPath), the op parameter is not valid
// percent-encoding, or Direktiv up to v0.8.6 would read another op on a v1
// route (see v1Op).
func readRequest(path, query string, headers [][2]string) (request, error) {
	segments, err := SplitPath(path)
	if err != nil {
		return request{}, err
	}
	op, err := opParam(query)
	if err != nil {
		return request{}, err
	}
	if len(segments) >= 2 && segments[0] == "api" && segments[1] == "namespaces" {
		if v1 := v1Op(query); v1 != op {
			return request{}, fmt.Errorf("the op query parameter reads %q as Direktiv up to v0.8.6 splits the query (on ';' as on '&') and %q as Go's net/url does (pairs holding ';' dropped); ';' is ambiguous: separate parameters with '&' and write a ';' in a value as %%3B", v1, op)
		}
	}
	return request{segments: segments, op: op, query: queryTerm(query, headers)}, nil
}

func (s *policySet) decideRoute(ctx context.Context, caller Caller, method string, segments []string, op string) (RouteDecision, error) {
	return s.decide(ctx, s.routeInput(caller, method, segments, op))
}

// decide evaluates the route decision on input.
func (s *policySet) decide(ctx context.Context, input ast.Object) (RouteDecision, error) {
	t, err := s.route.eval(ctx, input)
	if err != nil {
		return RouteDecision{}, err
	}
	d, err := decodeRoute(t)
	if err != nil {
		return RouteDecision{}, fmt.Errorf("%w: %s: %w", ErrUnavailable, routeQuery, err)
	}
	return d, nil
}

// routeInput is the input the route decision reads, for a request without
// a query but op.
func (s *policySet) routeInput(caller Caller, method string, segments []string, op string) ast.Object {
	return s.input(caller, method, request{segments: segments, op: op, query: ast.ObjectTerm()})
}

// input is the input the route decision reads.
func (s *policySet) input(caller Caller, method string, req request) ast.Object {
	return ast.NewObject(
		ast.Item(ast.InternedTerm("caller"), s.callerTerm(caller)),
		ast.Item(ast.InternedTerm("method"), ast.InternedTerm(method)),
		ast.Item(ast.InternedTerm("segments"), stringsTerm(req.segments)),
		ast.Item(ast.InternedTerm("op"), ast.InternedTerm(req.op)),
		ast.Item(ast.InternedTerm("query"), req.query),
	)
}

// decodeRoute reads a RouteDecision from the rule's object. A key of the
// wrong type, a lookup that is not {"kind", "id"} of a known kind, or an
// unknown transform is an error: the sidecar could not do what the rules
// ask, so it must not forward (fail closed).
func decodeRoute(t *ast.Term) (RouteDecision, error) {
	obj, ok := t.Value.(ast.Object)
	if !ok {
		return RouteDecision{}, fmt.Errorf("the decision is %s, not an object", ast.ValueName(t.Value))
	}
	var d RouteDecision
	var hasAllow bool
	err := obj.Iter(func(k, v *ast.Term) error {
		var err error
		key, _ := k.Value.(ast.String)
		switch key {
		case "allow":
			d.Allow, err = decodeBool(v)
			hasAllow = true
		case "code":
			d.Code, err = decodeString(v)
		case "reason":
			d.Reason, err = decodeString(v)
		case "permission":
			d.Permission, err = decodeString(v)
		case "namespace":
			d.Namespace, err = decodeString(v)
		case "public":
			d.Public, err = decodeBool(v)
		case "lookups":
			d.Lookups, err = decodeLookups(v)
		case "transform":
			d.Transform, err = decodeTransform(v)
		}
		if err != nil {
			return fmt.Errorf("%s: %w", key, err)
		}
		return nil
	})
	if err != nil {
		return RouteDecision{}, err
	}
	if err := checkVerdict(hasAllow, d.Allow, d.Code); err != nil {
		return RouteDecision{}, err
	}
	return d, nil
}

// decodeLookups reads an array of {"kind", "id"} objects; nil when empty.
func decodeLookups(t *ast.Term) ([]Lookup, error) {
	arr, ok := t.Value.(*ast.Array)
	if !ok {
		return nil, fmt.Errorf("want an array of lookups, got %s", ast.ValueName(t.Value))
	}
	if arr.Len() == 0 {
		return nil, nil
	}
	lookups := make([]Lookup, 0, arr.Len())
	for i := range arr.Len() {
		obj, ok := arr.Elem(i).Value.(ast.Object)
		if !ok {
			return nil, fmt.Errorf("lookup %d: want an object, got %s", i, ast.ValueName(arr.Elem(i).Value))
		}
		var l Lookup
		for _, f := range []struct {
			name string
			to   *string
		}{{"kind", &l.Kind}, {"id", &l.ID}} {
			v := obj.Get(ast.InternedTerm(f.name))
			if v == nil {
				return nil, fmt.Errorf("lookup %d has no %s", i, f.name)
			}
			s, err := decodeString(v)
			if err != nil {
				return nil, fmt.Errorf("lookup %d: %s: %w", i, f.name, err)
			}
			*f.to = s
		}
		switch l.Kind {
		case LookupVariable, LookupInstance, LookupEvent, LookupListener:
		default:
			return nil, fmt.Errorf("lookup %d: unknown kind %q (known: %s, %s, %s, %s)", i, l.Kind, LookupVariable, LookupInstance, LookupEvent, LookupListener)
		}
		lookups = append(lookups, l)
	}
	return lookups, nil
}

// decodeTransform reads a transform: "", TransformStatus or TransformNamespaceList.
func decodeTransform(t *ast.Term) (string, error) {
	s, err := decodeString(t)
	if err != nil {
		return "", err
	}
	switch s {
	case "", TransformStatus, TransformNamespaceList:
		return s, nil
	}
	return "", fmt.Errorf("unknown transform %q (known: %s, %s)", s, TransformStatus, TransformNamespaceList)
}

// SplitPath splits a request path as received into the segments the route
// rules see (and the sidecar routes on, so both read a path alike): split on '/', empty segments dropped (so "//api/x" is
// "/api/x"), each segment percent-decoded. It returns an error naming the
// segment when one is not valid percent-encoding, is "." or ".." once
// decoded, or holds a '/' once decoded (%2F): the upstream could read such
// a path differently from the rules, so it is refused.
func SplitPath(path string) ([]string, error) {
	segments := make([]string, 0, strings.Count(path, "/")+1)
	for path != "" {
		var seg string
		seg, path, _ = strings.Cut(path, "/")
		if seg == "" {
			continue
		}
		raw := seg
		if strings.IndexByte(seg, '%') >= 0 {
			decoded, err := url.PathUnescape(seg)
			if err != nil {
				return nil, fmt.Errorf("the path segment %q is not valid percent-encoding", raw)
			}
			seg = decoded
		}
		switch {
		case seg == "." || seg == "..":
			return nil, fmt.Errorf("the path segment %q is %q; paths with . or .. segments are not accepted", raw, seg)
		case strings.IndexByte(seg, '/') >= 0:
			return nil, fmt.Errorf("the path segment %q holds an encoded '/'; use a literal / between segments", raw)
		}
		segments = append(segments, seg)
	}
	return segments, nil
}

// goPairs yields the raw key and value of each pair of query as Go's
// net/url splits it (so Direktiv v2, chi): on '&', a pair holding ';'
// dropped, an empty pair skipped.
func goPairs(query string, yield func(key, value string) bool) {
	for query != "" {
		var pair string
		pair, query, _ = strings.Cut(query, "&")
		if pair == "" || strings.IndexByte(pair, ';') >= 0 {
			continue
		}
		key, value, _ := strings.Cut(pair, "=")
		if !yield(key, value) {
			return
		}
	}
}

// v1Pairs is goPairs as Direktiv up to v0.8.6 (API v1, gorilla/mux, built
// with a Go before 1.17) splits a query: on '&' and ';' alike.
func v1Pairs(query string, yield func(key, value string) bool) {
	for query != "" {
		var pair string
		if i := strings.IndexAny(query, "&;"); i >= 0 {
			pair, query = query[:i], query[i+1:]
		} else {
			pair, query = query, ""
		}
		key, value, _ := strings.Cut(pair, "=")
		if !yield(key, value) {
			return
		}
	}
}

// opParam returns the first value of the "op" query parameter, read as Go's
// net/url reads it (so as Direktiv does): pairs as goPairs splits them,
// keys and values query-unescaped. It returns "" when there is none, and an
// error when the op value is not valid percent-encoding.
func opParam(query string) (op string, err error) {
	goPairs(query, func(key, value string) bool {
		if key != "op" {
			if strings.IndexAny(key, "%+") < 0 {
				return true
			}
			if k, kerr := url.QueryUnescape(key); kerr != nil || k != "op" {
				return true
			}
		}
		if op, err = url.QueryUnescape(value); err != nil {
			err = fmt.Errorf("the op query parameter %q is not valid percent-encoding", value)
		}
		return false
	})
	return op, err
}

// v1Op returns the first value of the "op" query parameter as Direktiv up
// to v0.8.6 reads it: pairs as v1Pairs splits them, keys and values
// query-unescaped, a pair that is not valid percent-encoding dropped. ""
// when there is none.
func v1Op(query string) (op string) {
	v1Pairs(query, func(key, value string) bool {
		if k, err := url.QueryUnescape(key); err != nil || k != "op" {
			return true
		}
		v, err := url.QueryUnescape(value)
		if err == nil {
			op = v
		}
		return err != nil
	})
	return op
}

// queryTerm is the query as Go's net/url reads it, so as Direktiv v2 (chi)
// does: pairs split on '&', a pair holding ';' dropped, keys and values
// query-unescaped, a pair either of which is not valid percent-encoding
// dropped. It is an object of parameter -> array of its values, in order,
// headers' values (parameter, value) after the query's.
func queryTerm(query string, headers [][2]string) *ast.Term {
	if query == "" && len(headers) == 0 {
		return ast.ObjectTerm()
	}
	var keys []string
	values := map[string][]*ast.Term{}
	goPairs(query, func(key, value string) bool {
		key, err := url.QueryUnescape(key)
		if err != nil {
			return true
		}
		if value, err = url.QueryUnescape(value); err != nil {
			return true
		}
		if _, ok := values[key]; !ok {
			keys = append(keys, key)
		}
		values[key] = append(values[key], ast.StringTerm(value))
		return true
	})
	for _, h := range headers {
		if _, ok := values[h[0]]; !ok {
			keys = append(keys, h[0])
		}
		values[h[0]] = append(values[h[0]], ast.StringTerm(h[1]))
	}
	items := make([][2]*ast.Term, len(keys))
	for i, k := range keys {
		items[i] = ast.Item(ast.StringTerm(k), ast.ArrayTerm(values[k]...))
	}
	return ast.ObjectTerm(items...)
}

func isUpper(s string) bool {
	for i := 0; i < len(s); i++ {
		if 'a' <= s[i] && s[i] <= 'z' {
			return false
		}
	}
	return true
}
