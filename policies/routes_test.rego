package direktiv.routes_test

import data.direktiv.catalog
import data.direktiv.routes

admin := {"admin": true}

# token is a minted token of ns1 holding policies, as the engine describes
# it: with the policies those inherit.
token(policies) := {
	"admin": false,
	"namespace": "ns1",
	"policies": policies,
	"effective": {name | some p in policies; some name in catalog.closure[p]},
}

# everything is a token of ns1 holding every catalog policy.
everything := token(catalog.names)

anonymous := {"admin": false, "namespace": "", "policies": set(), "effective": set()}

# decide asks for the route decision of a v1 route as the engine does:
# with the tables computed once, not once per decision.
decide(caller, method, path, op) := d if {
	lookup := routes.lookup
	d := routes.decision with input as {
		"caller": caller,
		"method": method,
		"segments": [s | some s in split(path, "/"); s != ""],
		"op": op,
		"query": {},
	}
		with routes.lookup as lookup
}

# ask is decide for any route, with a query: {parameter: [values]}. Each
# test that asks computes the v2 tables once (a few milliseconds), so the
# v2 cases share few tests.
ask(caller, method, path, op, query) := d if {
	lookup := routes.lookup
	v2 := routes.v2
	d := routes.decision with input as {
		"caller": caller,
		"method": method,
		"segments": [s | some s in split(path, "/"); s != ""],
		"op": op,
		"query": query,
	}
		with routes.lookup as lookup
		with routes.v2 as v2
}

# request asks for method path?query as the engine would: the query read
# as Go's net/url reads it.
request(caller, method, url) := ask(caller, method, path, "", query) if {
	[path, raw] := split(url, "?")
	query := urlquery.decode_object(raw)
} else := ask(caller, method, url, "", {})

# Routes that need one catalog permission, keyed by a note.
permission_routes := {
	# v1 tree, reading
	"v1 tree root": ["GET", "/api/namespaces/ns1/tree", "", "explorerView"],
	"v1 tree directory": ["GET", "/api/namespaces/ns1/tree/dir/sub", "", "explorerView"],
	"v1 tree HEAD": ["HEAD", "/api/namespaces/ns1/tree/wf.yaml", "", "explorerView"],
	"v1 tree refs": ["GET", "/api/namespaces/ns1/tree/wf.yaml", "refs", "workflowView"],
	"v1 tree revisions": ["GET", "/api/namespaces/ns1/tree/wf.yaml", "revisions", "workflowView"],
	"v1 tree tags": ["GET", "/api/namespaces/ns1/tree/wf.yaml", "tags", "workflowView"],
	"v1 tree router": ["GET", "/api/namespaces/ns1/tree/wf.yaml", "router", "workflowView"],
	"v1 tree logs": ["GET", "/api/namespaces/ns1/tree/wf.yaml", "logs", "workflowView"],
	"v1 tree metrics": ["GET", "/api/namespaces/ns1/tree/wf.yaml", "metrics-invoked", "workflowView"],
	"v1 tree sankey": ["GET", "/api/namespaces/ns1/tree/wf.yaml", "metrics-sankey", "workflowView"],
	"v1 tree validate-ref": ["POST", "/api/namespaces/ns1/tree/wf.yaml", "validate-ref", "workflowView"],
	# v1 tree, executing
	"v1 tree execute": ["POST", "/api/namespaces/ns1/tree/wf.yaml", "execute", "workflowExecute"],
	"v1 tree wait GET": ["GET", "/api/namespaces/ns1/tree/wf.yaml", "wait", "workflowExecute"],
	"v1 tree wait POST": ["POST", "/api/namespaces/ns1/tree/wf.yaml", "wait", "workflowExecute"],
	# v1 tree, writing
	"v1 tree create-workflow": ["PUT", "/api/namespaces/ns1/tree/wf.yaml", "create-workflow", "workflowManage"],
	"v1 tree update-workflow": ["POST", "/api/namespaces/ns1/tree/wf.yaml", "update-workflow", "workflowManage"],
	"v1 tree save-workflow": ["POST", "/api/namespaces/ns1/tree/wf.yaml", "save-workflow", "workflowManage"],
	"v1 tree discard-workflow": ["POST", "/api/namespaces/ns1/tree/wf.yaml", "discard-workflow", "workflowManage"],
	"v1 tree tag": ["POST", "/api/namespaces/ns1/tree/wf.yaml", "tag", "workflowManage"],
	"v1 tree untag": ["POST", "/api/namespaces/ns1/tree/wf.yaml", "untag", "workflowManage"],
	"v1 tree toggle": ["POST", "/api/namespaces/ns1/tree/wf.yaml", "toggle", "workflowManage"],
	"v1 tree edit-router": ["POST", "/api/namespaces/ns1/tree/wf.yaml", "edit-router", "workflowManage"],
	"v1 tree event logging": ["POST", "/api/namespaces/ns1/tree/wf.yaml", "set-workflow-event-logging", "workflowManage"],
	"v1 tree create-directory": ["PUT", "/api/namespaces/ns1/tree/dir", "create-directory", "explorerManage"],
	"v1 tree delete-node": ["DELETE", "/api/namespaces/ns1/tree/dir", "delete-node", "explorerManage"],
	"v1 tree rename-node": ["POST", "/api/namespaces/ns1/tree/dir", "rename-node", "explorerManage"],
	"v1 tree vars": ["GET", "/api/namespaces/ns1/tree/wf.yaml", "vars", "variablesView"],
	"v1 tree set-var": ["PUT", "/api/namespaces/ns1/tree/wf.yaml", "set-var", "variablesManage"],
	# v1 namespaced families
	"v1 instances list": ["GET", "/api/namespaces/ns1/instances", "", "instancesView"],
	"v1 instance": ["GET", "/api/namespaces/ns1/instances/0b8c/output", "", "instancesView"],
	"v1 instance logs": ["GET", "/api/namespaces/ns1/instances/0b8c/logs", "", "instancesView"],
	"v1 instance cancel": ["POST", "/api/namespaces/ns1/instances/0b8c/cancel", "", "instancesManage"],
	"v1 instance vars": ["GET", "/api/namespaces/ns1/instances/0b8c/vars", "", "variablesView"],
	"v1 instance set var": ["PUT", "/api/namespaces/ns1/instances/0b8c/vars/x", "", "variablesManage"],
	"v1 vars list": ["GET", "/api/namespaces/ns1/vars", "", "variablesView"],
	"v1 vars set": ["PUT", "/api/namespaces/ns1/vars/x", "", "variablesManage"],
	"v1 vars delete": ["DELETE", "/api/namespaces/ns1/vars/x", "", "variablesManage"],
	"v1 secrets list": ["GET", "/api/namespaces/ns1/secrets", "", "secretsView"],
	"v1 secrets set": ["PUT", "/api/namespaces/ns1/secrets/s", "", "secretsManage"],
	"v1 secrets delete": ["DELETE", "/api/namespaces/ns1/secrets/s", "", "secretsManage"],
	"v1 registries list": ["GET", "/api/namespaces/ns1/registries", "", "registriesView"],
	"v1 registries add": ["POST", "/api/namespaces/ns1/registries", "", "registriesManage"],
	"v1 functions list": ["GET", "/api/namespaces/ns1/functions", "", "servicesView"],
	"v1 functions create": ["POST", "/api/namespaces/ns1/functions", "", "servicesManage"],
	"v1 services list": ["GET", "/api/namespaces/ns1/services", "", "servicesView"],
	"v1 services delete": ["DELETE", "/api/namespaces/ns1/services/svc", "", "servicesManage"],
	"v1 events list": ["GET", "/api/namespaces/ns1/events", "", "eventsView"],
	"v1 events replay": ["POST", "/api/namespaces/ns1/events/e1/replay", "", "eventsManage"],
	"v1 eventfilter read": ["GET", "/api/namespaces/ns1/eventfilter/f", "", "eventsView"],
	"v1 eventfilter write": ["POST", "/api/namespaces/ns1/eventfilter/f", "", "eventsManage"],
	"v1 broadcast": ["POST", "/api/namespaces/ns1/broadcast", "", "eventsSend"],
	"v1 logs": ["GET", "/api/namespaces/ns1/logs", "", "instancesView"],
	"v1 metrics": ["GET", "/api/namespaces/ns1/metrics/invoked", "", "instancesView"],
	"v1 config read": ["GET", "/api/namespaces/ns1/config", "", "nsconfigView"],
	"v1 config write": ["PATCH", "/api/namespaces/ns1/config", "", "nsconfigManage"],
	"v1 lint": ["GET", "/api/namespaces/ns1/lint", "", "workflowView"],
	"v1 opa read": ["GET", "/api/namespaces/ns1/opa", "", "opaView"],
	"v1 opa write": ["PUT", "/api/namespaces/ns1/opa", "", "opaManage"],
	"v1 delete namespace": ["DELETE", "/api/namespaces/ns1", "", "deleteNamespace"],
	"v1 token list": ["GET", "/api/namespaces/ns1/auth/tokens", "", "permissionsView"],
	"v1 token read": ["GET", "/api/namespaces/ns1/auth/tokens/t1", "", "permissionsView"],
	"v1 token revoke": ["DELETE", "/api/namespaces/ns1/auth/tokens/t1", "", "permissionsManage"],
}

# Routes any valid token may call, keyed by a note: [method, path, namespace].
any_token_routes := {
	"version": ["GET", "/api/version", ""],
	"jq": ["POST", "/api/jq", ""],
	"v1 namespace": ["GET", "/api/namespaces/ns1", "ns1"],
	"who am i": ["GET", "/api/namespaces/ns1/auth/token", "ns1"],
}

# Routes only the admin token may call: [method, path, namespace].
admin_only_routes := {
	"v1 create namespace": ["PUT", "/api/namespaces/ns1", "ns1"],
	"v1 list namespaces": ["GET", "/api/namespaces", ""],
	"v1 server logs": ["GET", "/api/logs", ""],
	"global services": ["GET", "/api/functions", ""],
	"global service": ["POST", "/api/functions/svc/revisions", ""],
}

# Requests no rule covers: [method, path, op].
uncovered_routes := {
	"unknown op": ["GET", "/api/namespaces/ns1/tree/wf.yaml", "bogus"],
	"write without op": ["POST", "/api/namespaces/ns1/tree/wf.yaml", ""],
	"read op written": ["POST", "/api/namespaces/ns1/tree/wf.yaml", "refs"],
	"write op read": ["GET", "/api/namespaces/ns1/tree/wf.yaml", "create-workflow"],
	"unknown method": ["OPTIONS", "/api/namespaces/ns1/tree/wf.yaml", "execute"],
	"broadcast read": ["GET", "/api/namespaces/ns1/broadcast", ""],
	"v1 logs write": ["POST", "/api/namespaces/ns1/logs", ""],
	"unknown family": ["GET", "/api/namespaces/ns1/nothing", ""],
	"mint is not a route": ["POST", "/api/namespaces/ns1/auth/token", ""],
	"auth alone": ["GET", "/api/namespaces/ns1/auth", ""],
	"v2 unknown family": ["GET", "/api/v2/namespaces/ns1/nothing", ""],
	"v2 unknown method": ["PUT", "/api/v2/namespaces/ns1/variables", ""],
	"v2 broadcast read": ["GET", "/api/v2/namespaces/ns1/events/broadcast", ""],
	"v2 replay, v1 style": ["POST", "/api/v2/namespaces/ns1/events/history/e1/replay", ""],
	"v2 secrets put": ["PUT", "/api/v2/namespaces/ns1/secrets/s", ""],
	"v2 server logs": ["GET", "/api/v2/logs", ""],
	"v2 alone": ["GET", "/api/v2", ""],
	"v2 HEAD": ["HEAD", "/api/v2/namespaces/ns1/instances", ""],
	"v2 services item": ["GET", "/api/v2/namespaces/ns1/services/svc", ""],
	"v2 metrics": ["GET", "/api/v2/namespaces/ns1/metrics", ""],
	"v2 files, other case": ["GET", "/api/v2/namespaces/ns1/Files/x", ""],
	"api alone": ["GET", "/api", ""],
	"unknown api": ["GET", "/api/nothing", ""],
	"unknown v2 api": ["GET", "/api/v2/nothing", ""],
	"version subtree": ["GET", "/api/version/x", ""],
}

# Each test below checks every case of a table and collects the cases that
# fail, as {note: decision}; the test fails listing them.

test_route_allowed_with_its_permission if {
	no_failures({note: d |
		some note, [method, path, op, permission] in permission_routes
		d := decide(token({permission}), method, path, op)
		d != {"allow": true, "permission": permission, "namespace": "ns1"}
	})
}

test_route_allowed_through_inheritance if {
	no_failures({[note, holder]: d |
		some note, [method, path, op, permission] in permission_routes
		some holder, grants in catalog.closure
		holder != permission
		grants[permission]
		d := decide(token({holder}), method, path, op)
		d.allow != true
	})
}

test_route_denied_without_its_permission if {
	no_failures({note: d |
		some note, [method, path, op, permission] in permission_routes
		others := {name | some name in catalog.names; not catalog.closure[name][permission]}
		d := decide(token(others), method, path, op)
		not denied_for_lack_of(d, permission)
	})
}

denied_for_lack_of(d, permission) if {
	d.allow == false
	d.code == "forbidden"
	d.permission == permission
	d.namespace == "ns1"
	contains(d.reason, sprintf("needs the %s policy", [permission]))
}

test_route_denied_in_another_namespace if {
	caller := object.union(everything, {"namespace": "ns2"})
	no_failures({note: d |
		some note, [method, path, op, _] in permission_routes
		d := decide(caller, method, path, op)
		not d.reason == `this token belongs to namespace "ns2" and cannot be used in namespace "ns1"`
	})
}

test_route_allowed_for_admin if {
	no_failures({note: d |
		some note, [method, path, op, permission] in permission_routes
		d := decide(admin, method, path, op)
		d != {"allow": true, "permission": permission, "namespace": "ns1"}
	})
}

test_any_token_route_allowed if {
	no_failures({note: d |
		some note, [method, path, namespace] in any_token_routes
		d := decide(token(set()), method, path, "")
		d != {"allow": true, "permission": "", "namespace": namespace}
	})
}

test_any_token_route_denied_in_another_namespace if {
	caller := object.union(token(set()), {"namespace": "ns2"})
	no_failures({note: d |
		some note, [method, path, namespace] in any_token_routes
		namespace != ""
		d := decide(caller, method, path, "")
		not d.code == "forbidden"
	})
}

test_admin_only_route_denied_to_tokens if {
	no_failures({note: d |
		some note, [method, path, namespace] in admin_only_routes
		d := decide(everything, method, path, "")
		d != {
			"allow": false,
			"code": "admin_only",
			"reason": sprintf("%s %s needs the admin token", [method, path]),
			"permission": "",
			"namespace": namespace,
		}
	})
}

test_admin_only_route_allowed_for_admin if {
	no_failures({note: d |
		some note, [method, path, namespace] in admin_only_routes
		d := decide(admin, method, path, "")
		d != {"allow": true, "permission": "", "namespace": namespace}
	})
}

# Requests no rule covers are denied to tokens, unauthenticated without a
# credential, allowed for the admin.
test_uncovered_route_denied if {
	no_failures({[note, who]: d |
		some note, [method, path, op] in uncovered_routes
		request := sprintf("%s %s%s", [method, path, {true: "", false: sprintf("?op=%s", [op])}[op == ""]])
		some who, [caller, want] in {
			"token": [everything, {
				"allow": false,
				"code": "forbidden",
				"reason": sprintf("no route rule covers %s", [request]),
				"permission": "",
				"namespace": "",
			}],
			"anonymous": [anonymous, {
				"allow": false,
				"code": "unauthenticated",
				"reason": sprintf("%s needs a credential: send the admin token or a token minted by this sidecar in Direktiv-Api-Key, Direktiv-Token or Authorization: Bearer", [request]),
				"permission": "",
				"namespace": "",
			}],
			"admin": [admin, {"allow": true, "permission": "", "namespace": ""}],
		}
		d := ask(caller, method, path, op, {})
		d != want
	})
}

test_missing_permission_reason_lists_holdings if {
	d := decide(token({"secretsManage"}), "GET", "/api/namespaces/ns1/vars", "")
	d.reason == "GET /api/namespaces/ns1/vars needs the variablesView policy, which this token does not hold (it holds [secretsManage, secretsView])"
}

test_token_without_policies_holds_none if {
	d := decide(token(set()), "GET", "/api/namespaces/ns1/vars", "")
	endswith(d.reason, "(it holds none)")
}

# Every permission a v1 table names is a catalog policy, any_token or admin_only.
test_tables_name_only_catalog_policies if {
	tables := {
		"api_v1": routes.api_v1,
		"api_v1_subtrees": routes.api_v1_subtrees,
		"namespaced_v1": routes.namespaced_v1,
		"tree_ops": routes.tree_ops,
	}
	no_failures({[name, entry, key]: permission |
		some name, table in tables
		some entry, e in table
		some key, permission in e
		not valid(key, permission)
	})
}

test_namespace_tables_name_only_catalog_policies if {
	no_failures({[key, permission] |
		some key, permission in routes.namespace_v1
		not valid(key, permission)
	})
}

# The decision's first branch allows whatever input.caller.effective holds;
# the markers for "no policy", "admin only" and "public" must never be
# policies.
test_markers_are_not_policies if {
	not catalog.names[routes.any_token]
	not catalog.names[routes.admin_only]
	not catalog.names[routes.public]
}

valid(key, permission) if {
	valid_key(key)
	valid_permission(permission)
}

valid_key(key) if routes.method_class[key]

valid_key(key) if key in {"read", "write", "any"}

valid_permission(p) if p in catalog.names

valid_permission(p) if p in {routes.any_token, routes.admin_only}

test_zz_admin_failures if {
	failures := {note |
		some note, [method, path, op, permission] in permission_routes
		decide(admin, method, path, op) != {"allow": true, "permission": permission, "namespace": "ns1"}
	}
	failures == set()
}

# no_failures holds when failures is empty, and prints them otherwise.
no_failures(failures) if count(failures) == 0

no_failures(failures) := false if {
	count(failures) > 0
	print("failing cases:", failures)
}

# v2_cases hold one case per row and method of routes.v2_routes ("*" is
# asked as PUT): [pattern, method, request, permission, extras], where
# permission is a catalog name or a marker, and extras the keys a token of
# ns1 holding it gets besides allow, permission and namespace.
v2_cases := [
	["api/v2/status", "GET", "/api/v2/status", routes.public, {"public": true, "transform": "status"}],
	["api/v2/jx", "POST", "/api/v2/jx", routes.any_token, {}],
	["api/v2/namespaces", "GET", "/api/v2/namespaces", routes.any_token, {"transform": "namespace_list"}],
	["api/v2/namespaces", "POST", "/api/v2/namespaces", routes.admin_only, {}],
	["api/v2/namespaces/{ns}", "GET", "/api/v2/namespaces/ns1", routes.any_token, {}],
	["api/v2/namespaces/{ns}", "PATCH", "/api/v2/namespaces/ns1", "nsconfigManage", {}],
	["api/v2/namespaces/{ns}", "DELETE", "/api/v2/namespaces/ns1", "deleteNamespace", {}],
	["api/v2/namespaces/{ns}/instances", "GET", "/api/v2/namespaces/ns1/instances?limit=10", "instancesView", {}],
	["api/v2/namespaces/{ns}/instances", "POST", "/api/v2/namespaces/ns1/instances?path=/wf.yaml&wait=true", "workflowExecute", {}],
	["api/v2/namespaces/{ns}/instances/{id}", "GET", "/api/v2/namespaces/ns1/instances/i1", "instancesView", {}],
	["api/v2/namespaces/{ns}/instances/{id}", "PATCH", "/api/v2/namespaces/ns1/instances/i1", "instancesManage", {}],
	["api/v2/namespaces/{ns}/instances/{id}/subscribe", "GET", "/api/v2/namespaces/ns1/instances/i1/subscribe", "instancesView", {}],
	["api/v2/namespaces/{ns}/instances/{id}/input", "GET", "/api/v2/namespaces/ns1/instances/i1/input", "instancesView", {}],
	["api/v2/namespaces/{ns}/instances/{id}/output", "GET", "/api/v2/namespaces/ns1/instances/i1/output", "instancesView", {}],
	["api/v2/namespaces/{ns}/instances/{id}/metadata", "GET", "/api/v2/namespaces/ns1/instances/i1/metadata", "instancesView", {}],
	["api/v2/namespaces/{ns}/syncs", "GET", "/api/v2/namespaces/ns1/syncs", "nsconfigView", {}],
	["api/v2/namespaces/{ns}/syncs", "POST", "/api/v2/namespaces/ns1/syncs", "nsconfigManage", {}],
	["api/v2/namespaces/{ns}/secrets", "GET", "/api/v2/namespaces/ns1/secrets", "secretsView", {}],
	["api/v2/namespaces/{ns}/secrets", "POST", "/api/v2/namespaces/ns1/secrets", "secretsManage", {}],
	["api/v2/namespaces/{ns}/secrets/{name}", "GET", "/api/v2/namespaces/ns1/secrets/s", "secretsView", {}],
	["api/v2/namespaces/{ns}/secrets/{name}", "PATCH", "/api/v2/namespaces/ns1/secrets/s", "secretsManage", {}],
	["api/v2/namespaces/{ns}/secrets/{name}", "DELETE", "/api/v2/namespaces/ns1/secrets/s", "secretsManage", {}],
	[
		"api/v2/namespaces/{ns}/variables", "GET", sprintf("/api/v2/namespaces/ns1/variables?instanceId=%s", [uuid1]), "variablesView",
		{"lookups": [{"kind": "instance", "id": uuid1}]},
	],
	["api/v2/namespaces/{ns}/variables", "POST", "/api/v2/namespaces/ns1/variables", "variablesManage", {}],
	[
		"api/v2/namespaces/{ns}/variables", "DELETE", sprintf("/api/v2/namespaces/ns1/variables?ids=%s,%s", [uuid1, uuid2]), "variablesManage",
		{"lookups": [{"kind": "variable", "id": uuid1}, {"kind": "variable", "id": uuid2}]},
	],
	[
		"api/v2/namespaces/{ns}/variables/{id}", "GET", sprintf("/api/v2/namespaces/ns1/variables/%s", [uuid1]), "variablesView",
		{"lookups": [{"kind": "variable", "id": uuid1}]},
	],
	[
		"api/v2/namespaces/{ns}/variables/{id}", "PATCH", sprintf("/api/v2/namespaces/ns1/variables/%s", [uuid1]), "variablesManage",
		{"lookups": [{"kind": "variable", "id": uuid1}]},
	],
	[
		"api/v2/namespaces/{ns}/variables/{id}", "DELETE", sprintf("/api/v2/namespaces/ns1/variables/%s", [uuid1]), "variablesManage",
		{"lookups": [{"kind": "variable", "id": uuid1}]},
	],
	["api/v2/namespaces/{ns}/files/*", "GET", "/api/v2/namespaces/ns1/files/dir/wf.yaml", "explorerView", {}],
	["api/v2/namespaces/{ns}/files/*", "POST", "/api/v2/namespaces/ns1/files/dir", "explorerManage", {}],
	["api/v2/namespaces/{ns}/files/*", "PATCH", "/api/v2/namespaces/ns1/files/dir/wf.yaml", "explorerManage", {}],
	["api/v2/namespaces/{ns}/files/*", "DELETE", "/api/v2/namespaces/ns1/files", "explorerManage", {}],
	["api/v2/namespaces/{ns}/services", "GET", "/api/v2/namespaces/ns1/services", "servicesView", {}],
	["api/v2/namespaces/{ns}/services/{id}/pods", "GET", "/api/v2/namespaces/ns1/services/svc/pods", "servicesView", {}],
	["api/v2/namespaces/{ns}/services/{id}/pods/{pod}/logs", "GET", "/api/v2/namespaces/ns1/services/svc/pods/p1/logs", "servicesView", {}],
	["api/v2/namespaces/{ns}/services/{id}/actions/rebuild", "POST", "/api/v2/namespaces/ns1/services/svc/actions/rebuild", "servicesManage", {}],
	["api/v2/namespaces/{ns}/registries", "GET", "/api/v2/namespaces/ns1/registries", "registriesView", {}],
	["api/v2/namespaces/{ns}/registries", "POST", "/api/v2/namespaces/ns1/registries", "registriesManage", {}],
	["api/v2/namespaces/{ns}/registries/test", "POST", "/api/v2/namespaces/ns1/registries/test", "registriesManage", {}],
	["api/v2/namespaces/{ns}/registries/{id}", "DELETE", "/api/v2/namespaces/ns1/registries/r1", "registriesManage", {}],
	["api/v2/namespaces/{ns}/logs", "GET", sprintf("/api/v2/namespaces/ns1/logs?instance=%s&last=50", [uuid1]), "instancesView", {}],
	["api/v2/namespaces/{ns}/logs", "POST", sprintf("/api/v2/namespaces/ns1/logs?instance=%s", [uuid1]), "instancesManage", {}],
	["api/v2/namespaces/{ns}/logs/subscribe", "GET", "/api/v2/namespaces/ns1/logs/subscribe?after=2026-12-06T01:16:52.633Z", "instancesView", {}],
	["api/v2/namespaces/{ns}/notifications", "GET", "/api/v2/namespaces/ns1/notifications", routes.any_token, {}],
	["api/v2/namespaces/{ns}/metrics/instances", "GET", "/api/v2/namespaces/ns1/metrics/instances?workflowPath=/wf.yaml", "instancesView", {}],
	["api/v2/namespaces/{ns}/events/history", "GET", "/api/v2/namespaces/ns1/events/history", "eventsView", {}],
	["api/v2/namespaces/{ns}/events/history/subscribe", "GET", "/api/v2/namespaces/ns1/events/history/subscribe", "eventsView", {}],
	[
		"api/v2/namespaces/{ns}/events/history/{id}", "GET", "/api/v2/namespaces/ns1/events/history/e1", "eventsView",
		{"lookups": [{"kind": "event", "id": "e1"}]},
	],
	[
		"api/v2/namespaces/{ns}/events/history/replay/{id}", "POST", "/api/v2/namespaces/ns1/events/history/replay/e1", "eventsManage",
		{"lookups": [{"kind": "event", "id": "e1"}]},
	],
	["api/v2/namespaces/{ns}/events/listeners", "GET", "/api/v2/namespaces/ns1/events/listeners", "eventsView", {}],
	[
		"api/v2/namespaces/{ns}/events/listeners/{id}", "GET", sprintf("/api/v2/namespaces/ns1/events/listeners/%s", [uuid2]), "eventsView",
		{"lookups": [{"kind": "listener", "id": uuid2}]},
	],
	["api/v2/namespaces/{ns}/events/broadcast", "POST", "/api/v2/namespaces/ns1/events/broadcast", "eventsSend", {}],
	["api/v2/namespaces/{ns}/gateway/*", "*", "/api/v2/namespaces/ns1/gateway/my/endpoint", "workflowExecute", {}],
	["api/v2/namespaces/{ns}/gateway/*/consumers", "*", "/api/v2/namespaces/ns1/gateway/consumers", "secretsView", {}],
	["api/v2/namespaces/{ns}/gateway/*/routes", "*", "/api/v2/namespaces/ns1/gateway/routes?path=/x", "explorerView", {}],
	["api/v2/namespaces/{ns}/gateway/*/info", "*", "/api/v2/namespaces/ns1/gateway/a/info", "explorerView", {}],
	["ns", "*", "/ns", routes.public, {"public": true}],
	["ns/{ns}/*", "*", "/ns/ns1/my/endpoint", routes.public, {"public": true}],
	["ns/{ns}/*/consumers", "*", "/ns/ns1/consumers", "secretsView", {}],
	["ns/{ns}/*/routes", "*", "/ns/ns1/routes", "explorerView", {}],
	["ns/{ns}/*/info", "*", "/ns/ns1/x/info", "explorerView", {}],
]

uuid1 := "0b8c6c1d-5a8a-4a0e-b4d1-1f2d3c4b5a69"

uuid2 := "6F9619FF-8B86-D011-B42D-00C04FC964FF"

# case_method is the method a case asks with.
case_method("*") := "PUT"

case_method(m) := m if m != "*"

# case_namespace is the namespace a case's request names.
case_namespace(path) := "ns1" if {
	regex.match(`^/(api/v2/namespaces|ns)/ns1(/|$|\?)`, path)
} else := ""

# case_allowed is what a token holding a case's permission gets.
case_allowed([_, _, path, permission, extras]) := object.union(
	{"allow": true, "permission": object.get({routes.admin_only: "", routes.public: ""}, permission, permission), "namespace": case_namespace(path)},
	extras,
)

# case_caller is a token of ns1 holding exactly a case's permission (the
# admin token for admin_only).
case_caller(permission) := admin if {
	permission == routes.admin_only
} else := token(set()) if {
	permission in {routes.any_token, routes.public}
} else := token({permission})

# Each row and method of v2_routes has a case, and each case a row.
test_v2_every_row_has_a_case if {
	rows := {[pattern, method] | some pattern, spec in routes.v2_routes; some method, _ in spec; upper(method) == method}
	cases := {[pattern, method] | some [pattern, method, _, _, _] in v2_cases}
	no_failures(rows - cases)
	no_failures(cases - rows)
}

# Each case matches its own row, not a more or less specific one.
test_v2_case_matches_its_row if {
	v2 := routes.v2
	no_failures({[pattern, method, url]: got |
		some [pattern, method, url, _, _] in v2_cases
		path := split(url, "?")[0]
		got := object.get(max(routes._v2_candidates), 1, "none") with input as {
			"caller": admin,
			"method": case_method(method),
			"segments": [s | some s in split(path, "/"); s != ""],
			"op": "",
			"query": {},
		}
			with routes.v2 as v2
		got != pattern
	})
}

# Each case asked by the callers that matter: a token of ns1 holding the
# permission (or one that inherits it), one holding everything else, a
# token of another namespace, an anonymous caller and the admin. Failures
# are keyed by [caller, method, request].
test_v2_cases if {
	other := object.union(everything, {"namespace": "ns2"})
	held := {["holder", method, url]: d |
		some c in v2_cases
		[_, method, url, permission, _] := c
		d := request(case_caller(permission), case_method(method), url)
		d != case_allowed(c)
	}
	inheriting := {["inheriting", method, url, holder]: d |
		some [_, method, url, permission, _] in v2_cases
		some holder, grants in catalog.closure
		holder != permission
		grants[permission]
		d := request(token({holder}), case_method(method), url)
		d.allow != true
	}
	without := {["without", method, url]: d |
		some [_, method, url, permission, _] in v2_cases
		catalog.names[permission]
		others := {name | some name in catalog.names; not catalog.closure[name][permission]}
		d := request(token(others), case_method(method), url)
		not denied_for_lack_of(d, permission)
	}
	elsewhere := {["other namespace", method, url]: d |
		some [_, method, url, permission, _] in v2_cases
		case_namespace(url) == "ns1"
		permission != routes.public
		d := request(other, case_method(method), url)
		not d.reason == `this token belongs to namespace "ns2" and cannot be used in namespace "ns1"`
	}
	only_admin := {["admin only", method, url]: d |
		some [_, method, url, permission, _] in v2_cases
		permission == routes.admin_only
		d := request(everything, case_method(method), url)
		not d.code == "admin_only"
	}
	nobody := {["anonymous", method, url]: d |
		some c in v2_cases
		[_, method, url, permission, _] := c
		d := request(anonymous, case_method(method), url)
		not anonymous_answered(d, permission, c)
	}

	# The admin token may call every route; it gets transforms, not lookups.
	by_admin := {["admin", method, url]: d |
		some c in v2_cases
		[_, method, url, _, _] := c
		d := request(admin, case_method(method), url)
		d != object.remove(case_allowed(c), ["lookups"])
	}
	no_failures(object.union_n([held, inheriting, without, elsewhere, only_admin, nobody, by_admin]))
}

anonymous_answered(d, permission, c) if {
	permission == routes.public
	d == case_allowed(c)
}

anonymous_answered(d, permission, [_, method, url, _, _]) if {
	permission != routes.public
	d.allow == false
	d.code == "unauthenticated"
	d.namespace == case_namespace(url)
	startswith(d.reason, sprintf("%s %s needs a credential: send the admin token or a token minted by this sidecar in ", [case_method(method), split(url, "?")[0]]))
}

# Public routes are public to every caller, tokens of other namespaces too.
test_public_for_everyone if {
	other := object.union(token(set()), {"namespace": "ns2"})
	no_failures({[note, url]: d |
		some note, caller in {"anonymous": anonymous, "other namespace": other, "admin": admin}
		some url in ["/", "/assets/index-3f9c.js", "/n/ns1/explorer/tree", "/ns", "/ns/ns1", "/ns/ns1/a/b", "/API/v2/namespaces/ns1/secrets"]
		d := request(caller, "GET", url)
		d != {"allow": true, "permission": "", "namespace": case_namespace(url), "public": true}
	})
}

# The most specific row wins: a literal before a {param}, a path ending in
# consumers before the gateway endpoint, and only rows with the method.
test_v2_most_specific_row if {
	d1 := request(token({"eventsView"}), "GET", "/api/v2/namespaces/ns1/events/history/subscribe")
	d1 == {"allow": true, "permission": "eventsView", "namespace": "ns1"}
	d2 := request(token({"workflowExecute"}), "POST", "/api/v2/namespaces/ns1/gateway/a/b/consumers")
	d2.code == "forbidden"
	d2.permission == "secretsView"
	d3 := request(token({"registriesManage"}), "DELETE", "/api/v2/namespaces/ns1/registries/test")
	d3 == {"allow": true, "permission": "registriesManage", "namespace": "ns1"}
	d4 := request(token({"workflowExecute"}), "GET", "/api/v2/namespaces/ns1/gateway/consumersx")
	d4 == {"allow": true, "permission": "workflowExecute", "namespace": "ns1"}
	d5 := request(anonymous, "DELETE", "/ns/ns1/a/consumers")
	d5.code == "unauthenticated"
	d5.permission == "secretsView"
}

# Every log parameter is checked, each value, for everyone.
log_cases := {
	"limit": [["50", "0"], ["-1", "1e3", "1234567890", "5 | delete", "5;x"]],
	"first": [["1"], ["x"]],
	"last": [["999999999"], ["0x10"]],
	"after": [
		["2026-12-06T01:16:52.633823Z", "2026-12-06T01:16:52.633823123Z", "2026-12-06T01:16:52Z", "2026-12-06T01:16:52+01:00"],
		["2026-01-01T00:00:00Z | delete", "2026-01-01", "2026-01-01T00:00:00 01:00", "now"],
	],
	"before": [["2026-12-06T01:16:52.633Z"], ["2026-12-06T01:16:52.633Z\n"]],
	"lastEventId": [["2026-12-06T01:16:52.000000000Z"], ["*"]],
	"instance": [[uuid1, uuid2], ["0b8c6c1d5a8a4a0eb4d11f2d3c4b5a69", "x) or (1"]],
	"activity": [[uuid1], [sprintf("%s ", [uuid1])]],
	"route": [["/my/route", "/a_b-c.d/e"], [`/x" or 1`, "/x | delete", "/x:y", "/x(y)", "/x y", concat("", ["/", concat("", [c | some _ in numbers.range(1, 256); c := "a"])])]],
	"direction": [["asc", "desc"], ["ASC", "asc | delete"]],
}

test_log_params if {
	no_failures({[name, value, caller]: d |
		some name, [good, _] in log_cases
		some value in good
		some caller in [token({"instancesView"}), admin]
		d := ask(caller, "GET", "/api/v2/namespaces/ns1/logs", "", {name: [value]})
		not d.allow
	})
	no_failures({[name, value, caller]: d |
		some name, [_, bad] in log_cases
		some value in bad
		some caller in [token({"instancesView"}), admin, anonymous]
		d := ask(caller, "GET", "/api/v2/namespaces/ns1/logs/subscribe", "", {name: ["", value]})
		not bad_request_naming(d, name)
	})

	# Empty values and unknown parameters are ignored, by Direktiv too.
	ignored := ask(token({"instancesView"}), "GET", "/api/v2/namespaces/ns1/logs", "", {"limit": [""], "trace": ["x | y"]})
	ignored.allow == true

	# Each parameter of the wrong shape is named, with its value.
	d := request(admin, "GET", "/api/v2/namespaces/ns1/logs?after=2026-01-01T00:00:00Z%20|%20delete&limit=x")
	d == {
		"allow": false,
		"code": "bad_request",
		"reason": concat("; ", [
			`the query parameter after must be an RFC 3339 timestamp such as 2026-12-06T01:16:52.633823Z (a + written %2B), not "2026-01-01T00:00:00Z | delete"`,
			`the query parameter limit must be a decimal integer of at most 9 digits, not "x"`,
		]),
		"permission": "instancesView",
		"namespace": "ns1",
	}
}

bad_request_naming(d, name) if {
	d.allow == false
	d.code == "bad_request"
	startswith(d.reason, sprintf("the query parameter %s must be %s, not ", [name, routes.shapes[routes.log_params[name]].text]))
}

# Ids that are looked up must be UUIDs, for everyone.
test_lookup_ids_must_be_uuids if {
	cases := {
		"/api/v2/namespaces/ns1/variables/abc": `the path segment {id} must be a UUID (8-4-4-4-12 hexadecimal digits), not "abc"`,
		"/api/v2/namespaces/ns1/variables?instanceId=abc": `the query parameter instanceId must be a UUID (8-4-4-4-12 hexadecimal digits), not "abc"`,
		sprintf("/api/v2/namespaces/ns1/variables?ids=%s,abc", [uuid1]): `the query parameter ids (values separated by ",") must be a UUID (8-4-4-4-12 hexadecimal digits), not "abc"`,
		sprintf("/api/v2/namespaces/ns1/variables?ids=%s,", [uuid1]): `the query parameter ids (values separated by ",") must be a UUID (8-4-4-4-12 hexadecimal digits), not ""`,
		"/api/v2/namespaces/ns1/events/listeners/l1": `the path segment {id} must be a UUID (8-4-4-4-12 hexadecimal digits), not "l1"`,
	}
	no_failures({[url, caller]: d |
		some url, reason in cases
		method := {true: "DELETE", false: "GET"}[contains(url, "ids=")]
		some caller in [everything, admin, anonymous]
		d := request(caller, method, url)
		not d.reason == reason
	})

	# Every value of a parameter, every id of a list; an empty one names none.
	url := sprintf("/api/v2/namespaces/ns1/variables?ids=%s&ids=%s,%s&instanceId=x", [uuid1, uuid2, uuid1])
	d := request(token({"variablesManage"}), "DELETE", url)
	d.lookups == [{"kind": "variable", "id": uuid1}, {"kind": "variable", "id": uuid2}, {"kind": "variable", "id": uuid1}]
	d2 := request(token({"variablesManage"}), "DELETE", "/api/v2/namespaces/ns1/variables")
	d2 == {"allow": true, "permission": "variablesManage", "namespace": "ns1"}
	d3 := request(token({"variablesView"}), "GET", "/api/v2/namespaces/ns1/variables?instanceId=&workflowPath=/wf.yaml")
	d3 == {"allow": true, "permission": "variablesView", "namespace": "ns1"}
}

# Every row is filed under a literal segment, so that a request can find
# it; every permission v2_routes names is a catalog policy or a marker,
# and every option is known.
test_v2_rows_are_valid if {
	rows := routes.v2.rows
	no_failures({pattern | some pattern, row in rows; not row.key})
	no_failures({[pattern, method]: entry |
		some pattern, row in rows
		some method, entry in row.methods
		entry != null
		not valid_entry(entry)
	})
}

valid_entry(entry) if {
	entry.permission in (catalog.names | {routes.any_token, routes.admin_only, routes.public})
	entry.transform in {"", "status", "namespace_list"}
	every l in entry.lookups {
		l.kind in {"variable", "instance", "event", "listener"}
		count({"path", "query"} & {k | some k, _ in l}) == 1
	}
	every _, shape in entry.params {
		shape in routes.shapes
	}
}

# Every shape v2_routes names is in shapes.
test_v2_shapes_are_known if {
	no_failures({[pattern, name, shape] |
		some pattern, spec in routes.v2_routes
		some _, option in spec
		is_object(option)
		some name, shape in object.get(option, "params", {})
		not routes.shapes[shape]
	})
	no_failures({[kind, shape] | some kind, shape in routes.lookup_shapes; not routes.shapes[shape]})
}
