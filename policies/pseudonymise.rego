package sluice

# METADATA
# title: Pseudonymise PII before any cloud executor
# description: |
#   House rule in the spirit of GDPR Art. 32(1)(a): every column tagged
#   "pii" is hashed before the rows leave for a cloud executor. It is an
#   obligation, not a deny: the executor receives the hashed column.
# custom:
#   label: Pseudonymise PII on cloud (house rule)
obligation contains {"op": "hash", "column": col.name, "rule": label(rego.metadata.rule())} if {
	executor_kind == "cloud"
	some col in object.get(input, ["data", "columns"], [])
	"pii" in object.get(col, "classes", [])
}
