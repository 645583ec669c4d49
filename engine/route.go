package engine

import (
	"context"
	"fmt"
	"net/url"
	"strings"

	"github.com/open-policy-agent/opa/v1/ast"
)

// Route asks the rules whether in.Caller may send in.Method in.Path?in.Query
// upstream, and which permission that needs. The path is split and decoded
// here first (see SplitPath); a path or op parameter that cannot be read
// safely is denied with CodeBadRequest before the rules are asked, whoever
// the caller (the admin too: such a path could reach a route other than
// the one it names). A refusal is a decision, not an error. The error,
// when there is one, wraps ErrUnavailable: ctx was done, the rules failed
// or gave no answer of RouteDecision's shape.
func (e *Engine) Route(ctx context.Context, in RouteInput) (RouteDecision, error) {
	op, err := opParam(in.Query)
	if err != nil {
		return RouteDecision{Code: CodeBadRequest, Reason: err.Error()}, nil
	}
	method := in.Method
	if !isUpper(method) {
		method = strings.ToUpper(method)
	}
	s := e.current.Load()
	var buf [512]byte
	key := appendString(appendString(appendString(callerKey(buf[:0], in.Caller), method), in.Path), op)
	if d, ok := s.routeMemo.get(key); ok {
		return d, nil // the path split cleanly when the decision was made
	}
	segments, err := SplitPath(in.Path)
	if err != nil {
		return RouteDecision{Code: CodeBadRequest, Reason: err.Error()}, nil
	}
	d, err := s.decideRoute(ctx, in.Caller, method, segments, op)
	if err == nil {
		s.routeMemo.put(key, d)
	}
	return d, err
}

func (s *policySet) decideRoute(ctx context.Context, caller Caller, method string, segments []string, op string) (RouteDecision, error) {
	t, err := s.route.eval(ctx, s.routeInput(caller, method, segments, op))
	if err != nil {
		return RouteDecision{}, err
	}
	d, err := decodeRoute(t)
	if err != nil {
		return RouteDecision{}, fmt.Errorf("%w: %s: %w", ErrUnavailable, routeQuery, err)
	}
	return d, nil
}

// routeInput is the input the route decision reads.
func (s *policySet) routeInput(caller Caller, method string, segments []string, op string) ast.Object {
	return ast.NewObject(
		ast.Item(ast.InternedTerm("caller"), s.callerTerm(caller)),
		ast.Item(ast.InternedTerm("method"), ast.InternedTerm(method)),
		ast.Item(ast.InternedTerm("segments"), stringsTerm(segments)),
		ast.Item(ast.InternedTerm("op"), ast.InternedTerm(op)),
	)
}

// decodeRoute reads a RouteDecision from the rule's object.
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

// opParam returns the first value of the "op" query parameter, read as Go's
// net/url reads it (so as Direktiv does): pairs split on '&', pairs holding
// ';' skipped, keys and values query-unescaped. It returns "" when there is
// none, and an error when the op value is not valid percent-encoding.
func opParam(query string) (string, error) {
	for query != "" {
		var pair string
		pair, query, _ = strings.Cut(query, "&")
		if pair == "" || strings.IndexByte(pair, ';') >= 0 {
			continue
		}
		key, value, _ := strings.Cut(pair, "=")
		if key != "op" {
			if strings.IndexAny(key, "%+") < 0 {
				continue
			}
			if k, err := url.QueryUnescape(key); err != nil || k != "op" {
				continue
			}
		}
		op, err := url.QueryUnescape(value)
		if err != nil {
			return "", fmt.Errorf("the op query parameter %q is not valid percent-encoding", value)
		}
		return op, nil
	}
	return "", nil
}

func isUpper(s string) bool {
	for i := 0; i < len(s); i++ {
		if 'a' <= s[i] && s[i] <= 'z' {
			return false
		}
	}
	return true
}
