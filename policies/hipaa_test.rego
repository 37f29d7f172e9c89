package sluice_test

import data.sluice

test_phi_on_cloud_denied if {
	r := sluice.route with input as doc("US", ["phi"], "ml-training", aws_us_east_1)
	not r.allow
	"HIPAA 164.312" in r.rules
	count(r.reasons) == 2 # cloud, and not hipaa-certified
}

test_phi_on_hipaa_onprem_allowed if {
	r := sluice.route with input as doc("US", ["phi"], "ml-training", onprem_fra)
	r.allow
	r.rules == []
}

test_phi_on_uncertified_onprem_denied if {
	e := object.union(onprem_fra, {"certifications": ["iso27001"]})
	r := sluice.route with input as doc("US", ["phi"], "ml-training", e)
	not r.allow
	r.rules == ["HIPAA 164.312"]
}

test_phi_on_certified_cloud_denied if {
	e := object.union(aws_us_east_1, {"certifications": ["hipaa"]})
	r := sluice.route with input as doc("US", ["phi"], "ml-training", e)
	not r.allow
	"HIPAA 164.312" in r.rules
	count(r.reasons) == 1 # certified, but still cloud
}

test_no_phi_on_cloud_not_hipaa if {
	r := sluice.route with input as doc("US", ["financial"], "ml-training", aws_us_east_1)
	not "HIPAA 164.312" in r.rules
}
