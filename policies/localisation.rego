package sluice

# METADATA
# title: Data localisation
# description: |
#   Data from a jurisdiction listed in data.residency.localised is processed
#   only by executors in that same jurisdiction. The label of each
#   jurisdiction comes from the data file, so adding a country is a data
#   change; the annotation label is the fallback.
# custom:
#   label: Data localisation
deny contains {"msg": msg, "rule": rule} if {
	some j, law in residency.localised
	data_jurisdiction == j
	executor_jurisdiction != j
	rule := object.get(law, "label", label(rego.metadata.rule()))
	act := object.get(law, "law", "local law")
	msg := sprintf("%s: %s data must stay in %s under %s; executor %s is in %s", [rule, j, j, act, executor_id, executor_jurisdiction])
}
