package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/sluice-dev/sluice/deploy/examples"
	"github.com/sluice-dev/sluice/lineage"
	"github.com/sluice-dev/sluice/storage"
	"github.com/sluice-dev/sluice/storage/backend"
	"github.com/sluice-dev/sluice/transform"
)

type featRow struct {
	user, country string
	at            time.Time
	amountLog     float64
	offset        int64
}

// trainingFixture writes the demo spec pointed at dir, and feature objects
// with their lineage events as the runner would have written them.
func trainingFixture(t *testing.T, objects [][]featRow) (dir, specPath string) {
	t.Helper()
	ctx := context.Background()
	dir = t.TempDir()
	raw, err := examples.FS.ReadFile("demo.yaml")
	if err != nil {
		t.Fatal(err)
	}
	specPath = filepath.Join(dir, "spec.yaml")
	if err := os.WriteFile(specPath, []byte(strings.ReplaceAll(string(raw), "/tmp/sluice-demo", dir)), 0o644); err != nil {
		t.Fatal(err)
	}
	spec, err := transform.Load(specPath)
	if err != nil {
		t.Fatal(err)
	}
	fraURL := "file://" + filepath.Join(dir, "features-fra")
	sink, err := backend.Open(ctx, fraURL)
	if err != nil {
		t.Fatal(err)
	}
	lst, err := backend.Open(ctx, spec.Lineage.URL)
	if err != nil {
		t.Fatal(err)
	}
	key, err := lineage.LoadOrCreateKey(filepath.Join(dir, "lineage.key"))
	if err != nil {
		t.Fatal(err)
	}
	w, err := lineage.NewWriter(lst, lineage.WriterConfig{Prefix: lineagePrefix, Pipeline: spec.Name, Key: key})
	if err != nil {
		t.Fatal(err)
	}
	mem := memory.DefaultAllocator
	schema := arrow.NewSchema([]arrow.Field{
		{Name: "user_id", Type: arrow.BinaryTypes.String, Nullable: true},
		{Name: "country", Type: arrow.BinaryTypes.String},
		{Name: "ts", Type: arrow.FixedWidthTypes.Timestamp_us},
		{Name: "amount_log", Type: arrow.PrimitiveTypes.Float64, Nullable: true},
		{Name: transform.OffsetColumn, Type: arrow.PrimitiveTypes.Int64},
	}, nil)
	for i, rows := range objects {
		b := array.NewRecordBuilder(mem, schema)
		for _, r := range rows {
			b.Field(0).(*array.StringBuilder).Append(r.user)
			b.Field(1).(*array.StringBuilder).Append(r.country)
			b.Field(2).(*array.TimestampBuilder).Append(arrow.Timestamp(r.at.UnixMicro()))
			b.Field(3).(*array.Float64Builder).Append(r.amountLog)
			b.Field(4).(*array.Int64Builder).Append(r.offset)
		}
		rec := b.NewRecordBatch()
		b.Release()
		objKey := "features/obj-" + string(rune('a'+i)) + ".parquet"
		obj, err := storage.WriteParquet(ctx, sink, objKey, rec, storage.ParquetOptions{})
		rec.Release()
		if err != nil {
			t.Fatal(err)
		}
		ev := lineage.NewEvent("", "sluice", spec.Name, time.Now())
		ev.Run.RunID = lineage.RunIDFor("fixture", objKey)
		ev.AddDecision(lineage.Decision{Jurisdiction: rows[0].country, Classes: []string{"financial", "pii"},
			Executor: "onprem-fra", Allow: true, DecisionID: "d", Revision: "r", Rows: int64(len(rows))})
		ev.SetOutcome(lineage.OutcomeFeatures, nil)
		ds := lineage.Dataset{Namespace: fraURL, Name: obj.Key}
		ds.OutputFacets.Object = &lineage.ObjectFacet{Key: obj.Key, Bytes: obj.Bytes, SHA256: obj.SHA256, Rows: obj.Rows}
		ev.AddOutput(ds)
		if _, err := w.Append(ctx, "events-0", []*lineage.Event{ev}); err != nil {
			t.Fatal(err)
		}
	}
	return dir, specPath
}

func at(h, m int) time.Time { return time.Date(2026, 3, 1, h, m, 0, 0, time.UTC) }

// Each label gets the latest feature value at or before its timestamp,
// never a later one, even when a later value exists and sits in an object
// listed first.
func TestTrainingSetPointInTime(t *testing.T) {
	ctx := context.Background()
	dir, specPath := trainingFixture(t, [][]featRow{
		// The newest values come first in the lineage.
		{{"u1", "DE", at(14, 0), 3, 30}, {"u2", "DE", at(11, 0), 5, 31}},
		{{"u1", "DE", at(10, 0), 1, 10}, {"u1", "DE", at(12, 0), 2, 12}, {"u2", "DE", at(11, 30), 6, 13}},
	})
	labels := filepath.Join(dir, "labels.csv")
	csv := "user_id,label_time,label\n" +
		"u1,2026-03-01T13:00:00Z,1\n" + // naive latest join would give 3 (from 14:00)
		"u1,2026-03-01T09:00:00Z,0\n" + // before any feature: null
		"u2,2026-03-01T11:00:00Z,1\n" + // exactly at the event time: included
		"u1,2026-03-01T15:00:00Z,0\n" +
		"u3,2026-03-01T15:00:00Z,1\n" // unknown entity: null
	if err := os.WriteFile(labels, []byte(csv), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "training")
	var stdout, stderr bytes.Buffer
	err := cmdTrainingSet(ctx, []string{"--spec", specPath, "--labels", labels, "--out", out, "--location", "fra",
		"--signing-key", filepath.Join(dir, "lineage.key"), "-o", "json"}, &stdout, &stderr)
	if err != nil {
		t.Fatalf("%v\n%s\n%s", err, stdout.String(), stderr.String())
	}
	var res trainingResult
	if err := json.Unmarshal(stdout.Bytes(), &res); err != nil {
		t.Fatal(err)
	}
	st, err := backend.Open(ctx, "file://"+out)
	if err != nil {
		t.Fatal(err)
	}
	tbl, err := storage.ReadParquet(ctx, st, res.Key, memory.DefaultAllocator)
	if err != nil {
		t.Fatal(err)
	}
	defer tbl.Release()
	rec, err := tableRecord(tbl)
	if err != nil {
		t.Fatal(err)
	}
	defer rec.Release()
	want := []struct {
		val  float64
		null bool
		ft   time.Time
	}{{2, false, at(12, 0)}, {0, true, time.Time{}}, {5, false, at(11, 0)}, {3, false, at(14, 0)}, {0, true, time.Time{}}}
	if int(rec.NumRows()) != len(want) {
		t.Fatalf("%d rows, want %d", rec.NumRows(), len(want))
	}
	vals, _ := colOf(rec, "amount_log")
	fts, _ := colOf(rec, FeatureTimeColumn)
	lab, _ := colOf(rec, "label")
	for i, w := range want {
		f := vals.(*array.Float64)
		if f.IsNull(i) != w.null || (!w.null && f.Value(i) != w.val) {
			t.Errorf("label row %d: amount_log %v (null %v), want %v (null %v)", i+1, f.Value(i), f.IsNull(i), w.val, w.null)
		}
		ts := fts.(*array.Timestamp)
		if !w.null && !ts.Value(i).ToTime(arrow.Microsecond).Equal(w.ft) {
			t.Errorf("label row %d: feature time %v, want %v", i+1, ts.Value(i).ToTime(arrow.Microsecond), w.ft)
		}
	}
	if l := lab.(*array.Float64); l.Value(0) != 1 || l.Value(1) != 0 {
		t.Errorf("labels not carried: %v", l)
	}
	if res.Matched != 3 || res.Objects != 2 {
		t.Errorf("matched %d objects %d, want 3 and 2", res.Matched, res.Objects)
	}

	// The lineage event names the training set and every object read.
	lst, _ := backend.Open(ctx, "file://"+dir+"/lineage")
	var found *lineage.Event
	if err := lineage.Walk(ctx, lst, lineagePrefix, func(e lineage.Entry) error {
		if e.Chain == "training-demo" {
			ev := e.Event
			found = &ev
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if found == nil {
		t.Fatal("no event in chain training-demo")
	}
	var inputs []string
	for _, in := range found.Inputs {
		inputs = append(inputs, in.Name)
	}
	for _, k := range []string{"features/obj-a.parquet", "features/obj-b.parquet"} {
		if !strings.Contains(strings.Join(inputs, " "), k) {
			t.Errorf("lineage inputs %v lack %s", inputs, k)
		}
	}
	if len(found.Outputs) != 1 || found.Outputs[0].Name != res.Key || found.Outputs[0].OutputFacets.Object.SHA256 != res.SHA256 {
		t.Errorf("lineage output %+v, want %s", found.Outputs, res.Key)
	}
	if d := found.Run.Facets.ResidencyDecision; d == nil || len(d.Decisions) != 1 || !d.Decisions[0].Allow || d.Decisions[0].Rows != 3 {
		t.Errorf("decisions %+v", found.Run.Facets.ResidencyDecision)
	}
}

// EU personal data may not become a training set in the US: the command
// refuses, names the blocking rows and writes nothing.
func TestTrainingSetRefusesResidencyBoundary(t *testing.T) {
	ctx := context.Background()
	dir, specPath := trainingFixture(t, [][]featRow{
		{{"u1", "DE", at(10, 0), 1, 1}, {"u9", "US", at(10, 0), 7, 2}},
	})
	labels := filepath.Join(dir, "labels.ndjson")
	nd := `{"user_id":"u9","label_time":"2026-03-01T12:00:00Z","label":1}
{"user_id":"u1","label_time":"2026-03-01T12:00:00Z","label":0}
`
	if err := os.WriteFile(labels, []byte(nd), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "features-us")
	var stdout, stderr bytes.Buffer
	err := cmdTrainingSet(ctx, []string{"--spec", specPath, "--labels", labels, "--out", out,
		"--signing-key", filepath.Join(dir, "lineage.key"), "-o", "json"}, &stdout, &stderr)
	if !errors.Is(err, errFailed) {
		t.Fatalf("want refusal, got %v\n%s%s", err, stdout.String(), stderr.String())
	}
	var res trainingResult
	if err := json.Unmarshal(stdout.Bytes(), &res); err != nil {
		t.Fatal(err)
	}
	if !res.Refused || res.Location != "us-east-1" || len(res.Blocking) != 1 || res.Blocking[0].Label != 2 || res.Blocking[0].Jurisdiction != "DE" {
		t.Fatalf("refusal: %s", stdout.String())
	}
	if _, err := os.Stat(filepath.Join(out, "training")); !os.IsNotExist(err) {
		t.Errorf("something was written to %s: %v", out, err)
	}
	// Without the EU row the same destination is fine.
	if err := os.WriteFile(labels, []byte(strings.SplitAfter(nd, "\n")[0]), 0o644); err != nil {
		t.Fatal(err)
	}
	stdout.Reset()
	if err := cmdTrainingSet(ctx, []string{"--spec", specPath, "--labels", labels, "--out", out,
		"--signing-key", filepath.Join(dir, "lineage.key")}, &stdout, &stderr); err != nil {
		t.Fatalf("US rows to US: %v\n%s", err, stdout.String())
	}
}
