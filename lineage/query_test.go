package lineage

import (
	"context"
	"reflect"
	"slices"
	"testing"
)

func TestTrace(t *testing.T) {
	ctx := context.Background()
	store := newMemStore()
	w := newTestWriter(t, store)
	for p := range 3 {
		appendBatches(t, w, ChainFor("events", p), "events", p, 0, 10, 64)
	}
	// A chain whose name does not follow ChainFor is still searched.
	appendBatches(t, w, "legacy", "payments", 0, 500, 10, 4)

	cases := []struct {
		name       string
		topic      string
		partition  int
		offset     int64
		wantKinds  []string // outcome kinds of the events found
		wantFirst  int64    // batch first offset of what was found
		maxReads   int
		wantRanges bool
	}{
		{name: "feature row", topic: "events", partition: 1, offset: 377, wantKinds: []string{OutcomeFeatures}, wantFirst: 370, maxReads: 16},
		{name: "dead letter", topic: "events", partition: 1, offset: 371, wantKinds: []string{OutcomeDeadLetters}, wantFirst: 370, maxReads: 16},
		{name: "quarantined row", topic: "events", partition: 2, offset: 639, wantKinds: []string{OutcomeQuarantine}, wantFirst: 630, maxReads: 16},
		{name: "first offset", topic: "events", partition: 0, offset: 0, wantKinds: []string{OutcomeFeatures}, wantFirst: 0, maxReads: 16},
		{name: "other chain name", topic: "payments", partition: 0, offset: 512, wantKinds: []string{OutcomeFeatures}, wantFirst: 510, maxReads: 40},
		{name: "beyond the chain", topic: "events", partition: 1, offset: 640, maxReads: 40},
		{name: "unknown partition", topic: "events", partition: 9, offset: 5, maxReads: 40},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := store.readCount()
			evs, err := Trace(ctx, store, "lineage", tc.topic, tc.partition, tc.offset)
			if err != nil {
				t.Fatal(err)
			}
			if reads := store.readCount() - before; reads > tc.maxReads {
				t.Errorf("Trace read %d objects, want at most %d", reads, tc.maxReads)
			}
			var kinds []string
			for _, ev := range evs {
				k := ev.Run.Facets.KafkaOffsets
				if k.Topic != tc.topic || k.Partition != tc.partition || k.First != tc.wantFirst || !Contains(k.Ranges, tc.offset) {
					t.Errorf("Trace returned an event for %s/%d@%d..%d %v", k.Topic, k.Partition, k.First, k.Last, k.Ranges)
				}
				kinds = append(kinds, ev.Run.Facets.Outcome.Kind)
			}
			if !slices.Equal(kinds, tc.wantKinds) {
				t.Errorf("Trace found outcomes %v, want %v", kinds, tc.wantKinds)
			}
		})
	}

	t.Run("replayed offsets", func(t *testing.T) {
		// A replay cut into other batches records 635..639 again.
		if _, err := w.Append(ctx, ChainFor("events", 2), batchEvents("events", 2, 635, 649)); err != nil {
			t.Fatal(err)
		}
		evs, err := Trace(ctx, store, "lineage", "events", 2, 637)
		if err != nil {
			t.Fatal(err)
		}
		var firsts []int64
		for _, ev := range evs {
			firsts = append(firsts, ev.Run.Facets.KafkaOffsets.First)
		}
		if !slices.Equal(firsts, []int64{630, 635}) {
			t.Errorf("Trace of a replayed offset found batches %v, want [630 635]", firsts)
		}
	})
}

func TestReport(t *testing.T) {
	ctx := context.Background()
	store := newMemStore()
	w := newTestWriter(t, store)
	appendBatches(t, w, "events-0", "events", 0, 0, 10, 2) // 8 feature rows per batch
	appendBatches(t, w, "events-1", "events", 1, 0, 20, 1) // 18 feature rows
	got, err := Report(ctx, store, "lineage")
	if err != nil {
		t.Fatal(err)
	}
	// Per batch of n: features split DE (n-2)/2, FR the rest, on
	// onprem-fra-gpu in fra; one dead letter; one quarantined US row.
	want := ResidencyReport{
		Events: 9,
		Rows: []RowCount{
			{Jurisdiction: "", Outcome: OutcomeDeadLetters, Rows: 3},
			{Jurisdiction: "DE", Executor: "onprem-fra-gpu", Location: "fra", Outcome: OutcomeFeatures, Rows: 4 + 4 + 9},
			{Jurisdiction: "FR", Executor: "onprem-fra-gpu", Location: "fra", Outcome: OutcomeFeatures, Rows: 4 + 4 + 9},
			{Jurisdiction: "US", Outcome: OutcomeQuarantine, Rows: 3},
		},
		Rules: []RuleCount{
			{Rule: "GDPR Art. 44", Decisions: 9, Allowed: 6, Denied: 3},
			{Rule: "HIPAA", Decisions: 3, Denied: 3},
		},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Report =\n%+v\nwant\n%+v", got, want)
	}
	var total int64
	for _, r := range got.Rows {
		total += r.Rows
	}
	if total != 40 {
		t.Errorf("Report accounts for %d rows, the batches held 40 records", total)
	}
}

func TestWalkOrder(t *testing.T) {
	ctx := context.Background()
	store := newMemStore()
	w := newTestWriter(t, store)
	appendBatches(t, w, "events-0", "events", 0, 0, 10, 12)
	appendBatches(t, w, "events-1", "events", 1, 0, 10, 2)
	var got []string
	err := Walk(ctx, store, "lineage", func(e Entry) error {
		got = append(got, e.Chain)
		if e.Pipeline != testPipeline {
			t.Errorf("entry pipeline %q", e.Pipeline)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 42 || got[0] != "events-0" || got[41] != "events-1" {
		t.Fatalf("Walk visited %d events, chains %v..%v", len(got), got[0], got[len(got)-1])
	}
	evs, err := ReadAll(ctx, store, "lineage/pipeline=card-fraud/chain=events-0")
	if err != nil {
		t.Fatal(err)
	}
	for i, ev := range evs {
		if ev.Run.Facets.Chain.Seq != uint64(i) {
			t.Fatalf("event %d has seq %d: segments not read in chain order", i, ev.Run.Facets.Chain.Seq)
		}
	}
}
