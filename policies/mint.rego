# The mint decision: may input.caller mint a token in input.namespace that
# holds input.requested? The engine asks with
#
#   input.caller.admin      true for the admin token
#   input.caller.namespace  the namespace of a minted token
#   input.caller.policies   the set of policies a minted token was granted
#   input.caller.effective  those policies closed under inheritance: the
#                           engine computes it from catalog.closure
#   input.namespace         where the new token is to live
#   input.requested         the set of policy names asked for
#
# and reads an answer of engine.MintDecision's shape:
#
#   {"allow", "code", "reason", "granted", "dropped", "unknown"}
#
# granted, dropped and unknown are sets; the engine sorts them. Checks run
# in order, and the first that fails decides: who may mint here (403
# forbidden), then whether the request is well formed (400 bad_request),
# then whether anything is left to grant (403 forbidden).
package direktiv.mint

import data.direktiv.catalog

# _unknown is every requested name the catalog does not know.
_unknown := input.requested - catalog.names

# _granted is what the new token gets: the admin may grant anything, a minted
# token only what it holds itself.
_granted := input.requested if {
	input.caller.admin
} else := input.requested & input.caller.effective

# METADATA
# title: Mint decision
# description: >-
#   May input.caller mint a token in input.namespace holding input.requested,
#   and which policies does it get (engine.MintDecision).
# entrypoint: true
decision := {"allow": true, "granted": held, "dropped": input.requested - held, "unknown": set()} if {
	# The common case first, only an early answer: a namespace token with
	# permissionsManage minting known policies it holds. The branches after
	# it decide every case on their own.
	not input.caller.admin
	input.caller.namespace == input.namespace
	input.caller.effective.permissionsManage
	object.subset(catalog.names, input.requested)
	held := input.requested & input.caller.effective
	held != set()
} else := _deny("forbidden", reason, set(), set()) if {
	not input.caller.admin
	input.caller.namespace != input.namespace
	reason := sprintf(
		"this token belongs to namespace %q and can mint tokens only there, not in namespace %q",
		[input.caller.namespace, input.namespace],
	)
} else := _deny("forbidden", reason, set(), set()) if {
	not input.caller.admin
	not input.caller.effective.permissionsManage
	reason := sprintf(
		"minting a token needs the permissionsManage policy, which this token does not hold (it holds %s)",
		[_list(object.get(input.caller, "effective", set()))],
	)
} else := _deny("bad_request", reason, set(), set()) if {
	count(input.requested) == 0
	reason := sprintf("the request names no policies; ask for at least one of: %s", [_list(catalog.names)])
} else := _deny("bad_request", reason, set(), _unknown) if {
	count(_unknown) > 0
	reason := sprintf("unknown policies %s; valid policies are: %s", [_list(_unknown), _list(catalog.names)])
} else := _deny("forbidden", reason, input.requested, set()) if {
	count(_granted) == 0
	reason := sprintf(
		"none of the requested policies %s are held by the caller, which holds %s",
		[_list(input.requested), _list(input.caller.effective)],
	)
} else := {
	"allow": true,
	"granted": _granted,
	"dropped": input.requested - _granted,
	"unknown": set(),
}

_deny(code, reason, dropped, unknown_names) := {
	"allow": false,
	"code": code,
	"reason": reason,
	"granted": set(),
	"dropped": dropped,
	"unknown": unknown_names,
}

# _list renders a set of names for a reason: "[a, b]", or "none".
_list(names) := "none" if {
	count(names) == 0
} else := sprintf("[%s]", [concat(", ", sort(names))])
