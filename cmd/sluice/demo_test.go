package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/sluice-dev/sluice/lineage"
	"github.com/sluice-dev/sluice/policy"
	"github.com/sluice-dev/sluice/storage"
	"github.com/sluice-dev/sluice/storage/fs"
	"github.com/sluice-dev/sluice/transform"
)

// TestDemoEndToEnd runs the demo's whole path (kfake over TCP, kafka-go,
// OPA, CPU executors, Parquet in folders, signed lineage, commits) and
// checks what its users care about from the output alone.
func TestDemoEndToEnd(t *testing.T) {
	ctx, dir := demoTest(t)
	const events = 12_000
	sum, err := runDemo(ctx, demoOptions{dir: dir, events: events, partitions: 4, seed: 7})
	if err != nil {
		t.Fatal(err)
	}

	// Every record is accounted for exactly once, and every offset was
	// committed.
	if sum.RecordsIn != events || sum.Committed != events {
		t.Fatalf("records in %d, committed %d, want %d each", sum.RecordsIn, sum.Committed, events)
	}
	if got := sum.FeatureRows + sum.DeadLetters + sum.Quarantined; got != sum.RecordsIn {
		t.Fatalf("feature rows %d + dead letters %d + quarantined %d = %d, want records in %d",
			sum.FeatureRows, sum.DeadLetters, sum.Quarantined, got, sum.RecordsIn)
	}
	if sum.DeadLetters != int64(sum.Malformed) || sum.Malformed == 0 {
		t.Errorf("dead letters %d, want the %d malformed records produced", sum.DeadLetters, sum.Malformed)
	}
	if !sum.Verified {
		t.Fatalf("lineage does not verify: %v", sum.VerifyProblems)
	}
	// The real-time features topic got exactly the rows written in Frankfurt.
	if got := sum.FeaturesPublished["features.fra"]; got != sum.RowsByLocation["fra"] {
		t.Errorf("features.fra holds %d messages; %d feature rows were written in fra", got, sum.RowsByLocation["fra"])
	}

	features := readObjects(t, dir, "fra", "us")
	quarantine := readObjects(t, dir, "fra/quarantine")
	var featureRows, quarantined int64
	for _, o := range features {
		featureRows += o.rows
	}
	for _, o := range quarantine {
		quarantined += o.rows
	}
	if featureRows != sum.FeatureRows || quarantined != sum.Quarantined {
		t.Fatalf("objects hold %d feature rows and %d quarantined rows; summary says %d and %d",
			featureRows, quarantined, sum.FeatureRows, sum.Quarantined)
	}

	spec, err := demoSpec(dir)
	if err != nil {
		t.Fatal(err)
	}
	wantSchema := []string{}
	plan := spec.Plan()
	wantSchema = append(wantSchema, plan.Passthrough...)
	for _, s := range plan.Steps {
		wantSchema = append(wantSchema, s.Output)
	}
	wantSchema = append(wantSchema, transform.OffsetColumn)

	events_ := lineageByObject(t, dir)
	for _, o := range features {
		// The Parquet files read back with the expected schema.
		if !slices.Equal(o.columns, wantSchema) {
			t.Fatalf("%s: columns %v, want %v", o.key, o.columns, wantSchema)
		}
		loc := locationOf(o.key)
		for i, c := range o.country {
			// No EU row processed outside the EU; no PHI row off-prem; IN
			// and BR rows never processed anywhere.
			if policy.Region(c) == policy.RegionEU && loc != "fra" {
				t.Fatalf("%s: EU row (%s) at offset %d processed in %s", o.key, c, o.offsets[i], loc)
			}
			if o.phi[i] && loc != "fra" {
				t.Fatalf("%s: PHI row at offset %d processed in %s, not on-prem", o.key, o.offsets[i], loc)
			}
			if c == "IN" || c == "BR" {
				t.Fatalf("%s: %s row at offset %d left its country", o.key, c, o.offsets[i])
			}
			// User ids are pseudonymised before they reach the cloud.
			if loc == "us-east-1" && strings.HasPrefix(o.userID[i], "u-") {
				t.Fatalf("%s: user id %q reached the cloud in clear", o.key, o.userID[i])
			}
		}

		// Every feature object has a lineage event naming its offsets,
		// decisions and executor.
		ev, ok := events_[o.key]
		if !ok {
			t.Fatalf("%s: no lineage event", o.key)
		}
		f := ev.Run.Facets
		if f.KafkaOffsets == nil || f.Executor == nil || f.ResidencyDecision == nil || len(f.ResidencyDecision.Decisions) == 0 {
			t.Fatalf("%s: lineage event lacks offsets, executor or decisions: %+v", o.key, f)
		}
		if f.Executor.Location.Name != loc {
			t.Errorf("%s: lineage says executor %s in %s", o.key, f.Executor.ID, f.Executor.Location.Name)
		}
		for _, d := range f.ResidencyDecision.Decisions {
			if !d.Allow || d.DecisionID == "" || !strings.HasPrefix(d.Revision, "sha256:") {
				t.Fatalf("%s: decision %+v", o.key, d)
			}
		}
		if lineage.Count(f.KafkaOffsets.Ranges) != o.rows {
			t.Errorf("%s: lineage covers %d offsets, object has %d rows", o.key, lineage.Count(f.KafkaOffsets.Ranges), o.rows)
		}
		for _, off := range o.offsets {
			if !lineage.Contains(f.KafkaOffsets.Ranges, off) {
				t.Fatalf("%s: offset %d not in its lineage event", o.key, off)
			}
		}
	}
	for _, o := range quarantine {
		for i, c := range o.country {
			if c != "IN" && c != "BR" {
				t.Errorf("%s: %s row at offset %d quarantined; the demo's policy allows it somewhere", o.key, c, o.offsets[i])
			}
		}
		if _, ok := events_[o.key]; !ok {
			t.Errorf("%s: quarantine object has no lineage event", o.key)
		}
	}
	if sum.RowsByExecutor["aws-us-east-1"] == 0 || sum.RowsByExecutor["onprem-fra"] == 0 {
		t.Errorf("rows per executor %v: want both executors used", sum.RowsByExecutor)
	}
}

// TestDemoTwiceInOneFolder: `make demo` keeps its output in .demo; run
// again, it must process the new stream (its broker starts at offset 0
// again), not take every batch for one the old lineage records.
func TestDemoTwiceInOneFolder(t *testing.T) {
	ctx, dir := demoTest(t)
	const events = 3000
	for run := range 2 {
		var progress bytes.Buffer
		sum, err := runDemo(ctx, demoOptions{dir: dir, events: events, partitions: 2, seed: uint64(run + 1), progress: &progress})
		if err != nil {
			t.Fatal(err)
		}
		if sum.RecordsIn != events || !sum.Verified {
			t.Fatalf("run %d: records in %d, verified %v (%v); want %d, true", run+1, sum.RecordsIn, sum.Verified, sum.VerifyProblems, events)
		}
		if said := strings.Contains(progress.String(), "removing the previous demo's output"); said != (run == 1) {
			t.Errorf("run %d: said it removed a previous output: %v", run+1, said)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "keys", "lineage.key")); err != nil {
		t.Errorf("the signing key did not survive the second run: %v", err)
	}
}

// demoTest skips under -short and gives an end-to-end demo test its
// deadline and folder.
func demoTest(t *testing.T) (context.Context, string) {
	t.Helper()
	if testing.Short() {
		t.Skip("end-to-end test; -short skips it")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	t.Cleanup(cancel)
	return ctx, t.TempDir()
}

type object struct {
	key     string
	rows    int64
	columns []string
	country []string
	phi     []bool
	userID  []string
	offsets []int64
}

// readObjects reads every Parquet object under dir/sub for each sub.
func readObjects(t *testing.T, dir string, subs ...string) []object {
	t.Helper()
	ctx := context.Background()
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer mem.AssertSize(t, 0)
	var out []object
	for _, sub := range subs {
		st, err := fs.New(filepath.Join(dir, sub))
		if err != nil {
			t.Fatal(err)
		}
		err = st.Iter(ctx, "", func(key string) error {
			if !strings.HasSuffix(key, ".parquet") || (sub != "fra/quarantine" && strings.HasPrefix(key, "quarantine/")) {
				return nil
			}
			tbl, err := storage.ReadParquet(ctx, st, key, mem)
			if err != nil {
				return err
			}
			defer tbl.Release()
			o := object{key: key, rows: tbl.NumRows()}
			if sub == "fra/quarantine" {
				o.key = "quarantine/" + key
			}
			for _, f := range tbl.Schema().Fields() {
				o.columns = append(o.columns, f.Name)
			}
			o.country = stringsOf(t, tbl, "country")
			o.userID = stringsOf(t, tbl, "user_id")
			offs := column(t, tbl, transform.OffsetColumn)
			for _, c := range offs.Chunks() {
				o.offsets = append(o.offsets, c.(*array.Int64).Int64Values()...)
			}
			if idx := tbl.Schema().FieldIndices("patient_id"); len(idx) > 0 {
				for _, c := range tbl.Column(idx[0]).Data().Chunks() {
					for i := 0; i < c.Len(); i++ {
						o.phi = append(o.phi, c.IsValid(i))
					}
				}
			} else {
				o.phi = make([]bool, o.rows)
			}
			out = append(out, o)
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	return out
}

func column(t *testing.T, tbl arrow.Table, name string) *arrow.Chunked {
	t.Helper()
	idx := tbl.Schema().FieldIndices(name)
	if len(idx) == 0 {
		t.Fatalf("no column %q in %v", name, tbl.Schema())
	}
	return tbl.Column(idx[0]).Data()
}

func stringsOf(t *testing.T, tbl arrow.Table, name string) []string {
	var out []string
	if len(tbl.Schema().FieldIndices(name)) == 0 {
		return make([]string, tbl.NumRows())
	}
	for _, c := range column(t, tbl, name).Chunks() {
		s := c.(*array.String)
		for i := 0; i < s.Len(); i++ {
			out = append(out, s.Value(i))
		}
	}
	return out
}

// locationOf reads LOC from a key's location=LOC element.
func locationOf(key string) string {
	for _, part := range strings.Split(key, "/") {
		if v, ok := strings.CutPrefix(part, "location="); ok {
			return v
		}
	}
	return ""
}

// lineageByObject maps each object key named by a lineage event to it.
func lineageByObject(t *testing.T, dir string) map[string]lineage.Event {
	t.Helper()
	st, err := fs.New(dir)
	if err != nil {
		t.Fatal(err)
	}
	evs, err := lineage.ReadAll(context.Background(), st, lineagePrefix)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]lineage.Event{}
	for _, ev := range evs {
		for _, o := range ev.Outputs {
			if o.OutputFacets.Object != nil {
				out[o.OutputFacets.Object.Key] = ev
			}
		}
	}
	return out
}
