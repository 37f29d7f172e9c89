package transform_test

import (
	"strings"
	"testing"
)

func TestSummary(t *testing.T) {
	s := loadExample(t, "card-transactions.yaml")
	var b strings.Builder
	s.Summary(&b)
	out := b.String()
	// What a data engineer checks before running: the source, which
	// fields carry which classes, the op chains, where data may go.
	for _, want := range []string{
		"card-transactions (purpose fraud-detection)",
		"topic card-transactions, group sluice-card-transactions",
		"kafka-0.fra.internal:9092",
		"a record over 1 MiB is a dead letter",
		"9 fields",
		"entity user_id; event time ts; jurisdiction from country",
		"pii, financial",
		"from merchant.mcc",
		"amount → fill_missing(0) → clip(0..50000) → log1p",
		"standardize(mean 85, std 120)",
		"hash_bucket(4096)",
		"bucketize(4000, 5000, 6000, 7000)",
		"onprem fra1 eu-central, jurisdiction DE",
		"certified hipaa, iso27001, soc2 → sink fra",
		"cloud aws us-east-1, jurisdiction US",
		"quarantine  ",
		"signed with /etc/sluice/lineage.key",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("summary lacks %q:\n%s", want, out)
		}
	}
	if n := strings.Count(out, "\n"); n > 40 {
		t.Errorf("summary is %d lines; it should fit one screen", n)
	}
	for _, line := range strings.Split(out, "\n") {
		if strings.TrimRight(line, " ") != line {
			t.Errorf("trailing spaces in %q", line)
		}
	}
}
