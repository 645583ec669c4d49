package direktiv.catalog_test

import data.direktiv.catalog

test_direktiv_names_are_all_in_the_catalog if {
	direktiv := {
		"explorerView", "explorerManage",
		"workflowView", "workflowManage", "workflowExecute", "workflowStore",
		"instancesView", "instancesManage",
		"variablesView", "variablesManage",
		"secretsView", "secretsManage",
		"registriesView", "registriesManage",
		"servicesView", "servicesManage",
		"eventsView", "eventsManage", "eventsSend",
		"nsconfigView", "nsconfigManage",
		"permissionsView", "permissionsManage",
		"opaView", "opaManage",
		"deleteNamespace",
	}
	catalog.names == direktiv
}

test_every_manage_inherits_its_view if {
	manage := {name | some name in catalog.names; endswith(name, "Manage")}
	count(manage) == 11
	every name in manage {
		view := concat("", [trim_suffix(name, "Manage"), "View"])
		catalog.inherits[name][view]
	}
}

test_inherits_names_only_catalog_policies if {
	every from, tos in catalog.inherits {
		catalog.names[from]
		every to in tos {
			catalog.names[to]
		}
	}
}

test_every_policy_grants_itself if {
	every name in catalog.names {
		catalog.closure[name][name]
	}
}

test_permissions_manage_grants_view if {
	catalog.closure.permissionsManage == {"permissionsManage", "permissionsView"}
}

test_view_grants_only_itself if {
	catalog.closure.permissionsView == {"permissionsView"}
	catalog.closure.deleteNamespace == {"deleteNamespace"}
}

test_closure_is_transitive if {
	closure := catalog.closure with catalog.inherits as {"a": {"b"}, "b": {"c"}}
		with catalog.names as {"a", "b", "c", "d"}
	closure == {"a": {"a", "b", "c"}, "b": {"b", "c"}, "c": {"c"}, "d": {"d"}}
}

test_closure_survives_cycles if {
	closure := catalog.closure with catalog.inherits as {"a": {"b"}, "b": {"a"}}
		with catalog.names as {"a", "b"}
	closure == {"a": {"a", "b"}, "b": {"a", "b"}}
}
