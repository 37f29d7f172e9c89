package transform_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/ipc"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluice-dev/sluice/gpuexec"
	"github.com/sluice-dev/sluice/ingest/kafka"
	"github.com/sluice-dev/sluice/lineage"
	"github.com/sluice-dev/sluice/storage"
	"github.com/sluice-dev/sluice/transform"
)

// downLineage fails every Append while down is set: the process "dies"
// after publishing the features and before the batch is committed.
type downLineage struct {
	transform.LineageWriter
	down bool
}

func (d *downLineage) Append(ctx context.Context, chain string, evs []*lineage.Event) (lineage.SegmentInfo, error) {
	if d.down {
		return lineage.SegmentInfo{}, errors.New("killed before the lineage append")
	}
	return d.LineageWriter.Append(ctx, chain, evs)
}

// featureRunner rebuilds h's runner with features topics on both sinks,
// published through a FeatureWriter to brokers.
func featureRunner(t *testing.T, h *harness, brokers []string, format string, lineageDown bool) *kafka.FeatureWriter {
	t.Helper()
	h.spec.Sinks[0].KafkaTopic, h.spec.Sinks[1].KafkaTopic = "features.fra", "features.us"
	h.spec.Sinks[0].KafkaFormat, h.spec.Sinks[1].KafkaFormat = format, format
	fw, err := kafka.NewFeatureWriter(kafka.FeatureWriterConfig{Brokers: brokers})
	if err != nil {
		t.Fatal(err)
	}
	lw, err := lineage.NewWriter(h.lin, lineage.WriterConfig{Pipeline: "t", Key: h.key})
	if err != nil {
		t.Fatal(err)
	}
	h.runner, err = transform.NewRunner(transform.RunnerConfig{
		Spec: h.spec, Source: h.src, Decider: fakeDecider{},
		Router: gpuexec.NewRouter([]gpuexec.Executor{h.onprem, h.cloud}, gpuexec.RouterOptions{}),
		Sinks: map[string]storage.ObjectStore{
			"fra": transform.WithFeatures(h.fra, fw), "us": transform.WithFeatures(h.us, fw)},
		DeadLetters: h.dlq, Lineage: &downLineage{LineageWriter: lw, down: lineageDown}, HashKey: []byte("0123456789abcdef"),
		Allocator: h.mem, RetryMin: time.Millisecond, RetryMax: 10 * time.Millisecond,
		ShutdownGrace: 300 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	return fw
}

type published struct {
	key     string
	headers map[string]string
	value   map[string]any
}

// consume reads n messages from the features topics.
func consume(t *testing.T, brokers []string, n int) []published {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumeTopics("features.fra", "features.us"),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	var out []published
	for len(out) < n {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("read %d of %d feature messages", len(out), n)
		}
		fs.EachRecord(func(r *kgo.Record) {
			p := published{key: string(r.Key), headers: map[string]string{}, value: map[string]any{}}
			for _, h := range r.Headers {
				p.headers[h.Key] = string(h.Value)
			}
			if err := json.Unmarshal(r.Value, &p.value); err != nil {
				t.Errorf("message value %q: %v", r.Value, err)
			}
			p.headers["topic"] = r.Topic
			out = append(out, p)
		})
	}
	return out
}

// parquetRows is every feature row the sinks hold, as "topic|key|offset|value".
func parquetRows(t *testing.T, h *harness) map[string]int {
	t.Helper()
	rows := map[string]int{}
	for topic, st := range map[string]*memStore{"features.fra": h.fra, "features.us": h.us} {
		for _, k := range st.keys("pipeline=t/") {
			tbl, err := storage.ReadParquet(context.Background(), st, k, memory.NewGoAllocator())
			if err != nil {
				t.Fatal(err)
			}
			col := func(name string) arrow.Array { return tbl.Column(tbl.Schema().FieldIndices(name)[0]).Data().Chunk(0) }
			ids, users := col("id").(*array.String), col("user_id").(*array.String)
			offs, vals := col(transform.OffsetColumn).(*array.Int64), col("amount_log").(*array.Float64)
			for i := 0; i < int(tbl.NumRows()); i++ {
				rows[fmt.Sprintf("%s|%s|%s|%d|%v", topic, ids.Value(i), users.Value(i), offs.Value(i), vals.Value(i))]++
			}
			tbl.Release()
		}
	}
	return rows
}

func messageRow(p published) string {
	return fmt.Sprintf("%s|%s|%s|%v", p.headers["topic"], p.key, p.headers[transform.HeaderSourceOffset], p.value["amount_log"])
}

// The features topics receive exactly the rows written to Parquet, keyed by
// the entity key, with the lineage run id and the decision id.
func TestFeaturesTopicMatchesParquet(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(3, "features.fra", "features.us"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	h := newHarness(t, append(rows("DE", 5, 0), rows("US", 4, 100)...), rows("FR", 3, 200))
	fw := featureRunner(t, h, c.ListenAddrs(), "json", false)
	defer fw.Close()
	h.run(t, 2, nil)

	want := parquetRows(t, h)
	var total int
	for _, n := range want {
		total += n
	}
	if total != 12 {
		t.Fatalf("Parquet holds %d rows, want 12", total)
	}
	msgs := consume(t, c.ListenAddrs(), total)
	got := map[string]int{}
	for _, m := range msgs {
		got[messageRow(m)]++
	}
	for k, n := range want {
		if got[k] != n {
			t.Errorf("row %s: %d messages, want %d", k, got[k], n)
		}
	}
	if len(got) != len(want) {
		t.Errorf("%d distinct messages, %d distinct Parquet rows", len(got), len(want))
	}

	// The headers name the lineage event of the row's object and the
	// decision that allowed it.
	evs, err := lineage.ReadAll(context.Background(), h.lin, "lineage")
	if err != nil {
		t.Fatal(err)
	}
	runOf := map[string]string{}
	for _, ev := range evs {
		for _, o := range ev.Outputs {
			runOf[o.Name] = ev.Run.RunID
		}
	}
	for _, m := range msgs {
		obj := m.headers[transform.HeaderObject]
		if runOf[obj] == "" || m.headers[transform.HeaderLineageRunID] != runOf[obj] {
			t.Errorf("message %s: run id %q, lineage has %q for %s", m.key, m.headers[transform.HeaderLineageRunID], runOf[obj], obj)
		}
		j := m.value["country"].(string)
		exec := "onprem"
		if m.headers["topic"] == "features.us" {
			exec = "cloud"
		}
		if want := "d-" + j + "-" + exec; m.headers[transform.HeaderDecisionID] != want {
			t.Errorf("message %s: decision %q, want %q", m.key, m.headers[transform.HeaderDecisionID], want)
		}
	}
	h.mem.AssertSize(t, 0)
}

// A process killed after publishing and before committing: the replay
// publishes the rows again, so none is lost, and the duplicates carry the
// same key and lineage run id.
func TestFeaturesReplayAfterKillLosesNothing(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(3, "features.fra", "features.us"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	batch := append(rows("DE", 4, 0), rows("US", 3, 100)...)
	h1 := newHarness(t, batch)
	fw1 := featureRunner(t, h1, c.ListenAddrs(), "json", true)
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	if err := h1.runner.Run(ctx); err != nil {
		t.Fatal(err)
	}
	cancel()
	fw1.Close()
	if a := <-h1.src.acks; a.err == nil {
		t.Fatal("batch committed although its lineage was never written")
	}
	first := consume(t, c.ListenAddrs(), 7)

	h2 := newHarnessOn(t, h1, 0, batch)
	fw2 := featureRunner(t, h2, c.ListenAddrs(), "json", false)
	defer fw2.Close()
	if a := h2.run(t, 1, nil); a[0].err != nil {
		t.Fatal(a[0].err)
	}
	all := consume(t, c.ListenAddrs(), 14)
	want := parquetRows(t, h2)
	seen := map[string]int{}
	ids := map[string]map[string]bool{} // key -> run ids
	for _, m := range all {
		seen[messageRow(m)]++
		if ids[m.key] == nil {
			ids[m.key] = map[string]bool{}
		}
		ids[m.key][m.headers[transform.HeaderLineageRunID]+"@"+m.headers[transform.HeaderSourceOffset]] = true
	}
	for k := range want {
		if seen[k] != 2 {
			t.Errorf("row %s published %d times, want twice (once per attempt)", k, seen[k])
		}
	}
	for k, set := range ids {
		if len(set) != 1 {
			t.Errorf("key %s: duplicates not recognisable by run id and offset: %v", k, set)
		}
	}
	if len(first) != 7 {
		t.Fatalf("first attempt published %d", len(first))
	}
}

// The arrow format carries each row as an Arrow IPC stream of one row.
func TestEncodeFeaturesArrow(t *testing.T) {
	mem := memory.NewGoAllocator()
	schema := arrow.NewSchema([]arrow.Field{{Name: "id", Type: arrow.BinaryTypes.String},
		{Name: "x", Type: arrow.PrimitiveTypes.Float64, Nullable: true}, {Name: transform.OffsetColumn, Type: arrow.PrimitiveTypes.Int64}}, nil)
	b := array.NewRecordBuilder(mem, schema)
	defer b.Release()
	b.Field(0).(*array.StringBuilder).AppendValues([]string{"a", "b"}, nil)
	b.Field(1).(*array.Float64Builder).AppendValues([]float64{1.5, 0}, []bool{true, false})
	b.Field(2).(*array.Int64Builder).AppendValues([]int64{7, 9}, nil)
	rec := b.NewRecordBatch()
	defer rec.Release()
	msgs, err := transform.EncodeFeatures(rec, []string{"id"}, transform.FeatureFormatArrow,
		transform.FeatureSource{Topic: "in", RunID: "r", DecisionIDs: map[int64]string{7: "d7", 9: "d9"}})
	if err != nil {
		t.Fatal(err)
	}
	if len(msgs) != 2 || string(msgs[1].Key) != "b" || msgs[1].Header(transform.HeaderDecisionID) != "d9" || msgs[1].Header(transform.HeaderSourceOffset) != "9" {
		t.Fatalf("messages %+v", msgs)
	}
	for i, m := range msgs {
		r, err := ipc.NewReader(bytes.NewReader(m.Value))
		if err != nil {
			t.Fatal(err)
		}
		if !r.Next() || r.RecordBatch().NumRows() != 1 {
			t.Fatalf("row %d: no one-row record", i)
		}
		got := r.RecordBatch().Column(1).(*array.Float64)
		if got.IsNull(0) != (i == 1) || (i == 0 && got.Value(0) != 1.5) {
			t.Errorf("row %d: x = %v", i, got)
		}
		r.Release()
	}
}

func TestValidateFeaturesTopic(t *testing.T) {
	s := codeSpec()
	s.Sinks[0].KafkaTopic, s.Sinks[0].KafkaFormat = "features.local", "arrow"
	if err := s.Validate(); err != nil {
		t.Fatalf("valid features topic rejected: %v", err)
	}
	s.Sinks[0].KafkaFormat = "avro"
	if err := s.Validate(); err == nil || !strings.Contains(err.Error(), "sinks[0].kafka_format") {
		t.Errorf("unknown format: %v", err)
	}
	s.Sinks[0].KafkaTopic, s.Sinks[0].KafkaFormat = "", "json"
	if err := s.Validate(); err == nil || !strings.Contains(err.Error(), "sinks[0].kafka_topic") {
		t.Errorf("format without topic: %v", err)
	}
}
