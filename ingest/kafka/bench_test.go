package kafka

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
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

// benchValue is a record of about 190 bytes: the test schema's fields and
// a payload the decoder skips.
func benchValue(p, seq int) []byte {
	return fmt.Appendf(nil, `{"p":%d,"seq":%d,"country":"DE","payload":{"merchant":"Fresh Market %05d","note":"%0120d"}}`,
		p, seq, seq%100000, seq)
}

// BenchmarkConsume measures records/s from kfake (loopback TCP) to acked
// batches with one and with two members of a group over 4 partitions;
// with two, the timer starts once the partitions are split. The broker
// shares the 2 CPUs with the consumers, so two members on one machine
// measure scheduling as much as scaling. Run it with -benchtime=1x.
func BenchmarkConsume(b *testing.B) {
	const partitions, total = 4, 400_000
	brokers := cluster(b, partitions)
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.RecordPartitioner(kgo.ManualPartitioner()),
		kgo.ProducerBatchMaxBytes(1<<20))
	if err != nil {
		b.Fatal(err)
	}
	recs := make([]*kgo.Record, 0, total)
	for i := range total {
		p := int32(i % partitions)
		recs = append(recs, &kgo.Record{Topic: testTopic, Partition: p, Value: benchValue(int(p), i/partitions)})
	}
	if err := cl.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
		b.Fatal(err)
	}
	cl.Close()
	recs = nil
	end := int64(total / partitions) // every partition's next offset

	for _, members := range []int{1, 2} {
		b.Run(fmt.Sprintf("consumers=%d", members), func(b *testing.B) {
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				cfg := testConfig(b, brokers, fmt.Sprintf("bench-consume-%d-%d", members, i), memory.NewGoAllocator())
				cfg.MaxRecords, cfg.Linger = 10000, 100*time.Millisecond
				cfg.Logger = slog.New(slog.DiscardHandler)
				var srcs []*Source
				for range members {
					srcs = append(srcs, newSource(b, cfg))
				}
				waitAssigned(b, partitions, srcs...)
				b.StartTimer()
				var wg sync.WaitGroup
				var mu sync.Mutex
				reached := map[int]bool{}
				ctx, cancel := context.WithCancel(context.Background())
				for _, s := range srcs {
					wg.Add(1)
					go func() {
						defer wg.Done()
						for {
							bt, err := s.Next(ctx)
							if err != nil {
								return
							}
							bt.Record.Release()
							_ = bt.Ack(ctx, nil)
							if bt.Last+1 == end {
								mu.Lock()
								reached[bt.Partition] = true
								if len(reached) == partitions {
									cancel()
								}
								mu.Unlock()
							}
						}
					}()
				}
				wg.Wait()
				b.StopTimer()
				cancel()
				var delivered int64
				for _, s := range srcs {
					delivered += s.Stats().Records
					s.Close()
				}
				if delivered != total {
					b.Fatalf("delivered %d records, want %d (a rebalance during the run?)", delivered, total)
				}
			}
			b.ReportMetric(float64(b.N*total)/b.Elapsed().Seconds(), "records/s")
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*total), "ns/record")
		})
	}
}
