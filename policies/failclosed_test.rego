package sluice_test

import data.sluice

test_missing_jurisdiction_denied if {
	r := sluice.route with input as {
		"pipeline": {"purpose": "ml-training"},
		"data": {"classes": ["financial"]},
		"executor": onprem_fra,
	}
	not r.allow
	"Fail-closed (unknown jurisdiction)" in r.rules
}

test_empty_jurisdiction_denied if {
	r := sluice.route with input as doc("  ", ["financial"], "ml-training", onprem_fra)
	not r.allow
	"Fail-closed (unknown jurisdiction)" in r.rules
}

test_known_jurisdiction_allowed if {
	r := sluice.route with input as doc("de", ["financial"], "ml-training", onprem_fra)
	r.allow
	r.rules == []
}

test_executor_without_jurisdiction_denied if {
	e := json.remove(onprem_fra, ["jurisdiction"])
	r := sluice.route with input as doc("US", ["financial"], "ml-training", e)
	not r.allow
	"Fail-closed (unknown jurisdiction)" in r.rules
}

test_unknown_executor_kind_denied if {
	e := object.union(onprem_fra, {"kind": "edge"})
	r := sluice.route with input as doc("US", ["financial"], "ml-training", e)
	not r.allow
	"Fail-closed (unknown executor kind)" in r.rules
}

test_empty_input_denied if {
	r := sluice.route with input as {}
	not r.allow
	count(r.reasons) > 0
}

test_plain_string_deny_counts if {
	r := sluice.route with input as doc("US", ["financial"], "ml-training", onprem_fra)
		with sluice.deny as {"a plain Conftest-style message"}
	not r.allow
	r.reasons == ["a plain Conftest-style message"]
	r.rules == []
}
