package gpuexec

import (
	"math"
	"testing"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
)

// buildArray builds an array of type dt from vals, where nil is a null and
// numbers are given as Go int or float64 literals.
func buildArray(t testing.TB, mem memory.Allocator, dt arrow.DataType, vals []any) arrow.Array {
	t.Helper()
	b := array.NewBuilder(mem, dt)
	defer b.Release()
	for _, v := range vals {
		if v == nil {
			b.AppendNull()
			continue
		}
		switch b := b.(type) {
		case *array.Float64Builder:
			b.Append(toF(t, v))
		case *array.Float32Builder:
			b.Append(float32(toF(t, v)))
		case *array.Int64Builder:
			b.Append(int64(v.(int)))
		case *array.Int32Builder:
			b.Append(int32(v.(int)))
		case *array.Uint8Builder:
			b.Append(uint8(v.(int)))
		case *array.StringBuilder:
			b.Append(v.(string))
		case *array.LargeStringBuilder:
			b.Append(v.(string))
		case *array.BooleanBuilder:
			b.Append(v.(bool))
		default:
			t.Fatalf("buildArray: no case for %s", dt)
		}
	}
	return b.NewArray()
}

func toF(t testing.TB, v any) float64 {
	switch v := v.(type) {
	case float64:
		return v
	case int:
		return float64(v)
	}
	t.Fatalf("not a number: %#v", v)
	return 0
}

// buildRecord builds a batch from named columns; the caller releases it.
func buildRecord(t testing.TB, mem memory.Allocator, cols ...column) arrow.RecordBatch {
	t.Helper()
	fields := make([]arrow.Field, len(cols))
	arrs := make([]arrow.Array, len(cols))
	n := -1
	for i, c := range cols {
		fields[i] = arrow.Field{Name: c.name, Type: c.dt, Nullable: true}
		arrs[i] = buildArray(t, mem, c.dt, c.vals)
		if n >= 0 && n != len(c.vals) {
			t.Fatalf("column %s has %d values, want %d", c.name, len(c.vals), n)
		}
		n = len(c.vals)
	}
	rec := array.NewRecordBatch(arrow.NewSchema(fields, nil), arrs, int64(n))
	for _, a := range arrs {
		a.Release()
	}
	return rec
}

type column struct {
	name string
	dt   arrow.DataType
	vals []any
}

// checkColumn compares got with want (nil = null; float64 values within a
// relative 1e-12, NaN equal to NaN; int values exactly).
func checkColumn(t *testing.T, got arrow.Array, want []any) {
	t.Helper()
	if got.Len() != len(want) {
		t.Fatalf("len = %d, want %d", got.Len(), len(want))
	}
	for i, w := range want {
		if w == nil {
			if !got.IsNull(i) {
				t.Errorf("row %d = %s, want null", i, got.ValueStr(i))
			}
			continue
		}
		if got.IsNull(i) {
			t.Errorf("row %d = null, want %v", i, w)
			continue
		}
		switch g := got.(type) {
		case *array.Float64:
			wf := toF(t, w)
			gv := g.Value(i)
			if math.IsNaN(wf) {
				if !math.IsNaN(gv) {
					t.Errorf("row %d = %v, want NaN", i, gv)
				}
				continue
			}
			if math.Abs(gv-wf) > 1e-12*math.Max(1, math.Abs(wf)) {
				t.Errorf("row %d = %v, want %v", i, gv, wf)
			}
		case *array.Int64:
			if g.Value(i) != int64(w.(int)) {
				t.Errorf("row %d = %d, want %d", i, g.Value(i), w)
			}
		case *array.String:
			if g.Value(i) != w.(string) {
				t.Errorf("row %d = %q, want %q", i, g.Value(i), w)
			}
		case *array.LargeString:
			if g.Value(i) != w.(string) {
				t.Errorf("row %d = %q, want %q", i, g.Value(i), w)
			}
		default:
			t.Fatalf("checkColumn: no case for %s", got.DataType())
		}
	}
}
