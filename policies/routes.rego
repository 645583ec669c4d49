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
# Which permission a route needs is data: the table below. A permission is
# a catalog policy name, or one of:
#
#   any_token   any valid token may call it (of the route's namespace, if any)
#   admin_only  only the admin token may call it
#   public      anyone may call it, without a credential
#
# The answer, in this order: a parameter a route checks that has the wrong
# shape is a bad request (for everyone); a public route is allowed; the
# admin token may call everything; an anonymous request is unauthenticated;
# a request no row covers is denied (fail closed); then the token must be
# of the route's namespace and hold the permission.
package direktiv.routes

any_token := ""

admin_only := "admin"

public := "public"

# method_class is the class a row may name a method by: "read" or "write".
method_class := {
	"GET": "read",
	"HEAD": "read",
	"POST": "write",
	"PUT": "write",
	"PATCH": "write",
	"DELETE": "write",
}

# table holds every route the sidecar lets through, one row per path
# pattern; adding a route is one row here and one case in routes_test.rego.
#
#   pattern  segments: a literal, {name} for any one segment ({ns} is the
#            namespace), and * for the rest of the path (zero or more
#            segments), which literal segments may follow (they match the
#            end of the path: "gateway/*/consumers"). A pattern may end in
#            ?op=NAME (Direktiv v1's tree): the row holds only when the op
#            query parameter is NAME (?op= when there is none); a pattern
#            without it holds whatever the op.
#   value    method -> permission. A key is a method ("GET"), a class of
#            methods ("read": GET and HEAD; "write": POST, PUT, PATCH and
#            DELETE) or "*" for any method; a method's own key wins over
#            its class, its class over "*". A method's value may be an
#            object instead: {"permission": p} plus any option below.
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
table := {
	# Direktiv v0.8.8 and later (API v2, go-chi), as v0.10.0 serves it: the
	# routes of pkg/api/api.go and of each pkg/api/*.go mountRouter, the
	# gateway's own answers (pkg/gateway/gateway.go), the public gateway and
	# the web UI's files.
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
	# Direktiv up to v0.8.6 (API v1, gorilla/mux), and the sidecar's own
	# token endpoints. Outside any namespace:
	"api/version": {"read": any_token, "write": any_token},
	"api/jq": {"read": any_token, "write": any_token},
	"api/namespaces": {"read": admin_only, "write": admin_only}, # list (GET) or create (POST) namespaces
	"api/logs": {"read": admin_only, "write": admin_only}, # server logs
	"api/functions/*": {"read": admin_only, "write": admin_only}, # global services
	# The namespace itself, and what lies under it.
	"api/namespaces/{ns}": {"read": any_token, "PUT": admin_only, "DELETE": "deleteNamespace"}, # PUT creates it
	"api/namespaces/{ns}/instances/*": {"read": "instancesView", "write": "instancesManage"}, # POST instances/{id}/cancel
	"api/namespaces/{ns}/instances/{id}/vars/*": {"read": "variablesView", "write": "variablesManage"},
	"api/namespaces/{ns}/vars/*": {"read": "variablesView", "write": "variablesManage"},
	"api/namespaces/{ns}/secrets/*": {"read": "secretsView", "write": "secretsManage"},
	"api/namespaces/{ns}/registries/*": {"read": "registriesView", "write": "registriesManage"},
	"api/namespaces/{ns}/functions/*": {"read": "servicesView", "write": "servicesManage"},
	"api/namespaces/{ns}/services/*": {"read": "servicesView", "write": "servicesManage"},
	"api/namespaces/{ns}/events/*": {"read": "eventsView", "write": "eventsManage"},
	"api/namespaces/{ns}/eventfilter/*": {"read": "eventsView", "write": "eventsManage"},
	"api/namespaces/{ns}/broadcast/*": {"POST": "eventsSend"},
	"api/namespaces/{ns}/logs/*": {"read": "instancesView"},
	"api/namespaces/{ns}/metrics/*": {"read": "instancesView"},
	"api/namespaces/{ns}/config/*": {"read": "nsconfigView", "write": "nsconfigManage"},
	"api/namespaces/{ns}/lint/*": {"read": "workflowView"},
	"api/namespaces/{ns}/opa/*": {"read": "opaView", "write": "opaManage"},
	# The sidecar's own token endpoints (minting, POST auth/token, is not a route).
	"api/namespaces/{ns}/auth/token/*": {"GET": any_token}, # who am I
	"api/namespaces/{ns}/auth/tokens/*": {"GET": "permissionsView", "DELETE": "permissionsManage"}, # list, read, revoke
	# The tree, by op. Reading a node (a directory listing or a workflow) is
	# explorer work; everything about one workflow is workflow work;
	# creating, renaming and deleting nodes is explorer work again, as a
	# node may be a directory.
	"api/namespaces/{ns}/tree/*?op=": {"read": "explorerView"},
	"api/namespaces/{ns}/tree/*?op=create-directory": {"write": "explorerManage"},
	"api/namespaces/{ns}/tree/*?op=delete-node": {"write": "explorerManage"},
	"api/namespaces/{ns}/tree/*?op=rename-node": {"write": "explorerManage"},
	"api/namespaces/{ns}/tree/*?op=refs": {"read": "workflowView"},
	"api/namespaces/{ns}/tree/*?op=revisions": {"read": "workflowView"},
	"api/namespaces/{ns}/tree/*?op=tags": {"read": "workflowView"},
	"api/namespaces/{ns}/tree/*?op=router": {"read": "workflowView"},
	"api/namespaces/{ns}/tree/*?op=logs": {"read": "workflowView"},
	"api/namespaces/{ns}/tree/*?op=metrics-invoked": {"read": "workflowView"},
	"api/namespaces/{ns}/tree/*?op=metrics-successful": {"read": "workflowView"},
	"api/namespaces/{ns}/tree/*?op=metrics-failed": {"read": "workflowView"},
	"api/namespaces/{ns}/tree/*?op=metrics-milliseconds": {"read": "workflowView"},
	"api/namespaces/{ns}/tree/*?op=metrics-state-milliseconds": {"read": "workflowView"},
	"api/namespaces/{ns}/tree/*?op=metrics-sankey": {"read": "workflowView"},
	"api/namespaces/{ns}/tree/*?op=validate-ref": {"read": "workflowView", "POST": "workflowView"},
	"api/namespaces/{ns}/tree/*?op=validate-router": {"read": "workflowView", "POST": "workflowView"},
	"api/namespaces/{ns}/tree/*?op=create-workflow": {"write": "workflowManage"},
	"api/namespaces/{ns}/tree/*?op=update-workflow": {"write": "workflowManage"},
	"api/namespaces/{ns}/tree/*?op=save-workflow": {"write": "workflowManage"},
	"api/namespaces/{ns}/tree/*?op=discard-workflow": {"write": "workflowManage"},
	"api/namespaces/{ns}/tree/*?op=delete-revision": {"write": "workflowManage"},
	"api/namespaces/{ns}/tree/*?op=tag": {"write": "workflowManage"},
	"api/namespaces/{ns}/tree/*?op=untag": {"write": "workflowManage"},
	"api/namespaces/{ns}/tree/*?op=retag": {"write": "workflowManage"},
	"api/namespaces/{ns}/tree/*?op=edit-router": {"write": "workflowManage"},
	"api/namespaces/{ns}/tree/*?op=set-workflow-event-logging": {"write": "workflowManage"},
	"api/namespaces/{ns}/tree/*?op=toggle": {"write": "workflowManage"},
	"api/namespaces/{ns}/tree/*?op=execute": {"read": "workflowExecute", "write": "workflowExecute"},
	"api/namespaces/{ns}/tree/*?op=wait": {"read": "workflowExecute", "write": "workflowExecute"},
	"api/namespaces/{ns}/tree/*?op=vars": {"read": "variablesView"},
	"api/namespaces/{ns}/tree/*?op=var": {"read": "variablesView"},
	"api/namespaces/{ns}/tree/*?op=set-var": {"write": "variablesManage"},
	"api/namespaces/{ns}/tree/*?op=delete-var": {"write": "variablesManage"},
}

# Every path whose first segment is neither of these is the web UI's files
# (or its single-page routes, as /n/ns1/explorer), public.
served_by_api := {"api", "ns"}

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

# METADATA
# title: Headers read as query parameters
# description: >-
#   The request headers Direktiv reads as a query parameter: its log stream
#   (pkg/api/plattformlogs.go, stream) takes Last-Event-ID as it takes
#   lastEventId, into its log backend's query. The engine hands each such
#   header to the rules as that parameter, after the query's own values, so
#   the parameter's shape check covers it.
# entrypoint: true
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

# _index holds the table in the form decisions use. It reads no input, so
# the engine computes it once per load and a decision only looks keys up:
#
#   routes   path -> route: the rows of one path pattern (a pattern without
#            ?op=) as {"path", "regex" (matching the request's segments
#            joined by '/'), "size" (segments before *, or all), "star",
#            "literals" ({position: segment}), "tail" (the literals after
#            *), "key" (the position it is filed under), "rank", "at" (the
#            position of each {name}), "ops" (op -> method -> entry; op "*"
#            for rows without ?op=, method "*" for any other method, an
#            entry null when there is none)}
#   sized    the routes that may match a path of each size up to longest:
#            size -> key position -> literal there -> path -> {"rank",
#            "regex", "ops"}
#   longest  the size of the longest pattern without *
#   star     routes with *, for longer paths: key position -> literal there
#            -> path -> the same
#   ui       the entry of the web UI's files
#
# An entry is a method's value with every option spelled out, and what
# decisions need of it: "allowed" (the keys an allowed decision always has:
# allow, and public and transform when set), "checks" (whether a parameter
# or id must be checked), "looks" (whether it has lookups), "plain"
# (neither checks nor lookups), "at".
#
# A route is filed under its last literal before *, so that a request finds
# the one or two routes it may match by key lookups, and one regular
# expression tells whether it does.
_index := {
	"routes": _routes,
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
	exact := [r | some r in _routes; not r.star]
	star := [r | some r in _routes; r.star]
	longest := max({r.size | some r in exact})
}

# _specs is the table by path pattern and op: path -> op -> a row's value,
# op "*" for a pattern without ?op=.
_specs[path][op] := spec if {
	some pattern, spec in table
	[path, op] := _split_op(pattern)
}

_split_op(pattern) := [path, op] if {
	[path, op] := split(pattern, "?op=")
} else := [pattern, "*"]

_routes[path] := object.union(route, {"ops": object.union(
	{"*": {"*": null}},
	{op: _methods(spec, route.at) | some op, spec in specs},
)}) if {
	some path, specs in _specs
	route := _route(path)
}

_route(path) := {
	"path": path,
	"regex": concat("", [
		"^",
		_regex(concat("/", prefix)),
		_any_segments(star),
		_regex(concat("/", array.concat([""], tail))),
		"$",
	]),
	"size": count(prefix),
	"star": star,
	"literals": literals,
	"tail": tail,
	"key": max(object.keys(literals)),
	"rank": _rank(star, count(literals) + count(tail)),
	"at": {trim(s, "{}"): i | some i, s in prefix; startswith(s, "{")},
} if {
	parts := split(path, "/")
	ends := _ends(parts)
	prefix := array.slice(parts, 0, ends[0])
	tail := array.slice(parts, ends[1], count(parts))
	star := ends[0] < count(parts)
	literals := {i: s | some i, s in prefix; not startswith(s, "{")}
}

# _regex turns segments joined by '/' into a regular expression: literal
# characters quoted, each {name} any one segment.
_regex(segments) := regex.replace(
	regex.replace(segments, `[\\.+*?()|\[\]^$]`, `\$0`),
	`\{[^/]*\}`, `[^/]+`,
)

# _any_segments matches what a * matches: zero or more segments.
_any_segments(true) := `(/[^/]+)*`

_any_segments(false) := ""

# _rank orders the routes a request matches: without * first, then by
# their literal segments.
_rank(false, literals) := 1000 + literals

_rank(true, literals) := literals

# _ends is where the segments before * end and those after it begin:
# [count, count] for a pattern without *.
_ends(parts) := [i, i + 1] if {
	some i, "*" in parts
} else := [count(parts), count(parts)]

# _methods is a row's entries by method: each method it names, by itself
# or by its class, and "*" (null when the row names no "*").
_methods(spec, at) := object.union(
	{"*": null},
	{method: _entry(spec, key, at) | some method, key in _method_keys(spec)},
)

# _method_keys is the key of spec that answers each method: its own, else
# its class, else "*".
_method_keys(spec) := {method: key |
	some method in (object.keys(method_class) | {k | some k, _ in spec; upper(k) == k})
	key := _method_key(spec, method)
}

_method_key(spec, method) := method if {
	spec[method]
} else := method_class[method] if {
	spec[method_class[method]]
} else := "*" if {
	spec["*"]
}

# _entry is the entry of a row's key: the key's own options, else the
# row's, else none; and what decisions need of it.
_entry(spec, key, at) := object.union(entry, {
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
		_as_entry(spec[key]),
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

# _filed files routes by their key position, then by the literal there.
_filed(routes) := {key: _by_literal([r | some r in routes; r.key == key], key) | some key in {r.key | some r in routes}}

_by_literal(routes, key) := {literal: {r.path: object.filter(r, {"rank", "regex", "ops"}) |
	some r in routes
	r.literals[key] == literal
} |
	some literal in {r.literals[key] | some r in routes}
}

# route is the request's route: [namespace ("" for none), permission,
# entry]. When no row covers the request, its entry is {"uncovered": true}
# (route is always defined, so that it is evaluated once).
default route := ["", "", {"uncovered": true, "allowed": {"allow": true}}]

route := [input.segments[_matched.at.ns], _matched.permission, _matched] if {
	_matched.at.ns
} else := ["", _matched.permission, _matched] if {
	_matched
} else := ["", public, _index.ui] if {
	not _served_by_api
}

_served_by_api if served_by_api[input.segments[0]]

# _matched is the entry of the most specific route that matches.
_matched := entry if [_, _, entry] := max(_matches)

# _matches are the routes that match the request and have an entry for its
# op and method, as [rank, path, entry].
_matches contains [r.rank, path, entry] if {
	some key, by_literal in object.get(_index.sized, count(input.segments), _index.star)
	some path, r in by_literal[input.segments[key]]
	methods := object.get(r.ops, input.op, r.ops["*"])
	entry := object.get(methods, input.method, methods["*"])
	entry != null
	regex.match(r.regex, _path)
}

# _path is the request's path as the routes' regular expressions read it.
_path := concat("/", input.segments)

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
# needs permission p, with entry (see _index, and route).
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
