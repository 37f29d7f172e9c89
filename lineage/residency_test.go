package lineage

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestResidency(t *testing.T) {
	ctx := context.Background()
	store := newMemStore()
	w := newTestWriter(t, store)
	appendBatches(t, w, "events-0", "events", 0, 0, 10, 2) // 8 feature rows per batch
	// A batch processed in breach of its decision: the executor that ran
	// the DE rows is the one the policy denied.
	evs := batchEvents("events", 0, 20, 29)
	evs[0].Run.Facets.Executor.ID = "aws-us-east-1"
	evs[0].Run.Facets.Executor.Location = Location{Name: "us-east-1", Kind: "cloud", Jurisdiction: "US"}
	if _, err := w.Append(ctx, "events-0", evs); err != nil {
		t.Fatal(err)
	}
	// A batch whose features event covers two rows no decision is about.
	evs = batchEvents("events", 0, 30, 39)
	evs[0].Run.Facets.ResidencyDecision.Decisions[2].Rows -= 2
	if _, err := w.Append(ctx, "events-0", evs); err != nil {
		t.Fatal(err)
	}

	got, err := Residency(ctx, store, "lineage", Window{})
	if err != nil {
		t.Fatal(err)
	}
	wantCells := []ResidencyCell{
		{Outcome: OutcomeDeadLetters, Rows: 4},
		{Location: "fra", LocationJurisdiction: "DE", Outcome: OutcomeFeatures, Rows: 2},
		{Jurisdiction: "DE", Location: "fra", LocationJurisdiction: "DE", Outcome: OutcomeFeatures, Rows: 4 + 4 + 4},
		{Jurisdiction: "DE", Location: "us-east-1", LocationJurisdiction: "US", Outcome: OutcomeFeatures, Rows: 4},
		{Jurisdiction: "FR", Location: "fra", LocationJurisdiction: "DE", Outcome: OutcomeFeatures, Rows: 4 + 4 + 2},
		{Jurisdiction: "FR", Location: "us-east-1", LocationJurisdiction: "US", Outcome: OutcomeFeatures, Rows: 4},
		{Jurisdiction: "US", Outcome: OutcomeQuarantine, Rows: 4},
	}
	if !reflect.DeepEqual(got.Cells, wantCells) {
		t.Errorf("cells\n%+v\nwant\n%+v", got.Cells, wantCells)
	}
	if got.Events != 12 || got.ProcessedRows != 32 {
		t.Errorf("events %d, processed rows %d; want 12 and 32", got.Events, got.ProcessedRows)
	}
	// DE on aws was denied; FR has no decision about aws; 2 rows of the
	// last batch have no decision at all.
	type short struct {
		seq        uint64
		jur, exec  string
		decisionID string
		rows       int64
		reason     string
	}
	var vs []short
	for _, v := range got.Violations {
		vs = append(vs, short{v.Seq, v.Jurisdiction, v.Executor, v.DecisionID, v.Rows, v.Reason})
		if v.Segment == "" || v.Topic != "events" || v.Object == "" {
			t.Errorf("violation lacks its place: %+v", v)
		}
	}
	wantV := []short{
		{6, "DE", "aws-us-east-1", "d-de-2", 4, "decision denies executor aws-us-east-1: pii may not leave the EU"},
		{6, "FR", "aws-us-east-1", "", 4, "no decision about executor aws-us-east-1"},
		{9, "", "onprem-fra-gpu", "", 2, "rows processed that no decision covers"},
	}
	if !reflect.DeepEqual(vs, wantV) || got.ViolationRows != 10 {
		t.Errorf("violations (%d rows)\n%+v\nwant (10 rows)\n%+v", got.ViolationRows, vs, wantV)
	}

	t.Run("window", func(t *testing.T) {
		// Batch at offset f has eventTime testTime + f ms: keep 10..29.
		w := Window{Since: testTime.Add(10 * time.Millisecond), Until: testTime.Add(30 * time.Millisecond)}
		got, err := Residency(ctx, store, "lineage", w)
		if err != nil {
			t.Fatal(err)
		}
		if got.Events != 6 || got.ProcessedRows != 16 || got.ViolationRows != 8 || got.Since == "" || got.Until == "" {
			t.Errorf("window: %d events, %d processed, %d violating; want 6, 16, 8", got.Events, got.ProcessedRows, got.ViolationRows)
		}
		rep, err := ReportWindow(ctx, store, "lineage", w)
		if err != nil || rep.Events != 6 {
			t.Errorf("ReportWindow: %d events, %v; want 6", rep.Events, err)
		}
	})
}

func TestDecisionGroups(t *testing.T) {
	d := func(jur, exec string, rows int64) Decision {
		return Decision{Jurisdiction: jur, Classes: []string{"pii"}, Executor: exec, Rows: rows}
	}
	// The runner's quarantine shape: each group asked of two executors;
	// its features shape: each group once, several groups alike.
	got := decisionGroups([]Decision{d("IN", "a", 4), d("IN", "b", 4), d("BR", "a", 3), d("BR", "b", 3),
		d("US", "a", 5), d("US", "a", 5), d("US", "a", 2)})
	var sizes []int
	for _, g := range got {
		sizes = append(sizes, len(g))
	}
	if !slices.Equal(sizes, []int{2, 2, 1, 1, 1}) {
		t.Errorf("group sizes %v, want [2 2 1 1 1]", sizes)
	}
}

func TestTraceObject(t *testing.T) {
	ctx := context.Background()
	store := newMemStore()
	appendBatches(t, newTestWriter(t, store), "events-3", "events", 3, 100, 10, 3)
	evs, err := ReadAll(ctx, store, "lineage")
	if err != nil {
		t.Fatal(err)
	}
	feat := evs[3].Outputs[0]
	key := feat.OutputFacets.Object.Key
	for _, q := range []string{key, ObjectURL(feat.Namespace, key), "/mnt/copy/" + key} {
		got, err := TraceObject(ctx, store, "lineage", q)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != 1 || got[0].Run.Facets.Chain.Seq != 3 || got[0].Run.Facets.KafkaOffsets.First != 110 {
			t.Errorf("TraceObject(%q) found %d events, want the features event of batch 110", q, len(got))
		}
	}
	got, err := TraceObject(ctx, store, "lineage", "features/pipeline=card-fraud/nothing.parquet")
	if err != nil || len(got) != 0 {
		t.Errorf("TraceObject of an unknown key = %d events, %v", len(got), err)
	}
}

func TestExport(t *testing.T) {
	ctx := context.Background()
	store := newMemStore()
	appendBatches(t, newTestWriter(t, store), "events-3", "events", 3, 100, 10, 2)
	appendBatches(t, newTestWriter(t, store), "events-4", "events", 4, 0, 10, 1)

	type received struct {
		seq   uint64
		chain string
	}
	var (
		mu   sync.Mutex
		got  []received
		hits int
	)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		hits++
		switch {
		case r.Method != http.MethodPost || r.URL.Path != "/marquez/api/v1/lineage":
			http.Error(w, "want POST /marquez/api/v1/lineage, got "+r.Method+" "+r.URL.Path, http.StatusNotFound)
			return
		case r.Header.Get("Authorization") != "Bearer s3cret":
			http.Error(w, "missing bearer token", http.StatusUnauthorized)
			return
		case r.Header.Get("Content-Type") != "application/json":
			http.Error(w, "want application/json", http.StatusUnsupportedMediaType)
			return
		case hits <= 2:
			http.Error(w, "warming up", http.StatusServiceUnavailable) // retried
			return
		}
		body, _ := io.ReadAll(r.Body)
		var ev Event
		dec := json.NewDecoder(strings.NewReader(string(body)))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&ev); err != nil || ev.Validate() != nil || ev.SchemaURL != SchemaURL || ev.Run.Facets.Chain == nil {
			http.Error(w, "not an OpenLineage RunEvent from sluice", http.StatusBadRequest)
			return
		}
		chain := ChainFor(ev.Run.Facets.KafkaOffsets.Topic, ev.Run.Facets.KafkaOffsets.Partition)
		got = append(got, received{ev.Run.Facets.Chain.Seq, chain})
		w.WriteHeader(http.StatusCreated)
	}))
	defer srv.Close()

	cfg := ExportConfig{URL: srv.URL + "/marquez/", APIKey: "s3cret", RetryMin: time.Millisecond, RetryMax: 5 * time.Millisecond}
	rep, err := Export(ctx, store, "lineage", cfg)
	if err != nil {
		t.Fatal(err)
	}
	want := []received{{0, "events-3"}, {1, "events-3"}, {2, "events-3"}, {3, "events-3"}, {4, "events-3"}, {5, "events-3"},
		{0, "events-4"}, {1, "events-4"}, {2, "events-4"}}
	if !slices.Equal(got, want) || rep.Sent != 9 || rep.Retries != 2 {
		t.Errorf("server received %v (report %+v), want %v after 2 retries", got, rep, want)
	}

	t.Run("since", func(t *testing.T) {
		got = nil
		c := cfg
		c.Window = Window{Since: testTime.Add(110 * time.Millisecond)}
		rep, err := Export(ctx, store, "lineage", c)
		if err != nil || rep.Sent != 3 || rep.Skipped != 6 {
			t.Errorf("Export since batch 110: %+v, %v; want 3 sent, 6 skipped", rep, err)
		}
	})
	t.Run("refused", func(t *testing.T) {
		c := cfg
		c.APIKey = "wrong"
		rep, err := Export(ctx, store, "lineage", c)
		if err == nil || !strings.Contains(err.Error(), "401") || !strings.Contains(err.Error(), "seq 0 of chain card-fraud/events-3") || rep.Sent != 0 || rep.Retries != 0 {
			t.Errorf("Export with a wrong key: %+v, %v; want a 401 naming the event, no retry", rep, err)
		}
	})
	t.Run("server down", func(t *testing.T) {
		c := cfg
		c.URL = "http://127.0.0.1:1"
		c.Retries = 2
		rep, err := Export(ctx, store, "lineage", c)
		if err == nil || rep.Retries != 2 {
			t.Errorf("Export to nothing: %+v, %v; want an error after 2 retries", rep, err)
		}
	})
	t.Run("bad URL", func(t *testing.T) {
		if _, err := Export(ctx, store, "lineage", ExportConfig{URL: "marquez:5000"}); err == nil {
			t.Error("Export accepted a URL without http(s) scheme")
		}
	})
}
