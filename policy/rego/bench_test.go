package rego_test

import (
	"context"
	"io"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/sluice-dev/sluice/policies"
	"github.com/sluice-dev/sluice/policy"
	"github.com/sluice-dev/sluice/policy/rego"
)

const benchRows = 10_000

// benchBatch is a 10k-row batch as the runner sees it: a jurisdiction
// column (8 countries, some padded with spaces as records carry them) and three
// classified columns that are null in some rows, so rows fall into
// 8 jurisdictions × 8 null patterns = 64 attribute groups.
type benchBatch struct {
	rec    arrow.RecordBatch
	tagged []benchCol // classified columns, in schema order
}

type benchCol struct {
	name    string
	classes []string
}

var benchJurisdictions = []string{"DE", "FR ", "US", " IN", "BR", "GB", "JP", "IT"}

func newBenchBatch(tb testing.TB) *benchBatch {
	tb.Helper()
	mem := memory.NewGoAllocator()
	schema := arrow.NewSchema([]arrow.Field{
		{Name: "country", Type: arrow.BinaryTypes.String, Nullable: true},
		{Name: "user_id", Type: arrow.BinaryTypes.String, Nullable: true},
		{Name: "amount", Type: arrow.PrimitiveTypes.Float64, Nullable: true},
		{Name: "diagnosis", Type: arrow.BinaryTypes.String, Nullable: true},
	}, nil)
	b := array.NewRecordBuilder(mem, schema)
	defer b.Release()
	// Spread rows so that every (jurisdiction, null pattern) pair occurs
	// and consecutive rows rarely share a group, as in a mixed stream.
	for i := range benchRows {
		b.Field(0).(*array.StringBuilder).Append(benchJurisdictions[i%8])
		pattern := (i / 8) % 8
		if pattern&1 != 0 {
			b.Field(1).(*array.StringBuilder).Append("u-1")
		} else {
			b.Field(1).AppendNull()
		}
		if pattern&2 != 0 {
			b.Field(2).(*array.Float64Builder).Append(1.5)
		} else {
			b.Field(2).AppendNull()
		}
		if pattern&4 != 0 {
			b.Field(3).(*array.StringBuilder).Append("J45")
		} else {
			b.Field(3).AppendNull()
		}
	}
	return &benchBatch{
		rec: b.NewRecordBatch(),
		tagged: []benchCol{
			{"user_id", []string{"pii"}}, {"amount", []string{"financial"}}, {"diagnosis", []string{"phi"}},
		},
	}
}

var benchExecutors = []policy.Executor{
	{ID: "onprem-fra", Kind: "onprem", Site: "fra1", Region: "eu-central", Jurisdiction: "DE", Certifications: []string{"hipaa", "iso27001", "soc2"}},
	{ID: "onprem-mum", Kind: "onprem", Site: "bom1", Region: "ap-south", Jurisdiction: "IN", Certifications: []string{"iso27001"}},
	{ID: "aws-us-east-1", Kind: "cloud", Provider: "aws", Region: "us-east-1", Jurisdiction: "US", Certifications: []string{"soc2"}},
	{ID: "gcp-sa-east-1", Kind: "cloud", Provider: "gcp", Region: "southamerica-east1", Jurisdiction: "BR", Certifications: []string{"soc2"}},
}

var benchPipeline = policy.Pipeline{Name: "card-fraud", Purpose: "fraud-detection"}

// benchGroup mirrors transform's group: the rows that share jurisdiction
// and the set of non-null classified columns.
type benchGroup struct {
	jurisdiction string
	mask         uint64
	rows         []int
	allowed      []bool
}

// group splits the batch's rows as transform/route.go does: per row, the
// null mask of the classified columns, the normalised jurisdiction and a
// map lookup.
func (bb *benchBatch) group() []*benchGroup {
	jur := bb.rec.Column(0).(*array.String)
	tagged := []arrow.Array{bb.rec.Column(1), bb.rec.Column(2), bb.rec.Column(3)}
	type key struct {
		jur  string
		mask uint64
	}
	index := map[key]*benchGroup{}
	var out []*benchGroup
	for row := 0; row < int(bb.rec.NumRows()); row++ {
		var mask uint64
		for i, col := range tagged {
			if col.IsValid(row) {
				mask |= 1 << i
			}
		}
		j := ""
		if jur.IsValid(row) {
			j = strings.ToUpper(strings.TrimSpace(jur.Value(row)))
		}
		k := key{j, mask}
		g := index[k]
		if g == nil {
			g = &benchGroup{jurisdiction: j, mask: mask}
			index[k] = g
			out = append(out, g)
		}
		g.rows = append(g.rows, row)
	}
	return out
}

// input builds the policy input of a group, as transform's decide does.
func (bb *benchBatch) input(j string, mask uint64) policy.Input {
	var classes []string
	var cols []policy.Column
	for i, tc := range bb.tagged {
		if mask&(1<<i) == 0 {
			continue
		}
		cols = append(cols, policy.Column{Name: tc.name, Classes: tc.classes})
		classes = append(classes, tc.classes...)
	}
	slices.Sort(classes)
	classes = slices.Compact(classes)
	if classes == nil {
		classes = []string{}
	}
	return policy.Input{
		Pipeline: benchPipeline,
		Data:     policy.Data{Jurisdiction: j, Region: policy.Region(j), Classes: classes, Columns: cols},
	}
}

// decideBatch is the runner's way: group, then one memoized decision per
// (group, executor) from a snapshot pinned for the batch.
func decideBatch(tb testing.TB, s policy.Snapshotter, bb *benchBatch) []*benchGroup {
	ctx := context.Background()
	d := s.Snapshot()
	groups := bb.group()
	for _, g := range groups {
		in := bb.input(g.jurisdiction, g.mask)
		g.allowed = g.allowed[:0]
		for _, ex := range benchExecutors {
			in.Executor = ex
			dec, err := d.Decide(ctx, in)
			if err != nil {
				tb.Fatal(err)
			}
			g.allowed = append(g.allowed, dec.Allow)
		}
	}
	return groups
}

func newBenchReloader(tb testing.TB) *rego.Reloader {
	tb.Helper()
	r, err := rego.NewReloader(context.Background(), rego.ReloaderConfig{
		Dir: "../../policies", Timeout: 10 * time.Second, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		tb.Fatal(err)
	}
	return r
}

// TestBenchBatchShape keeps the benchmark honest: 64 groups, and the
// memoized path decides exactly as per-record evaluation does.
func TestBenchBatchShape(t *testing.T) {
	bb := newBenchBatch(t)
	defer bb.rec.Release()
	r := newBenchReloader(t)
	groups := decideBatch(t, r, bb)
	if len(groups) != 64 {
		t.Fatalf("%d groups, want 64", len(groups))
	}
	d, err := rego.New(context.Background(), rego.Config{FS: policies.FS, Timeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	anyAllowed, anyDenied := false, false
	for _, g := range groups {
		row := g.rows[len(g.rows)/2]
		in := bb.rowInput(row)
		for i, ex := range benchExecutors {
			in.Executor = ex
			dec, err := d.Decide(context.Background(), in)
			if err != nil {
				t.Fatal(err)
			}
			if dec.Allow != g.allowed[i] {
				t.Errorf("row %d on %s: per-record allow %v, memoized %v", row, ex.ID, dec.Allow, g.allowed[i])
			}
			anyAllowed = anyAllowed || dec.Allow
			anyDenied = anyDenied || !dec.Allow
		}
	}
	if !anyAllowed || !anyDenied {
		t.Error("the batch should mix allowed and denied groups")
	}
}

// rowInput is the policy input of one row, built from the row alone.
func (bb *benchBatch) rowInput(row int) policy.Input {
	var mask uint64
	for i := range bb.tagged {
		if bb.rec.Column(1 + i).IsValid(row) {
			mask |= 1 << i
		}
	}
	return bb.input(strings.ToUpper(strings.TrimSpace(bb.rec.Column(0).(*array.String).Value(row))), mask)
}

// BenchmarkPolicy is the amortized policy cost per record on a 10k-row
// batch with 64 attribute groups and 4 executors: memoized as the runner
// does it (group, then one memoized Decide per group and executor, steady
// state: the memo is warm), against one prepared Eval per row and executor.
func BenchmarkPolicy(b *testing.B) {
	bb := newBenchBatch(b)
	defer bb.rec.Release()

	b.Run("memoized", func(b *testing.B) {
		r := newBenchReloader(b)
		decideBatch(b, r, bb) // warm the memo: the steady state of a stream
		b.ReportAllocs()
		start := time.Now()
		for b.Loop() {
			decideBatch(b, r, bb)
		}
		b.ReportMetric(float64(time.Since(start).Nanoseconds())/float64(b.N*benchRows), "ns/record")
	})

	b.Run("per-record", func(b *testing.B) {
		d, err := rego.New(context.Background(), rego.Config{FS: policies.FS, Timeout: 10 * time.Second})
		if err != nil {
			b.Fatal(err)
		}
		ctx := context.Background()
		// One op is one record: its input and one Eval per executor. A
		// whole 10k-row batch per op would take seconds.
		b.ReportAllocs()
		row := 0
		start := time.Now()
		for b.Loop() {
			in := bb.rowInput(row)
			for _, ex := range benchExecutors {
				in.Executor = ex
				if _, err := d.Decide(ctx, in); err != nil {
					b.Fatal(err)
				}
			}
			row = (row + 1) % benchRows
		}
		b.ReportMetric(float64(time.Since(start).Nanoseconds())/float64(b.N), "ns/record")
	})
}
