package gpuexec

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow/memory"
)

// BenchmarkRouterPredict calibrates the router's cost model on the CPU
// executor with the one-op reference plan, then predicts the fused chain
// of benchPlan (six steps, ten ops, string encoders included) at several
// batch sizes and measures it. It reports predicted/measured (target:
// within 0.5–2). Run with
//
//	go test -run '^$' -bench BenchmarkRouterPredict ./gpuexec
func BenchmarkRouterPredict(b *testing.B) {
	ctx := context.Background()
	mem := memory.DefaultAllocator
	cpu := NewCPU("cpu", Location{Kind: "onprem"}, CPUOptions{})
	r := NewRouter([]Executor{cpu}, RouterOptions{})
	calib := benchRecord(b, mem, 1<<20)
	ref := &Plan{Steps: []Step{{Output: "y", Input: "amount", Ops: []Op{{Kind: OpClip, Min: 0, Max: 5000}}}}}
	cost, err := r.Calibrate(ctx, "cpu", ref, calib)
	calib.Release()
	if err != nil {
		b.Fatal(err)
	}
	b.Logf("calibrated RowsPerSecond = %.3g", cost.RowsPerSecond)
	plan := benchPlan()
	for _, rows := range []int{10_000, 100_000, 1_000_000} {
		b.Run(fmt.Sprintf("fused_chain/rows=%d", rows), func(b *testing.B) {
			rec := benchRecord(b, mem, rows)
			defer rec.Release()
			pred, _ := r.Predict("cpu", plan, rec)
			for b.Loop() {
				out, err := cpu.Execute(ctx, plan, rec)
				if err != nil {
					b.Fatal(err)
				}
				out.Release()
			}
			measured := b.Elapsed() / time.Duration(b.N)
			b.ReportMetric(float64(pred)/float64(measured), "predicted/measured")
			b.ReportMetric(float64(pred.Microseconds()), "predicted-µs")
		})
	}
}
