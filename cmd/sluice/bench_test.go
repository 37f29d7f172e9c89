package main

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"log/slog"
	"os/exec"
	"path/filepath"
	"regexp"
	"testing"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/sluice-dev/sluice/ingest/kafka"
	"github.com/sluice-dev/sluice/lineage"
	"github.com/sluice-dev/sluice/policies"
)

// benchEvents is the stream each benchmark iteration consumes in full.
const benchEvents = 100_000

// benchTopic produces the demo stream once into an embedded broker.
func benchTopic(b *testing.B) (brokers []string, ends map[int]int64, dir string) {
	b.Helper()
	dir = b.TempDir()
	spec, err := demoSpec(dir)
	if err != nil {
		b.Fatal(err)
	}
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(4, demoTopics(spec)...))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(cluster.Close)
	brokers = cluster.ListenAddrs()
	_, ends, err = produceDemo(context.Background(), brokers, spec.Source.Topic, demoOptions{events: benchEvents, partitions: 4, seed: 1})
	if err != nil {
		b.Fatal(err)
	}
	return brokers, ends, dir
}

// BenchmarkPipeline consumes the demo stream through every stage (decode,
// OPA decisions, routing, CPU features, Parquet, signed lineage, commits);
// BenchmarkPipelineBaselineIngest consumes the same stream with the same
// Source and acks each batch at once. Run both in one invocation; the ratio
// of their records/s is what the stages after ingest cost.
func BenchmarkPipeline(b *testing.B) {
	brokers, ends, dir := benchTopic(b)
	quiet := slog.New(slog.DiscardHandler)
	key, err := lineage.LoadOrCreateKey(filepath.Join(dir, "keys", "lineage.key"))
	if err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		p := benchPipeline(b, brokers, dir, fmt.Sprintf("bench-pipeline-%d", i), key, quiet)
		n, err := drain(context.Background(), p.runner.Run, p.source, ends, nil)
		p.Close()
		if err != nil || n != benchEvents {
			b.Fatalf("drained %d of %d: %v", n, benchEvents, err)
		}
	}
	b.ReportMetric(float64(benchEvents*b.N)/b.Elapsed().Seconds(), "records/s")
}

// benchPipeline opens the demo pipeline (Parquet only: the features topic
// is measured by BenchmarkFeaturesLatency) as consumer group group, with
// its stores in a folder of its own under dir.
func benchPipeline(b *testing.B, brokers []string, dir, group string, key ed25519.PrivateKey, logger *slog.Logger) *pipeline {
	b.Helper()
	spec, err := demoSpec(filepath.Join(dir, group))
	if err != nil {
		b.Fatal(err)
	}
	spec.Source.Brokers = brokers
	spec.Source.Group = group
	parquetOnly(spec)
	p, err := openPipeline(context.Background(), spec, pipelineOptions{
		policies: policies.FS, signingKey: key, hashKey: make([]byte, 32), logger: logger, tune: fastJoin,
	})
	if err != nil {
		b.Fatal(err)
	}
	return p
}

func BenchmarkPipelineBaselineIngest(b *testing.B) {
	brokers, ends, dir := benchTopic(b)
	spec, err := demoSpec(dir)
	if err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		cfg := kafka.Config{
			Brokers: brokers, Topic: spec.Source.Topic, Group: fmt.Sprintf("bench-ingest-%d", i),
			MaxRecords: spec.Batching.MaxRecords, MaxBytes: spec.Batching.MaxBytes, Linger: spec.Batching.Linger,
			Fields: spec.IngestFields(), Logger: slog.New(slog.DiscardHandler),
		}
		fastJoin(&cfg)
		src, err := kafka.NewSource(context.Background(), cfg)
		if err != nil {
			b.Fatal(err)
		}
		ackAll := func(ctx context.Context) error {
			for {
				bt, err := src.Next(ctx)
				if err != nil {
					return err
				}
				if bt.Record != nil {
					bt.Record.Release()
				}
				_ = bt.Ack(ctx, nil)
			}
		}
		n, err := drain(context.Background(), ackAll, src, ends, nil)
		src.Close()
		if err != nil && err != context.Canceled || n != benchEvents {
			b.Fatalf("drained %d of %d: %v", n, benchEvents, err)
		}
	}
	b.ReportMetric(float64(benchEvents*b.N)/b.Elapsed().Seconds(), "records/s")
}

// TestBenchCommand runs `sluice bench` small: both pipelines must consume
// every record and account for each one (feature row, quarantine or dead
// letter), the baseline must quarantine nothing (it has no policy), and
// the summary line must be the one the issue asks for.
func TestBenchCommand(t *testing.T) {
	if testing.Short() {
		t.Skip("runs child processes")
	}
	bin := sluiceBinary(t)
	out, err := exec.Command(bin, "bench", "--records", "3000", "--repeat", "1", "--batch", "500", "-o", "json").Output()
	if err != nil {
		t.Fatalf("sluice bench: %v\n%s", err, out)
	}
	var got struct {
		Runs    []benchResult `json:"runs"`
		AllRuns []benchResult `json:"all_runs"`
		Ratio   float64       `json:"ratio"`
		Summary string        `json:"summary"`
	}
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatalf("-o json must print one JSON document: %v in %s", err, out)
	}
	if len(got.AllRuns) != 2 {
		t.Errorf("all_runs has %d runs; want 2 (one pair)", len(got.AllRuns))
	}
	if len(got.Runs) != 2 || got.Runs[0].Mode != "baseline" || got.Runs[1].Mode != "full" {
		t.Fatalf("runs %+v; want baseline then full", got.Runs)
	}
	for _, r := range got.Runs {
		if r.Records != 3000 || r.FeatureRows+r.Quarantined+r.DeadLetters != 3000 {
			t.Errorf("%s: %d records, %d feature rows + %d quarantined + %d dead letters; want 3000 each way",
				r.Mode, r.Records, r.FeatureRows, r.Quarantined, r.DeadLetters)
		}
		if r.DeadLetters == 0 || r.PeakRSSMiB <= 0 || r.RecordsPerSec <= 0 {
			t.Errorf("%s: %+v; want dead letters (the demo stream has malformed records), RSS and a rate", r.Mode, r)
		}
	}
	if got.Runs[0].Quarantined != 0 || got.Runs[1].Quarantined == 0 {
		t.Errorf("quarantined: baseline %d, full %d; want none without policy, some with it", got.Runs[0].Quarantined, got.Runs[1].Quarantined)
	}
	// The text output's last line, which the JSON carries as summary.
	if !regexp.MustCompile(`^e2e: \d+ records/s, baseline \d+ records/s, ratio \d+\.\d\d, peak RSS \d+ MiB$`).MatchString(got.Summary) {
		t.Errorf("summary %q", got.Summary)
	}
}
