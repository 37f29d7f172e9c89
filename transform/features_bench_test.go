package transform_test

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluice-dev/sluice/gpuexec"
	"github.com/sluice-dev/sluice/ingest/kafka"
	"github.com/sluice-dev/sluice/lineage"
	"github.com/sluice-dev/sluice/storage"
	"github.com/sluice-dev/sluice/transform"
)

const benchFeatureSpec = `
name: t
purpose: analytics
source: {brokers: ["127.0.0.1:9092"], topic: in}
schema:
  - {name: id, type: string}
  - {name: country, type: string}
  - {name: ts, type: timestamp}
  - {name: user_id, type: string, nullable: true, classes: [pii]}
  - {name: amount, type: float64, nullable: true}
entity: [id]
event_time: ts
residency: {jurisdiction: country}
batching: {linger: 100ms}
features:
  - {name: amount_log, input: amount, ops: [{op: fill_missing, value: 0}, log1p]}
executors:
  - {id: onprem, location: {name: fra, kind: onprem, jurisdiction: DE}, sink: fra}
  - {id: cloud, location: {name: use1, kind: cloud, provider: aws, region: us-east-1, jurisdiction: US}, sink: us}
sinks:
  - {name: fra, url: "file:///unused/fra", kafka_topic: features.fra}
  - {name: us, url: "file:///unused/us", kafka_topic: features.us}
quarantine: {sink: fra}
lineage: {url: "file:///unused/lineage"}
`

// latencyPublisher records, for every message it publishes, the time from
// the record's event time (stamped by the producer just before producing)
// to the broker's acknowledgement of the features message.
type latencyPublisher struct {
	transform.FeaturePublisher
	mu  sync.Mutex
	lat []time.Duration
}

func (l *latencyPublisher) PublishFeatures(ctx context.Context, topic string, msgs []transform.FeatureMessage) error {
	if err := l.FeaturePublisher.PublishFeatures(ctx, topic, msgs); err != nil {
		return err
	}
	now := time.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, m := range msgs {
		var v struct{ Ts time.Time }
		if json.Unmarshal(m.Value, &v) == nil {
			l.lat = append(l.lat, now.Sub(v.Ts))
		}
	}
	return nil
}

// BenchmarkFeaturesLatency produces a steady 20,000 records/s for 5 s into
// a kfake topic, runs the pipeline (Kafka source with 100 ms linger, CPU
// executors, Parquet to memory, lineage, features topic) and reports the
// p50/p99 time from produce to the features being acknowledged by the
// broker. Run with -benchtime=1x.
func BenchmarkFeaturesLatency(b *testing.B) {
	const rate, seconds = 20000, 5
	for range b.N {
		c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(4, "in", "in.dlq", "features.fra", "features.us"))
		if err != nil {
			b.Fatal(err)
		}
		brokers := c.ListenAddrs()
		spec, err := transform.Parse("bench.yaml", []byte(benchFeatureSpec))
		if err != nil {
			b.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		src, err := kafka.NewSource(ctx, kafka.Config{Brokers: brokers, Topic: "in", Group: "bench",
			Linger: 100 * time.Millisecond, Fields: spec.IngestFields(), SessionTimeout: 6 * time.Second,
			HeartbeatInterval: time.Second})
		if err != nil {
			b.Fatal(err)
		}
		fw, err := kafka.NewFeatureWriter(kafka.FeatureWriterConfig{Brokers: brokers})
		if err != nil {
			b.Fatal(err)
		}
		pub := &latencyPublisher{FeaturePublisher: fw}
		_, key, _ := ed25519.GenerateKey(nil)
		lin := newMemStore()
		lw, _ := lineage.NewWriter(lin, lineage.WriterConfig{Pipeline: "t", Key: key})
		mem := memory.NewGoAllocator()
		r, err := transform.NewRunner(transform.RunnerConfig{
			Spec: spec, Source: src, Decider: fakeDecider{},
			Router: gpuexec.NewRouter([]gpuexec.Executor{
				gpuexec.NewCPU("onprem", spec.Executors[0].Location, gpuexec.CPUOptions{Allocator: mem}),
				gpuexec.NewCPU("cloud", spec.Executors[1].Location, gpuexec.CPUOptions{Allocator: mem}),
			}, gpuexec.RouterOptions{}),
			Sinks: map[string]storage.ObjectStore{
				"fra": transform.WithFeatures(newMemStore(), pub), "us": transform.WithFeatures(newMemStore(), pub)},
			DeadLetters: kafka.NewDeadLetterWriter(brokers, "in.dlq"), Lineage: lw, HashKey: []byte("0123456789abcdef"),
			Allocator: mem,
		})
		if err != nil {
			b.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- r.Run(ctx) }()

		prod, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ProducerLinger(0), kgo.DefaultProduceTopic("in"))
		if err != nil {
			b.Fatal(err)
		}
		countries := []string{"DE", "US", "FR", "US"}
		b.ResetTimer()
		tick := time.NewTicker(10 * time.Millisecond)
		n := 0
		for range seconds * 100 {
			<-tick.C
			for range rate / 100 {
				v := fmt.Sprintf(`{"id":"r-%d","country":%q,"ts":%q,"user_id":"u-%d","amount":%d}`,
					n, countries[n%4], time.Now().UTC().Format(time.RFC3339Nano), n%1000, n%500)
				prod.Produce(ctx, &kgo.Record{Key: fmt.Appendf(nil, "%d", n), Value: []byte(v)}, nil)
				n++
			}
		}
		tick.Stop()
		prod.Flush(ctx)
		deadline := time.Now().Add(20 * time.Second)
		for {
			pub.mu.Lock()
			got := len(pub.lat)
			pub.mu.Unlock()
			if got >= n || time.Now().After(deadline) {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		b.StopTimer()
		cancel()
		<-done
		prod.Close()
		fw.Close()
		src.Close()
		c.Close()
		lat := slices.Clone(pub.lat)
		if len(lat) < n {
			b.Fatalf("%d of %d rows published", len(lat), n)
		}
		slices.Sort(lat)
		b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50_ms")
		b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99_ms")
		b.ReportMetric(float64(n), "records")
	}
}
