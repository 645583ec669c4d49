# The route decision: may input.caller send this request to Direktiv? The
# answer has the shape of engine.RouteDecision:
#
#   {"allow", "code", "reason", "permission", "namespace"}
#
# The engine hands over the request already split and decoded:
#
#   input.segments  the path's segments, percent-decoded, empty ones dropped
#                   ("/api/namespaces/ns1/vars" -> ["api", "namespaces", "ns1", "vars"])
#   input.method    the HTTP method, upper-case
#   input.op        the first value of the "op" query parameter, or ""
#   input.caller    admin, namespace, policies and effective, as for the mint
#                   decision (see mint.rego)
#
# Which permission a route needs is data: the tables below. Each table entry
# maps a method to a permission. An entry's keys are tried in this order:
#
#   the exact method ("POST"), then its class ("read": GET and HEAD;
#   "write": POST, PUT, PATCH and DELETE), then "any" (any of those methods).
#
# A permission is a catalog policy name, or one of:
#
#   any_token   any valid token may call it (of the route's namespace, if any)
#   admin_only  only the admin token may call it
#
# A request no entry covers is denied (fail closed), except for the admin
# token, which may call everything.
package direktiv.routes

any_token := ""

admin_only := "admin"

method_class := {
	"GET": "read",
	"HEAD": "read",
	"POST": "write",
	"PUT": "write",
	"PATCH": "write",
	"DELETE": "write",
}

# /api/{name}: routes outside any namespace.
api_v1 := {
	"version": {"any": any_token},
	"jq": {"any": any_token},
	"namespaces": {"any": admin_only}, # list (GET) or create (POST) namespaces
	"logs": {"any": admin_only}, # server logs
	"functions": {"any": admin_only}, # global services
}

# /api/{name}/...: whole subtrees outside any namespace.
api_v1_subtrees := {"functions": {"any": admin_only}}

# /api/v2/{name}: routes outside any namespace.
api_v2 := {
	"status": {"any": any_token},
	"namespaces": {"any": admin_only}, # list (GET) or create (POST) namespaces
	"logs": {"any": admin_only}, # server logs
}

# /api/namespaces/{ns}: the namespace itself.
namespace_v1 := {
	"read": any_token,
	"PUT": admin_only, # creates the namespace
	"DELETE": "deleteNamespace",
}

# /api/v2/namespaces/{ns}: the namespace itself.
namespace_v2 := {
	"read": any_token,
	"PATCH": "nsconfigManage", # changes its mirror settings
	"DELETE": "deleteNamespace",
}

# /api/namespaces/{ns}/{family}/...: keyed by "family", by "family/next" for
# the segment after the family, and by "family/*/sub" for the segment after
# an item (as in instances/{id}/vars). The most specific key with an entry
# for the request's method wins (GET events/broadcast falls back to events).
namespaced_v1 := {
	"instances": {"read": "instancesView", "write": "instancesManage"}, # POST instances/{id}/cancel
	"instances/*/vars": {"read": "variablesView", "write": "variablesManage"},
	"vars": {"read": "variablesView", "write": "variablesManage"},
	"secrets": {"read": "secretsView", "write": "secretsManage"},
	"registries": {"read": "registriesView", "write": "registriesManage"},
	"functions": {"read": "servicesView", "write": "servicesManage"},
	"services": {"read": "servicesView", "write": "servicesManage"},
	"events": {"read": "eventsView", "write": "eventsManage"},
	"eventfilter": {"read": "eventsView", "write": "eventsManage"},
	"broadcast": {"POST": "eventsSend"},
	"logs": {"read": "instancesView"},
	"metrics": {"read": "instancesView"},
	"config": {"read": "nsconfigView", "write": "nsconfigManage"},
	"lint": {"read": "workflowView"},
	"opa": {"read": "opaView", "write": "opaManage"},
	# The sidecar's own token endpoints (minting, POST auth/token, is not a route).
	"auth/token": {"GET": any_token}, # who am I
	"auth/tokens": {"GET": "permissionsView", "DELETE": "permissionsManage"}, # list, read, revoke
}

# /api/namespaces/{ns}/tree/{path...}?op={op}: keyed by op ("" when absent).
# Reading a node (a directory listing or a workflow) is explorer work;
# everything about one workflow is workflow work; creating, renaming and
# deleting nodes is explorer work again, as a node may be a directory.
tree_ops := {
	"": {"read": "explorerView"},
	"create-directory": {"write": "explorerManage"},
	"delete-node": {"write": "explorerManage"},
	"rename-node": {"write": "explorerManage"},
	"refs": {"read": "workflowView"},
	"revisions": {"read": "workflowView"},
	"tags": {"read": "workflowView"},
	"router": {"read": "workflowView"},
	"logs": {"read": "workflowView"},
	"metrics-invoked": {"read": "workflowView"},
	"metrics-successful": {"read": "workflowView"},
	"metrics-failed": {"read": "workflowView"},
	"metrics-milliseconds": {"read": "workflowView"},
	"metrics-state-milliseconds": {"read": "workflowView"},
	"metrics-sankey": {"read": "workflowView"},
	"validate-ref": {"read": "workflowView", "POST": "workflowView"},
	"validate-router": {"read": "workflowView", "POST": "workflowView"},
	"create-workflow": {"write": "workflowManage"},
	"update-workflow": {"write": "workflowManage"},
	"save-workflow": {"write": "workflowManage"},
	"discard-workflow": {"write": "workflowManage"},
	"delete-revision": {"write": "workflowManage"},
	"tag": {"write": "workflowManage"},
	"untag": {"write": "workflowManage"},
	"retag": {"write": "workflowManage"},
	"edit-router": {"write": "workflowManage"},
	"set-workflow-event-logging": {"write": "workflowManage"},
	"toggle": {"write": "workflowManage"},
	"execute": {"any": "workflowExecute"},
	"wait": {"any": "workflowExecute"},
	"vars": {"read": "variablesView"},
	"var": {"read": "variablesView"},
	"set-var": {"write": "variablesManage"},
	"delete-var": {"write": "variablesManage"},
}

# /api/v2/namespaces/{ns}/{family}/...: keyed like namespaced_v1.
namespaced_v2 := {
	"files": {"read": "explorerView", "write": "explorerManage"},
	"instances": {"read": "instancesView", "write": "instancesManage", "POST": "workflowExecute"}, # POST starts one
	"variables": {"read": "variablesView", "write": "variablesManage"},
	"secrets": {"read": "secretsView", "write": "secretsManage"},
	"registries": {"read": "registriesView", "write": "registriesManage"},
	"services": {"read": "servicesView", "write": "servicesManage"},
	"syncs": {"read": "nsconfigView", "write": "nsconfigManage"}, # mirror syncs belong to the namespace's config
	"logs": {"read": "instancesView"},
	"events": {"read": "eventsView", "write": "eventsManage"},
	"events/broadcast": {"POST": "eventsSend"},
	"notifications": {"read": "workflowView"}, # lint findings, as v1 lint
	"metrics": {"read": "instancesView"},
}

# lookup holds the tables above in the form decisions use: every entry
# spelled out per method (method -> permission), and the "family/next" and
# "family/*/sub" keys split into levels. It reads no input, so the engine
# computes it once per load and a decision only looks keys up.
lookup := {
	"tree": {op: expand(e) | some op, e in tree_ops},
	"v1": levels(namespaced_v1),
	"v2": levels(namespaced_v2),
	"api_v1": {name: expand(e) | some name, e in api_v1},
	"api_v1_subtrees": {name: expand(e) | some name, e in api_v1_subtrees},
	"api_v2": {name: expand(e) | some name, e in api_v2},
	"namespace_v1": expand(namespace_v1),
	"namespace_v2": expand(namespace_v2),
}

# expand spells a table entry out per method: exact method, else its class,
# else "any".
expand(e) := {method: p | some method, class in method_class; p := pick(e, method, class)}

pick(e, method, _) := e[method]

pick(e, method, class) := e[class] if not e[method]

pick(e, method, class) := e.any if {
	not e[method]
	not e[class]
}

# levels splits a namespaced table into
#   family: {family: {method: permission}}
#   next:   {family: {next segment: {method: permission}}}
#   item:   {family: {segment after the item: {method: permission}}}
levels(table) := {
	"family": {key: expand(e) | some key, e in table; count(split(key, "/")) == 1},
	"next": {family: {next: expand(table[key]) |
		some key, _ in table
		[f, next] := split(key, "/")
		f == family
	} |
		some key, _ in table
		[family, _] := split(key, "/")
	},
	"item": {family: {sub: expand(table[key]) |
		some key, _ in table
		[f, star, sub] := split(key, "/")
		[f, star] == [family, "*"]
	} |
		some key, _ in table
		[family, "*", _] = split(key, "/")
	},
}

# route is the request's route: {"namespace": ns or "", "permission": p}.
# Undefined when no table covers the request. The most specific key that
# has an entry for the method wins.
route := {"namespace": input.segments[2], "permission": p} if {
	input.segments[1] == "namespaces"
	input.segments[3] == "tree"
	input.segments[0] == "api"
	p := lookup.tree[input.op][input.method]
} else := {"namespace": input.segments[2], "permission": p} if {
	input.segments[1] == "namespaces"
	input.segments[0] == "api"
	p := lookup.v1.item[input.segments[3]][input.segments[5]][input.method]
} else := {"namespace": input.segments[2], "permission": p} if {
	input.segments[1] == "namespaces"
	input.segments[0] == "api"
	p := lookup.v1.next[input.segments[3]][input.segments[4]][input.method]
} else := {"namespace": input.segments[2], "permission": p} if {
	input.segments[1] == "namespaces"
	input.segments[0] == "api"
	p := lookup.v1.family[input.segments[3]][input.method]
} else := {"namespace": input.segments[2], "permission": p} if {
	input.segments[1] == "namespaces"
	count(input.segments) == 3
	input.segments[0] == "api"
	p := lookup.namespace_v1[input.method]
} else := {"namespace": input.segments[3], "permission": p} if {
	input.segments[1] == "v2"
	input.segments[2] == "namespaces"
	input.segments[0] == "api"
	p := lookup.v2.item[input.segments[4]][input.segments[6]][input.method]
} else := {"namespace": input.segments[3], "permission": p} if {
	input.segments[1] == "v2"
	input.segments[2] == "namespaces"
	input.segments[0] == "api"
	p := lookup.v2.next[input.segments[4]][input.segments[5]][input.method]
} else := {"namespace": input.segments[3], "permission": p} if {
	input.segments[1] == "v2"
	input.segments[2] == "namespaces"
	input.segments[0] == "api"
	p := lookup.v2.family[input.segments[4]][input.method]
} else := {"namespace": input.segments[3], "permission": p} if {
	input.segments[1] == "v2"
	input.segments[2] == "namespaces"
	count(input.segments) == 4
	input.segments[0] == "api"
	p := lookup.namespace_v2[input.method]
} else := {"namespace": "", "permission": p} if {
	input.segments[1] == "v2"
	count(input.segments) == 3
	input.segments[0] == "api"
	p := lookup.api_v2[input.segments[2]][input.method]
} else := {"namespace": "", "permission": p} if {
	count(input.segments) == 2
	input.segments[0] == "api"
	p := lookup.api_v1[input.segments[1]][input.method]
} else := {"namespace": "", "permission": p} if {
	input.segments[0] == "api"
	p := lookup.api_v1_subtrees[input.segments[1]][input.method]
}

# decision answers the request. The first branch is the common case, a
# namespace token holding what a route of its namespace needs, and only an
# early answer: the branches after it decide every case on their own.
decision := {"allow": true, "permission": permission, "namespace": namespace} if {
	{"namespace": namespace, "permission": permission} = route
	namespace == input.caller.namespace
	input.caller.effective[permission]
} else := allow(matched) if {
	input.caller.admin
} else := deny("forbidden", sprintf("no route rule covers %s %s", [input.method, request]), matched) if {
	not route
} else := deny("admin_only", sprintf("%s %s needs the admin token", [input.method, request]), route) if {
	route.permission == admin_only
} else := deny("forbidden", reason, route) if {
	route.namespace != ""
	route.namespace != input.caller.namespace
	reason := sprintf(
		"this token belongs to namespace %q and cannot be used in namespace %q",
		[input.caller.namespace, route.namespace],
	)
} else := allow(route) if {
	route.permission == any_token
} else := allow(route) if {
	input.caller.effective[route.permission]
} else := deny("forbidden", reason, route) if {
	reason := sprintf(
		"%s %s needs the %s policy, which this token does not hold (it holds %s)",
		[input.method, request, route.permission, held_list],
	)
}

# matched is the route, or an empty one when no table covers the request.
matched := r if {
	r := route
} else := {"namespace": "", "permission": ""}

allow(r) := {"allow": true, "permission": permission_of(r), "namespace": r.namespace}

deny(code, reason, r) := {
	"allow": false,
	"code": code,
	"reason": reason,
	"permission": permission_of(r),
	"namespace": r.namespace,
}

# permission_of is the catalog permission a route needs, "" for none.
permission_of(r) := "" if {
	r.permission == admin_only
} else := r.permission

# request renders the request for a reason: "/api/namespaces/ns1/tree/wf?op=execute".
request := concat("", ["/", concat("/", input.segments), op_suffix])

op_suffix := "" if {
	input.op == ""
} else := concat("", ["?op=", input.op])

held_list := "none" if {
	count(object.get(input.caller, "effective", set())) == 0
} else := sprintf("[%s]", [concat(", ", sort(input.caller.effective))])
