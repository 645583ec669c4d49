# The route decision: may input.caller send this request to Direktiv? The
# answer has the shape of engine.RouteDecision:
#
#   {"allow", "code", "reason", "permission", "namespace",
#    "public", "lookups", "transform"}
#
# "public", "lookups" and "transform" appear only when they are set (a
# missing key is false, none, ""); "lookups" only on allowed decisions for
# minted tokens, "transform" on allowed decisions.
#
# The engine hands over the request already split and decoded:
#
#   input.segments  the path's segments, percent-decoded, empty ones dropped
#                   ("/api/namespaces/ns1/vars" -> ["api", "namespaces", "ns1", "vars"])
#   input.method    the HTTP method, upper-case
#   input.op        the first value of the "op" query parameter, or ""
#   input.query     the query as Go's net/url (so Direktiv v2 and chi) reads
#                   it: parameter -> array of its values, in order
#                   ("a=1&b=x&a=2" -> {"a": ["1", "2"], "b": ["x"]})
#   input.caller    admin, namespace, policies and effective, as for the mint
#                   decision (see mint.rego); an anonymous request (no
#                   credential, or one that is neither the admin token nor a
#                   minted token) has admin false and namespace ""
#
# Which permission a route needs is data: the tables below. A permission is
# a catalog policy name, or one of:
#
#   any_token   any valid token may call it (of the route's namespace, if any)
#   admin_only  only the admin token may call it
#   public      anyone may call it, without a credential
#
# The answer, in this order: a parameter a route checks that has the wrong
# shape is a bad request (for everyone); a public route is allowed; the
# admin token may call everything; an anonymous request is unauthenticated;
# a request no table covers is denied (fail closed); then the token must be
# of the route's namespace and hold the permission.
package direktiv.routes

any_token := ""

admin_only := "admin"

public := "public"

method_class := {
	"GET": "read",
	"HEAD": "read",
	"POST": "write",
	"PUT": "write",
	"PATCH": "write",
	"DELETE": "write",
}

# Direktiv up to v0.8.6 (API v1, gorilla/mux), and the sidecar's own token
# endpoints. Each entry maps a method to a permission; its keys are tried in
# this order: the exact method ("POST"), then its class ("read": GET and
# HEAD; "write": POST, PUT, PATCH and DELETE), then "any" (any of those
# methods).

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

# /api/namespaces/{ns}: the namespace itself.
namespace_v1 := {
	"read": any_token,
	"PUT": admin_only, # creates the namespace
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

# Direktiv v0.8.8 and later (API v2, go-chi), as v0.10.0 serves it: the
# routes of pkg/api/api.go and of each pkg/api/*.go mountRouter, the
# gateway's own answers (pkg/gateway/gateway.go), the public gateway and
# the web UI's files. One row per path pattern:
#
#   pattern  segments: a literal, {name} for any one segment ({ns} is the
#            namespace), and * for the rest of the path (zero or more
#            segments), which literal segments may follow (they match the
#            end of the path: "gateway/*/consumers")
#   value    method -> permission, "*" for any method; a method's value may
#            be an object instead: {"permission": p} plus any option below
#
# Options, on a method or on the row (then for each of its methods):
#
#   transform  what the sidecar does with the answer: "status" or
#              "namespace_list" (see engine.RouteDecision)
#   lookups    objects the request names by id, which the sidecar checks
#              belong to the namespace before it forwards: [{"kind", and
#              "path": a {name} of the pattern, or "query": a parameter
#              (each of its values; "split": "," splits each value)}]. An
#              id of a kind in lookup_shapes must have that shape.
#   params     query parameter -> shape (see shapes): every value of it must
#              have that shape, else the request is a bad request
#
# A request is matched by the most specific row that has an entry for its
# method: rows without * before rows with one, then the row with more
# literal segments ("events/history/subscribe" before
# "events/history/{id}"). No row, no entry: denied.
v2_routes := {
	"api/v2/status": {"GET": {"permission": public, "transform": "status"}},
	"api/v2/jx": {"POST": any_token}, # a jq playground
	"api/v2/namespaces": {"GET": {"permission": any_token, "transform": "namespace_list"}, "POST": admin_only},
	"api/v2/namespaces/{ns}": {"GET": any_token, "PATCH": "nsconfigManage", "DELETE": "deleteNamespace"},
	"api/v2/namespaces/{ns}/instances": {"GET": "instancesView", "POST": "workflowExecute"},
	"api/v2/namespaces/{ns}/instances/{id}": {"GET": "instancesView", "PATCH": "instancesManage"}, # PATCH cancels
	"api/v2/namespaces/{ns}/instances/{id}/subscribe": {"GET": "instancesView"},
	"api/v2/namespaces/{ns}/instances/{id}/input": {"GET": "instancesView"},
	"api/v2/namespaces/{ns}/instances/{id}/output": {"GET": "instancesView"},
	"api/v2/namespaces/{ns}/instances/{id}/metadata": {"GET": "instancesView"},
	"api/v2/namespaces/{ns}/syncs": {"GET": "nsconfigView", "POST": "nsconfigManage"},
	"api/v2/namespaces/{ns}/secrets": {"GET": "secretsView", "POST": "secretsManage"},
	"api/v2/namespaces/{ns}/secrets/{name}": {"GET": "secretsView", "PATCH": "secretsManage", "DELETE": "secretsManage"},
	"api/v2/namespaces/{ns}/variables": {
		"GET": {"permission": "variablesView", "lookups": [{"kind": "instance", "query": "instanceId"}]},
		"POST": "variablesManage",
		"DELETE": {"permission": "variablesManage", "lookups": [{"kind": "variable", "query": "ids", "split": ","}]},
	},
	"api/v2/namespaces/{ns}/variables/{id}": {
		"GET": "variablesView", "PATCH": "variablesManage", "DELETE": "variablesManage",
		"lookups": [{"kind": "variable", "path": "id"}], # Direktiv looks variables up by id alone
	},
	"api/v2/namespaces/{ns}/files/*": {"GET": "explorerView", "POST": "explorerManage", "PATCH": "explorerManage", "DELETE": "explorerManage"},
	"api/v2/namespaces/{ns}/services": {"GET": "servicesView"},
	"api/v2/namespaces/{ns}/services/{id}/pods": {"GET": "servicesView"},
	"api/v2/namespaces/{ns}/services/{id}/pods/{pod}/logs": {"GET": "servicesView"},
	"api/v2/namespaces/{ns}/services/{id}/actions/rebuild": {"POST": "servicesManage"},
	"api/v2/namespaces/{ns}/registries": {"GET": "registriesView", "POST": "registriesManage"},
	"api/v2/namespaces/{ns}/registries/test": {"POST": "registriesManage"},
	"api/v2/namespaces/{ns}/registries/{id}": {"DELETE": "registriesManage"},
	# Direktiv pastes these parameters into its log backend's query unescaped.
	"api/v2/namespaces/{ns}/logs": {"GET": "instancesView", "POST": "instancesManage", "params": log_params},
	"api/v2/namespaces/{ns}/logs/subscribe": {"GET": "instancesView", "params": log_params},
	"api/v2/namespaces/{ns}/notifications": {"GET": any_token}, # the web UI asks on every page
	"api/v2/namespaces/{ns}/metrics/instances": {"GET": "instancesView"},
	"api/v2/namespaces/{ns}/events/history": {"GET": "eventsView"},
	"api/v2/namespaces/{ns}/events/history/subscribe": {"GET": "eventsView"},
	"api/v2/namespaces/{ns}/events/history/{id}": {"GET": "eventsView", "lookups": [{"kind": "event", "path": "id"}]},
	"api/v2/namespaces/{ns}/events/history/replay/{id}": {"POST": "eventsManage", "lookups": [{"kind": "event", "path": "id"}]},
	"api/v2/namespaces/{ns}/events/listeners": {"GET": "eventsView"},
	"api/v2/namespaces/{ns}/events/listeners/{id}": {"GET": "eventsView", "lookups": [{"kind": "listener", "path": "id"}]},
	"api/v2/namespaces/{ns}/events/broadcast": {"POST": "eventsSend"},
	# The gateway: a path ending in /consumers answers the consumers and their
	# credentials, /routes and /info describe the gateway (whatever the
	# method); any other path is the endpoint itself, which runs its target.
	"api/v2/namespaces/{ns}/gateway/*": {"*": "workflowExecute"},
	"api/v2/namespaces/{ns}/gateway/*/consumers": {"*": "secretsView"},
	"api/v2/namespaces/{ns}/gateway/*/routes": {"*": "explorerView"},
	"api/v2/namespaces/{ns}/gateway/*/info": {"*": "explorerView"},
	# The public gateway serves the same endpoints and the same answers.
	"ns": {"*": public}, # the web UI's files
	"ns/{ns}/*": {"*": public},
	"ns/{ns}/*/consumers": {"*": "secretsView"},
	"ns/{ns}/*/routes": {"*": "explorerView"},
	"ns/{ns}/*/info": {"*": "explorerView"},
}

# Every path whose first segment is neither of these is the web UI's files
# (or its single-page routes, as /n/ns1/explorer), public.
served_by_api := {"api", "ns"}

_served_by_api if served_by_api[input.segments[0]]

# log_params are the query parameters Direktiv's logs endpoints read
# (pkg/api/plattformlogs.go, extractLogRequestParams), with the shape they
# must have. Others are ignored, by Direktiv too.
log_params := {
	"limit": "integer",
	"first": "integer",
	"last": "integer",
	"after": "timestamp",
	"before": "timestamp",
	"lastEventId": "timestamp",
	"instance": "uuid",
	"activity": "uuid",
	"route": "route",
	"direction": "direction",
}

# header_params are the request headers Direktiv reads as a query
# parameter: its log stream (pkg/api/plattformlogs.go, stream) takes
# Last-Event-ID as it takes lastEventId, into its log backend's query. The
# engine hands each such header to the rules as that parameter, after the
# query's own values, so the parameter's shape check covers it.
header_params := {"Last-Event-ID": "lastEventId"}

# lookup_shapes is the shape an id of each lookup kind must have.
lookup_shapes := {"variable": "uuid", "instance": "uuid", "listener": "uuid"}

# shapes a parameter may be required to have: a regular expression its
# whole value must match, and how a reason names it. An empty value is
# absent (Direktiv ignores it) and is not checked.
shapes := {
	"uuid": {
		"pattern": `^[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}$`,
		"text": "a UUID (8-4-4-4-12 hexadecimal digits)",
	},
	"integer": {
		"pattern": `^[0-9]{1,9}$`,
		"text": "a decimal integer of at most 9 digits",
	},
	"timestamp": {
		"pattern": `^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,9})?(Z|[+-][0-9]{2}:[0-9]{2})$`,
		"text": "an RFC 3339 timestamp such as 2026-12-06T01:16:52.633823Z (a + written %2B)",
	},
	"route": {
		"pattern": `^[A-Za-z0-9/_.-]{1,256}$`,
		"text": "a gateway route path of at most 256 letters, digits, '/', '_', '.' and '-'",
	},
	"direction": {
		"pattern": `^(asc|desc)$`,
		"text": "asc or desc",
	},
}

# lookup holds the v1 tables in the form decisions use: every entry spelled
# out per method (method -> permission), and the "family/next" and
# "family/*/sub" keys split into levels. It reads no input, so the engine
# computes it once per load and a decision only looks keys up.
lookup := {
	"tree": {op: expand(e) | some op, e in tree_ops},
	"v1": levels(namespaced_v1),
	"api_v1": {name: expand(e) | some name, e in api_v1},
	"api_v1_subtrees": {name: expand(e) | some name, e in api_v1_subtrees},
	"namespace_v1": expand(namespace_v1),
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

# v2 holds v2_routes in the form decisions use, computed once per load like
# lookup:
#
#   rows     pattern -> row: {"pattern", "regex" (matching the path's
#            segments joined by '/'), "size" (segments before *, or all),
#            "star", "literals" ({position: segment}), "tail" (the literals
#            after *), "key" (the position it is filed under), "rank",
#            "methods" ({method: entry}, and "*": null when the row has no
#            entry for any method)}
#   sized    the rows that may match a path of each size up to longest:
#            size -> key position -> literal there -> pattern -> {"rank",
#            "regex", "methods"}
#   longest  the size of the longest pattern without *
#   star     rows with *, for longer paths: key position -> literal there ->
#            pattern -> the same
#   ui       the entry of the web UI's files
#
# An entry is a method's value with every option spelled out, and what
# decisions need of it: "allowed" (the keys an allowed decision always has:
# allow, and public and transform when set), "checks" (whether a parameter
# or id must be checked), "plain" (neither checks nor lookups), "at" (the
# position of each {name} of the pattern).
#
# A row is filed under its last literal before *, so that a request finds
# the one or two rows it may match by key lookups, and one regular
# expression tells whether it does.
v2 := {
	"rows": _rows,
	"sized": {size: _filed(array.concat(
		[r | some r in exact; r.size == size],
		[r | some r in star; r.size + count(r.tail) <= size],
	)) |
		some size in numbers.range(1, longest)
	},
	"longest": longest,
	"star": _filed(star),
	"ui": _entry({"*": public}, "*", {}),
} if {
	exact := [r | some r in _rows; not r.star]
	star := [r | some r in _rows; r.star]
	longest := max({r.size | some r in exact})
}

_rows := {pattern: _row(pattern, spec) | some pattern, spec in v2_routes}

_row(pattern, spec) := row if {
	parts := split(pattern, "/")
	ends := _ends(parts)
	prefix := array.slice(parts, 0, ends[0])
	tail := array.slice(parts, ends[1], count(parts))
	star := ends[0] < count(parts)
	literals := {i: s | some i, s in prefix; not startswith(s, "{")}
	row := {
		"pattern": pattern,
		"regex": concat("", [
			"^",
			_regex(concat("/", prefix)),
			{true: `(/[^/]+)*`, false: ""}[star],
			_regex(concat("/", array.concat([""], tail))),
			"$",
		]),
		"size": count(prefix),
		"star": star,
		"literals": literals,
		"tail": tail,
		"key": max(object.keys(literals)),
		"rank": _rank(star, count(literals) + count(tail)),
		"methods": object.union(
			{"*": null},
			{m: _entry(spec, m, {trim(s, "{}"): i | some i, s in prefix; startswith(s, "{")}) |
				some m, _ in spec
				upper(m) == m
			},
		),
	}
}

# _regex turns segments joined by '/' into a regular expression: literal
# characters quoted, each {name} any one segment.
_regex(segments) := regex.replace(
	regex.replace(segments, `[\\.+*?()|\[\]^$]`, `\$0`),
	`\{[^/]*\}`, `[^/]+`,
)

# _rank orders the rows a request matches: without * first, then by their
# literal segments.
_rank(false, literals) := 1000 + literals

_rank(true, literals) := literals

# _ends is where the segments before * end and those after it begin:
# [count, count] for a pattern without *.
_ends(parts) := [i, i + 1] if {
	some i, "*" in parts
} else := [count(parts), count(parts)]

# _entry is a method's entry: the method's own options, else the row's,
# else none; and what decisions need of it.
_entry(spec, m, at) := object.union(entry, {
	"lookups": [_lookup(l, at) | some l in entry.lookups],
	"params": {name: shapes[shape] | some name, shape in entry.params},
	"allowed": object.union(
		{"allow": true},
		object.union(
			{"public": true | entry.permission == public},
			{"transform": entry.transform | entry.transform != ""},
		),
	),
	"checks": checks,
	"looks": count(entry.lookups) > 0,
	"plain": plain,
	"at": at,
}) if {
	entry := object.union(
		object.union(
			{"transform": "", "lookups": [], "params": {}},
			object.filter(spec, {"transform", "lookups", "params"}),
		),
		_as_entry(spec[m]),
	)
	checked := count(entry.params) + count({l | some l in entry.lookups; lookup_shapes[l.kind]})
	checks := checked > 0
	plain := (checked + count(entry.lookups)) == 0
}

# _lookup is a lookup of an entry with what decisions need of it: "at"
# (the position of its path segment), "split" ("" for none), "shape" (the
# shape its ids must have, if any) and "subject" (how a reason names it).
_lookup(l, at) := object.union(
	object.union(l, {"split": object.get(l, "split", ""), "subject": _subject(l)}),
	object.union(
		{"at": at[l.path] | l.path},
		{"shape": shapes[shape] | shape := lookup_shapes[l.kind]},
	),
)

_subject(l) := sprintf("the path segment {%s}", [l.path]) if {
	l.path
} else := sprintf("the query parameter %s (values separated by %q)", [l.query, l.split]) if {
	l.split != ""
} else := sprintf("the query parameter %s", [l.query])

_as_entry(v) := {"permission": v} if is_string(v)

_as_entry(v) := v if is_object(v)

# _filed files rows by their key position, then by the literal there.
_filed(rows) := {key: _by_literal([r | some r in rows; r.key == key], key) | some key in {r.key | some r in rows}}

_by_literal(rows, key) := {literal: {r.pattern: object.filter(r, {"rank", "regex", "methods"}) |
	some r in rows
	r.literals[key] == literal
} |
	some literal in {r.literals[key] | some r in rows}
}

# _v2_route is the request's route under v2_routes, as route has it;
# undefined when no row has an entry for it.
_v2_route := [input.segments[entry.at.ns], entry.permission, entry] if {
	entry := _v2_entry
	entry.at.ns
} else := ["", entry.permission, entry] if {
	entry := _v2_entry
}

# _v2_entry is the entry of the most specific row that matches.
_v2_entry := object.get(methods, input.method, methods["*"]) if {
	[_, pattern] := max(_v2_candidates)
	methods := v2.rows[pattern].methods
}

# _v2_candidates are the rows that match the request, as [rank, pattern].
_v2_candidates contains [filed.rank, pattern] if {
	some key, by_literal in v2.sized[count(input.segments)]
	some pattern, filed in by_literal[input.segments[key]]
	object.get(filed.methods, input.method, filed.methods["*"]) != null
	regex.match(filed.regex, concat("/", input.segments))
}

_v2_candidates contains [filed.rank, pattern] if {
	count(input.segments) > v2.longest
	some key, by_literal in v2.star
	some pattern, filed in by_literal[input.segments[key]]
	object.get(filed.methods, input.method, filed.methods["*"]) != null
	regex.match(filed.regex, concat("/", input.segments))
}

# route is the request's route: [namespace ("" for none), permission,
# entry] (see v2 for entries; v1 routes have a plain one). When no table
# covers the request, its entry is {"uncovered": true} (route is always
# defined, so that it is evaluated once). The most specific key that has
# an entry for the method wins.
route := [input.segments[2], p, {"plain": true, "allowed": {"allow": true}}] if {
	input.segments[1] == "namespaces"
	input.segments[3] == "tree"
	input.segments[0] == "api"
	p := lookup.tree[input.op][input.method]
} else := [input.segments[2], p, {"plain": true, "allowed": {"allow": true}}] if {
	input.segments[1] == "namespaces"
	input.segments[0] == "api"
	p := lookup.v1.item[input.segments[3]][input.segments[5]][input.method]
} else := [input.segments[2], p, {"plain": true, "allowed": {"allow": true}}] if {
	input.segments[1] == "namespaces"
	input.segments[0] == "api"
	p := lookup.v1.next[input.segments[3]][input.segments[4]][input.method]
} else := [input.segments[2], p, {"plain": true, "allowed": {"allow": true}}] if {
	input.segments[1] == "namespaces"
	input.segments[0] == "api"
	p := lookup.v1.family[input.segments[3]][input.method]
} else := [input.segments[2], p, {"plain": true, "allowed": {"allow": true}}] if {
	input.segments[1] == "namespaces"
	count(input.segments) == 3
	input.segments[0] == "api"
	p := lookup.namespace_v1[input.method]
} else := ["", p, {"plain": true, "allowed": {"allow": true}}] if {
	count(input.segments) == 2
	input.segments[0] == "api"
	p := lookup.api_v1[input.segments[1]][input.method]
} else := ["", p, {"plain": true, "allowed": {"allow": true}}] if {
	input.segments[0] == "api"
	p := lookup.api_v1_subtrees[input.segments[1]][input.method]
} else := r if {
	r := _v2_route
} else := ["", public, v2.ui] if {
	not _served_by_api
} else := ["", "", {"uncovered": true, "allowed": {"allow": true}}]

# METADATA
# title: Route decision
# description: >-
#   May input.caller send this request to Direktiv, which permission does it
#   need, and what must the sidecar check or change (engine.RouteDecision).
# entrypoint: true
decision := object.union(entry.allowed, {"permission": p, "namespace": ns}) if {
	# The common case first, only an early answer: a namespace token
	# holding what a route of its namespace needs, with nothing to check
	# or look up.
	[ns, p, entry] := route
	entry.plain
	ns == input.caller.namespace
	input.caller.effective[p]
} else := _decide(ns, p, entry) if {
	[ns, p, entry] := route
}

# _decide answers a request on a route of namespace ns ("" for none) that
# needs permission p, with entry (see v2, and route).
_decide(ns, p, entry) := _deny("bad_request", concat("; ", sort(_malformed)), ns, p) if {
	entry.checks
	count(_malformed) > 0
} else := object.union(entry.allowed, {"permission": p, "namespace": ns, "lookups": _lookups}) if {
	# A namespace token holding the permission, with lookups.
	ns == input.caller.namespace
	input.caller.effective[p]
	entry.looks
	count(_lookups) > 0
} else := object.union(entry.allowed, {"permission": p, "namespace": ns}) if {
	ns == input.caller.namespace
	input.caller.effective[p]
} else := object.union(entry.allowed, {"permission": "", "namespace": ns}) if {
	p == public
} else := object.union(entry.allowed, {"permission": _permission_of(p), "namespace": ns}) if {
	input.caller.admin
} else := _deny("unauthenticated", reason, ns, p) if {
	input.caller.namespace == ""
	reason := sprintf(
		"%s %s needs a credential: send the admin token or a token minted by this sidecar in Direktiv-Api-Key, Direktiv-Token or Authorization: Bearer",
		[input.method, _request],
	)
} else := _deny("forbidden", sprintf("no route rule covers %s %s", [input.method, _request]), ns, p) if {
	entry.uncovered
} else := _deny("admin_only", sprintf("%s %s needs the admin token", [input.method, _request]), ns, p) if {
	p == admin_only
} else := _deny("forbidden", reason, ns, p) if {
	ns != ""
	ns != input.caller.namespace
	reason := sprintf(
		"this token belongs to namespace %q and cannot be used in namespace %q",
		[input.caller.namespace, ns],
	)
} else := object.union(entry.allowed, {"permission": p, "namespace": ns, "lookups": _lookups}) if {
	p == any_token
	entry.looks
	count(_lookups) > 0
} else := object.union(entry.allowed, {"permission": p, "namespace": ns}) if {
	p == any_token
} else := object.union(entry.allowed, {"permission": p, "namespace": ns}) if {
	input.caller.effective[p]
} else := _deny("forbidden", reason, ns, p) if {
	reason := sprintf(
		"%s %s needs the %s policy, which this token does not hold (it holds %s)",
		[input.method, _request, p, _held],
	)
}

_deny(code, reason, ns, p) := {
	"allow": false,
	"code": code,
	"reason": reason,
	"permission": _permission_of(p),
	"namespace": ns,
}

# _permission_of is the catalog permission named for a route that needs p:
# "" for none.
_permission_of(p) := "" if {
	p in {admin_only, public}
} else := p

# _named are the ids the request names for its route's lookups, each with
# its lookup: [[lookup, id]], in the order of the lookups and of the values.
_named := array.concat(
	[[l, input.segments[l.at]] | some l in lookups; l.path],
	array.concat(
		[[l, value] |
			some l in lookups
			l.split == ""
			some value in input.query[l.query]
			value != ""
		],
		[[l, id] |
			some l in lookups
			l.split != ""
			some value in input.query[l.query]
			value != ""
			some id in split(value, l.split)
		],
	),
) if {
	lookups := route[2].lookups
}

# _lookups are the objects the request names that the route looks up:
# [{"kind", "id"}].
_lookups := [{"kind": l.kind, "id": id} | some [l, id] in _named]

# _malformed are the reasons the request is a bad request: a parameter the
# route checks, or an id it looks up, does not have its shape.
_malformed contains sprintf("the query parameter %s must be %s, not %s", [name, shape.text, _shown(value)]) if {
	params := route[2].params
	some name, values in input.query
	shape := params[name]
	some value in values
	value != ""
	not regex.match(shape.pattern, value)
}

_malformed contains sprintf("%s must be %s, not %s", [l.subject, shape.text, _shown(id)]) if {
	route[2].looks
	some [l, id] in _named
	shape := l.shape
	not regex.match(shape.pattern, id)
}

# _shown quotes a value for a reason, cut to 64 bytes.
_shown(value) := sprintf("%q", [value]) if {
	count(value) <= 64
} else := sprintf("%q (cut)", [substring(value, 0, 64)])

# _request renders the request for a reason: "/api/namespaces/ns1/tree/wf?op=execute".
_request := concat("", ["/", concat("/", input.segments), _op_suffix])

_op_suffix := "" if {
	input.op == ""
} else := concat("", ["?op=", input.op])

_held := "none" if {
	count(object.get(input.caller, "effective", set())) == 0
} else := sprintf("[%s]", [concat(", ", sort(input.caller.effective))])
