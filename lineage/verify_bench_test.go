package lineage

import (
	"context"
	"fmt"
	"testing"
)

// BenchmarkVerify verifies an in-memory trail of 4 chains of 2500 signed
// segments, each segment one batch of 3 events as the runner writes them
// (30,000 events, about 50 MB), and reports the time per million events:
// "trail" checks signatures, links and offsets; "objects" also reads and
// hashes the 30,000 small objects the events name.
func BenchmarkVerify(b *testing.B) {
	const chains, segments = 4, 2500
	store := newMemStore()
	stores := map[string]*memStore{}
	w := newTestWriter(b, store)
	for c := range chains {
		for s := range segments {
			first := int64(s * 10)
			evs := batchEvents("events", c, first, first+9)
			for _, ev := range evs {
				for j := range ev.Outputs {
					o := &ev.Outputs[j]
					obj := o.OutputFacets.Object
					data := []byte(fmt.Sprintf("%d rows of %s\n", obj.Rows, obj.Key))
					obj.SHA256, obj.Bytes = hashLine(data), int64(len(data))
					st := stores[o.Namespace]
					if st == nil {
						st = newMemStore()
						stores[o.Namespace] = st
					}
					st.set(obj.Key, data)
				}
			}
			if _, err := w.Append(context.Background(), ChainFor("events", c), evs); err != nil {
				b.Fatal(err)
			}
		}
	}
	events := float64(chains * segments * 3)
	objects := func(ctx context.Context, ns string) (ObjectReader, error) { return stores[ns], nil }
	for _, bc := range []struct {
		name string
		opts VerifyOptions
	}{
		{"trail", VerifyOptions{}},
		{"objects", VerifyOptions{Objects: objects}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			for b.Loop() {
				rep, err := VerifyWith(context.Background(), store, "lineage", bc.opts)
				if err != nil || !rep.OK || rep.Events != int(events) {
					b.Fatalf("verify: %v %v", rep.Problems, err)
				}
			}
			perEvent := b.Elapsed().Seconds() / float64(b.N) / events
			b.ReportMetric(perEvent*1e6, "s/Mevents")
			b.ReportMetric(1/perEvent, "events/s")
		})
	}
}
