package rego

import (
	"testing"

	"github.com/open-policy-agent/opa/v1/ast"

	"github.com/sluice-dev/sluice/policy"
)

// TestInputValueMatchesJSON keeps the hand-built input equal to what OPA
// makes of the Input's JSON, which is what the policy README documents.
func TestInputValueMatchesJSON(t *testing.T) {
	full := policy.Input{
		Pipeline: policy.Pipeline{Name: "card-fraud", Purpose: "ml-training"},
		Data: policy.Data{Jurisdiction: "DE", Region: "eu", Classes: []string{"financial", "pii"},
			Columns: []policy.Column{{Name: "user_id", Classes: []string{"pii"}}, {Name: "merchant"}, {Name: "x", Classes: []string{}}}},
		Executor: policy.Executor{ID: "aws", Kind: "cloud", Provider: "aws", Site: "s", Region: "us-east-1", Jurisdiction: "US",
			Certifications: []string{"soc2"}},
	}
	emptyClasses := full
	emptyClasses.Data.Classes = []string{}
	emptyClasses.Data.Columns = []policy.Column{}
	emptyClasses.Executor.Certifications = []string{}
	tests := map[string]policy.Input{
		"full":                    full,
		"zero":                    {},
		"empty lists":             emptyClasses,
		"nil classes, no columns": {Data: policy.Data{Jurisdiction: "US"}, Executor: policy.Executor{ID: "e", Kind: "onprem"}},
		"quotes and unicode":      {Pipeline: policy.Pipeline{Name: `a"b\c`, Purpose: "ü\n"}},
	}
	for name, in := range tests {
		t.Run(name, func(t *testing.T) {
			want, err := ast.InterfaceToValue(in)
			if err != nil {
				t.Fatal(err)
			}
			if got := inputValue(in); got.Compare(want) != 0 {
				t.Errorf("inputValue = %v\nwant          %v", got, want)
			}
		})
	}
}
