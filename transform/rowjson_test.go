package transform

import (
	"encoding/json"
	"math"
	"slices"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
)

// TestRowEncoderIsValidJSON: every row decodes with encoding/json to the
// values it holds, whatever the strings contain.
func TestRowEncoderIsValidJSON(t *testing.T) {
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer mem.AssertSize(t, 0)
	schema := arrow.NewSchema([]arrow.Field{
		{Name: "s", Type: arrow.BinaryTypes.String, Nullable: true},
		{Name: "f", Type: arrow.PrimitiveTypes.Float64, Nullable: true},
		{Name: "i", Type: arrow.PrimitiveTypes.Int64},
		{Name: "we\"ird", Type: arrow.PrimitiveTypes.Int32},
		{Name: "b", Type: arrow.FixedWidthTypes.Boolean},
		{Name: "t", Type: arrow.FixedWidthTypes.Timestamp_us},
	}, nil)
	bld := array.NewRecordBuilder(mem, schema)
	defer bld.Release()
	strs := []string{`plain`, `quote " and \ backslash`, "tab\tnew\nline\x01", "üñí €", ""}
	floats := []float64{1.5, math.NaN(), math.Inf(1), -0.000123, 1e300}
	ts := time.Date(2026, 11, 27, 10, 0, 0, 123456000, time.UTC)
	for k := range strs {
		bld.Field(0).(*array.StringBuilder).Append(strs[k])
		bld.Field(1).(*array.Float64Builder).Append(floats[k])
		bld.Field(2).(*array.Int64Builder).Append(int64(k) - 2)
		bld.Field(3).(*array.Int32Builder).Append(int32(k))
		bld.Field(4).(*array.BooleanBuilder).Append(k%2 == 0)
		bld.Field(5).(*array.TimestampBuilder).Append(arrow.Timestamp(ts.UnixMicro()))
	}
	bld.Field(0).(*array.StringBuilder).AppendNull()
	bld.Field(1).(*array.Float64Builder).AppendNull()
	bld.Field(2).(*array.Int64Builder).Append(9)
	bld.Field(3).(*array.Int32Builder).Append(9)
	bld.Field(4).(*array.BooleanBuilder).Append(true)
	bld.Field(5).(*array.TimestampBuilder).Append(arrow.Timestamp(ts.UnixMicro()))
	rec := bld.NewRecordBatch()
	defer rec.Release()

	enc := newRowEncoder(rec)
	for i := 0; i < int(rec.NumRows()); i++ {
		b, err := enc.row(i)
		if err != nil {
			t.Fatal(err)
		}
		var got map[string]any
		if err := json.Unmarshal(b, &got); err != nil {
			t.Fatalf("row %d: %s is not JSON: %v", i, b, err)
		}
		if i < len(strs) {
			if got["s"] != strs[i] {
				t.Errorf("row %d: s = %q, want %q", i, got["s"], strs[i])
			}
			want := floats[i]
			if math.IsNaN(want) || math.IsInf(want, 0) {
				if got["f"] != nil {
					t.Errorf("row %d: non-finite float as %v, want null", i, got["f"])
				}
			} else if got["f"] != want {
				t.Errorf("row %d: f = %v, want %v", i, got["f"], want)
			}
			if got["we\"ird"] != float64(i) || got["b"] != (i%2 == 0) {
				t.Errorf("row %d: %v", i, got)
			}
			if got["t"] != "2026-11-27T10:00:00.123456Z" {
				t.Errorf("row %d: t = %v", i, got["t"])
			}
		} else if got["s"] != nil || got["f"] != nil {
			t.Errorf("nulls: %v", got)
		}
	}
}

func TestMergeRows(t *testing.T) {
	for _, tc := range []struct {
		n      int64
		groups [][]int
		want   []int
	}{
		{10, [][]int{{0, 3, 9}}, []int{0, 3, 9}},
		{10, [][]int{{9, 3, 0}}, []int{0, 3, 9}},
		{10, [][]int{{4, 7}, {0, 5}, {1, 9}}, []int{0, 1, 4, 5, 7, 9}},
		{130, [][]int{{129, 64}, {63, 0}}, []int{0, 63, 64, 129}},
		{5, nil, []int{}},
		{5, [][]int{{}}, []int{}},
	} {
		got := mergeRows(tc.n, tc.groups)
		if !slices.Equal(got, tc.want) {
			t.Errorf("mergeRows(%d, %v) = %v, want %v", tc.n, tc.groups, got, tc.want)
		}
	}
}
