package main

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"testing"

	"github.com/sluice-dev/sluice/lineage"
	"github.com/sluice-dev/sluice/transform"
)

// BenchmarkLineage runs the whole demo pipeline over the same stream with
// signed lineage written to the folder store ("on") and discarded ("off").
// Both runners are built the same way from openPipeline's parts; only the
// LineageWriter differs. The ratio of their records/s is what lineage
// costs end to end. Run with -benchtime=Nx, N >= 3, and -count to see the
// noise.
func BenchmarkLineage(b *testing.B) {
	brokers, ends, dir := benchTopic(b)
	quiet := slog.New(slog.DiscardHandler)
	key, err := lineage.LoadOrCreateKey(filepath.Join(dir, "keys", "lineage.key"))
	if err != nil {
		b.Fatal(err)
	}
	run := 0
	for _, mode := range []string{"on", "off"} {
		b.Run(mode, func(b *testing.B) {
			for b.Loop() {
				run++
				p := benchPipeline(b, brokers, dir, fmt.Sprintf("bench-lineage-%d", run), key, quiet)
				var lw transform.LineageWriter = p.lineage
				if mode == "off" {
					lw = discardLineage{}
				}
				r, err := rebuildRunner(p, lw, quiet)
				if err != nil {
					p.Close()
					b.Fatal(err)
				}
				n, err := drain(context.Background(), r.Run, p.source, ends, nil)
				p.Close()
				if err != nil || n != benchEvents {
					b.Fatalf("drained %d of %d: %v", n, benchEvents, err)
				}
			}
			b.ReportMetric(float64(benchEvents)*float64(b.N)/b.Elapsed().Seconds(), "records/s")
		})
	}
}
