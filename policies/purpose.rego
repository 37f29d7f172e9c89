package sluice

# METADATA
# title: Purpose limitation
# description: |
#   The pipeline's purpose must be allowed for every data class in the
#   slice (data.residency.purposes). A class with no entry allows no
#   purpose, so an unknown class is denied until someone lists it.
# custom:
#   label: GDPR Art. 5(1)(b)
deny contains {"msg": msg, "rule": label(rego.metadata.rule())} if {
	some class in data_classes
	purpose := object.get(input, ["pipeline", "purpose"], "")
	allowed := object.get(residency.purposes, class, [])
	not purpose in allowed
	msg := sprintf("GDPR Art. 5(1)(b): purpose %q is not allowed for %s data (allowed: %v)", [purpose, class, allowed])
}
