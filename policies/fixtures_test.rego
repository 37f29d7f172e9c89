# Shared fixtures for the policy tests: the two demo executors and a
# helper that builds an input document.
package sluice_test

onprem_fra := {
	"id": "onprem-fra", "kind": "onprem", "site": "fra1", "region": "eu-central",
	"jurisdiction": "DE", "certifications": ["hipaa", "iso27001", "soc2"],
}

aws_us_east_1 := {
	"id": "aws-us-east-1", "kind": "cloud", "provider": "aws", "region": "us-east-1",
	"jurisdiction": "US", "certifications": ["soc2"],
}

columns := [
	{"name": "user_id", "classes": ["pii"]},
	{"name": "amount", "classes": ["financial"]},
	{"name": "country", "classes": []},
]

# doc builds an input: data from jurisdiction j with classes cs, for purpose
# p, on executor e.
doc(j, cs, p, e) := {
	"pipeline": {"name": "card-fraud", "purpose": p},
	"data": {"jurisdiction": j, "classes": cs, "columns": columns},
	"executor": e,
}
