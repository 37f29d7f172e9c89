package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"math"
	"math/rand/v2"
	"path/filepath"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/sluice-dev/sluice/lineage"
	"github.com/sluice-dev/sluice/storage"
	"github.com/sluice-dev/sluice/storage/backend"
	"github.com/sluice-dev/sluice/transform"
)

// The dataQualityMetrics facet of every features event matches what the
// test computes itself from the Parquet object the event names.
func TestQualityFacetsMatchParquet(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	if _, err := runDemo(ctx, demoOptions{dir: dir, events: 3000, partitions: 2, seed: 7}); err != nil {
		t.Fatal(err)
	}
	spec, err := demoSpec(dir)
	if err != nil {
		t.Fatal(err)
	}
	// The ranges the spec's ops imply, worked out by hand.
	ranges := map[string][2]float64{
		"amount_log":   {0, math.Log1p(50000)},
		"user_bucket":  {0, 1023},
		"heart_rate_z": {(30 - 75) / 15.0, (220 - 75) / 15.0},
		"glucose_log":  {0, math.Log1p(1000)},
		"mcc_bucket":   {0, 4},
	}
	st, err := backend.Open(ctx, spec.Lineage.URL)
	if err != nil {
		t.Fatal(err)
	}
	evs, err := lineage.ReadAll(ctx, st, lineagePrefix)
	if err != nil {
		t.Fatal(err)
	}
	checked := 0
	for _, ev := range evs {
		if ev.Run.Facets.Outcome == nil || ev.Run.Facets.Outcome.Kind != lineage.OutcomeFeatures {
			continue
		}
		for _, ds := range ev.Outputs {
			q := ds.OutputFacets.DataQualityMetrics
			if q == nil {
				t.Fatalf("features output %s has no dataQualityMetrics facet", ds.Name)
			}
			if q.SchemaURL != lineage.DataQualityMetricsFacetURL || q.Producer == "" {
				t.Errorf("facet not stamped: %+v", q.BaseFacet)
			}
			sink, err := backend.Open(ctx, ds.Namespace)
			if err != nil {
				t.Fatal(err)
			}
			tbl, err := storage.ReadParquet(ctx, sink, ds.Name, memory.DefaultAllocator)
			if err != nil {
				t.Fatal(err)
			}
			if q.RowCount != tbl.NumRows() {
				t.Errorf("%s: rowCount %d, object has %d rows", ds.Name, q.RowCount, tbl.NumRows())
			}
			for _, f := range spec.Features {
				m, ok := q.ColumnMetrics[f.Name]
				if !ok {
					t.Fatalf("%s: no metrics for %s", ds.Name, f.Name)
				}
				vals, nulls := readFloats(t, tbl, f.Name)
				if m.NullCount != nulls || m.Count != float64(len(vals)) {
					t.Errorf("%s %s: nulls %d count %v, want %d %d", ds.Name, f.Name, m.NullCount, m.Count, nulls, len(vals))
				}
				if len(vals) == 0 {
					if m.Min != nil || m.Mean != nil {
						t.Errorf("%s %s: min/mean set without values", ds.Name, f.Name)
					}
					continue
				}
				lo, hi, sum := vals[0], vals[0], 0.0
				for _, v := range vals {
					lo, hi, sum = min(lo, v), max(hi, v), sum+v
				}
				if m.Min == nil || *m.Min != lo || *m.Max != hi || math.Abs(*m.Mean-sum/float64(len(vals))) > 1e-9*math.Max(1, math.Abs(sum)) {
					t.Errorf("%s %s: min/max/mean %v/%v/%v, want %v/%v/%v", ds.Name, f.Name, deref(m.Min), deref(m.Max), deref(m.Mean), lo, hi, sum/float64(len(vals)))
				}
				r, bounded := ranges[f.Name]
				if !bounded {
					r = [2]float64{lo, hi}
				}
				want := make([]int64, transform.HistogramBins)
				width := (r[1] - r[0]) / float64(transform.HistogramBins)
				for _, v := range vals {
					i := int(math.Floor((v - r[0]) / width))
					if i == transform.HistogramBins && v == r[1] {
						i--
					}
					if i < 0 || i >= transform.HistogramBins {
						t.Fatalf("%s %s: value %v outside %v", ds.Name, f.Name, v, r)
					}
					want[i]++
				}
				h := m.Histogram
				if h == nil || len(h.Counts) != len(want) {
					t.Fatalf("%s %s: histogram %+v", ds.Name, f.Name, h)
				}
				if math.Abs(h.Edges[0]-r[0]) > 1e-9 || math.Abs(h.Edges[len(h.Edges)-1]-r[1]) > 1e-9 {
					t.Errorf("%s %s: edges %v, want range %v", ds.Name, f.Name, h.Edges, r)
				}
				for i := range want {
					if h.Counts[i] != want[i] {
						t.Errorf("%s %s: histogram %v, want %v", ds.Name, f.Name, h.Counts, want)
						break
					}
				}
			}
			tbl.Release()
			checked++
		}
	}
	if checked < 2 {
		t.Fatalf("checked %d feature objects, want several", checked)
	}
}

func deref(p *float64) any {
	if p == nil {
		return nil
	}
	return *p
}

func readFloats(t *testing.T, tbl arrow.Table, col string) (vals []float64, nulls int64) {
	t.Helper()
	idx := tbl.Schema().FieldIndices(col)
	if len(idx) == 0 {
		t.Fatalf("no column %s", col)
	}
	for _, c := range tbl.Column(idx[0]).Data().Chunks() {
		for i := 0; i < c.Len(); i++ {
			if c.IsNull(i) {
				nulls++
				continue
			}
			switch a := c.(type) {
			case *array.Float64:
				vals = append(vals, a.Value(i))
			case *array.Int64:
				vals = append(vals, float64(a.Value(i)))
			default:
				t.Fatalf("column %s is %s", col, c.DataType())
			}
		}
	}
	return vals, nulls
}

// A column whose distribution shifts between the windows is flagged; one
// that keeps it is not; the PSI is the one the test computes from the raw
// values.
func TestQualityReportFlagsDrift(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	url := "file://" + filepath.Join(dir, "lineage")
	st, err := backend.Open(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	_, key, _ := ed25519.GenerateKey(nil)
	w, err := lineage.NewWriter(st, lineage.WriterConfig{Pipeline: "p", Key: key, Prefix: lineagePrefix})
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	day1 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	day2 := day1.Add(24 * time.Hour)
	ranges := map[string][2]float64{"shifted": {-5, 5}, "stable": {-5, 5}}
	var raw [2]map[string][]float64
	for w := range raw {
		raw[w] = map[string][]float64{}
	}
	for batch := range 8 {
		win, at := 0, day1.Add(time.Duration(batch)*time.Minute)
		if batch >= 4 {
			win, at = 1, day2.Add(time.Duration(batch)*time.Minute)
		}
		shift := 0.0
		if win == 1 {
			shift = 1
		}
		n := 500
		sb, tb := array.NewFloat64Builder(memory.DefaultAllocator), array.NewFloat64Builder(memory.DefaultAllocator)
		for range n {
			a, b := rng.NormFloat64()+shift, rng.NormFloat64()
			sb.Append(a)
			tb.Append(b)
			raw[win]["shifted"] = append(raw[win]["shifted"], a)
			raw[win]["stable"] = append(raw[win]["stable"], b)
		}
		sa, ta := sb.NewArray(), tb.NewArray()
		schema := arrow.NewSchema([]arrow.Field{{Name: "shifted", Type: arrow.PrimitiveTypes.Float64}, {Name: "stable", Type: arrow.PrimitiveTypes.Float64}}, nil)
		rec := array.NewRecordBatch(schema, []arrow.Array{sa, ta}, int64(n))
		ev := lineage.NewEvent("", "sluice", "p", at)
		ev.Run.RunID = lineage.RunIDFor("p", at.String())
		ds := lineage.Dataset{Namespace: "file:///x", Name: "obj"}
		ds.OutputFacets.DataQualityMetrics = &lineage.DataQualityMetricsFacet{RowCount: int64(n),
			ColumnMetrics: transform.ColumnQuality(rec, []string{"shifted", "stable"}, ranges, 10)}
		ev.AddOutput(ds)
		rec.Release()
		sa.Release()
		ta.Release()
		if _, err := w.Append(ctx, "quality-test", []*lineage.Event{ev}); err != nil {
			t.Fatal(err)
		}
	}

	var out, errb bytes.Buffer
	err = cmdQuality(ctx, []string{"report", "--store", url, "--since", day2.Format(time.DateOnly), "-o", "json"}, &out, &errb)
	if !errors.Is(err, errFailed) {
		t.Fatalf("want drift (errFailed), got %v; %s", err, errb.String())
	}
	var rep struct {
		Drift   bool
		Columns []struct {
			Column string
			PSI    float64
			Drift  bool
		}
	}
	if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
		t.Fatal(err)
	}
	if !rep.Drift || len(rep.Columns) != 2 {
		t.Fatalf("report: %s", out.String())
	}
	for _, c := range rep.Columns {
		want := psiOf(raw[0][c.Column], raw[1][c.Column], -5, 5, 10)
		if math.Abs(c.PSI-want) > 1e-9 {
			t.Errorf("%s: PSI %v, want %v", c.Column, c.PSI, want)
		}
		if c.Drift != (c.Column == "shifted") {
			t.Errorf("%s: drift %v (PSI %v)", c.Column, c.Drift, c.PSI)
		}
	}

	// Comparing the baseline with itself flags nothing.
	out.Reset()
	err = cmdQuality(ctx, []string{"report", "--store", url, "--since", day1.Format(time.DateOnly),
		"--until", day2.Format(time.DateOnly), "--baseline-until", day2.Format(time.DateOnly)}, &out, &errb)
	if err != nil {
		t.Fatalf("same window: %v\n%s", err, out.String())
	}
}

// psiOf bins two samples on [lo, hi] (values outside in two extra bins)
// and returns their PSI, empty shares counted as 1e-4.
func psiOf(base, cur []float64, lo, hi float64, bins int) float64 {
	count := func(vs []float64) []float64 {
		c := make([]float64, bins+2)
		for _, v := range vs {
			switch {
			case v < lo:
				c[bins]++
			case v > hi:
				c[bins+1]++
			default:
				i := min(int((v-lo)/(hi-lo)*float64(bins)), bins-1)
				c[i]++
			}
		}
		for i := range c {
			c[i] = math.Max(c[i]/float64(len(vs)), 1e-4)
		}
		return c
	}
	e, a := count(base), count(cur)
	var psi float64
	for i := range e {
		psi += (a[i] - e[i]) * math.Log(a[i]/e[i])
	}
	return psi
}
