package rego_test

import (
	"context"
	"strings"
	"testing"

	"github.com/sluice-dev/sluice/policies"
	"github.com/sluice-dev/sluice/policy"
	"github.com/sluice-dev/sluice/policy/rego"
)

// TestExplainNamesTheRulesThatFired: for EU data on a US cloud executor the
// explanation names the GDPR deny rule with its file and line, and for an
// allowed input it names no deny rule.
func TestExplainNamesTheRulesThatFired(t *testing.T) {
	ctx := context.Background()
	d, err := rego.New(ctx, rego.Config{FS: policies.FS})
	if err != nil {
		t.Fatal(err)
	}
	in := policy.Input{
		Pipeline: policy.Pipeline{Name: "p", Purpose: "fraud-detection"},
		Data:     policy.Data{Jurisdiction: "DE", Region: "eu", Classes: []string{"pii"}, Columns: []policy.Column{{Name: "user_id", Classes: []string{"pii"}}}},
		Executor: policy.Executor{ID: "aws-us-east-1", Kind: "cloud", Provider: "aws", Region: "us-east-1", Jurisdiction: "US"},
	}
	dec, fired, err := d.Explain(ctx, in)
	if err != nil || dec.Allow {
		t.Fatalf("decision %+v, err %v: want a deny", dec, err)
	}
	var denyInGDPR bool
	for _, f := range fired {
		if strings.HasPrefix(f.Location, "gdpr.rego:") && strings.HasSuffix(f.Rule, ".deny") {
			denyInGDPR = true
		}
	}
	if !denyInGDPR {
		t.Fatalf("fired %+v: want the deny rule of gdpr.rego", fired)
	}

	in.Data.Jurisdiction, in.Data.Region = "US", "na"
	dec, fired, err = d.Explain(ctx, in)
	if err != nil || !dec.Allow {
		t.Fatalf("US data on a US cloud: %+v, %v", dec, err)
	}
	for _, f := range fired {
		if strings.HasSuffix(f.Rule, ".deny") {
			t.Errorf("allowed input, yet deny rule %+v fired", f)
		}
	}
}
