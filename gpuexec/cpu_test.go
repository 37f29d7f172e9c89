package gpuexec

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"math"
	"strings"
	"sync"
	"testing"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
)

var (
	f64 = arrow.PrimitiveTypes.Float64
	f32 = arrow.PrimitiveTypes.Float32
	i64 = arrow.PrimitiveTypes.Int64
	i32 = arrow.PrimitiveTypes.Int32
	u8  = arrow.PrimitiveTypes.Uint8
	str = arrow.BinaryTypes.String
)

const (
	ln2 = 0.6931471805599453
	ln5 = 1.6094379124341003
)

func TestCPUOps(t *testing.T) {
	nan := math.NaN()
	tests := []struct {
		name    string
		dt      arrow.DataType
		in      []any
		ops     []Op
		wantInt bool // output int64 instead of float64
		want    []any
	}{
		{"no ops converts int32", i32, []any{1, nil, -3}, nil, false, []any{1.0, nil, -3.0}},
		{"fill_missing float64 nulls and NaN", f64, []any{1.5, nil, -2.0, nan}, []Op{{Kind: OpFillMissing, Value: 7}}, false, []any{1.5, 7.0, -2.0, 7.0}},
		{"fill_missing int32", i32, []any{3, nil, -1}, []Op{{Kind: OpFillMissing, Value: 0.5}}, false, []any{3.0, 0.5, -1.0}},
		{"fill_missing int64 no nulls", i64, []any{3, 4}, []Op{{Kind: OpFillMissing, Value: 9}}, false, []any{3.0, 4.0}},
		{"clip float64", f64, []any{-5.0, 0.5, 10.0, nil, nan}, []Op{{Kind: OpClip, Min: 0, Max: 1}}, false, []any{0.0, 0.5, 1.0, nil, nan}},
		{"clip int64", i64, []any{-5, 3, 100, nil}, []Op{{Kind: OpClip, Min: -1, Max: 10}}, false, []any{-1.0, 3.0, 10.0, nil}},
		{"clip float32", f32, []any{0.25, nil, -1.0}, []Op{{Kind: OpClip, Min: 0, Max: 0.2}}, false, []any{0.2, nil, 0.0}},
		{"log1p float64", f64, []any{0.0, math.E - 1, -1.0, -3.0, nil, nan}, []Op{{Kind: OpLog1p}}, false, []any{0.0, 1.0, nil, nil, nil, nan}},
		{"log1p float64 no nulls", f64, []any{0.0, 1.0, 3.0}, []Op{{Kind: OpLog1p}}, false, []any{0.0, ln2, 2 * ln2}},
		{"log1p int32", i32, []any{0, 1, -1, nil, 4}, []Op{{Kind: OpLog1p}}, false, []any{0.0, ln2, nil, nil, ln5}},
		{"standardize float64", f64, []any{10.0, 20.0, nil, 0.0}, []Op{{Kind: OpStandardize, Mean: 10, Std: 5}}, false, []any{0.0, 2.0, nil, -2.0}},
		{"standardize int64 std 0", i64, []any{7, 9, nil}, []Op{{Kind: OpStandardize, Mean: 7, Std: 0}}, false, []any{0.0, 2.0, nil}},
		{"min_max float64", f64, []any{0.0, 5.0, 10.0, -3.0, 20.0, nil}, []Op{{Kind: OpMinMax, Min: 0, Max: 10}}, false, []any{0.0, 0.5, 1.0, 0.0, 1.0, nil}},
		{"min_max int32 degenerate", i32, []any{4, 4, nil, 9}, []Op{{Kind: OpMinMax, Min: 4, Max: 4}}, false, []any{0.0, 0.0, nil, 0.0}},
		{"min_max uint8", u8, []any{255, 0}, []Op{{Kind: OpMinMax, Min: 0, Max: 510}}, false, []any{0.5, 0.0}},
		{"bucketize float64", f64, []any{-1.0, 0.0, 0.5, 1.0, 2.0, 5.0, nil, nan}, []Op{{Kind: OpBucketize, Boundaries: []float64{0, 1, 2}}}, true, []any{0, 1, 1, 2, 3, 3, nil, nil}},
		{"bucketize float64 no nulls", f64, []any{5.0, -5.0, 0.0}, []Op{{Kind: OpBucketize, Boundaries: []float64{0}}}, true, []any{1, 0, 1}},
		{"bucketize int32", i32, []any{1, 2, 3, nil}, []Op{{Kind: OpBucketize, Boundaries: []float64{2}}}, true, []any{0, 1, 1, nil}},
		{"bucketize int64", i64, []any{-7, 100, nil}, []Op{{Kind: OpBucketize, Boundaries: []float64{-10, 0, 10, 50}}}, true, []any{1, 4, nil}},
		{"categorify", str, []any{"b", "x", nil, "a", ""}, []Op{{Kind: OpCategorify, Vocabulary: []string{"a", "b", ""}}}, true, []any{2, 0, nil, 1, 3}},
		{"chain fill clip log1p int64", i64, []any{nil, 4, -10}, []Op{{Kind: OpFillMissing, Value: 0}, {Kind: OpClip, Min: 0, Max: 100}, {Kind: OpLog1p}}, false, []any{0.0, ln5, 0.0}},
		{"chain log1p then fill", f64, []any{-2.0, 1.0}, []Op{{Kind: OpLog1p}, {Kind: OpFillMissing, Value: 9}}, false, []any{9.0, ln2}},
		{"chain bucketize then standardize", f64, []any{0.5, 1.5, nil}, []Op{{Kind: OpBucketize, Boundaries: []float64{1}}, {Kind: OpStandardize, Mean: 0.5, Std: 0.5}}, false, []any{-1.0, 1.0, nil}},
		{"chain categorify then min_max", str, []any{"a", "b", nil, "zz"}, []Op{{Kind: OpCategorify, Vocabulary: []string{"a", "b", "c"}}, {Kind: OpMinMax, Min: 0, Max: 3}}, false, []any{1.0 / 3, 2.0 / 3, nil, 0.0}},
		{"chain categorify then fill", str, []any{"a", nil}, []Op{{Kind: OpCategorify, Vocabulary: []string{"a"}}, {Kind: OpFillMissing, Value: -1}}, false, []any{1.0, -1.0}},
		{"empty batch", f64, []any{}, []Op{{Kind: OpLog1p}}, false, []any{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
			defer mem.AssertSize(t, 0)
			rec := buildRecord(t, mem, column{"x", tt.dt, tt.in})
			defer rec.Release()
			cpu := NewCPU("cpu", Location{}, CPUOptions{Allocator: mem})
			plan := &Plan{Steps: []Step{{Output: "y", Input: "x", Ops: tt.ops}}}
			out, err := cpu.Execute(context.Background(), plan, rec)
			if err != nil {
				t.Fatal(err)
			}
			defer out.Release()
			wantType := arrow.DataType(f64)
			if tt.wantInt {
				wantType = i64
			}
			if got := out.Schema().Field(0).Type; !arrow.TypeEqual(got, wantType) {
				t.Fatalf("output type = %s, want %s", got, wantType)
			}
			checkColumn(t, out.Column(0), tt.want)
			// Values under nulls are zero, so output bytes are deterministic.
			col := out.Column(0)
			for i := 0; i < col.Len(); i++ {
				if col.IsNull(i) {
					var raw float64
					switch c := col.(type) {
					case *array.Float64:
						raw = c.Float64Values()[i]
					case *array.Int64:
						raw = float64(c.Int64Values()[i])
					}
					if raw != 0 {
						t.Errorf("row %d: null slot holds %v, want 0", i, raw)
					}
				}
			}
		})
	}
}

func TestCPUHashBucketMatchesFNV1a(t *testing.T) {
	words := []string{"", "a", "alice", "bob@example.com", "ünïcödé", "日本"}
	for _, buckets := range []int64{1, 7, 1000, 1 << 40, math.MaxInt64} {
		t.Run(fmt.Sprint(buckets), func(t *testing.T) {
			mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
			defer mem.AssertSize(t, 0)
			in := []any{nil}
			want := []any{nil}
			for _, w := range words {
				h := fnv.New64a()
				h.Write([]byte(w))
				in = append(in, w)
				want = append(want, int(h.Sum64()%uint64(buckets)))
			}
			for _, dt := range []arrow.DataType{str, arrow.BinaryTypes.LargeString} {
				rec := buildRecord(t, mem, column{"s", dt, in})
				cpu := NewCPU("cpu", Location{}, CPUOptions{Allocator: mem})
				out, err := cpu.Execute(context.Background(), &Plan{Steps: []Step{{Output: "h", Input: "s", Ops: []Op{{Kind: OpHashBucket, Buckets: buckets}}}}}, rec)
				if err != nil {
					t.Fatal(err)
				}
				checkColumn(t, out.Column(0), want)
				out.Release()
				rec.Release()
			}
			for i, w := range words {
				if got := HashBucket(w, buckets); got != int64(want[i+1].(int)) {
					t.Errorf("HashBucket(%q) = %d, want %d", w, got, want[i+1])
				}
			}
		})
	}
	// The published FNV-1a 64 test vector, so the documented constants are
	// the standard ones and not just whatever hash/fnv does.
	if got := fnv1a("a"); got != 0xaf63dc4c8601ec8c {
		t.Errorf(`fnv1a("a") = %#x, want 0xaf63dc4c8601ec8c`, got)
	}
}

func TestCPUExecuteLayout(t *testing.T) {
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer mem.AssertSize(t, 0)
	rec := buildRecord(t, mem,
		column{"user_id", i64, []any{1, 2, 3}},
		column{"amount", f64, []any{10.0, nil, 30.0}},
		column{"country", str, []any{"DE", "FR", nil}},
		column{"merchant", str, []any{"m1", "m2", "m1"}},
	)
	defer rec.Release()
	cpu := NewCPU("cpu-fra", Location{Name: "fra", Kind: "onprem", Jurisdiction: "DE"}, CPUOptions{Allocator: mem, Workers: 2})
	plan := &Plan{
		Passthrough: []string{"country", "user_id"},
		Steps: []Step{
			{Output: "amount_z", Input: "amount", Ops: []Op{{Kind: OpFillMissing, Value: 20}, {Kind: OpStandardize, Mean: 20, Std: 10}}},
			{Output: "merchant_id", Input: "merchant", Ops: []Op{{Kind: OpCategorify, Vocabulary: []string{"m2", "m1"}}}},
		},
	}
	out, err := cpu.Execute(context.Background(), plan, rec)
	if err != nil {
		t.Fatal(err)
	}
	defer out.Release()
	if out.NumRows() != rec.NumRows() {
		t.Errorf("rows = %d, want %d", out.NumRows(), rec.NumRows())
	}
	if got, want := fieldNames(out.Schema()), []string{"country", "user_id", "amount_z", "merchant_id"}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("columns = %v, want %v", got, want)
	}
	if out.Column(0) != rec.Column(2) || out.Column(1) != rec.Column(0) {
		t.Error("passthrough columns are not the input arrays")
	}
	checkColumn(t, out.Column(2), []any{-1.0, 0.0, 1.0})
	checkColumn(t, out.Column(3), []any{2, 1, 2})
	if cpu.Kind() != "cpu" || cpu.ID() != "cpu-fra" || cpu.Location().Jurisdiction != "DE" {
		t.Errorf("identity = %s %s %+v", cpu.Kind(), cpu.ID(), cpu.Location())
	}
}

// TestCPUSlicedInput runs on a slice of a batch, whose arrays have a non-zero
// offset into their buffers and bitmaps.
func TestCPUSlicedInput(t *testing.T) {
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer mem.AssertSize(t, 0)
	rec := buildRecord(t, mem,
		column{"x", i32, []any{100, nil, 1, 2, nil, 3, 4, 5, 6, nil, 7}},
		column{"s", str, []any{"q", "a", nil, "b", "a", "c", nil, "a", "b", "c", "a"}},
	)
	defer rec.Release()
	sl := rec.NewSlice(3, 11)
	defer sl.Release()
	cpu := NewCPU("cpu", Location{}, CPUOptions{Allocator: mem})
	out, err := cpu.Execute(context.Background(), &Plan{Steps: []Step{
		{Output: "x2", Input: "x", Ops: []Op{{Kind: OpClip, Min: 0, Max: 5}}},
		{Output: "s2", Input: "s", Ops: []Op{{Kind: OpCategorify, Vocabulary: []string{"a", "b"}}}},
	}}, sl)
	if err != nil {
		t.Fatal(err)
	}
	defer out.Release()
	checkColumn(t, out.Column(0), []any{2.0, nil, 3.0, 4.0, 5.0, 5.0, nil, 5.0})
	checkColumn(t, out.Column(1), []any{2, 1, 0, nil, 1, 2, 0, 1})
}

// TestCPUManyChunks uses a batch larger than one unit of work, with several
// workers, and checks every row against a formula written out here.
func TestCPUManyChunks(t *testing.T) {
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer mem.AssertSize(t, 0)
	const n = 3*chunkRows + 1001
	bx := array.NewInt64Builder(mem)
	bs := array.NewStringBuilder(mem)
	for i := range n {
		if i%7 == 3 {
			bx.AppendNull()
			bs.AppendNull()
			continue
		}
		bx.Append(int64(i))
		bs.Append([]string{"a", "b", "c"}[i%3])
	}
	x, s := bx.NewArray(), bs.NewArray()
	bx.Release()
	bs.Release()
	rec := array.NewRecordBatch(arrow.NewSchema([]arrow.Field{{Name: "x", Type: i64, Nullable: true}, {Name: "s", Type: str, Nullable: true}}, nil), []arrow.Array{x, s}, n)
	x.Release()
	s.Release()
	defer rec.Release()

	cpu := NewCPU("cpu", Location{}, CPUOptions{Allocator: mem, Workers: 3})
	out, err := cpu.Execute(context.Background(), &Plan{Steps: []Step{
		{Output: "z", Input: "x", Ops: []Op{{Kind: OpClip, Min: 0, Max: 50000}, {Kind: OpStandardize, Mean: 1000, Std: 4}}},
		{Output: "b", Input: "x", Ops: []Op{{Kind: OpFillMissing, Value: -1}, {Kind: OpBucketize, Boundaries: []float64{0, 60000}}}},
		{Output: "c", Input: "s", Ops: []Op{{Kind: OpCategorify, Vocabulary: []string{"c", "a"}}}},
	}}, rec)
	if err != nil {
		t.Fatal(err)
	}
	defer out.Release()
	z := out.Column(0).(*array.Float64)
	b := out.Column(1).(*array.Int64)
	c := out.Column(2).(*array.Int64)
	for i := range n {
		if i%7 == 3 {
			if !z.IsNull(i) || b.IsNull(i) || b.Value(i) != 0 || !c.IsNull(i) {
				t.Fatalf("row %d (null input): z null %v, b %v, c null %v", i, z.IsNull(i), b.ValueStr(i), c.IsNull(i))
			}
			continue
		}
		wantZ := (math.Min(float64(i), 50000) - 1000) / 4
		wantB := int64(1)
		if i >= 60000 {
			wantB = 2
		}
		wantC := []int64{2, 0, 1}[i%3] // rows cycle a, b, c: "a" is 2, "b" unknown, "c" is 1
		if z.IsNull(i) || z.Value(i) != wantZ || b.Value(i) != wantB || c.Value(i) != wantC {
			t.Fatalf("row %d: z=%s b=%s c=%s, want %v %d %d", i, z.ValueStr(i), b.ValueStr(i), c.ValueStr(i), wantZ, wantB, wantC)
		}
	}
	if b.NullN() != 0 {
		t.Errorf("filled column has %d nulls", b.NullN())
	}
}

func TestValidatePlan(t *testing.T) {
	schema := arrow.NewSchema([]arrow.Field{
		{Name: "amount", Type: f64},
		{Name: "name", Type: str},
		{Name: "flag", Type: arrow.FixedWidthTypes.Boolean},
	}, nil)
	step := func(out, in string, ops ...Op) Step { return Step{Output: out, Input: in, Ops: ops} }
	tests := []struct {
		name string
		plan *Plan
		want string // substring of the error
	}{
		{"nil plan", nil, "plan is nil"},
		{"missing input", &Plan{Steps: []Step{step("y", "nope")}}, `column "nope" is not in the batch`},
		{"missing passthrough", &Plan{Passthrough: []string{"ghost"}}, `column "ghost" is not in the batch`},
		{"empty output", &Plan{Steps: []Step{step("", "amount")}}, "output name is empty"},
		{"duplicate output", &Plan{Steps: []Step{step("y", "amount"), step("y", "amount")}}, `output "y" is also the output of step 0`},
		{"output shadows passthrough", &Plan{Passthrough: []string{"amount"}, Steps: []Step{step("amount", "amount")}}, `output "amount" is also a passthrough column`},
		{"hash_bucket on float", &Plan{Steps: []Step{step("y", "amount", Op{Kind: OpHashBucket, Buckets: 10})}}, "hash_bucket) needs a string value"},
		{"hash_bucket after categorify", &Plan{Steps: []Step{step("y", "name", Op{Kind: OpCategorify, Vocabulary: []string{"a"}}, Op{Kind: OpHashBucket, Buckets: 10})}}, "int64 after the previous op"},
		{"numeric op on string", &Plan{Steps: []Step{step("y", "name", Op{Kind: OpLog1p})}}, "log1p) needs a number"},
		{"string without encoder", &Plan{Steps: []Step{step("y", "name")}}, "needs hash_bucket or categorify"},
		{"unsupported input type", &Plan{Steps: []Step{step("y", "flag", Op{Kind: OpClip, Max: 1})}}, "has type bool"},
		{"unknown op", &Plan{Steps: []Step{step("y", "amount", Op{Kind: "square"})}}, `unknown op "square"`},
		{"obligation as step op", &Plan{Steps: []Step{step("y", "name", Op{Kind: OpMask})}}, "is an obligation"},
		{"clip min above max", &Plan{Steps: []Step{step("y", "amount", Op{Kind: OpClip, Min: 2, Max: 1})}}, "min 2 is greater than max 1"},
		{"standardize negative std", &Plan{Steps: []Step{step("y", "amount", Op{Kind: OpStandardize, Std: -1})}}, "std -1 is negative"},
		{"min_max infinite", &Plan{Steps: []Step{step("y", "amount", Op{Kind: OpMinMax, Max: math.Inf(1)})}}, "must be finite"},
		{"bucketize unsorted", &Plan{Steps: []Step{step("y", "amount", Op{Kind: OpBucketize, Boundaries: []float64{1, 1}})}}, "increase strictly"},
		{"bucketize empty", &Plan{Steps: []Step{step("y", "amount", Op{Kind: OpBucketize})}}, "boundaries are empty"},
		{"hash_bucket zero buckets", &Plan{Steps: []Step{step("y", "name", Op{Kind: OpHashBucket})}}, "buckets must be positive"},
		{"categorify duplicate", &Plan{Steps: []Step{step("y", "name", Op{Kind: OpCategorify, Vocabulary: []string{"a", "a"}})}}, `vocabulary has "a" twice`},
		{"fill NaN", &Plan{Steps: []Step{step("y", "amount", Op{Kind: OpFillMissing, Value: math.NaN()})}}, "value is NaN"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := ValidatePlan(tt.plan, schema)
			if !errors.Is(err, ErrInvalidPlan) {
				t.Fatalf("err = %v, want ErrInvalidPlan", err)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %q, want it to contain %q", err, tt.want)
			}
		})
	}
	ok := &Plan{Passthrough: []string{"flag"}, Steps: []Step{step("y", "amount", Op{Kind: OpLog1p}), step("n", "name", Op{Kind: OpHashBucket, Buckets: 3})}}
	if err := ValidatePlan(ok, schema); err != nil {
		t.Errorf("valid plan: %v", err)
	}
}

func TestCPUExecuteErrors(t *testing.T) {
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer mem.AssertSize(t, 0)
	rec := buildRecord(t, mem, column{"x", f64, []any{1.0}})
	defer rec.Release()
	plan := &Plan{Steps: []Step{{Output: "y", Input: "x"}}}

	t.Run("invalid plan", func(t *testing.T) {
		cpu := NewCPU("cpu", Location{}, CPUOptions{Allocator: mem})
		_, err := cpu.Execute(context.Background(), &Plan{Steps: []Step{{Output: "y", Input: "missing"}}}, rec)
		if !errors.Is(err, ErrInvalidPlan) {
			t.Errorf("err = %v, want ErrInvalidPlan", err)
		}
	})
	t.Run("cancelled", func(t *testing.T) {
		cpu := NewCPU("cpu", Location{}, CPUOptions{Allocator: mem})
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		out, err := cpu.Execute(ctx, plan, rec)
		if !errors.Is(err, context.Canceled) || out != nil {
			t.Errorf("out, err = %v, %v; want nil, context.Canceled", out, err)
		}
	})
	t.Run("closed", func(t *testing.T) {
		cpu := NewCPU("cpu", Location{}, CPUOptions{Allocator: mem})
		if err := cpu.Healthy(context.Background()); err != nil {
			t.Fatalf("Healthy before Close: %v", err)
		}
		cpu.Close()
		if err := cpu.Healthy(context.Background()); !errors.Is(err, ErrUnavailable) {
			t.Errorf("Healthy after Close = %v, want ErrUnavailable", err)
		}
		if _, err := cpu.Execute(context.Background(), plan, rec); !errors.Is(err, ErrUnavailable) {
			t.Errorf("Execute after Close = %v, want ErrUnavailable", err)
		}
	})
}

// TestCPUConcurrent runs one executor from several goroutines (meant for
// -race) and checks every result equals a sequential one.
func TestCPUConcurrent(t *testing.T) {
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer mem.AssertSize(t, 0)
	rec := benchRecord(t, mem, 2*chunkRows+77)
	defer rec.Release()
	plan := benchPlan()
	cpu := NewCPU("cpu", Location{}, CPUOptions{Allocator: mem, Workers: 3})
	ref, err := cpu.Execute(context.Background(), plan, rec)
	if err != nil {
		t.Fatal(err)
	}
	defer ref.Release()

	var wg sync.WaitGroup
	errs := make(chan error, 6)
	for g := range 6 {
		wg.Go(func() {
			for range 3 {
				out, err := cpu.Execute(context.Background(), plan, rec)
				if err != nil {
					errs <- err
					return
				}
				eq := array.RecordEqual(out, ref)
				out.Release()
				if !eq {
					errs <- fmt.Errorf("goroutine %d: result differs from the sequential one", g)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// benchRecord has the shape of a card transaction batch: amount with
// nulls, an int32 count, a category string and a user id string.
func benchRecord(t testing.TB, mem memory.Allocator, n int) arrow.RecordBatch {
	amount := array.NewFloat64Builder(mem)
	count := array.NewInt32Builder(mem)
	cat := array.NewStringBuilder(mem)
	user := array.NewStringBuilder(mem)
	defer amount.Release()
	defer count.Release()
	defer cat.Release()
	defer user.Release()
	cats := []string{"grocery", "travel", "fuel", "online", "atm"}
	for i := range n {
		if i%11 == 0 {
			amount.AppendNull()
		} else {
			amount.Append(float64(i%5000) * 1.25)
		}
		count.Append(int32(i % 97))
		cat.Append(cats[i%len(cats)])
		user.Append(fmt.Sprintf("user-%d", i%10007))
	}
	cols := []arrow.Array{amount.NewArray(), count.NewArray(), cat.NewArray(), user.NewArray()}
	schema := arrow.NewSchema([]arrow.Field{
		{Name: "amount", Type: f64, Nullable: true},
		{Name: "count", Type: i32},
		{Name: "category", Type: str},
		{Name: "user", Type: str},
	}, nil)
	rec := array.NewRecordBatch(schema, cols, int64(n))
	for _, c := range cols {
		c.Release()
	}
	return rec
}

func benchPlan() *Plan {
	return &Plan{
		Passthrough: []string{"user"},
		Steps: []Step{
			{Output: "amount_log", Input: "amount", Ops: []Op{{Kind: OpFillMissing, Value: 0}, {Kind: OpClip, Min: 0, Max: 5000}, {Kind: OpLog1p}}},
			{Output: "amount_z", Input: "amount", Ops: []Op{{Kind: OpStandardize, Mean: 3000, Std: 1800}}},
			{Output: "amount_bucket", Input: "amount", Ops: []Op{{Kind: OpBucketize, Boundaries: []float64{10, 100, 1000, 5000}}}},
			{Output: "count_mm", Input: "count", Ops: []Op{{Kind: OpMinMax, Min: 0, Max: 96}}},
			{Output: "category_id", Input: "category", Ops: []Op{{Kind: OpCategorify, Vocabulary: []string{"grocery", "travel", "fuel", "online"}}}},
			{Output: "user_bucket", Input: "user", Ops: []Op{{Kind: OpHashBucket, Buckets: 1 << 20}}},
		},
	}
}

func BenchmarkCPUExecute(b *testing.B) {
	const rows = 100_000
	rec := benchRecord(b, memory.DefaultAllocator, rows)
	defer rec.Release()
	plan := benchPlan()
	cpu := NewCPU("cpu", Location{}, CPUOptions{})
	ctx := context.Background()
	runs := 0
	for b.Loop() {
		out, err := cpu.Execute(ctx, plan, rec)
		if err != nil {
			b.Fatal(err)
		}
		out.Release()
		runs++
	}
	b.ReportMetric(float64(rows)*float64(runs)/b.Elapsed().Seconds(), "rows/s")
}
