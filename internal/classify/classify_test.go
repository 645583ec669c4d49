package classify

import (
	"strings"
	"testing"

	"github.com/direktiv/direktiv-authz/internal/apierror"
)

func TestRouteFamily(t *testing.T) {
	for _, tc := range []struct{ method, path, want string }{
		{"POST", "/api/namespaces/ns1/auth/token", "mint"},
		{"POST", "//api/namespaces/ns1/auth/token", "mint"},
		{"GET", "/api/namespaces/ns1/auth/token", "tokens"},
		{"POST", "/api/namespaces/ns1/auth/token/x", "tokens"},
		{"DELETE", "/api/namespaces/ns1/auth/tokens/abc", "tokens"},
		{"GET", "/api/namespaces", "v1/namespaces"},
		{"PUT", "/api/namespaces/ns1", "v1/namespaces"},
		{"GET", "/api/namespaces/ns1/tree/a/b", "v1/tree"},
		{"GET", "/api/namespaces/ns1/instances", "v1/instances"},
		{"GET", "/api/namespaces/ns1/eventfilter/x", "v1/eventfilter"},
		{"GET", "/api/namespaces/ns1/unknown", "v1/other"},
		{"GET", "/api/functions/x", "v1/functions"},
		{"GET", "/api/version", "v1/version"},
		{"POST", "/api/jq", "v1/jq"},
		{"GET", "/api/v2/status", "v2/status"},
		{"GET", "/api/v2/namespaces", "v2/namespaces"},
		{"GET", "/api/v2/namespaces/ns1", "v2/namespaces"},
		{"GET", "/api/v2/namespaces/ns1/files/a.yaml", "v2/files"},
		{"GET", "/api/v2/namespaces/ns1/notifications", "v2/notifications"},
		{"GET", "/api/v2/namespaces/ns1/nope", "v2/other"},
		{"GET", "/api/v2", "v2/other"},
		{"GET", "/", "other"},
		{"GET", "", "other"},
		{"GET", "/metrics", "other"},
		{"GET", "/apis/namespaces", "other"},
	} {
		if got := familyNames[routeFamily([]byte(tc.method), []byte(tc.path))]; got != tc.want {
			t.Errorf("%s %s: %s, want %s", tc.method, tc.path, got, tc.want)
		}
	}
	path, method := []byte("/api/v2/namespaces/ns1/files/a/b/c"), []byte("GET")
	if n := testing.AllocsPerRun(100, func() { routeFamily(method, path) }); n != 0 {
		t.Errorf("routeFamily allocates %v times", n)
	}
}

// TestReadRefusesWhatTheRulesAndDirektivWouldReadDifferently checks each
// refusal of Read (400, with nothing decided) and what it reads of the
// requests it takes.
func TestReadRefusesWhatTheRulesAndDirektivWouldReadDifferently(t *testing.T) {
	for _, tc := range []struct {
		method, target string
		mention        string // "": accepted
		own            bool
		ns, family     string
	}{
		{"GET", "/api/v2/namespaces/ns1/files/a.yaml?x=1", "", false, "", "v2/files"},
		{"GET", "/api/v2/namespaces/ns1/files/", "", false, "", "v2/files"},
		{"POST", "/api/namespaces/ns1/auth/token", "", true, "ns1", "mint"},
		{"POST", "//api/namespaces/ns1/auth/token", "", true, "ns1", "mint"},
		{"GET", "/api/namespaces/ns1/auth/tokens", "", true, "ns1", "tokens"},
		{"GET", "/api/v2/namespaces/a%20b/files", "", false, "", "v2/files"},
		{"get", "/api/v2/namespaces", "not upper-case", false, "", "v2/namespaces"},
		{"", "/api/v2/namespaces", "no method", false, "", "v2/namespaces"},
		{"GET", "http://x/api/v2/namespaces", "not a path", false, "", "other"},
		{"OPTIONS", "*", "not a path", false, "", "other"},
		{"GET", "/api/v2/namespaces#x", "'#'", false, "", "v2/other"},
		{"GET", "//api/v2/namespaces", "empty segment", false, "", "v2/namespaces"},
		{"GET", "/api/v2/namespaces/ns1//files", "empty segment", false, "", "v2/files"},
		{"GET", "/api/v2/namespaces/ns1/fil%65s", "encodes", false, "", "v2/other"},
		{"GET", "/api/v2/namespaces/ns1/files/%2e%2e/x", "", false, "", ""},
		{"POST", "/api/namespaces/-bad/auth/token", "not a valid namespace", false, "", "mint"},
	} {
		r, err := Read([]byte(tc.method), []byte(tc.target))
		switch {
		case tc.mention == "" && tc.family == "":
			// Only that it is refused: SplitPath's message is its own.
			if err == nil {
				t.Errorf("%s %s: accepted, want a refusal", tc.method, tc.target)
			}
			continue
		case tc.mention == "" && err != nil:
			t.Errorf("%s %s: %v", tc.method, tc.target, err)
			continue
		case tc.mention != "":
			ae, ok := err.(*apierror.Error)
			if !ok || ae.Status() != 400 || !strings.Contains(ae.Message, tc.mention) {
				t.Errorf("%s %s: error %v, want a 400 mentioning %q", tc.method, tc.target, err, tc.mention)
			}
		default:
			if r.Own != tc.own || r.NS != tc.ns {
				t.Errorf("%s %s: own %v ns %q, want %v %q", tc.method, tc.target, r.Own, r.NS, tc.own, tc.ns)
			}
			if path, query, _ := strings.Cut(tc.target, "?"); string(r.Path) != path || string(r.Query) != query || r.Method != tc.method {
				t.Errorf("%s %s: read %s %q %q", tc.method, tc.target, r.Method, r.Path, r.Query)
			}
		}
		if r.Family.String() != tc.family {
			t.Errorf("%s %s: family %s, want %s", tc.method, tc.target, r.Family, tc.family)
		}
	}
}
