package sidecar

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/direktiv/direktiv-authz/internal/testutil"
	"github.com/direktiv/direktiv-authz/store/storetest"
)

func TestListPaging(t *testing.T) {
	s, _ := startRedisSidecar(t)
	const n = 250
	want := map[string]bool{}
	for i := 0; i < n; i++ {
		m := s.mintOK(t, "ns1", testAdminToken, fmt.Sprintf(`{"description":"t%d","policies":["workflowView"]}`, i))
		want[m["id"].(string)] = true
	}
	s.mintOK(t, "ns2", testAdminToken, `{"policies":["workflowView"]}`) // another namespace, never listed

	seen := map[string]bool{}
	after, pages := "", 0
	for {
		path := "/api/namespaces/ns1/auth/tokens?limit=100"
		if after != "" {
			path += "&after=" + after
		}
		r := s.do(t, "GET", path, testAdminToken, "")
		if r.status != http.StatusOK {
			t.Fatalf("list: %d %s", r.status, r.body)
		}
		var page struct {
			Tokens []map[string]any `json:"tokens"`
			Next   string           `json:"next"`
		}
		if err := json.Unmarshal(r.body, &page); err != nil {
			t.Fatal(err)
		}
		pages++
		if len(page.Tokens) > 100 {
			t.Fatalf("page of %d > limit", len(page.Tokens))
		}
		for _, tok := range page.Tokens {
			id := tok["id"].(string)
			if seen[id] {
				t.Fatalf("%s listed twice", id)
			}
			seen[id] = true
			if _, ok := tok["token"]; ok {
				t.Fatal("a list shows a secret")
			}
			if _, ok := tok["hash"]; ok {
				t.Fatal("a list shows a hash")
			}
			for _, f := range []string{"id", "description", "policies", "created", "expires", "expired", "parent"} {
				if _, ok := tok[f]; !ok {
					t.Fatalf("list entry lacks %q", f)
				}
			}
		}
		if page.Next == "" {
			break
		}
		after = page.Next
	}
	if pages != 3 || len(seen) != n {
		t.Fatalf("%d pages, %d tokens; want 3 pages, %d tokens", pages, len(seen), n)
	}
	for id := range want {
		if !seen[id] {
			t.Fatalf("%s never listed", id)
		}
	}
	for _, q := range []string{"limit=0", "limit=1001", "limit=x"} {
		if r := s.do(t, "GET", "/api/namespaces/ns1/auth/tokens?"+q, testAdminToken, ""); r.status != http.StatusBadRequest {
			t.Errorf("%s: %d", q, r.status)
		}
	}
}

func TestLifecyclePermissions(t *testing.T) {
	s, _ := startRedisSidecar(t)
	viewer := s.mintOK(t, "ns1", testAdminToken, `{"policies":["permissionsView"]}`)
	plain := s.mintOK(t, "ns1", testAdminToken, `{"policies":["workflowView"]}`)
	mgr := s.mintOK(t, "ns1", testAdminToken, `{"policies":["permissionsManage"]}`)
	other := s.mintOK(t, "ns2", testAdminToken, `{"policies":["permissionsManage"]}`)
	vt, pt, mt, ot := viewer["token"].(string), plain["token"].(string), mgr["token"].(string), other["token"].(string)
	target := plain["id"].(string)

	cases := []struct {
		name, method, path, token string
		status                    int
	}{
		{"list viewer", "GET", "/api/namespaces/ns1/auth/tokens", vt, 200},
		{"list manager inherits view", "GET", "/api/namespaces/ns1/auth/tokens", mt, 200},
		{"list plain", "GET", "/api/namespaces/ns1/auth/tokens", pt, 403},
		{"list other namespace", "GET", "/api/namespaces/ns1/auth/tokens", ot, 403},
		{"list no token", "GET", "/api/namespaces/ns1/auth/tokens", "", 401},
		{"get viewer", "GET", "/api/namespaces/ns1/auth/tokens/" + target, vt, 200},
		{"get plain", "GET", "/api/namespaces/ns1/auth/tokens/" + target, pt, 403},
		{"get in wrong namespace", "GET", "/api/namespaces/ns2/auth/tokens/" + target, ot, 404},
		{"get malformed id", "GET", "/api/namespaces/ns1/auth/tokens/not-an-id", vt, 400},
		{"get unknown id", "GET", "/api/namespaces/ns1/auth/tokens/0b1c7a44-8a3e-4c55-9d2f-6f0e5c1b2a3d", vt, 404},
		{"whoami plain", "GET", "/api/namespaces/ns1/auth/token", pt, 200},
		{"whoami admin", "GET", "/api/namespaces/ns1/auth/token", testAdminToken, 200},
		{"whoami other namespace", "GET", "/api/namespaces/ns1/auth/token", ot, 403},
		{"whoami bad token", "GET", "/api/namespaces/ns1/auth/token", "dkt_nope", 401},
		{"revoke viewer", "DELETE", "/api/namespaces/ns1/auth/tokens/" + target, vt, 403},
		{"revoke malformed", "DELETE", "/api/namespaces/ns1/auth/tokens/../x", mt, 400},
		{"revoke unknown", "DELETE", "/api/namespaces/ns1/auth/tokens/0b1c7a44-8a3e-4c55-9d2f-6f0e5c1b2a3d", mt, 404},
		{"revoke manager", "DELETE", "/api/namespaces/ns1/auth/tokens/" + target, mt, 200},
		{"revoke again", "DELETE", "/api/namespaces/ns1/auth/tokens/" + target, mt, 404},
		{"revoked token refused", "GET", "/api/namespaces/ns1/auth/token", pt, 401},
		{"list wrong method", "POST", "/api/namespaces/ns1/auth/tokens", mt, 405},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := s.do(t, tc.method, tc.path, tc.token, "")
			if r.status != tc.status {
				t.Fatalf("%s %s: %d, want %d: %s", tc.method, tc.path, r.status, tc.status, r.body)
			}
		})
	}
	who := s.do(t, "GET", "/api/namespaces/ns1/auth/token", vt, "").json(t)
	if who["id"] != viewer["id"] || strs(t, who["policies"])[0] != "permissionsView" {
		t.Errorf("whoami %v", who)
	}
}

func TestRevokeCascadeAcrossInstances(t *testing.T) {
	a, srv := startRedisSidecar(t)
	b := startSidecar(t, []string{"--redis-url", srv.URL()})

	root := a.mintOK(t, "ns1", testAdminToken, `{"policies":["permissionsManage","workflowView"]}`)
	child := a.mintOK(t, "ns1", root["token"].(string), `{"policies":["permissionsManage","workflowView"]}`)
	grandchild := a.mintOK(t, "ns1", child["token"].(string), `{"policies":["workflowView"]}`)
	sibling := a.mintOK(t, "ns1", testAdminToken, `{"policies":["workflowView"]}`)
	if grandchild["id"] == nil || child["id"] == nil {
		t.Fatal("mint failed")
	}
	// Instance b knows all of them (and caches them).
	for _, m := range []map[string]any{root, child, grandchild, sibling} {
		if r := b.do(t, "GET", "/api/namespaces/ns1/auth/token", m["token"].(string), ""); r.status != 200 {
			t.Fatalf("b whoami: %d %s", r.status, r.body)
		}
	}
	r := a.do(t, "DELETE", "/api/namespaces/ns1/auth/tokens/"+root["id"].(string), testAdminToken, "")
	if r.status != 200 {
		t.Fatalf("revoke: %d %s", r.status, r.body)
	}
	// A small tree is done before the answer, by this replica or by a
	// sweep of either: revoked lists what this call removed.
	if ans := r.json(t); ans["count"] != float64(3) || ans["complete"] != true || strs(t, ans["revoked"])[0] != root["id"] {
		t.Fatalf("revoke answered %s, want root, child and grandchild counted, complete", r.body)
	}
	start := time.Now()
	for _, m := range []map[string]any{root, child, grandchild} {
		for {
			r := b.do(t, "GET", "/api/namespaces/ns1/auth/token", m["token"].(string), "")
			if r.status == http.StatusUnauthorized {
				break
			}
			if time.Since(start) > time.Second {
				t.Fatalf("instance b still honours revoked %v after %v: %d", m["id"], time.Since(start), r.status)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	if r := b.do(t, "GET", "/api/namespaces/ns1/auth/token", sibling["token"].(string), ""); r.status != 200 {
		t.Errorf("the sibling was revoked too: %d", r.status)
	}
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	defer rdb.Close()
	keys, _ := rdb.Keys(context.Background(), "*tok:*").Result()
	if len(keys) != 1 || !strings.Contains(keys[0], sibling["id"].(string)) {
		t.Errorf("records left: %v, want only the sibling's", keys)
	}
}

func TestDryRunStoresNothing(t *testing.T) {
	s, srv := startRedisSidecar(t)
	mgr := s.mintOK(t, "ns1", testAdminToken, `{"policies":["permissionsManage","workflowView"],"expires":"P1D"}`)
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	defer rdb.Close()
	before, _ := rdb.DBSize(context.Background()).Result()
	r := s.do(t, "POST", "/api/namespaces/ns1/auth/token?dry_run=true", mgr["token"].(string), `{"policies":["workflowView","secretsView"],"expires":"P2Y"}`)
	if r.status != http.StatusOK {
		t.Fatalf("dry run: %d %s", r.status, r.body)
	}
	m := r.json(t)
	if _, ok := m["token"]; ok {
		t.Error("a dry run shows a secret")
	}
	if _, ok := m["id"]; ok {
		t.Error("a dry run has an id")
	}
	if m["dry_run"] != true || !equalStrings(strs(t, m["policies"]), []string{"workflowView"}) || !equalStrings(strs(t, m["dropped"]), []string{"secretsView"}) {
		t.Errorf("decision %v", m)
	}
	if m["expires"] != mgr["expires"] || len(strs(t, m["warnings"])) != 2 {
		t.Errorf("expires %v warnings %v: want clamped to the maximum and the parent", m["expires"], m["warnings"])
	}
	after, _ := rdb.DBSize(context.Background()).Result()
	if after != before {
		t.Errorf("a dry run changed Redis: %d keys before, %d after", before, after)
	}
	if r := s.do(t, "POST", "/api/namespaces/ns1/auth/token?dry_run=maybe", mgr["token"].(string), `{"policies":["workflowView"]}`); r.status != 400 {
		t.Errorf("dry_run=maybe: %d", r.status)
	}
}

// TestRevokeLargeTree revokes a token with a thousand descendants: the
// DELETE answers before their removal ends (or, if a sweep was quick, with
// the total), every descendant is refused from the answer on, and the
// removal's end is audited with the total and leaves only other records.
func TestRevokeLargeTree(t *testing.T) {
	s, srv := startRedisSidecar(t)
	ctx := context.Background()
	mgr := s.mintOK(t, "ns1", testAdminToken, `{"policies":["permissionsManage","workflowView"]}`)
	kid := s.mintOK(t, "ns1", mgr["token"].(string), `{"policies":["permissionsManage","workflowView"]}`)
	grandkid := s.mintOK(t, "ns1", kid["token"].(string), `{"policies":["workflowView"]}`)
	other := s.mintOK(t, "ns1", testAdminToken, `{"policies":["workflowView"]}`)
	const more = 400
	for range more {
		tok, _ := storetest.MustToken(t, "ns1", kid["id"].(string), time.Hour)
		if err := s.app.redis.Create(ctx, tok); err != nil {
			t.Fatal(err)
		}
	}
	r := s.do(t, "DELETE", "/api/namespaces/ns1/auth/tokens/"+mgr["id"].(string), testAdminToken, "")
	if r.status != 200 {
		t.Fatalf("revoke: %d %s", r.status, r.body)
	}
	total := float64(3 + more)
	ans := r.json(t)
	t.Logf("DELETE answered count %v, complete %v", ans["count"], ans["complete"])
	if ids := strs(t, ans["revoked"]); len(ids) == 0 || ids[0] != mgr["id"] {
		t.Fatalf("revoked %v, want the manager first", ids)
	}
	for _, m := range []map[string]any{mgr, kid, grandkid} {
		if r := s.do(t, "GET", "/api/namespaces/ns1/auth/token", m["token"].(string), ""); r.status != http.StatusUnauthorized {
			t.Errorf("a revoked token right after the DELETE: %d", r.status)
		}
	}
	if r := s.do(t, "GET", "/api/namespaces/ns1/auth/tokens?limit=1000", testAdminToken, ""); len(r.json(t)["tokens"].([]any)) != 1 {
		t.Errorf("list right after the DELETE: %s, want only the other token", r.body)
	}
	if ans["complete"] == true {
		if ans["count"] != total {
			t.Fatalf("complete revoke counted %v, want %v", ans["count"], total)
		}
	} else {
		if n, _ := ans["count"].(float64); n < 1 || n >= total {
			t.Fatalf("revoke answered %s: want a count so far", r.body)
		}
		var done map[string]any
		testutil.Within(t, 30*time.Second, "the audit line of the removal's end", func() bool {
			for _, l := range auditLines(s) {
				if m := decodeLine(t, l); m["action"] == "revoke_complete" {
					done = m
					return true
				}
			}
			return false
		})
		if done["target"] != mgr["id"] || done["count"] != total || done["complete"] != true || done["namespace"] != "ns1" {
			t.Fatalf("revoke_complete line %v, want the manager and %v tokens", done, total)
		}
	}
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	defer rdb.Close()
	keys, _ := rdb.Keys(ctx, "*tok:*").Result()
	if len(keys) != 1 || !strings.Contains(keys[0], other["id"].(string)) {
		t.Errorf("%d records left, want only the other token's", len(keys))
	}
}

func TestAuditTrail(t *testing.T) {
	s, _ := startRedisSidecar(t)
	mgr := s.mintOK(t, "ns1", testAdminToken, `{"policies":["permissionsManage"],"description":"m"}`)
	mt := mgr["token"].(string)
	s.do(t, "POST", "/api/namespaces/ns1/auth/token", mt, `{"policies":["permissionsView","secretsView"]}`)
	s.do(t, "POST", "/api/namespaces/ns2/auth/token", mt, `{"policies":["permissionsView"]}`)
	s.do(t, "POST", "/api/namespaces/ns1/auth/token?dry_run=true", mt, `{"policies":["permissionsView"]}`)
	s.do(t, "DELETE", "/api/namespaces/ns1/auth/tokens/"+mgr["id"].(string), testAdminToken, "")
	s.do(t, "POST", "/api/namespaces/ns1/auth/token", "", `{"policies":["permissionsView"]}`)

	var lines []map[string]any
	for _, l := range strings.Split(s.logs.String(), "\n") {
		var m map[string]any
		if json.Unmarshal([]byte(l), &m) == nil && m["log"] == "audit" {
			lines = append(lines, m)
		}
	}
	if strings.Contains(s.logs.String(), mt) {
		t.Fatal("a secret appears in the log")
	}
	type want struct {
		action, ns, caller, decision string
		status                       float64
		granted, dropped             []string
	}
	wants := []want{
		{"mint", "ns1", "admin", "allow", 201, []string{"permissionsManage"}, nil},
		{"mint", "ns1", mgr["id"].(string), "allow", 201, []string{"permissionsView"}, []string{"secretsView"}},
		{"mint", "ns2", mgr["id"].(string), "deny", 403, nil, nil},
		{"dry_run", "ns1", mgr["id"].(string), "allow", 200, []string{"permissionsView"}, nil},
		{"revoke", "ns1", "admin", "allow", 200, nil, nil},
		{"mint", "ns1", "", "deny", 401, nil, nil},
	}
	if len(lines) != len(wants) {
		t.Fatalf("%d audit lines, want %d:\n%s", len(lines), len(wants), s.logs.String())
	}
	rev := s.app.engine.Revision()
	for i, w := range wants {
		l := lines[i]
		if l["action"] != w.action || l["namespace"] != w.ns || l["caller"] != w.caller || l["decision"] != w.decision || l["status"] != w.status {
			t.Errorf("line %d: %v, want %+v", i, l, w)
		}
		if l["revision"] != rev || l["time"] == nil || !strings.HasPrefix(l["client"].(string), "127.0.0.1:") {
			t.Errorf("line %d: revision/time/client %v %v %v", i, l["revision"], l["time"], l["client"])
		}
		if w.granted != nil && !equalStrings(strs(t, l["granted"]), w.granted) {
			t.Errorf("line %d granted %v, want %v", i, l["granted"], w.granted)
		}
		if w.dropped != nil && !equalStrings(strs(t, l["dropped"]), w.dropped) {
			t.Errorf("line %d dropped %v, want %v", i, l["dropped"], w.dropped)
		}
		if w.decision == "deny" && l["reason"] == "" {
			t.Errorf("line %d: a denial without a reason", i)
		}
	}
	// The manager and the token it minted.
	if got := strs(t, lines[4]["revoked"]); len(got) != 2 || got[0] != mgr["id"] || lines[4]["target"] != mgr["id"] {
		t.Errorf("revoke line revoked %v target %v", got, lines[4]["target"])
	}
}
