package kafka

import (
	"context"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/twmb/franz-go/pkg/kgo"
)

// BenchmarkSource measures the whole read path on kfake over loopback TCP:
// fetch, JSON decode into Arrow, batch hand-off and ack, for 200k small
// records in 4 partitions. The broker shares the CPU with the consumer, so
// the figure is a floor for a real cluster. Run it with -benchtime=1x.
func BenchmarkSource(b *testing.B) {
	const partitions, total = 4, 200_000
	brokers := cluster(b, partitions)
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.RecordPartitioner(kgo.ManualPartitioner()),
		kgo.ProducerBatchMaxBytes(1<<20))
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	recs := make([]*kgo.Record, 0, total)
	for i := range total {
		p := int32(i % partitions)
		recs = append(recs, &kgo.Record{Topic: testTopic, Partition: p, Value: record(int(p), i)})
	}
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		b.Fatal(err)
	}
	cl.Close()

	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		cfg := testConfig(b, brokers, fmt.Sprintf("bench-%d", i), memory.NewGoAllocator())
		cfg.MaxRecords, cfg.Linger = 10000, 100*time.Millisecond
		cfg.Logger = slog.New(slog.DiscardHandler)
		s := newSource(b, cfg)
		for n := 0; n < total; {
			bt := next(b, s, 30*time.Second)
			n += int(bt.Last - bt.First + 1)
			bt.Record.Release()
			ack(b, bt, nil)
		}
		s.Close()
	}
	b.StopTimer()
	perRecord := float64(b.Elapsed().Nanoseconds()) / float64(b.N*total)
	b.ReportMetric(perRecord, "ns/record")
	b.ReportMetric(1e9/perRecord, "records/s")
}
