package rego_test

import (
	"context"
	"io/fs"
	"strings"
	"testing"

	"github.com/open-policy-agent/opa/v1/format"

	"github.com/sluice-dev/sluice/policies"
	"github.com/sluice-dev/sluice/policy"
	"github.com/sluice-dev/sluice/policy/rego"
)

// TestShippedPoliciesFormatted keeps the shipped Rego as `opa fmt` writes
// it, so a compliance officer's diff shows only their change.
func TestShippedPoliciesFormatted(t *testing.T) {
	err := fs.WalkDir(policies.FS, ".", func(p string, _ fs.DirEntry, err error) error {
		if err != nil || !strings.HasSuffix(p, ".rego") {
			return err
		}
		src, err := fs.ReadFile(policies.FS, p)
		if err != nil {
			return err
		}
		out, err := format.SourceWithOpts(p, src, format.Opts{})
		if err != nil {
			t.Errorf("%s: %v", p, err)
			return nil
		}
		if string(out) != string(src) {
			t.Errorf("%s is not formatted as `opa fmt` would write it", p)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func BenchmarkDecide(b *testing.B) {
	d, err := rego.New(context.Background(), rego.Config{FS: policies.FS})
	if err != nil {
		b.Fatal(err)
	}
	in := policy.Input{
		Pipeline: policy.Pipeline{Name: "card-fraud", Purpose: "ml-training"},
		Data: policy.Data{Jurisdiction: "US", Region: "na", Classes: []string{"financial", "pii"},
			Columns: []policy.Column{{Name: "user_id", Classes: []string{"pii"}}, {Name: "amount", Classes: []string{"financial"}}}},
		Executor: policy.Executor{ID: "aws-us-east-1", Kind: "cloud", Provider: "aws", Region: "us-east-1", Jurisdiction: "US", Certifications: []string{"soc2"}},
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := d.Decide(context.Background(), in); err != nil {
			b.Fatal(err)
		}
	}
}
