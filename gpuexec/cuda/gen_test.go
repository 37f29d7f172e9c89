package cuda

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/float16"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/sluice-dev/sluice/gpuexec"
)

// randomArray makes n values of type dt: about nullFrac of them null, and
// for floats a share of NaN, ±Inf, -1, values near -1 and tiny values, so
// every branch of every op is taken.
func randomArray(mem memory.Allocator, rng *rand.Rand, dt arrow.DataType, n int, nullFrac float64) arrow.Array {
	b := array.NewBuilder(mem, dt)
	defer b.Release()
	special := []float64{math.NaN(), math.Inf(1), math.Inf(-1), -1, -1 + 1e-12, -0.5, 0, math.Copysign(0, -1), 1e-300, 1e-17, 1e300}
	for range n {
		if rng.Float64() < nullFrac {
			b.AppendNull()
			continue
		}
		x := rng.NormFloat64() * 10
		if rng.IntN(8) == 0 {
			x = special[rng.IntN(len(special))]
		}
		switch b := b.(type) {
		case *array.Float64Builder:
			b.Append(x)
		case *array.Float32Builder:
			b.Append(float32(x))
		case *array.Float16Builder:
			b.Append(float16.New(float32(rng.NormFloat64())))
		case *array.Int64Builder:
			b.Append(rng.Int64N(2000) - 1000)
		case *array.Int32Builder:
			b.Append(int32(rng.IntN(200) - 100))
		case *array.Int8Builder:
			b.Append(int8(rng.IntN(256) - 128))
		case *array.Uint8Builder:
			b.Append(uint8(rng.IntN(256)))
		case *array.Uint64Builder:
			b.Append(rng.Uint64())
		case *array.StringBuilder:
			b.Append(randomString(rng))
		case *array.LargeStringBuilder:
			b.Append(randomString(rng))
		default:
			panic("randomArray: no case for " + dt.String())
		}
	}
	return b.NewArray()
}

func randomString(rng *rand.Rand) string {
	const letters = "abcdefghijklmnopqrstuvwxyzÄé0123456789"
	s := make([]byte, rng.IntN(24))
	for i := range s {
		s[i] = letters[rng.IntN(len(letters))]
	}
	return string(s)
}

// chains are the op chains the checks run, by name: each op alone, the
// edge parameters, and fused chains that cross int64 and float64.
func chains() map[string][]gpuexec.Op {
	return map[string][]gpuexec.Op{
		"none":             nil,
		"fill_missing":     {{Kind: gpuexec.OpFillMissing, Value: -7.5}},
		"clip":             {{Kind: gpuexec.OpClip, Min: -3, Max: 4.25}},
		"log1p":            {{Kind: gpuexec.OpLog1p}},
		"standardize":      {{Kind: gpuexec.OpStandardize, Mean: 1.5, Std: 3.25}},
		"standardize_std0": {{Kind: gpuexec.OpStandardize, Mean: 2, Std: 0}},
		"min_max":          {{Kind: gpuexec.OpMinMax, Min: -5, Max: 20}},
		"min_max_constant": {{Kind: gpuexec.OpMinMax, Min: 3, Max: 3}},
		"bucketize":        {{Kind: gpuexec.OpBucketize, Boundaries: []float64{-10, -1, 0, 0.5, 2, 7, 100}}},
		"bucketize_one":    {{Kind: gpuexec.OpBucketize, Boundaries: []float64{0}}},
		"fill_clip_log1p_standardize": {
			{Kind: gpuexec.OpFillMissing, Value: 0},
			{Kind: gpuexec.OpClip, Min: 0, Max: 1e6},
			{Kind: gpuexec.OpLog1p},
			{Kind: gpuexec.OpStandardize, Mean: 1.1, Std: 0.7},
		},
		"log1p_fill_min_max": {
			{Kind: gpuexec.OpLog1p},
			{Kind: gpuexec.OpFillMissing, Value: -1},
			{Kind: gpuexec.OpMinMax, Min: -1, Max: 5},
		},
		"bucketize_standardize_bucketize": {
			{Kind: gpuexec.OpBucketize, Boundaries: []float64{-1, 0, 1}},
			{Kind: gpuexec.OpStandardize, Mean: 1, Std: 2},
			{Kind: gpuexec.OpBucketize, Boundaries: []float64{0}},
		},
	}
}

// stringChains run on string inputs.
func stringChains() map[string][]gpuexec.Op {
	return map[string][]gpuexec.Op{
		"hash_bucket":           {{Kind: gpuexec.OpHashBucket, Buckets: 1000}},
		"hash_bucket_big":       {{Kind: gpuexec.OpHashBucket, Buckets: math.MaxInt64}},
		"hash_bucket_min_max":   {{Kind: gpuexec.OpHashBucket, Buckets: 97}, {Kind: gpuexec.OpMinMax, Min: 0, Max: 96}},
		"hash_bucket_bucketize": {{Kind: gpuexec.OpHashBucket, Buckets: 10}, {Kind: gpuexec.OpBucketize, Boundaries: []float64{5}}},
	}
}

// compareBatches asserts that got equals want column by column: the same
// schema, nulls and integers exactly, float64 within tol relative to
// max(1, |want|) (0: bit for bit), NaN where NaN. It returns the largest
// relative float error seen.
func compareBatches(t testing.TB, got, want arrow.RecordBatch, tol float64) float64 {
	t.Helper()
	if !got.Schema().Equal(want.Schema()) {
		t.Fatalf("schema\n got %s\nwant %s", got.Schema(), want.Schema())
	}
	worst := 0.0
	for c := range int(want.NumCols()) {
		g, w := got.Column(c), want.Column(c)
		name := want.ColumnName(c)
		if g.Len() != w.Len() || g.NullN() != w.NullN() {
			t.Fatalf("column %s: len %d nulls %d, want len %d nulls %d", name, g.Len(), g.NullN(), w.Len(), w.NullN())
		}
		bad := 0
		for i := range w.Len() {
			if g.IsNull(i) != w.IsNull(i) {
				t.Errorf("column %s row %d: null %v, want %v", name, i, g.IsNull(i), w.IsNull(i))
				bad++
			} else if w.IsNull(i) {
				continue
			} else if msg := diff(g, w, i, tol, &worst); msg != "" {
				t.Errorf("column %s row %d: %s", name, i, msg)
				bad++
			}
			if bad > 10 {
				t.Fatalf("column %s: too many differences", name)
			}
		}
	}
	return worst
}

func diff(g, w arrow.Array, i int, tol float64, worst *float64) string {
	switch w := w.(type) {
	case *array.Float64:
		gv, wv := g.(*array.Float64).Value(i), w.Value(i)
		if math.IsNaN(wv) || math.IsNaN(gv) {
			if math.IsNaN(wv) != math.IsNaN(gv) {
				return fmt.Sprintf("%v, want %v", gv, wv)
			}
			return ""
		}
		if tol == 0 {
			if math.Float64bits(gv) != math.Float64bits(wv) {
				return fmt.Sprintf("%v, want %v bit for bit", gv, wv)
			}
			return ""
		}
		if math.IsInf(wv, 0) || math.IsInf(gv, 0) {
			if gv != wv {
				return fmt.Sprintf("%v, want %v", gv, wv)
			}
			return ""
		}
		rel := math.Abs(gv-wv) / math.Max(1, math.Abs(wv))
		*worst = max(*worst, rel)
		if rel > tol {
			return fmt.Sprintf("%v, want %v (relative error %.3g > %g)", gv, wv, rel, tol)
		}
	case *array.Int64:
		if gv := g.(*array.Int64).Value(i); gv != w.Value(i) {
			return fmt.Sprintf("%d, want %d", gv, w.Value(i))
		}
	default:
		if g.ValueStr(i) != w.ValueStr(i) {
			return fmt.Sprintf("%s, want %s", g.ValueStr(i), w.ValueStr(i))
		}
	}
	return ""
}

// hasLog1p says whether a chain's float results may differ from the CPU's
// in the last bits.
func hasLog1p(ops []gpuexec.Op) bool {
	for _, op := range ops {
		if op.Kind == gpuexec.OpLog1p {
			return true
		}
	}
	return false
}

// log1pTolerance bounds the relative difference (to max(1, |want|)) between
// the kernels' log1p and Go's math.Log1p, and what follows it in a chain.
// Every other op is IEEE-exact on both sides and compared bit for bit.
const log1pTolerance = 1e-12
