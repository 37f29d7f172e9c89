package sluice_test

import data.sluice

test_us_pii_on_cloud_hashed if {
	r := sluice.route with input as doc("US", ["financial", "pii"], "ml-training", aws_us_east_1)
	r.allow
	r.obligations == {"mask": [], "drop": [], "hash": ["user_id"]}
	r.rules == ["Pseudonymise PII on cloud (house rule)"]
}

test_us_pii_on_onprem_not_hashed if {
	r := sluice.route with input as doc("US", ["financial", "pii"], "ml-training", onprem_fra)
	r.allow
	r.obligations.hash == []
	r.rules == []
}

test_every_pii_column_hashed if {
	doc_in := {
		"pipeline": {"purpose": "ml-training"},
		"data": {"jurisdiction": "US", "classes": ["pii"], "columns": [
			{"name": "email", "classes": ["pii"]},
			{"name": "user_id", "classes": ["pii", "financial"]},
			{"name": "amount", "classes": ["financial"]},
			{"name": "note"},
		]},
		"executor": aws_us_east_1,
	}
	r := sluice.route with input as doc_in
	r.obligations.hash == ["email", "user_id"]
}
