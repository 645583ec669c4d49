package forward

import "testing"

func TestRouteNamespace(t *testing.T) {
	for path, want := range map[string]string{
		"/api/namespaces/ns1/tree/a.yaml": "ns1",
		"//api/namespaces/ns1":            "ns1",
		"/api/v2/namespaces/ns2/files/x":  "ns2",
		"/api/v2/namespaces":              "",
		"/api/version":                    "",
		"/api/namespaces/%zz/vars":        "",
	} {
		if got := routeNamespace([]byte(path)); got != want {
			t.Errorf("routeNamespace(%q) = %q, want %q", path, got, want)
		}
	}
}
