package sluice_test

import data.sluice

test_in_on_onprem_fra_denied if {
	r := sluice.route with input as doc("IN", ["financial"], "ml-training", onprem_fra)
	not r.allow
	r.rules == ["DPDP Act s.16 (IN)"]
}

test_in_on_us_cloud_denied if {
	r := sluice.route with input as doc("IN", ["financial"], "ml-training", aws_us_east_1)
	not r.allow
	"DPDP Act s.16 (IN)" in r.rules
}

test_in_on_indian_executor_allowed if {
	e := object.union(onprem_fra, {"id": "onprem-bom", "site": "bom1", "jurisdiction": "IN"})
	r := sluice.route with input as doc("IN", ["financial"], "ml-training", e)
	r.allow
}

test_br_on_onprem_fra_denied if {
	r := sluice.route with input as doc("BR", ["financial"], "ml-training", onprem_fra)
	not r.allow
	r.rules == ["LGPD Art. 33 (BR)"]
	some msg in r.reasons
	contains(msg, "BR data must stay in BR")
}

test_br_on_brazilian_cloud_allowed if {
	e := object.union(aws_us_east_1, {"id": "aws-sa-east-1", "region": "sa-east-1", "jurisdiction": "BR"})
	r := sluice.route with input as doc("BR", ["financial", "pii"], "ml-training", e)
	r.allow
	r.obligations.hash == ["user_id"]
}

test_localisation_list_is_data if {
	r := sluice.route with input as doc("US", ["financial"], "ml-training", onprem_fra)
		with data.residency.localised as {"US": {"label": "Test Act (US)", "law": "a test law"}}
	not r.allow
	r.rules == ["Test Act (US)"]
}
