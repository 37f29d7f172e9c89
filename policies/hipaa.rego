package sluice

# METADATA
# title: PHI only on HIPAA-certified on-prem executors
# description: |
#   Protected health information is processed only where the technical
#   safeguards of the HIPAA Security Rule (45 CFR 164.312) are attested:
#   an on-prem executor that lists the certification "hipaa".
# custom:
#   label: HIPAA 164.312
deny contains {"msg": msg, "rule": label(rego.metadata.rule())} if {
	"phi" in data_classes
	executor_kind != "onprem"
	msg := sprintf("HIPAA 164.312: PHI may be processed only on-prem; executor %s is %q", [executor_id, executor_kind])
}

# METADATA
# title: PHI only on HIPAA-certified on-prem executors
# custom:
#   label: HIPAA 164.312
deny contains {"msg": msg, "rule": label(rego.metadata.rule())} if {
	"phi" in data_classes
	not "hipaa" in executor_certifications
	msg := sprintf("HIPAA 164.312: PHI requires an executor certified \"hipaa\"; executor %s is not", [executor_id])
}
