package sluice_test

import data.sluice

test_de_on_onprem_fra_allowed if {
	r := sluice.route with input as doc("DE", ["financial", "pii"], "ml-training", onprem_fra)
	r.allow
	r.reasons == []
}

test_de_on_us_cloud_denied if {
	r := sluice.route with input as doc("DE", ["financial", "pii"], "ml-training", aws_us_east_1)
	not r.allow
	r.rules == ["GDPR Art. 44", "Pseudonymise PII on cloud (house rule)"]
	some msg in r.reasons
	contains(msg, "GDPR Art. 44")
	contains(msg, "aws-us-east-1")
}

test_fr_on_us_cloud_denied if {
	r := sluice.route with input as doc("FR", ["pii"], "ml-training", aws_us_east_1)
	not r.allow
	"GDPR Art. 44" in r.rules
}

test_eea_non_eu_data_covered if {
	r := sluice.route with input as doc("NO", ["pii"], "ml-training", aws_us_east_1)
	"GDPR Art. 44" in r.rules
}

test_eu_on_adequate_country_allowed if {
	every j in ["GB", "CH", "JP", "KR", "NZ", "IL", "CA"] {
		e := object.union(aws_us_east_1, {"id": "cloud-x", "jurisdiction": j})
		r := sluice.route with input as doc("DE", ["pii"], "ml-training", e)
		r.allow
	}
}

test_eu_on_other_eu_country_allowed if {
	e := object.union(aws_us_east_1, {"id": "aws-eu-west-3", "region": "eu-west-3", "jurisdiction": "FR"})
	r := sluice.route with input as doc("DE", ["pii"], "ml-training", e)
	r.allow
	r.obligations.hash == ["user_id"]
}

test_eu_on_us_with_dpf_allowed if {
	e := object.union(aws_us_east_1, {"certifications": ["soc2", "dpf"]})
	r := sluice.route with input as doc("DE", ["pii"], "ml-training", e)
	r.allow
}

test_eu_on_non_adequate_country_denied if {
	e := object.union(aws_us_east_1, {"id": "cloud-sg", "jurisdiction": "SG", "certifications": ["dpf"]})
	r := sluice.route with input as doc("DE", ["pii"], "ml-training", e)
	not r.allow
	"GDPR Art. 44" in r.rules
}

test_us_data_not_subject_to_gdpr_rule if {
	r := sluice.route with input as doc("US", ["financial", "pii"], "ml-training", aws_us_east_1)
	not "GDPR Art. 44" in r.rules
}
