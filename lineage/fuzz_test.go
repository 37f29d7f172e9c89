package lineage

import (
	"context"
	"encoding/json"
	"testing"
)

// FuzzReadSegment feeds untrusted bytes to the segment reader and to
// Verify and Trace, which must report problems, never panic or fail with
// an I/O error. Run with a short -fuzzminimizetime (e.g. 3s): minimising
// a new input otherwise takes up to a minute per find.
func FuzzReadSegment(f *testing.F) {
	// Small events keep each execution, and minimisation, fast.
	store := newMemStore()
	w := newTestWriter(f, store)
	var infos []SegmentInfo
	for first := int64(100); first < 120; first += 10 {
		ev := NewEvent("", "sluice", testPipeline, testTime).
			SetKafkaOffsets("events", 3, first, first+9, []int64{first, first + 1, first + 2, first + 3, first + 4, first + 5, first + 6, first + 7, first + 8, first + 9}).
			SetOutcome(OutcomeFeatures, nil)
		info, err := w.Append(context.Background(), "events-3", []*Event{ev})
		if err != nil {
			f.Fatal(err)
		}
		infos = append(infos, info)
	}
	f.Add(store.get(infos[0].Key))
	f.Add(store.get(infos[1].Key))
	f.Add([]byte("{}\n"))
	f.Add([]byte(`{"run":{"facets":{"sluice_kafkaOffsets":{"first":9223372036854775807,"last":9223372036854775807,"ranges":[[9223372036854775807,9223372036854775807],[0,9223372036854775807]]}}}}` + "\n"))
	f.Add([]byte(`{"run":{"facets":{"sluice_chain":{"seq":18446744073709551615}}}}` + "\n"))
	f.Add([]byte("\n\n"))
	f.Add([]byte("not json"))
	f.Fuzz(func(t *testing.T, data []byte) {
		evs, err := ReadSegment(data)
		if err == nil {
			for i := range evs {
				if _, err := json.Marshal(&evs[i]); err != nil {
					t.Fatalf("a parsed event does not marshal: %v", err)
				}
				_ = evs[i].Validate()
			}
			_, _ = segmentBatch(evs)
		}
		s := store.clone()
		s.set(infos[1].Key, data)
		rep, err := Verify(context.Background(), s, "lineage", nil)
		if err != nil {
			t.Fatalf("Verify returned an error for bad content: %v", err)
		}
		if rep.OK && string(data) != string(store.get(infos[1].Key)) {
			t.Fatalf("Verify accepted altered segment bytes %q", data)
		}
		if _, err := Trace(context.Background(), s, "lineage", "events", 3, 115); err != nil && err.Error() == "" {
			t.Fatal("empty error")
		}
	})
}
