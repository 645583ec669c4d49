package sidecar

import (
	"net/http"
	"strings"
	"testing"

	"github.com/direktiv/direktiv-authz/internal/testutil"
)

// startUpstream starts the stand-in for Direktiv (testutil.Upstream) with
// the Direktiv v2 API the sidecar reads itself (direktivV2).
func startUpstream(tb testing.TB, opts ...testutil.UpstreamOption) *testutil.Upstream {
	tb.Helper()
	return testutil.StartUpstream(tb, append([]testutil.UpstreamOption{testutil.UpstreamAnswer(direktivV2)}, opts...)...)
}

// The stand-in's Direktiv v0.10.0 world: what its v2 API answers, in the
// shapes recorded from a running v0.10.0 (../shared/direktiv-v0.10.0/):
// {"data": ...} on success, {"error": {"code", "message"}} on failure, and,
// as there, variables looked up by id alone, whatever the path's namespace.
var (
	testNamespaces = []string{"ns1", "ns2"}
	// variables by id: namespace, type and reference as Direktiv answers them.
	testVariables = map[string]struct{ ns, typ, ref string }{
		varNS1:     {"ns1", "namespace-variable", "ns1"},
		varNS2:     {"ns2", "namespace-variable", "ns2"},
		varWfNS2:   {"ns2", "workflow-variable", "/wf.yaml"},
		varInstNS2: {"ns2", "instance-variable", instNS2},
		varInstNS1: {"ns1", "instance-variable", instNS1},
	}
	testInstances = map[string]string{instNS1: "ns1", instNS2: "ns2"}
	testEvents    = map[string]string{"ev-ns1": "ns1", "ev-ns2": "ns2"}
)

const (
	varNS1     = "11111111-1111-4111-8111-111111111111"
	varNS2     = "22222222-2222-4222-8222-222222222222"
	varWfNS2   = "33333333-3333-4333-8333-333333333333"
	varInstNS2 = "44444444-4444-4444-8444-444444444444"
	varInstNS1 = "66666666-6666-4666-8666-666666666666"
	instNS1    = "77777777-7777-4777-8777-777777777777"
	instNS2    = "55555555-5555-4555-8555-555555555555"
)

// direktivV2 answers the Direktiv v2 routes the sidecar reads itself (the
// status, the namespace list, the objects it checks the namespace of); it
// reports false for every other request.
func direktivV2(w http.ResponseWriter, r *http.Request) bool {
	segs := strings.Split(strings.Trim(r.URL.Path, "/"), "/")
	if len(segs) < 3 || segs[0] != "api" || segs[1] != "v2" || r.Method != http.MethodGet {
		return false
	}
	data := func(v any) { testutil.WriteJSON(w, http.StatusOK, map[string]any{"data": v}) }
	fail := func(status int, code, message string) {
		testutil.WriteJSON(w, status, map[string]any{"error": map[string]any{"code": code, "message": message}})
	}
	variable := func(id string) map[string]any {
		v := testVariables[id]
		return map[string]any{"id": id, "type": v.typ, "reference": v.ref, "name": "v", "size": 5, "mimeType": "text/plain",
			"createdAt": "2026-12-06T01:16:52.671184Z", "updatedAt": "2026-12-06T01:16:52.671184Z"}
	}
	switch {
	case len(segs) == 3 && segs[2] == "status":
		data(map[string]any{"version": "dev2", "isEnterprise": false, "requiresAuth": false})
	case len(segs) == 3 && segs[2] == "namespaces":
		list := []any{}
		for _, ns := range testNamespaces {
			list = append(list, map[string]any{"name": ns, "createdAt": "2026-12-06T01:16:52.633823Z", "updatedAt": "2026-12-06T01:16:52.633823Z", "mirror": nil, "isSystemNamespace": false})
		}
		data(list)
	case len(segs) == 6 && segs[4] == "variables":
		if _, ok := testVariables[segs[5]]; !ok {
			fail(http.StatusNotFound, "resource_not_found", "requested resource is not found")
			return true
		}
		data(variable(segs[5]))
	case len(segs) == 5 && segs[4] == "variables" && r.URL.Query().Has("workflowPath"):
		list := []any{}
		for id, v := range testVariables {
			if v.ns == segs[3] && v.typ == "workflow-variable" && v.ref == r.URL.Query().Get("workflowPath") {
				list = append(list, variable(id))
			}
		}
		data(list)
	case len(segs) == 6 && segs[4] == "instances":
		if testInstances[segs[5]] != segs[3] {
			fail(http.StatusNotFound, "resource_not_found", "requested resource is not found")
			return true
		}
		data(map[string]any{"id": segs[5], "status": "complete"})
	case len(segs) == 7 && segs[4] == "events" && (segs[5] == "history" || segs[5] == "listeners"):
		ns, ok := testEvents[segs[6]]
		if !ok {
			fail(http.StatusInternalServerError, "internal", "internal server error") // as Direktiv answers an unknown event
			return true
		}
		data(map[string]any{"id": segs[6], "namespace": ns})
	default:
		return false
	}
	return true
}
