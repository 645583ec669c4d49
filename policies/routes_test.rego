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

# ask asks for the route decision as the engine does: with the index
# computed once (a few milliseconds), not once per decision; so the cases
# share few tests. The query is {parameter: [values]}.
ask(caller, method, path, op, query) := d if {
	index := routes._index
	d := routes.decision with input as {
		"caller": caller,
		"method": method,
		"segments": [s | some s in split(path, "/"); s != ""],
		"op": op,
		"query": query,
	}
		with routes._index as index
}

# request asks for method url as the engine would: the query read as Go's
# net/url reads it, op its first op parameter.
request(caller, method, url) := ask(caller, method, path, op, query) if {
	[path, op, query] := parsed(url)
}

# parsed is a URL's path, op and query.
parsed(url) := [parts[0], object.get(query, "op", [""])[0], query] if {
	parts := split(url, "?")
	query := urlquery.decode_object(concat("?", array.slice(parts, 1, count(parts))))
}

# shown is a URL as a reason shows it: its path, and its op if any.
shown(url) := concat("?op=", [path, op]) if {
	[path, op, _] := parsed(url)
	op != ""
} else := split(url, "?")[0]

# cases hold at least one case per row of routes.table and key of it (a
# method, a class or "*"): [pattern, method, request, permission, extras],
# where permission is a catalog name or a marker, and extras the keys a
# token of ns1 holding it gets besides allow, permission and namespace.
# Adding a row to the table is adding a case here.
cases := [
	# Direktiv v2
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
	["api/v2/namespaces/{ns}/gateway/*", "PUT", "/api/v2/namespaces/ns1/gateway/my/endpoint", "workflowExecute", {}],
	["api/v2/namespaces/{ns}/gateway/*/consumers", "PUT", "/api/v2/namespaces/ns1/gateway/consumers", "secretsView", {}],
	["api/v2/namespaces/{ns}/gateway/*/routes", "PUT", "/api/v2/namespaces/ns1/gateway/routes?path=/x", "explorerView", {}],
	["api/v2/namespaces/{ns}/gateway/*/info", "PUT", "/api/v2/namespaces/ns1/gateway/a/info", "explorerView", {}],
	["ns", "PUT", "/ns", routes.public, {"public": true}],
	["ns/{ns}/*", "PUT", "/ns/ns1/my/endpoint", routes.public, {"public": true}],
	["ns/{ns}/*/consumers", "PUT", "/ns/ns1/consumers", "secretsView", {}],
	["ns/{ns}/*/routes", "PUT", "/ns/ns1/routes", "explorerView", {}],
	["ns/{ns}/*/info", "PUT", "/ns/ns1/x/info", "explorerView", {}],
	# Direktiv v1, outside any namespace
	["api/version", "GET", "/api/version", routes.any_token, {}],
	["api/version", "DELETE", "/api/version", routes.any_token, {}],
	["api/jq", "POST", "/api/jq", routes.any_token, {}],
	["api/jq", "HEAD", "/api/jq", routes.any_token, {}],
	["api/namespaces", "GET", "/api/namespaces", routes.admin_only, {}],
	["api/namespaces", "POST", "/api/namespaces", routes.admin_only, {}],
	["api/logs", "GET", "/api/logs", routes.admin_only, {}],
	["api/logs", "PUT", "/api/logs", routes.admin_only, {}],
	["api/functions/*", "GET", "/api/functions", routes.admin_only, {}],
	["api/functions/*", "POST", "/api/functions/svc/revisions", routes.admin_only, {}],
	# Direktiv v1, in a namespace
	["api/namespaces/{ns}", "GET", "/api/namespaces/ns1", routes.any_token, {}],
	["api/namespaces/{ns}", "PUT", "/api/namespaces/ns1", routes.admin_only, {}],
	["api/namespaces/{ns}/auth/token/*", "GET", "/api/namespaces/ns1/auth/token", routes.any_token, {}],
	["api/namespaces/{ns}/tree/*?op=", "GET", "/api/namespaces/ns1/tree", "explorerView", {}],
	["api/namespaces/{ns}/tree/*?op=", "GET", "/api/namespaces/ns1/tree/dir/sub", "explorerView", {}],
	["api/namespaces/{ns}/tree/*?op=", "HEAD", "/api/namespaces/ns1/tree/wf.yaml", "explorerView", {}],
	["api/namespaces/{ns}/tree/*?op=refs", "GET", "/api/namespaces/ns1/tree/wf.yaml?op=refs", "workflowView", {}],
	["api/namespaces/{ns}/tree/*?op=revisions", "GET", "/api/namespaces/ns1/tree/wf.yaml?op=revisions", "workflowView", {}],
	["api/namespaces/{ns}/tree/*?op=tags", "GET", "/api/namespaces/ns1/tree/wf.yaml?op=tags", "workflowView", {}],
	["api/namespaces/{ns}/tree/*?op=router", "GET", "/api/namespaces/ns1/tree/wf.yaml?op=router", "workflowView", {}],
	["api/namespaces/{ns}/tree/*?op=logs", "GET", "/api/namespaces/ns1/tree/wf.yaml?op=logs", "workflowView", {}],
	["api/namespaces/{ns}/tree/*?op=metrics-invoked", "GET", "/api/namespaces/ns1/tree/wf.yaml?op=metrics-invoked", "workflowView", {}],
	["api/namespaces/{ns}/tree/*?op=metrics-sankey", "GET", "/api/namespaces/ns1/tree/wf.yaml?op=metrics-sankey", "workflowView", {}],
	["api/namespaces/{ns}/tree/*?op=validate-ref", "POST", "/api/namespaces/ns1/tree/wf.yaml?op=validate-ref", "workflowView", {}],
	["api/namespaces/{ns}/tree/*?op=execute", "POST", "/api/namespaces/ns1/tree/wf.yaml?op=execute", "workflowExecute", {}],
	["api/namespaces/{ns}/tree/*?op=wait", "GET", "/api/namespaces/ns1/tree/wf.yaml?op=wait", "workflowExecute", {}],
	["api/namespaces/{ns}/tree/*?op=wait", "POST", "/api/namespaces/ns1/tree/wf.yaml?op=wait", "workflowExecute", {}],
	["api/namespaces/{ns}/tree/*?op=create-workflow", "PUT", "/api/namespaces/ns1/tree/wf.yaml?op=create-workflow", "workflowManage", {}],
	["api/namespaces/{ns}/tree/*?op=update-workflow", "POST", "/api/namespaces/ns1/tree/wf.yaml?op=update-workflow", "workflowManage", {}],
	["api/namespaces/{ns}/tree/*?op=save-workflow", "POST", "/api/namespaces/ns1/tree/wf.yaml?op=save-workflow", "workflowManage", {}],
	["api/namespaces/{ns}/tree/*?op=discard-workflow", "POST", "/api/namespaces/ns1/tree/wf.yaml?op=discard-workflow", "workflowManage", {}],
	["api/namespaces/{ns}/tree/*?op=tag", "POST", "/api/namespaces/ns1/tree/wf.yaml?op=tag", "workflowManage", {}],
	["api/namespaces/{ns}/tree/*?op=untag", "POST", "/api/namespaces/ns1/tree/wf.yaml?op=untag", "workflowManage", {}],
	["api/namespaces/{ns}/tree/*?op=toggle", "POST", "/api/namespaces/ns1/tree/wf.yaml?op=toggle", "workflowManage", {}],
	["api/namespaces/{ns}/tree/*?op=edit-router", "POST", "/api/namespaces/ns1/tree/wf.yaml?op=edit-router", "workflowManage", {}],
	["api/namespaces/{ns}/tree/*?op=set-workflow-event-logging", "POST", "/api/namespaces/ns1/tree/wf.yaml?op=set-workflow-event-logging", "workflowManage", {}],
	["api/namespaces/{ns}/tree/*?op=create-directory", "PUT", "/api/namespaces/ns1/tree/dir?op=create-directory", "explorerManage", {}],
	["api/namespaces/{ns}/tree/*?op=delete-node", "DELETE", "/api/namespaces/ns1/tree/dir?op=delete-node", "explorerManage", {}],
	["api/namespaces/{ns}/tree/*?op=rename-node", "POST", "/api/namespaces/ns1/tree/dir?op=rename-node", "explorerManage", {}],
	["api/namespaces/{ns}/tree/*?op=vars", "GET", "/api/namespaces/ns1/tree/wf.yaml?op=vars", "variablesView", {}],
	["api/namespaces/{ns}/tree/*?op=set-var", "PUT", "/api/namespaces/ns1/tree/wf.yaml?op=set-var", "variablesManage", {}],
	["api/namespaces/{ns}/tree/*?op=metrics-successful", "GET", "/api/namespaces/ns1/tree/wf.yaml?op=metrics-successful", "workflowView", {}],
	["api/namespaces/{ns}/tree/*?op=metrics-failed", "GET", "/api/namespaces/ns1/tree/wf.yaml?op=metrics-failed", "workflowView", {}],
	["api/namespaces/{ns}/tree/*?op=metrics-milliseconds", "HEAD", "/api/namespaces/ns1/tree/wf.yaml?op=metrics-milliseconds", "workflowView", {}],
	["api/namespaces/{ns}/tree/*?op=metrics-state-milliseconds", "GET", "/api/namespaces/ns1/tree/wf.yaml?op=metrics-state-milliseconds", "workflowView", {}],
	["api/namespaces/{ns}/tree/*?op=validate-ref", "GET", "/api/namespaces/ns1/tree/wf.yaml?op=validate-ref", "workflowView", {}],
	["api/namespaces/{ns}/tree/*?op=validate-router", "GET", "/api/namespaces/ns1/tree/wf.yaml?op=validate-router", "workflowView", {}],
	["api/namespaces/{ns}/tree/*?op=validate-router", "POST", "/api/namespaces/ns1/tree/wf.yaml?op=validate-router", "workflowView", {}],
	["api/namespaces/{ns}/tree/*?op=delete-revision", "POST", "/api/namespaces/ns1/tree/wf.yaml?op=delete-revision", "workflowManage", {}],
	["api/namespaces/{ns}/tree/*?op=retag", "POST", "/api/namespaces/ns1/tree/wf.yaml?op=retag", "workflowManage", {}],
	["api/namespaces/{ns}/tree/*?op=execute", "GET", "/api/namespaces/ns1/tree/wf.yaml?op=execute", "workflowExecute", {}],
	["api/namespaces/{ns}/tree/*?op=var", "GET", "/api/namespaces/ns1/tree/wf.yaml?op=var&var=x", "variablesView", {}],
	["api/namespaces/{ns}/tree/*?op=delete-var", "DELETE", "/api/namespaces/ns1/tree/wf.yaml?op=delete-var&var=x", "variablesManage", {}],
	["api/namespaces/{ns}/instances/*", "GET", "/api/namespaces/ns1/instances", "instancesView", {}],
	["api/namespaces/{ns}/instances/*", "GET", "/api/namespaces/ns1/instances/0b8c/output", "instancesView", {}],
	["api/namespaces/{ns}/instances/*", "GET", "/api/namespaces/ns1/instances/0b8c/logs", "instancesView", {}],
	["api/namespaces/{ns}/instances/*", "POST", "/api/namespaces/ns1/instances/0b8c/cancel", "instancesManage", {}],
	["api/namespaces/{ns}/instances/{id}/vars/*", "GET", "/api/namespaces/ns1/instances/0b8c/vars", "variablesView", {}],
	["api/namespaces/{ns}/instances/{id}/vars/*", "PUT", "/api/namespaces/ns1/instances/0b8c/vars/x", "variablesManage", {}],
	["api/namespaces/{ns}/vars/*", "GET", "/api/namespaces/ns1/vars", "variablesView", {}],
	["api/namespaces/{ns}/vars/*", "PUT", "/api/namespaces/ns1/vars/x", "variablesManage", {}],
	["api/namespaces/{ns}/vars/*", "DELETE", "/api/namespaces/ns1/vars/x", "variablesManage", {}],
	["api/namespaces/{ns}/secrets/*", "GET", "/api/namespaces/ns1/secrets", "secretsView", {}],
	["api/namespaces/{ns}/secrets/*", "PUT", "/api/namespaces/ns1/secrets/s", "secretsManage", {}],
	["api/namespaces/{ns}/secrets/*", "DELETE", "/api/namespaces/ns1/secrets/s", "secretsManage", {}],
	["api/namespaces/{ns}/registries/*", "GET", "/api/namespaces/ns1/registries", "registriesView", {}],
	["api/namespaces/{ns}/registries/*", "POST", "/api/namespaces/ns1/registries", "registriesManage", {}],
	["api/namespaces/{ns}/functions/*", "GET", "/api/namespaces/ns1/functions", "servicesView", {}],
	["api/namespaces/{ns}/functions/*", "POST", "/api/namespaces/ns1/functions", "servicesManage", {}],
	["api/namespaces/{ns}/services/*", "GET", "/api/namespaces/ns1/services", "servicesView", {}],
	["api/namespaces/{ns}/services/*", "DELETE", "/api/namespaces/ns1/services/svc", "servicesManage", {}],
	["api/namespaces/{ns}/events/*", "GET", "/api/namespaces/ns1/events", "eventsView", {}],
	["api/namespaces/{ns}/events/*", "POST", "/api/namespaces/ns1/events/e1/replay", "eventsManage", {}],
	["api/namespaces/{ns}/eventfilter/*", "GET", "/api/namespaces/ns1/eventfilter/f", "eventsView", {}],
	["api/namespaces/{ns}/eventfilter/*", "POST", "/api/namespaces/ns1/eventfilter/f", "eventsManage", {}],
	["api/namespaces/{ns}/broadcast/*", "POST", "/api/namespaces/ns1/broadcast", "eventsSend", {}],
	["api/namespaces/{ns}/logs/*", "GET", "/api/namespaces/ns1/logs", "instancesView", {}],
	["api/namespaces/{ns}/metrics/*", "GET", "/api/namespaces/ns1/metrics/invoked", "instancesView", {}],
	["api/namespaces/{ns}/config/*", "GET", "/api/namespaces/ns1/config", "nsconfigView", {}],
	["api/namespaces/{ns}/config/*", "PATCH", "/api/namespaces/ns1/config", "nsconfigManage", {}],
	["api/namespaces/{ns}/lint/*", "GET", "/api/namespaces/ns1/lint", "workflowView", {}],
	["api/namespaces/{ns}/opa/*", "GET", "/api/namespaces/ns1/opa", "opaView", {}],
	["api/namespaces/{ns}/opa/*", "PUT", "/api/namespaces/ns1/opa", "opaManage", {}],
	["api/namespaces/{ns}", "DELETE", "/api/namespaces/ns1", "deleteNamespace", {}],
	["api/namespaces/{ns}/auth/tokens/*", "GET", "/api/namespaces/ns1/auth/tokens", "permissionsView", {}],
	["api/namespaces/{ns}/auth/tokens/*", "GET", "/api/namespaces/ns1/auth/tokens/t1", "permissionsView", {}],
	["api/namespaces/{ns}/auth/tokens/*", "DELETE", "/api/namespaces/ns1/auth/tokens/t1", "permissionsManage", {}],
]

uuid1 := "0b8c6c1d-5a8a-4a0e-b4d1-1f2d3c4b5a69"

uuid2 := "6F9619FF-8B86-D011-B42D-00C04FC964FF"

# case_namespace is the namespace a case's request names.
case_namespace(url) := "ns1" if {
	regex.match(`^/(api/v2/namespaces|api/namespaces|ns)/ns1(/|$|\?)`, url)
} else := ""

# case_allowed is what a token holding a case's permission gets.
case_allowed([_, _, url, permission, extras]) := object.union(
	{"allow": true, "permission": object.get({routes.admin_only: "", routes.public: ""}, permission, permission), "namespace": case_namespace(url)},
	extras,
)

# case_caller is a token of ns1 holding exactly a case's permission (the
# admin token for admin_only).
case_caller(permission) := admin if {
	permission == routes.admin_only
} else := token(set()) if {
	permission in {routes.any_token, routes.public}
} else := token({permission})

# Each row and key of the table has a case, and each case a row.
test_every_row_has_a_case if {
	rows := {[pattern, key] | some pattern, spec in routes.table; some key, _ in spec; method_key(key)}
	covered := {[pattern, routes._method_key(routes.table[pattern], method)] | some [pattern, method, _, _, _] in cases}
	no_failures(rows - covered)
	no_failures({pattern | some [pattern, _, _, _, _] in cases; not routes.table[pattern]})
}

method_key(key) if upper(key) == key

method_key(key) if key in {"read", "write"}

# Each case matches its own row, not a more or less specific one.
test_case_matches_its_row if {
	index := routes._index
	no_failures({[pattern, method, url]: got |
		some [pattern, method, url, _, _] in cases
		got := matched_row(method, url) with routes._index as index
		got != pattern
	})
}

# matched_row is the row of the table that answers method url, "none" for none.
matched_row(method, url) := row if {
	[path, op, _] := parsed(url)
	[_, matched, _] := max(routes._matches) with input as {
		"caller": admin,
		"method": method,
		"segments": [s | some s in split(path, "/"); s != ""],
		"op": op,
		"query": {},
	}
	row := pattern_of(matched, op)
} else := "none"

pattern_of(path, op) := concat("?op=", [path, op]) if {
	routes.table[concat("?op=", [path, op])]
} else := path

# The tests below ask each case as the callers that matter: a token of ns1
# holding the permission (or one that inherits it), one holding everything
# else, a token of another namespace, an anonymous caller and the admin.
# Each collects the cases that fail, keyed by [method, request] and what
# they answered, and fails listing them. (Each test computes the index
# once; a test must finish within the engine's 10 s, race detector
# included, so the callers are split over five tests.)

test_route_allowed_with_its_permission if {
	no_failures({["holder", method, url]: d |
		some c in cases
		[_, method, url, permission, _] := c
		d := request(case_caller(permission), method, url)
		d != case_allowed(c)
	})
	no_failures({["inheriting", method, url, holder]: d |
		some [_, method, url, permission, _] in cases
		some holder, grants in catalog.closure
		holder != permission
		grants[permission]
		d := request(token({holder}), method, url)
		d.allow != true
	})
}

test_route_denied_without_its_permission if {
	no_failures({[method, url]: d |
		some [_, method, url, permission, _] in cases
		catalog.names[permission]
		others := {name | some name in catalog.names; not catalog.closure[name][permission]}
		d := request(token(others), method, url)
		not denied_for_lack_of(d, permission)
	})
}

test_route_denied_in_another_namespace_or_to_tokens if {
	other := object.union(everything, {"namespace": "ns2"})
	no_failures({["other namespace", method, url]: d |
		some [_, method, url, permission, _] in cases
		case_namespace(url) == "ns1"
		not permission in {routes.public, routes.admin_only}
		d := request(other, method, url)
		not d.reason == `this token belongs to namespace "ns2" and cannot be used in namespace "ns1"`
	})
	no_failures({["admin only", method, url]: d |
		some [_, method, url, permission, _] in cases
		permission == routes.admin_only
		d := request(everything, method, url)
		d != {
			"allow": false,
			"code": "admin_only",
			"reason": sprintf("%s %s needs the admin token", [method, url]),
			"permission": "",
			"namespace": case_namespace(url),
		}
	})
}

test_route_unauthenticated_without_a_credential if {
	no_failures({[method, url]: d |
		some c in cases
		[_, method, url, permission, _] := c
		d := request(anonymous, method, url)
		not anonymous_answered(d, permission, c)
	})
}

# The admin token may call every route; it gets transforms, not lookups.
test_route_allowed_for_admin if {
	no_failures({[method, url]: d |
		some c in cases
		[_, method, url, _, _] := c
		d := request(admin, method, url)
		d != object.remove(case_allowed(c), ["lookups"])
	})
}

denied_for_lack_of(d, permission) if {
	d.allow == false
	d.code == "forbidden"
	d.permission == permission
	d.namespace == "ns1"
	contains(d.reason, sprintf("needs the %s policy", [permission]))
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
	startswith(d.reason, sprintf("%s %s needs a credential: send the admin token or a token minted by this sidecar in ", [method, shown(url)]))
}

# Requests no row covers: [method, path, op].
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

# Requests no row covers are denied to tokens, unauthenticated without a
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

# A missing permission's reason lists what the token holds, or none.
test_missing_permission_reason_lists_holdings if {
	d := request(token({"secretsManage"}), "GET", "/api/namespaces/ns1/vars")
	d.reason == "GET /api/namespaces/ns1/vars needs the variablesView policy, which this token does not hold (it holds [secretsManage, secretsView])"
	none := request(token(set()), "GET", "/api/namespaces/ns1/vars")
	endswith(none.reason, "(it holds none)")
}

# The decision's first branch allows whatever input.caller.effective holds;
# the markers for "no policy", "admin only" and "public" must never be
# policies.
test_markers_are_not_policies if {
	not catalog.names[routes.any_token]
	not catalog.names[routes.admin_only]
	not catalog.names[routes.public]
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
test_most_specific_row if {
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
	d6 := request(token({"instancesView"}), "GET", "/api/namespaces/ns1/instances/vars")
	d6 == {"allow": true, "permission": "instancesView", "namespace": "ns1"}
}

# no_failures holds when failures is empty, and prints them otherwise.
no_failures(failures) if count(failures) == 0

no_failures(failures) := false if {
	count(failures) > 0
	print("failing cases:", failures)
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

# Every route is filed under a literal segment, so that a request can find
# it; every key of a row is a method, a class, "*" or an option; every
# permission is a catalog policy or a marker, and every option is known.
test_rows_are_valid if {
	no_failures({path | some path, route in routes._index.routes; not route.key})
	no_failures({[pattern, key] |
		some pattern, spec in routes.table
		some key, _ in spec
		not valid_key(key)
	})
	no_failures({[path, op, method]: entry |
		some path, route in routes._index.routes
		some op, methods in route.ops
		some method, entry in methods
		entry != null
		not valid_entry(entry)
	})
}

valid_key(key) if upper(key) == key

valid_key(key) if key in {"read", "write", "transform", "lookups", "params"}

valid_entry(entry) if {
	entry.permission in (catalog.names | {routes.any_token, routes.admin_only, routes.public})
	entry.transform in {"", "status", "namespace_list"}
	every l in entry.lookups {
		l.kind in {"variable", "instance", "event", "listener"}
		count({"path", "query"} & object.keys(l)) == 1
	}
	every _, shape in entry.params {
		shape in routes.shapes
	}
}

# Every shape the table names is in shapes.
test_shapes_are_known if {
	no_failures({[pattern, name, shape] |
		some pattern, spec in routes.table
		some option in spec
		is_object(option)
		some name, shape in object.get(option, "params", {})
		not routes.shapes[shape]
	})
	no_failures({[kind, shape] | some kind, shape in routes.lookup_shapes; not routes.shapes[shape]})
}
