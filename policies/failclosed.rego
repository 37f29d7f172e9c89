package sluice

# METADATA
# title: Data jurisdiction must be known
# description: Without a jurisdiction no residency rule can be checked, so the slice goes nowhere.
# custom:
#   label: Fail-closed (unknown jurisdiction)
deny contains {"msg": msg, "rule": label(rego.metadata.rule())} if {
	data_jurisdiction == ""
	msg := "data jurisdiction is missing or empty: residency cannot be checked, processing is denied everywhere"
}

# METADATA
# title: Executor jurisdiction must be known
# custom:
#   label: Fail-closed (unknown jurisdiction)
deny contains {"msg": msg, "rule": label(rego.metadata.rule())} if {
	executor_jurisdiction == ""
	msg := sprintf("executor %s has no jurisdiction: residency cannot be checked", [executor_id])
}

# METADATA
# title: Executor kind must be known
# description: Obligations depend on whether the executor is on-prem or in a cloud.
# custom:
#   label: Fail-closed (unknown executor kind)
deny contains {"msg": msg, "rule": label(rego.metadata.rule())} if {
	not executor_kind in residency.executor_kinds
	msg := sprintf("executor %s has kind %q, want one of %v", [executor_id, executor_kind, residency.executor_kinds])
}
