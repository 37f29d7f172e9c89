package storage_test

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sluice-dev/sluice/storage"
)

func TestFeatureKey(t *testing.T) {
	day := time.Date(2025, 3, 1, 23, 30, 0, 0, time.FixedZone("CET", 3600))
	for _, tc := range []struct {
		name, prefix string
		want         string
	}{
		{"prefix", "features", "features/pipeline=card-fraud/date=2025-03-01/location=onprem-fra/payments-3-00000000000000000042-00000000000000001041.parquet"},
		{"no prefix", "", "pipeline=card-fraud/date=2025-03-01/location=onprem-fra/payments-3-00000000000000000042-00000000000000001041.parquet"},
		{"slashes trimmed", "/a/b/", "a/b/pipeline=card-fraud/date=2025-03-01/location=onprem-fra/payments-3-00000000000000000042-00000000000000001041.parquet"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// 23:30 CET is 22:30 UTC: still March 1st.
			got := storage.FeatureKey(tc.prefix, "card-fraud", day, "onprem-fra", "payments", 3, 42, 1041)
			if got != tc.want {
				t.Fatalf("FeatureKey =\n%s\nwant\n%s", got, tc.want)
			}
			if err := storage.CheckKey(got); err != nil {
				t.Fatalf("FeatureKey is not a valid key: %v", err)
			}
		})
	}
	// The date is the UTC day.
	late := time.Date(2025, 3, 2, 0, 30, 0, 0, time.FixedZone("CET", 3600))
	if got := storage.FeatureKey("", "p", late, "l", "t", 0, 0, 0); !strings.Contains(got, "date=2025-03-01/") {
		t.Errorf("key %s: want the UTC date 2025-03-01", got)
	}
}

func TestQuarantineKey(t *testing.T) {
	day := time.Date(2025, 12, 31, 10, 0, 0, 0, time.UTC)
	got := storage.QuarantineKey("eu", "card-fraud", day, "payments", 0, 0, 9)
	want := "eu/quarantine/pipeline=card-fraud/date=2025-12-31/payments-0-00000000000000000000-00000000000000000009.parquet"
	if got != want {
		t.Fatalf("QuarantineKey =\n%s\nwant\n%s", got, want)
	}
	if got := storage.QuarantineKey("", "p", day, "t", 1, 2, 3); !strings.HasPrefix(got, "quarantine/") {
		t.Fatalf("QuarantineKey without prefix = %s", got)
	}
}

func TestFeatureKeyOrderIsOffsetOrder(t *testing.T) {
	day := time.Date(2025, 3, 1, 0, 0, 0, 0, time.UTC)
	firsts := []int64{0, 9, 10, 99, 100, 12345, 1 << 40, 1<<63 - 1}
	var keys []string
	for _, f := range firsts {
		keys = append(keys, storage.FeatureKey("x", "p", day, "l", "t", 7, f, f))
	}
	if !slices.IsSorted(keys) {
		t.Fatalf("keys not in offset order when sorted lexically:\n%s", strings.Join(keys, "\n"))
	}
}

func TestCheckKey(t *testing.T) {
	for _, tc := range []struct {
		key string
		ok  bool
	}{
		{"a", true},
		{"a/b/c.parquet", true},
		{"pipeline=x/date=2025-01-01/t-0-1-2.parquet", true},
		{".hidden/x", true},
		{"", false},
		{"/a", false},
		{"a/", false},
		{"a//b", false},
		{"a/./b", false},
		{"a/../b", false},
		{"..", false},
		{`a\b`, false},
		{"a\x00b", false},
	} {
		t.Run(tc.key, func(t *testing.T) {
			err := storage.CheckKey(tc.key)
			if tc.ok && err != nil {
				t.Fatalf("CheckKey(%q) = %v, want ok", tc.key, err)
			}
			if !tc.ok && !errors.Is(err, storage.ErrInvalidKey) {
				t.Fatalf("CheckKey(%q) = %v, want ErrInvalidKey", tc.key, err)
			}
		})
	}
}

func TestJoinKey(t *testing.T) {
	for _, tc := range []struct {
		parts []string
		want  string
	}{
		{[]string{"", "a"}, "a"},
		{[]string{"/p/", "a", "", "b/"}, "p/a/b"},
		{nil, ""},
	} {
		if got := storage.JoinKey(tc.parts...); got != tc.want {
			t.Errorf("JoinKey(%q) = %q, want %q", tc.parts, got, tc.want)
		}
	}
}

// TestParseObjectKey: a key made by FeatureKey or QuarantineKey reads back
// as its topic (dashes included), partition and offsets; others do not.
func TestParseObjectKey(t *testing.T) {
	day := time.Date(2026, 11, 27, 0, 0, 0, 0, time.UTC)
	for _, key := range []string{
		storage.FeatureKey("p", "demo", day, "fra", "card-tx-eu", 3, 42, 9001),
		storage.QuarantineKey("", "demo", day, "card-tx-eu", 3, 42, 9001),
	} {
		topic, part, first, last, ok := storage.ParseObjectKey(key)
		if !ok || topic != "card-tx-eu" || part != 3 || first != 42 || last != 9001 {
			t.Errorf("ParseObjectKey(%q) = %q %d %d %d %v", key, topic, part, first, last, ok)
		}
	}
	for _, key := range []string{"lineage/x.ndjson", "a/b-1-2.parquet", "a/t-x-1-2.parquet", ""} {
		if _, _, _, _, ok := storage.ParseObjectKey(key); ok {
			t.Errorf("ParseObjectKey(%q) accepted a key no sink makes", key)
		}
	}
}
