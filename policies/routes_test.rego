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

# decide asks for the route decision as the engine does: with the lookup
# tables computed once, not once per decision.
decide(caller, method, path, op) := d if {
	lookup := routes.lookup
	d := routes.decision with input as {
		"caller": caller,
		"method": method,
		"segments": split(trim_prefix(path, "/"), "/"),
		"op": op,
	}
		with routes.lookup as lookup
}

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
	# v2 namespaced families
	"v2 files read": ["GET", "/api/v2/namespaces/ns1/files/dir/wf.yaml", "", "explorerView"],
	"v2 files create": ["POST", "/api/v2/namespaces/ns1/files/dir", "", "explorerManage"],
	"v2 files update": ["PATCH", "/api/v2/namespaces/ns1/files/dir/wf.yaml", "", "explorerManage"],
	"v2 files delete": ["DELETE", "/api/v2/namespaces/ns1/files/dir/wf.yaml", "", "explorerManage"],
	"v2 instances list": ["GET", "/api/v2/namespaces/ns1/instances", "", "instancesView"],
	"v2 instances start": ["POST", "/api/v2/namespaces/ns1/instances", "", "workflowExecute"],
	"v2 instances cancel": ["PATCH", "/api/v2/namespaces/ns1/instances/0b8c", "", "instancesManage"],
	"v2 variables read": ["GET", "/api/v2/namespaces/ns1/variables", "", "variablesView"],
	"v2 variables write": ["POST", "/api/v2/namespaces/ns1/variables", "", "variablesManage"],
	"v2 secrets read": ["GET", "/api/v2/namespaces/ns1/secrets/s", "", "secretsView"],
	"v2 secrets write": ["PUT", "/api/v2/namespaces/ns1/secrets/s", "", "secretsManage"],
	"v2 registries read": ["GET", "/api/v2/namespaces/ns1/registries", "", "registriesView"],
	"v2 registries write": ["DELETE", "/api/v2/namespaces/ns1/registries/r", "", "registriesManage"],
	"v2 services read": ["GET", "/api/v2/namespaces/ns1/services/svc/pods", "", "servicesView"],
	"v2 services write": ["POST", "/api/v2/namespaces/ns1/services/svc/actions/rebuild", "", "servicesManage"],
	"v2 syncs read": ["GET", "/api/v2/namespaces/ns1/syncs", "", "nsconfigView"],
	"v2 syncs write": ["POST", "/api/v2/namespaces/ns1/syncs", "", "nsconfigManage"],
	"v2 logs": ["GET", "/api/v2/namespaces/ns1/logs", "", "instancesView"],
	"v2 events read": ["GET", "/api/v2/namespaces/ns1/events/history", "", "eventsView"],
	"v2 events write": ["POST", "/api/v2/namespaces/ns1/events/history/e1/replay", "", "eventsManage"],
	"v2 events broadcast": ["POST", "/api/v2/namespaces/ns1/events/broadcast", "", "eventsSend"],
	"v2 events broadcast read": ["GET", "/api/v2/namespaces/ns1/events/broadcast", "", "eventsView"], # falls back to events
	"v2 notifications": ["GET", "/api/v2/namespaces/ns1/notifications", "", "workflowView"],
	"v2 metrics": ["GET", "/api/v2/namespaces/ns1/metrics/instances", "", "instancesView"],
	"v2 update namespace": ["PATCH", "/api/v2/namespaces/ns1", "", "nsconfigManage"],
	"v2 delete namespace": ["DELETE", "/api/v2/namespaces/ns1", "", "deleteNamespace"],
}

# Routes any valid token may call, keyed by a note: [method, path, namespace].
any_token_routes := {
	"version": ["GET", "/api/version", ""],
	"jq": ["POST", "/api/jq", ""],
	"v2 status": ["GET", "/api/v2/status", ""],
	"v1 namespace": ["GET", "/api/namespaces/ns1", "ns1"],
	"v2 namespace": ["GET", "/api/v2/namespaces/ns1", "ns1"],
	"who am i": ["GET", "/api/namespaces/ns1/auth/token", "ns1"],
}

# Routes only the admin token may call: [method, path, namespace].
admin_only_routes := {
	"v1 create namespace": ["PUT", "/api/namespaces/ns1", "ns1"],
	"v2 create namespace": ["POST", "/api/v2/namespaces", ""],
	"v1 list namespaces": ["GET", "/api/namespaces", ""],
	"v2 list namespaces": ["GET", "/api/v2/namespaces", ""],
	"v1 server logs": ["GET", "/api/logs", ""],
	"v2 server logs": ["GET", "/api/v2/logs", ""],
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
	"v2 logs write": ["POST", "/api/v2/namespaces/ns1/logs", ""],
	"v2 unknown family": ["GET", "/api/v2/namespaces/ns1/nothing", ""],
	"not the api": ["GET", "/healthz", ""],
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

test_uncovered_route_denied if {
	no_failures({note: d |
		some note, [method, path, op] in uncovered_routes
		d := decide(everything, method, path, op)
		suffix := {true: "", false: sprintf("?op=%s", [op])}[op == ""]
		d != {
			"allow": false,
			"code": "forbidden",
			"reason": sprintf("no route rule covers %s %s%s", [method, path, suffix]),
			"permission": "",
			"namespace": "",
		}
	})
}

test_uncovered_route_allowed_for_admin if {
	no_failures({note: d |
		some note, [method, path, op] in uncovered_routes
		d := decide(admin, method, path, op)
		d != {"allow": true, "permission": "", "namespace": ""}
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

# Every permission a table names is a catalog policy, any_token or admin_only.
test_tables_name_only_catalog_policies if {
	tables := {
		"api_v1": routes.api_v1,
		"api_v1_subtrees": routes.api_v1_subtrees,
		"api_v2": routes.api_v2,
		"namespaced_v1": routes.namespaced_v1,
		"namespaced_v2": routes.namespaced_v2,
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
		some key, permission in object.union(routes.namespace_v1, routes.namespace_v2)
		not valid(key, permission)
	})
}

# The decision's first branch allows whatever input.caller.effective holds;
# the markers for "no policy" and "admin only" must never be policies.
test_markers_are_not_policies if {
	not catalog.names[routes.any_token]
	not catalog.names[routes.admin_only]
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
