package main

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"log/slog"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/sluice-dev/sluice/gpuexec"
	"github.com/sluice-dev/sluice/ingest"
	"github.com/sluice-dev/sluice/lineage"
	"github.com/sluice-dev/sluice/policies"
	"github.com/sluice-dev/sluice/transform"
)

// stagesRecords is how many demo records one iteration of BenchmarkStages
// processes: 20 batches of sluice's default 20000, over 4 partitions.
const (
	stagesRecords    = 400_000
	stagesBatch      = 20_000
	stagesPartitions = 4
)

// BenchmarkStages measures what the stages after ingest cost, without the
// broker: the demo stream is decoded once, and each iteration hands the
// same decoded batches to a fresh runner writing to a fresh folder store
// (durable writes included). The sub-benchmarks are the three pipelines of
// `sluice bench`: full, full with lineage discarded (nolineage), and the
// minimal baseline (every row allowed on one executor, no lineage). Run
// them in one invocation and compare: the CPU per record (cpu-µs/record,
// from getrusage) is what `sluice bench`'s ratio is made of on a CPU-bound
// machine, measured here without the broker's share or its noise.
//
//	go test -run '^$' -bench BenchmarkStages -count 6 ./cmd/sluice/
func BenchmarkStages(b *testing.B) {
	dir := b.TempDir()
	spec, err := demoSpec(filepath.Join(dir, "spec"))
	if err != nil {
		b.Fatal(err)
	}
	batches := decodeDemo(b, spec, stagesRecords, stagesBatch, stagesPartitions)
	// openPipeline wires the real stages; its Kafka source and dead-letter
	// writer need a broker, though neither is used by the runs below.
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(stagesPartitions, demoTopics(spec)...))
	if err != nil {
		b.Fatal(err)
	}
	defer cluster.Close()
	key, err := lineage.LoadOrCreateKey(filepath.Join(dir, "keys", "lineage.key"))
	if err != nil {
		b.Fatal(err)
	}
	runs := 0 // each run gets a folder of its own, across the rounds of b.N
	for _, mode := range []string{"full", "nolineage", "baseline"} {
		b.Run(mode, func(b *testing.B) {
			var cpu time.Duration
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				runs++
				run := filepath.Join(dir, fmt.Sprintf("%s-%d", mode, runs))
				runner, src, closeAll := stagesRunner(b, cluster.ListenAddrs(), run, key, mode, batches)
				b.StartTimer()
				c0 := cpuTime()
				ctx, cancel := context.WithCancel(context.Background())
				src.done = cancel
				err := runner.Run(ctx)
				cpu += cpuTime() - c0
				b.StopTimer()
				closeAll()
				if err != nil && ctx.Err() == nil {
					b.Fatal(err)
				}
				if got := src.acked.Load(); got != int64(len(batches)) {
					b.Fatalf("%d of %d batches acked", got, len(batches))
				}
				if bad := src.failed.Load(); bad != 0 {
					b.Fatalf("%d batches failed", bad)
				}
				if st := runner.Stats(); st.FeatureRows+st.Quarantined+st.DeadLetters != stagesRecords {
					b.Fatalf("%d feature rows, %d quarantined, %d dead letters: want %d in all",
						st.FeatureRows, st.Quarantined, st.DeadLetters, stagesRecords)
				}
				b.StartTimer()
			}
			n := float64(b.N) * stagesRecords
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/n, "ns/record")
			b.ReportMetric(float64(cpu.Microseconds())/n, "cpu-µs/record")
		})
	}
}

// stagesRunner builds the runner of one BenchmarkStages iteration over a
// fresh folder store under dir.
func stagesRunner(b *testing.B, brokers []string, dir string, key ed25519.PrivateKey, mode string, batches []*ingest.Batch) (*transform.Runner, *replaySource, func()) {
	b.Helper()
	spec, err := demoSpec(dir)
	if err != nil {
		b.Fatal(err)
	}
	parquetOnly(spec)
	spec.Batching.MaxRecords = stagesBatch
	spec.Source.Brokers = brokers
	spec.Source.Group = "stages-" + filepath.Base(dir)
	quiet := slog.New(slog.DiscardHandler)
	p, err := openPipeline(context.Background(), spec, pipelineOptions{
		policies: policies.FS, signingKey: key, hashKey: make([]byte, 32), logger: quiet, tune: fastJoin,
	})
	if err != nil {
		b.Fatal(err)
	}
	src := &replaySource{batches: batches}
	cfg := transform.RunnerConfig{
		Spec: p.spec, Source: src, Decider: p.decider,
		Router: gpuexec.NewRouter(p.execs, gpuexec.RouterOptions{Logger: quiet, Costs: p.costs}),
		Sinks:  p.sinks, DeadLetters: discardDeadLetters{}, Lineage: p.lineage,
		HashKey: make([]byte, 32), Logger: quiet,
	}
	var closers []func()
	switch mode {
	case "nolineage":
		cfg.Lineage = discardLineage{}
	case "baseline":
		ex := gpuexec.NewCPU(spec.Executors[0].ID, spec.Executors[0].Location, gpuexec.CPUOptions{})
		closers = append(closers, func() { ex.Close() })
		only := *spec
		only.Executors = spec.Executors[:1]
		cfg.Spec, cfg.Decider, cfg.Lineage = &only, allowAll{}, discardLineage{}
		cfg.Router = gpuexec.NewRouter([]gpuexec.Executor{ex}, gpuexec.RouterOptions{Logger: quiet})
	}
	runner, err := transform.NewRunner(cfg)
	if err != nil {
		b.Fatal(err)
	}
	return runner, src, func() {
		for _, c := range closers {
			c()
		}
		p.Close()
	}
}

// decodeDemo decodes n demo records into batches of size records, the
// records spread over partitions like a keyed producer would (by key).
func decodeDemo(b *testing.B, spec *transform.Spec, n, size, partitions int) []*ingest.Batch {
	b.Helper()
	type part struct {
		dec  *ingest.Decoder
		next int64
		cur  *ingest.Batch
		n    int
	}
	parts := make([]*part, partitions)
	for i := range parts {
		dec, err := ingest.NewDecoder(spec.IngestFields(), memory.DefaultAllocator)
		if err != nil {
			b.Fatal(err)
		}
		parts[i] = &part{dec: dec}
	}
	var out []*ingest.Batch
	flush := func(i int, p *part) {
		p.cur.Record = p.dec.NewRecord()
		out = append(out, p.cur)
		p.cur, p.n = nil, 0
	}
	gen := newGenerator(1, n)
	for range n {
		ev := gen.next()
		var h uint32
		for _, c := range ev.key {
			h = h*31 + uint32(c)
		}
		i := int(h % uint32(partitions))
		p := parts[i]
		if p.cur == nil {
			p.cur = &ingest.Batch{Topic: spec.Source.Topic, Partition: i, First: p.next, Time: ev.time, Assigned: p.next == 0}
		}
		off := p.next
		p.next++
		if err := p.dec.Append(ev.value); err != nil {
			p.cur.DeadLetters = append(p.cur.DeadLetters, ingest.DeadLetter{
				Topic: spec.Source.Topic, Partition: i, Offset: off, Key: ev.key, Value: ev.value, Time: ev.time,
				Reason: err.Error(), Err: err,
			})
		} else {
			p.cur.Offsets = append(p.cur.Offsets, off)
		}
		p.cur.Last = off
		if p.n++; p.n == size {
			flush(i, p)
		}
	}
	for i, p := range parts {
		if p.cur != nil {
			flush(i, p)
		}
		p.dec.Release()
	}
	b.Cleanup(func() {
		for _, bt := range out {
			bt.Record.Release()
		}
	})
	return out
}

// replaySource hands out the same decoded batches to each runner (the
// runner releases a batch's record, so each is retained first) and calls
// done once every batch is acked.
type replaySource struct {
	batches       []*ingest.Batch
	next          int
	acked, failed atomic.Int64
	done          func()
}

func (s *replaySource) Next(ctx context.Context) (*ingest.Batch, error) {
	if s.next == len(s.batches) {
		<-ctx.Done()
		return nil, ctx.Err()
	}
	orig := s.batches[s.next]
	s.next++
	bt := *orig
	bt.Record.Retain()
	bt.Offsets = append([]int64(nil), orig.Offsets...)
	bt.DeadLetters = append([]ingest.DeadLetter(nil), orig.DeadLetters...)
	bt.Ack = func(_ context.Context, err error) error {
		if err != nil {
			s.failed.Add(1)
		}
		if s.acked.Add(1) == int64(len(s.batches)) {
			s.done()
		}
		return nil
	}
	return &bt, nil
}

func (s *replaySource) Close() error { return nil }

// discardDeadLetters drops dead letters: both pipelines write the same
// ones to the same topic, which is ingest's side of the comparison.
type discardDeadLetters struct{}

func (discardDeadLetters) Write(context.Context, []ingest.DeadLetter) error { return nil }
