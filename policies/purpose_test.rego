package sluice_test

import data.sluice

test_allowed_purpose if {
	every p in ["fraud-detection", "risk-scoring", "ml-training"] {
		r := sluice.route with input as doc("US", ["financial", "pii"], p, onprem_fra)
		r.allow
	}
}

test_purpose_not_allowed_for_one_class_denied if {
	# analytics is allowed for pii but not for financial data
	r := sluice.route with input as doc("US", ["financial", "pii"], "analytics", onprem_fra)
	not r.allow
	r.rules == ["GDPR Art. 5(1)(b)"]
	count(r.reasons) == 1
	contains(r.reasons[0], "financial")
}

test_phi_for_clinical_research_allowed if {
	r := sluice.route with input as doc("US", ["phi"], "clinical-research", onprem_fra)
	r.allow
}

test_phi_for_fraud_detection_denied if {
	r := sluice.route with input as doc("US", ["phi"], "fraud-detection", onprem_fra)
	not r.allow
	r.rules == ["GDPR Art. 5(1)(b)"]
}

test_missing_purpose_denied if {
	r := sluice.route with input as {"data": {"jurisdiction": "US", "classes": ["pii"]}, "executor": onprem_fra}
	not r.allow
	r.rules == ["GDPR Art. 5(1)(b)"]
}

test_unknown_class_denied if {
	r := sluice.route with input as doc("US", ["biometric"], "ml-training", onprem_fra)
	not r.allow
	r.rules == ["GDPR Art. 5(1)(b)"]
}

test_no_classes_any_purpose_allowed if {
	r := sluice.route with input as doc("US", [], "anything", onprem_fra)
	r.allow
}
