package direktiv.mint_test

import data.direktiv.catalog
import data.direktiv.mint

admin := {"admin": true}

# minter holds permissionsManage (and so permissionsView) plus a few more.
minter := token({"permissionsManage", "workflowManage", "eventsSend"})

# token is a minted token of ns1 holding policies, as the engine describes
# it: with the policies those inherit.
token(policies) := {
	"admin": false,
	"namespace": "ns1",
	"policies": policies,
	"effective": {name | some p in policies; some name in catalog.closure[p]},
}

decide(caller, namespace, requested) := d if {
	d := mint.decision with input as {"caller": caller, "namespace": namespace, "requested": requested}
}

test_admin_mints_anything_anywhere if {
	d := decide(admin, "any", {"deleteNamespace", "eventsManage"})
	d == {"allow": true, "granted": {"deleteNamespace", "eventsManage"}, "dropped": set(), "unknown": set()}
}

test_minter_gets_what_it_holds_and_inherits if {
	d := decide(minter, "ns1", {"workflowView", "permissionsView", "eventsSend"})
	d == {"allow": true, "granted": {"eventsSend", "permissionsView", "workflowView"}, "dropped": set(), "unknown": set()}
}

test_minter_loses_what_it_does_not_hold if {
	d := decide(minter, "ns1", {"deleteNamespace", "workflowManage", "secretsView"})
	d == {"allow": true, "granted": {"workflowManage"}, "dropped": {"deleteNamespace", "secretsView"}, "unknown": set()}
}

test_minter_other_namespace_is_forbidden if {
	d := decide(minter, "ns2", {"workflowView"})
	d == {
		"allow": false,
		"code": "forbidden",
		"reason": `this token belongs to namespace "ns1" and can mint tokens only there, not in namespace "ns2"`,
		"granted": set(),
		"dropped": set(),
		"unknown": set(),
	}
}

test_minter_without_permissions_manage_is_forbidden if {
	d := decide(token({"permissionsView", "workflowManage"}), "ns1", {"workflowView"})
	d.allow == false
	d.code == "forbidden"
	d.reason == "minting a token needs the permissionsManage policy, which this token does not hold (it holds [permissionsView, workflowManage, workflowView])"
}

test_caller_without_policies_is_forbidden if {
	d := decide({"admin": false, "namespace": "ns1"}, "ns1", {"workflowView"})
	d.code == "forbidden"
	endswith(d.reason, "(it holds none)")
}

test_namespace_checked_before_validation if {
	d := decide(minter, "ns2", {"noSuchPolicy"})
	d.code == "forbidden"
	contains(d.reason, `namespace "ns2"`)
}

test_permission_checked_before_validation if {
	d := decide(token(set()), "ns1", set())
	d.code == "forbidden"
	contains(d.reason, "permissionsManage")
}

test_empty_request_is_bad if {
	d := decide(admin, "ns1", set())
	d.allow == false
	d.code == "bad_request"
	startswith(d.reason, "the request names no policies; ask for at least one of: [deleteNamespace, eventsManage, ")
}

test_unknown_names_are_bad if {
	d := decide(minter, "ns1", {"workflowView", "workflowview", "fooManage"})
	d.allow == false
	d.code == "bad_request"
	d.unknown == {"fooManage", "workflowview"}
	startswith(d.reason, "unknown policies [fooManage, workflowview]; valid policies are: [deleteNamespace, ")
}

test_nothing_held_is_forbidden if {
	d := decide(minter, "ns1", {"secretsManage", "opaView"})
	d.allow == false
	d.code == "forbidden"
	d.dropped == {"opaView", "secretsManage"}
	d.reason == "none of the requested policies [opaView, secretsManage] are held by the caller, which holds [eventsSend, permissionsManage, permissionsView, workflowManage, workflowView]"
}

test_holdings_are_the_effective_policies if {
	# The engine closes the caller's policies under inheritance; the decision
	# reads that closure, input.caller.effective, not input.caller.policies.
	caller := object.union(token({"permissionsManage"}), {"effective": {"permissionsManage", "secretsView"}})
	d := decide(caller, "ns1", {"secretsView", "permissionsView"})
	d.granted == {"secretsView"}
	d.dropped == {"permissionsView"}
}
