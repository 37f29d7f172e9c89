package sluice

# METADATA
# title: EU/EEA data stays in the EU/EEA or an adequate country
# description: |
#   GDPR Chapter V. Data whose jurisdiction is an EU/EEA country may be
#   processed only by executors in the EU/EEA (data.residency.eu_eea) or in
#   a country with an adequacy decision (data.residency.adequate, Art. 45).
#   The United States has a partial adequacy decision that covers only
#   organisations certified under the EU-US Data Privacy Framework, so a US
#   executor qualifies only when it lists the certification "dpf".
#   Transfers under SCCs or BCRs (Art. 46/47) are case-by-case and are not
#   modelled: they need a rule of their own.
# custom:
#   label: GDPR Art. 44
deny contains {"msg": msg, "rule": label(rego.metadata.rule())} if {
	data_jurisdiction in residency.eu_eea
	not eu_transfer_allowed
	msg := sprintf(
		"GDPR Art. 44: %s data may not be transferred to executor %s in %s (not EU/EEA, no adequacy decision, no DPF certification)",
		[data_jurisdiction, executor_id, executor_jurisdiction],
	)
}

eu_transfer_allowed if executor_jurisdiction in residency.eu_eea

eu_transfer_allowed if executor_jurisdiction in residency.adequate

eu_transfer_allowed if {
	executor_jurisdiction in residency.dpf_jurisdictions
	"dpf" in executor_certifications
}
