package gpuexec

import (
	"context"
	"math"
	"sort"
	"testing"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
)

// benchOps are the single-op plans of BenchmarkCPUOps, each with the naive
// per-row Go loop it is measured against: the loop a reader would write
// first (IsNull, Value, a builder's Append per row), single-threaded.
var benchOps = []struct {
	name  string
	step  Step
	naive func(rec arrow.RecordBatch, mem memory.Allocator) arrow.Array
}{
	{"fill_missing", Step{Input: "amount", Ops: []Op{{Kind: OpFillMissing, Value: -1}}}, naiveFloat("amount", func(v float64, null bool) (float64, bool) {
		if null || math.IsNaN(v) {
			return -1, false
		}
		return v, false
	})},
	{"clip", Step{Input: "amount", Ops: []Op{{Kind: OpClip, Min: 10, Max: 5000}}}, naiveFloat("amount", func(v float64, null bool) (float64, bool) {
		return math.Min(math.Max(v, 10), 5000), null
	})},
	{"log1p", Step{Input: "amount", Ops: []Op{{Kind: OpLog1p}}}, naiveFloat("amount", func(v float64, null bool) (float64, bool) {
		if null || v <= -1 {
			return 0, true
		}
		return math.Log1p(v), false
	})},
	{"standardize", Step{Input: "amount", Ops: []Op{{Kind: OpStandardize, Mean: 3000, Std: 1800}}}, naiveFloat("amount", func(v float64, null bool) (float64, bool) {
		return (v - 3000) / 1800, null
	})},
	{"min_max", Step{Input: "amount", Ops: []Op{{Kind: OpMinMax, Min: 0, Max: 6250}}}, naiveFloat("amount", func(v float64, null bool) (float64, bool) {
		return math.Min(math.Max(v/6250, 0), 1), null
	})},
	{"bucketize", Step{Input: "amount", Ops: []Op{{Kind: OpBucketize, Boundaries: []float64{10, 100, 1000, 5000}}}}, naiveInt("amount", func(a arrow.Array, i int) (int64, bool) {
		if a.IsNull(i) {
			return 0, true
		}
		v := a.(*array.Float64).Value(i)
		return int64(sort.Search(4, func(j int) bool { return []float64{10, 100, 1000, 5000}[j] > v })), false
	})},
	{"hash_bucket", Step{Input: "user", Ops: []Op{{Kind: OpHashBucket, Buckets: 1 << 20}}}, naiveInt("user", func(a arrow.Array, i int) (int64, bool) {
		if a.IsNull(i) {
			return 0, true
		}
		return HashBucket(a.(*array.String).Value(i), 1<<20), false
	})},
	{"categorify", Step{Input: "category", Ops: []Op{{Kind: OpCategorify, Vocabulary: []string{"grocery", "travel", "fuel", "online"}}}}, func() func(arrow.RecordBatch, memory.Allocator) arrow.Array {
		vocab := map[string]int64{"grocery": 1, "travel": 2, "fuel": 3, "online": 4}
		return naiveInt("category", func(a arrow.Array, i int) (int64, bool) {
			if a.IsNull(i) {
				return 0, true
			}
			return vocab[a.(*array.String).Value(i)], false
		})
	}()},
}

func naiveFloat(col string, f func(v float64, null bool) (float64, bool)) func(arrow.RecordBatch, memory.Allocator) arrow.Array {
	return func(rec arrow.RecordBatch, mem memory.Allocator) arrow.Array {
		in := rec.Column(rec.Schema().FieldIndices(col)[0]).(*array.Float64)
		b := array.NewFloat64Builder(mem)
		defer b.Release()
		for i := 0; i < in.Len(); i++ {
			v, null := f(in.Value(i), in.IsNull(i))
			if null {
				b.AppendNull()
			} else {
				b.Append(v)
			}
		}
		return b.NewArray()
	}
}

func naiveInt(col string, f func(a arrow.Array, i int) (int64, bool)) func(arrow.RecordBatch, memory.Allocator) arrow.Array {
	return func(rec arrow.RecordBatch, mem memory.Allocator) arrow.Array {
		in := rec.Column(rec.Schema().FieldIndices(col)[0])
		b := array.NewInt64Builder(mem)
		defer b.Release()
		for i := 0; i < in.Len(); i++ {
			v, null := f(in, i)
			if null {
				b.AppendNull()
			} else {
				b.Append(v)
			}
		}
		return b.NewArray()
	}
}

// naiveChain is benchPlan written as one per-row loop per step.
func naiveChain(rec arrow.RecordBatch, mem memory.Allocator) []arrow.Array {
	amount := rec.Column(0).(*array.Float64)
	count := rec.Column(1).(*array.Int32)
	outs := make([]arrow.Array, 0, 6)
	b := array.NewFloat64Builder(mem)
	defer b.Release()
	for i := 0; i < amount.Len(); i++ {
		v := 0.0
		if !amount.IsNull(i) && !math.IsNaN(amount.Value(i)) {
			v = amount.Value(i)
		}
		v = math.Min(math.Max(v, 0), 5000)
		if v <= -1 {
			b.AppendNull()
		} else {
			b.Append(math.Log1p(v))
		}
	}
	outs = append(outs, b.NewArray())
	for i := 0; i < amount.Len(); i++ {
		if amount.IsNull(i) {
			b.AppendNull()
		} else {
			b.Append((amount.Value(i) - 3000) / 1800)
		}
	}
	outs = append(outs, b.NewArray())
	ib := array.NewInt64Builder(mem)
	defer ib.Release()
	bounds := []float64{10, 100, 1000, 5000}
	for i := 0; i < amount.Len(); i++ {
		if amount.IsNull(i) {
			ib.AppendNull()
			continue
		}
		v := amount.Value(i)
		ib.Append(int64(sort.Search(len(bounds), func(j int) bool { return bounds[j] > v })))
	}
	outs = append(outs, ib.NewArray())
	for i := 0; i < count.Len(); i++ {
		b.Append(math.Min(math.Max(float64(count.Value(i))/96, 0), 1))
	}
	outs = append(outs, b.NewArray())
	cat := rec.Column(2).(*array.String)
	vocab := map[string]int64{"grocery": 1, "travel": 2, "fuel": 3, "online": 4}
	for i := 0; i < cat.Len(); i++ {
		ib.Append(vocab[cat.Value(i)])
	}
	outs = append(outs, ib.NewArray())
	user := rec.Column(3).(*array.String)
	for i := 0; i < user.Len(); i++ {
		ib.Append(HashBucket(user.Value(i), 1<<20))
	}
	return append(outs, ib.NewArray())
}

// BenchmarkCPUOps measures each op alone and the fused chain of benchPlan
// (six steps, ten ops) on the CPU executor (all cores of GOMAXPROCS, and
// one worker) and with the naive per-row loop, reporting ns per value per
// op: wall time / (rows × ops). Run with
//
//	go test -run '^$' -bench BenchmarkCPUOps ./gpuexec
func BenchmarkCPUOps(b *testing.B) {
	const rows = 1 << 20
	mem := memory.DefaultAllocator
	rec := benchRecord(b, mem, rows)
	defer rec.Release()
	ctx := context.Background()

	runExec := func(b *testing.B, plan *Plan, workers, ops int) {
		cpu := NewCPU("bench", Location{}, CPUOptions{Workers: workers})
		for b.Loop() {
			out, err := cpu.Execute(ctx, plan, rec)
			if err != nil {
				b.Fatal(err)
			}
			out.Release()
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(rows*ops), "ns/value")
	}
	for _, bo := range benchOps {
		step := bo.step
		step.Output = "out"
		plan := &Plan{Steps: []Step{step}}
		b.Run(bo.name+"/executor", func(b *testing.B) { runExec(b, plan, 0, 1) })
		b.Run(bo.name+"/executor-1core", func(b *testing.B) { runExec(b, plan, 1, 1) })
		b.Run(bo.name+"/naive", func(b *testing.B) {
			for b.Loop() {
				bo.naive(rec, mem).Release()
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(rows), "ns/value")
		})
	}

	plan := benchPlan()
	ops := 0
	for _, s := range plan.Steps {
		ops += len(s.Ops)
	}
	b.Run("fused_chain/executor", func(b *testing.B) { runExec(b, plan, 0, ops) })
	b.Run("fused_chain/executor-1core", func(b *testing.B) { runExec(b, plan, 1, ops) })
	b.Run("fused_chain/naive", func(b *testing.B) {
		for b.Loop() {
			for _, a := range naiveChain(rec, mem) {
				a.Release()
			}
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(rows*ops), "ns/value")
	})
}

// TestNaiveMatchesExecutor keeps the benchmark honest: the naive loops
// compute what the executor computes.
func TestNaiveMatchesExecutor(t *testing.T) {
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer mem.AssertSize(t, 0)
	rec := benchRecord(t, mem, 5000)
	defer rec.Release()
	cpu := NewCPU("ref", Location{}, CPUOptions{Allocator: mem})
	for _, bo := range benchOps {
		t.Run(bo.name, func(t *testing.T) {
			step := bo.step
			step.Output = "out"
			out, err := cpu.Execute(context.Background(), &Plan{Steps: []Step{step}}, rec)
			if err != nil {
				t.Fatal(err)
			}
			defer out.Release()
			want := bo.naive(rec, mem)
			defer want.Release()
			if !array.ApproxEqual(out.Column(0), want, array.WithNaNsEqual(true)) {
				t.Errorf("executor and naive loop differ")
			}
		})
	}
	out, err := cpu.Execute(context.Background(), benchPlan(), rec)
	if err != nil {
		t.Fatal(err)
	}
	defer out.Release()
	for i, want := range naiveChain(rec, mem) {
		if !array.ApproxEqual(out.Column(i+1), want, array.WithNaNsEqual(true)) {
			t.Errorf("fused chain column %s: executor and naive loop differ", out.ColumnName(i+1))
		}
		want.Release()
	}
}
