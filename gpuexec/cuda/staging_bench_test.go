package cuda

import (
	"fmt"
	"testing"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/sluice-dev/sluice/gpuexec"
)

// BenchmarkHostStaging measures the host's share of a GPU batch, which no
// GPU makes faster: staging a column into the (here: ordinary) staging
// buffer and copying the result out into an Arrow buffer. ns/op over n is
// the per-value overhead the CUDA executor adds to the transfers and the
// kernel.
func BenchmarkHostStaging(b *testing.B) {
	for _, tc := range []struct {
		dt arrow.DataType
		n  int
	}{
		{arrow.PrimitiveTypes.Float64, 1 << 16},
		{arrow.PrimitiveTypes.Float64, 1 << 22},
		{arrow.PrimitiveTypes.Int32, 1 << 22},
	} {
		b.Run(fmt.Sprintf("%s/%d", tc.dt, tc.n), func(b *testing.B) {
			in := benchColumn(tc.n)
			if tc.dt.ID() == arrow.INT32 {
				in.Release()
				in = int32Column(tc.n)
			}
			defer in.Release()
			g := newGPUStep(0, &gpuexec.Step{Ops: chains()["fill_clip_log1p_standardize"]}, in)
			_, total := layout([]*gpuStep{g})
			buf := make([]byte, total)
			b.SetBytes(int64(tc.n) * 16)
			b.ResetTimer()
			for b.Loop() {
				g.stage(buf)
				g.build(buf, memory.DefaultAllocator).Release()
			}
		})
	}
}

// int32Column is n int32 values, no nulls.
func int32Column(n int) arrow.Array {
	bld := array.NewInt32Builder(memory.DefaultAllocator)
	defer bld.Release()
	bld.Reserve(n)
	for i := range n {
		bld.UnsafeAppend(int32(i%2001 - 1000))
	}
	return bld.NewArray()
}
