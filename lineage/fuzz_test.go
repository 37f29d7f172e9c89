package lineage

import (
	"runtime/debug"
	"time"
	"context"
	"encoding/json"
	"testing"
)

// FuzzReadSegment feeds untrusted bytes to the segment reader and to
// Verify and Trace, which must report problems, never panic or fail with
// an I/O error.
func FuzzReadSegment(f *testing.F) {
	store := newMemStore()
	w := newTestWriter(f, store)
	infos := appendBatches(f, w, "events-3", "events", 3, 100, 10, 2)
	f.Add(store.get(infos[0].Key))
	f.Add(store.get(infos[1].Key))
	f.Add([]byte("{}\n"))
	f.Add([]byte(`{"run":{"facets":{"sluice_kafkaOffsets":{"first":9223372036854775807,"last":9223372036854775807,"ranges":[[9223372036854775807,9223372036854775807],[0,9223372036854775807]]}}}}` + "\n"))
	f.Add([]byte(`{"run":{"facets":{"sluice_chain":{"seq":18446744073709551615}}}}` + "\n"))
	f.Add([]byte("\n\n"))
	f.Add([]byte("not json"))
	f.Fuzz(func(t *testing.T, data []byte) {
		tm := time.AfterFunc(3*time.Second, func() { debug.SetTraceback("all"); panic("WATCHDOG") })
		defer tm.Stop()
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
