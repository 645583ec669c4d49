# The permission catalog: every policy name a Direktiv token can hold, and
# which policies imply which. Both are plain data: add a name to
# `permissions`, or an edge to `inherits`, and the closure below follows.
#
# The engine evaluates `closure` once each time the policies are loaded and
# keeps the result; no request computes it.
package direktiv.catalog

# permissions maps each policy name Direktiv knows to what it lets a token do.
permissions := {
	"explorerView": "list directories and read files in the namespace tree",
	"explorerManage": "create, rename and delete directories and files in the namespace tree",
	"workflowView": "read workflows, their revisions, tags, router, logs and metrics",
	"workflowManage": "create, edit, tag, toggle and delete workflows",
	"workflowExecute": "start workflow instances and wait for their results",
	"workflowStore": "store workflows (kept for Direktiv compatibility; no route needs it by default)",
	"instancesView": "list instances and read their input, output, logs and metrics",
	"instancesManage": "cancel instances",
	"variablesView": "read namespace, workflow and instance variables",
	"variablesManage": "set and delete namespace, workflow and instance variables",
	"secretsView": "list secret names",
	"secretsManage": "set and delete secrets",
	"registriesView": "list container registries",
	"registriesManage": "add and delete container registries",
	"servicesView": "list services and their pods",
	"servicesManage": "create, update and delete services",
	"eventsView": "read event history, listeners and filters",
	"eventsManage": "replay events and manage event filters",
	"eventsSend": "broadcast cloud events into the namespace",
	"nsconfigView": "read the namespace configuration and sync state",
	"nsconfigManage": "change the namespace configuration and trigger syncs",
	"permissionsView": "list and read the namespace's access tokens",
	"permissionsManage": "mint and revoke the namespace's access tokens",
	"opaView": "read the namespace's OPA policies",
	"opaManage": "change the namespace's OPA policies",
	"deleteNamespace": "delete the namespace",
}

# names is the set of valid policy names.
names := object.keys(permissions)

# inherits lists direct implications: holding the key also grants every
# policy in its value. By convention every xManage inherits its xView.
inherits := {
	"explorerManage": {"explorerView"},
	"workflowManage": {"workflowView"},
	"instancesManage": {"instancesView"},
	"variablesManage": {"variablesView"},
	"secretsManage": {"secretsView"},
	"registriesManage": {"registriesView"},
	"servicesManage": {"servicesView"},
	"eventsManage": {"eventsView"},
	"nsconfigManage": {"nsconfigView"},
	"permissionsManage": {"permissionsView"},
	"opaManage": {"opaView"},
}

# METADATA
# title: Inheritance closure
# description: >-
#   Every policy name mapped to the set of policies it grants: itself and
#   everything reachable through inherits, however many steps away.
# entrypoint: true
closure[name] := graph.reachable(_edges, {name}) if some name in names

# _edges is `inherits` with every catalog name as a node, as graph.reachable
# only walks nodes that are keys of the graph.
_edges[name] := object.get(inherits, name, set()) if some name in names
