package lineage

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

func newTestWriter(t testing.TB, store Store) *Writer {
	t.Helper()
	w, err := NewWriter(store, WriterConfig{Pipeline: testPipeline, Key: testKey(1)})
	if err != nil {
		t.Fatal(err)
	}
	return w
}

// appendBatches appends n batches of size offsets each to chain, starting
// at offset first.
func appendBatches(t testing.TB, w *Writer, chain, topic string, partition int, first, size int64, n int) []SegmentInfo {
	t.Helper()
	var infos []SegmentInfo
	for i := range n {
		f := first + int64(i)*size
		info, err := w.Append(context.Background(), chain, batchEvents(topic, partition, f, f+size-1))
		if err != nil {
			t.Fatal(err)
		}
		infos = append(infos, info)
	}
	return infos
}

func mustVerify(t testing.TB, store Store, pub ed25519.PublicKey) VerifyReport {
	t.Helper()
	rep, err := Verify(context.Background(), store, "lineage", pub)
	if err != nil {
		t.Fatal(err)
	}
	return rep
}

func TestAppendVerifyRoundTrip(t *testing.T) {
	ctx := context.Background()
	store := newMemStore()
	w := newTestWriter(t, store)
	if err := w.PublishKey(ctx); err != nil {
		t.Fatal(err)
	}
	infos := appendBatches(t, w, "events-3", "events", 3, 100, 10, 4)
	appendBatches(t, w, "events-0", "events", 0, 0, 5, 2)
	appendBatches(t, w, "payments-0", "payments", 0, 7, 4, 1)

	want := []string{
		"lineage/pipeline=card-fraud/chain=events-3/00000000000000000000.ndjson",
		"lineage/pipeline=card-fraud/chain=events-3/00000000000000000003.ndjson",
		"lineage/pipeline=card-fraud/chain=events-3/00000000000000000006.ndjson",
		"lineage/pipeline=card-fraud/chain=events-3/00000000000000000009.ndjson",
	}
	for i, info := range infos {
		if info.Key != want[i] || info.FirstSeq != uint64(3*i) || info.LastSeq != uint64(3*i+2) || info.Events != 3 || info.Replayed {
			t.Errorf("segment %d: %+v, want key %s seq %d..%d", i, info, want[i], 3*i, 3*i+2)
		}
		seg, err := parseSegment(store.get(info.Key))
		if err != nil || seg.sig == nil || !seg.verifyEmbedded(w.PublicKey()) || len(seg.events) != 3 {
			t.Errorf("%s: want three events and a signature line that verifies (%v)", info.Key, err)
		}
		if store.get(info.Key+sigExt) != nil {
			t.Errorf("%s has a separate signature object", info.Key)
		}
	}
	if store.get("lineage/pipeline=card-fraud/_keys/ed25519.pub") == nil {
		t.Error("public key not published")
	}

	for name, pub := range map[string]ed25519.PublicKey{"published key": nil, "explicit key": w.PublicKey()} {
		t.Run(name, func(t *testing.T) {
			rep := mustVerify(t, store, pub)
			if !rep.OK || len(rep.Problems) != 0 {
				t.Fatalf("verify failed: %v", rep.Problems)
			}
			if rep.Chains != 3 || rep.Segments != 7 || rep.Events != 21 {
				t.Errorf("verify counted %d chains, %d segments, %d events; want 3, 7, 21", rep.Chains, rep.Segments, rep.Events)
			}
		})
	}
	t.Run("other key", func(t *testing.T) {
		rep := mustVerify(t, store, testKey(2).Public().(ed25519.PublicKey))
		if rep.OK || !strings.Contains(strings.Join(rep.Problems, "\n"), "signature does not verify") {
			t.Fatalf("verify with a foreign key: OK=%v %v", rep.OK, rep.Problems)
		}
	})
	t.Run("empty prefix", func(t *testing.T) {
		rep, err := Verify(ctx, store, "nothing-here", nil)
		if err != nil || rep.OK {
			t.Fatalf("verify of an empty prefix: OK=%v err=%v", rep.OK, err)
		}
	})
	t.Run("pipeline folder as prefix", func(t *testing.T) {
		rep, err := Verify(ctx, store, "lineage/pipeline=card-fraud", nil)
		if err != nil || !rep.OK || rep.Segments != 7 {
			t.Fatalf("verify under the pipeline folder: %+v err=%v", rep, err)
		}
	})

	// Every event was linked to its predecessor.
	evs, err := ReadAll(ctx, store, "lineage/pipeline=card-fraud/chain=events-3")
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != 12 {
		t.Fatalf("read %d events, want 12", len(evs))
	}
	for i, ev := range evs {
		c := ev.Run.Facets.Chain
		if c == nil || c.Seq != uint64(i) || (i == 0) != (c.Prev == "") {
			t.Errorf("event %d: chain facet %+v", i, c)
		}
	}
}

func TestResumeAfterRestart(t *testing.T) {
	ctx := context.Background()
	store := newMemStore()
	first := appendBatches(t, newTestWriter(t, store), "events-3", "events", 3, 0, 10, 2)

	// A new process: a new writer on the same store.
	w2 := newTestWriter(t, store)
	last, ok, err := w2.LastOffset(ctx, "events-3")
	if err != nil || !ok || last != 19 {
		t.Fatalf("LastOffset after restart = %d, %v, %v; want 19", last, ok, err)
	}
	info, err := w2.Append(ctx, "events-3", batchEvents("events", 3, 20, 29))
	if err != nil {
		t.Fatal(err)
	}
	if info.FirstSeq != 6 || info.Replayed {
		t.Fatalf("resumed segment %+v, want first seq 6", info)
	}
	seg, err := ReadSegment(store.get(info.Key))
	if err != nil {
		t.Fatal(err)
	}
	if got := seg[0].Run.Facets.Chain.Prev; got != first[1].Head {
		t.Errorf("resumed chain links to %q, want the previous head %q", got, first[1].Head)
	}
	if rep := mustVerify(t, store, nil); !rep.OK || rep.Segments != 3 {
		t.Fatalf("verify after resume: %+v", rep)
	}
}

func TestReplay(t *testing.T) {
	ctx := context.Background()
	cases := []struct {
		name string
		// replay is the batch appended after 100..199 (10 batches of 10).
		first, last int64
		restart     bool
		wantWrite   bool
		wantReplays int
		wantProblem string
	}{
		{name: "same last batch", first: 190, last: 199},
		{name: "same batch after restart", first: 190, last: 199, restart: true},
		{name: "earlier batch", first: 120, last: 129},
		{name: "batch cut differently inside the chain", first: 150, last: 185, restart: true},
		{name: "batch overlapping the end", first: 185, last: 215, restart: true, wantWrite: true, wantReplays: 1},
		{name: "next batch", first: 200, last: 209, wantWrite: true},
		{name: "gap", first: 250, last: 259, wantWrite: true, wantProblem: "offsets 200..249 have no lineage"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			store := newMemStore()
			w := newTestWriter(t, store)
			infos := appendBatches(t, w, "events-3", "events", 3, 100, 10, 10)
			if tc.restart {
				w = newTestWriter(t, store)
			}
			before := len(store.keys(""))
			info, err := w.Append(ctx, "events-3", batchEvents("events", 3, tc.first, tc.last))
			if err != nil {
				t.Fatal(err)
			}
			wrote := len(store.keys("")) - before
			if tc.wantWrite {
				if info.Replayed || wrote != 1 || info.FirstSeq != 30 {
					t.Fatalf("want a new segment at seq 30, got %+v (%d objects written)", info, wrote)
				}
			} else {
				if !info.Replayed || wrote != 0 || info.Key != infos[9].Key {
					t.Fatalf("want a replay answered by %s without writing, got %+v (%d objects written)", infos[9].Key, info, wrote)
				}
			}
			rep := mustVerify(t, store, nil)
			problems := strings.Join(rep.Problems, "\n")
			if tc.wantProblem == "" && !rep.OK {
				t.Fatalf("verify after replay: %v", rep.Problems)
			}
			if tc.wantProblem != "" && (rep.OK || !strings.Contains(problems, tc.wantProblem)) {
				t.Fatalf("verify: want problem %q, got OK=%v %v", tc.wantProblem, rep.OK, rep.Problems)
			}
			if rep.Replays != tc.wantReplays {
				t.Errorf("verify counted %d replays, want %d", rep.Replays, tc.wantReplays)
			}
			// The chain goes on after the replay.
			next, _, _ := w.LastOffset(ctx, "events-3")
			if _, err := w.Append(ctx, "events-3", batchEvents("events", 3, next+1, next+10)); err != nil {
				t.Fatal(err)
			}
			if rep2 := mustVerify(t, store, nil); rep2.OK != rep.OK || len(rep2.Problems) != len(rep.Problems) {
				t.Errorf("appending after the replay changed verify: %v", rep2.Problems)
			}
		})
	}
}

// TestFailedSegmentWrite: a segment and its signature are one write, so
// a failed write leaves the trail as it was, and the batch, never acked,
// is appended again at the same place.
func TestFailedSegmentWrite(t *testing.T) {
	ctx := context.Background()
	store := newMemStore()
	w := newTestWriter(t, store)
	appendBatches(t, w, "events-3", "events", 3, 0, 10, 2)
	store.failWrites(".ndjson", "disk full")
	if _, err := w.Append(ctx, "events-3", batchEvents("events", 3, 20, 29)); err == nil {
		t.Fatal("Append succeeded although its segment was not written")
	}
	store.failPut = nil
	if rep := mustVerify(t, store, nil); !rep.OK || rep.Segments != 2 {
		t.Fatalf("after a failed segment write: %+v, want the trail as it was", rep)
	}
	info, err := w.Append(ctx, "events-3", batchEvents("events", 3, 20, 29))
	if err != nil || info.Replayed || info.FirstSeq != 6 {
		t.Fatalf("replay of an unacked batch: %+v, %v; want it written at seq 6", info, err)
	}
	if rep := mustVerify(t, store, nil); !rep.OK || rep.Segments != 3 {
		t.Fatalf("verify after the retry: %+v", rep)
	}
}

// TestUnsignedTailOfEarlierTrail: earlier trails wrote a segment and then
// its signature object, so a crash between the two left the segment alone
// at the chain's tail. Verify flags it; a writer leaves it to its writer
// for WriterConfig.OrphanGrace (it may be an old build between its two
// writes during an upgrade), then replaces it with the batch, which was
// never acked and comes again.
func TestUnsignedTailOfEarlierTrail(t *testing.T) {
	ctx := context.Background()
	store := newMemStore()
	w := newTestWriter(t, store)
	infos := appendBatches(t, w, "events-3", "events", 3, 0, 10, 3)
	for _, info := range infos {
		store.toLegacy(info.Key, func(seg []byte) []byte { return legacySig(testKey(1), seg) })
	}
	tail := infos[2].Key
	store.del(tail + sigExt) // the crash
	rep := mustVerify(t, store, nil)
	if want := "segment " + tail + ": seq 6: missing signature"; rep.OK || !strings.Contains(strings.Join(rep.Problems, "\n"), want) {
		t.Fatalf("verify of an unsigned tail: %v, want %q", rep.Problems, want)
	}
	const grace = 50 * time.Millisecond
	w, err := NewWriter(store, WriterConfig{Pipeline: testPipeline, Key: testKey(1), OrphanGrace: grace})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Append(ctx, "events-3", batchEvents("events", 3, 20, 29)); !errors.Is(err, ErrConflict) {
		t.Fatalf("a writer replaced an unsigned segment at once: %v", err)
	}
	time.Sleep(grace)
	store.failWrites(".ndjson", "disk full")
	if _, err := w.Append(ctx, "events-3", batchEvents("events", 3, 20, 29)); err == nil {
		t.Fatal("Append succeeded although the replacing segment was not written")
	}
	store.failPut = nil
	time.Sleep(grace)
	info, err := w.Append(ctx, "events-3", batchEvents("events", 3, 20, 29))
	if err != nil || info.Replayed || info.FirstSeq != 6 || info.Key != tail {
		t.Fatalf("after the grace: %+v, %v; want the batch written at seq 6 over the leftover", info, err)
	}
	if rep := mustVerify(t, store, nil); !rep.OK || rep.Segments != 3 {
		t.Fatalf("verify after the replacement: %+v", rep)
	}
}

// TestStaleWriter: the partition moved to another replica and back; the
// first writer must continue after the other's segments, not overwrite.
// staleWriters returns writers a and b of one store: a appended offsets
// 0..9 of chain events-3, then b appended 10..19, so a's view is stale.
func staleWriters(t *testing.T) (store *memStore, a, b *Writer) {
	t.Helper()
	store = newMemStore()
	a, b = newTestWriter(t, store), newTestWriter(t, store)
	appendBatches(t, a, "events-3", "events", 3, 0, 10, 1)
	appendBatches(t, b, "events-3", "events", 3, 10, 10, 1)
	return store, a, b
}

func TestStaleWriter(t *testing.T) {
	ctx := context.Background()
	store, a, _ := staleWriters(t)
	info, err := a.Append(ctx, "events-3", batchEvents("events", 3, 20, 29))
	if err != nil {
		t.Fatal(err)
	}
	if info.FirstSeq != 6 {
		t.Errorf("stale writer wrote at seq %d, want 6", info.FirstSeq)
	}
	// And a replay of b's batch through a is recognised.
	if info, err := a.Append(ctx, "events-3", batchEvents("events", 3, 10, 19)); err != nil || !info.Replayed {
		t.Errorf("replay through the stale writer: %+v, %v", info, err)
	}
	if rep := mustVerify(t, store, nil); !rep.OK || rep.Segments != 3 {
		t.Fatalf("verify: %+v", rep)
	}
}

// TestEarlierFormats: earlier trails keep each segment's signature in a
// separate SEQ.ndjson.sig object, over the segment's SHA-256 or, in the
// first format, over its bytes. They still verify, a writer continues them
// in the current format, and a tampered one still fails.
func TestEarlierFormats(t *testing.T) {
	for name, sig := range map[string]func([]byte) []byte{
		"digest": func(seg []byte) []byte { return legacySig(testKey(1), seg) },
		"first": func(seg []byte) []byte {
			return []byte(base64.StdEncoding.EncodeToString(ed25519.Sign(testKey(1), seg)) + "\n")
		},
	} {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			store := newMemStore()
			w := newTestWriter(t, store)
			infos := appendBatches(t, w, "events-3", "events", 3, 0, 10, 2)
			for _, info := range infos {
				store.toLegacy(info.Key, sig)
			}
			if rep := mustVerify(t, store, nil); !rep.OK {
				t.Fatalf("verify of an earlier trail: %v", rep.Problems)
			}
			next := newTestWriter(t, store) // reads the chain's tail, as after an upgrade
			info, err := next.Append(ctx, "events-3", batchEvents("events", 3, 20, 29))
			if err != nil || info.FirstSeq != 6 {
				t.Fatalf("appending after an earlier-format segment: %+v, %v", info, err)
			}
			if seg, err := parseSegment(store.get(info.Key)); err != nil || seg.sig == nil {
				t.Fatalf("the new segment has no signature line: %v", err)
			}
			if rep := mustVerify(t, store, nil); !rep.OK || rep.Segments != 3 {
				t.Fatalf("verify of the mixed trail: %+v", rep)
			}
			seg := store.get(infos[0].Key)
			store.set(infos[0].Key, bytes.Replace(seg, []byte(`"events"`), []byte(`"evenTs"`), 1))
			if rep := mustVerify(t, store, nil); rep.OK {
				t.Fatal("verify accepts an altered earlier-format segment")
			}
		})
	}
}

// raceStore runs before, once, just ahead of the first Create it is asked
// for: another writer's whole Append lands between this writer's view of
// the chain and its write.
type raceStore struct {
	*memStore
	once   sync.Once
	before func()
}

func (r *raceStore) Create(ctx context.Context, key string, rd io.Reader, size int64) error {
	r.once.Do(r.before)
	return r.memStore.Create(ctx, key, rd, size)
}

// racingWriters returns two writers of one store that have both read chain
// events-3 after a's batch of offsets 0..9; b writes through race.
func racingWriters(t *testing.T) (store *memStore, a *Writer, race *raceStore, b *Writer) {
	t.Helper()
	store = newMemStore()
	a = newTestWriter(t, store)
	appendBatches(t, a, "events-3", "events", 3, 0, 10, 1)
	race = &raceStore{memStore: store}
	b, err := NewWriter(race, WriterConfig{Pipeline: testPipeline, Key: testKey(1)})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := b.LastOffset(context.Background(), "events-3"); err != nil { // reads the tail
		t.Fatal(err)
	}
	return store, a, race, b
}

// TestRacingWritersNeverOverwrite: two writers extend a chain from the same
// tail at the same moment (a consumer that lost its partition in a pause
// still finishes a batch while its successor appends). The segment each
// means to write goes to the same key; the one that comes second must not
// replace the first's (which the first's signature vouches for), but
// re-read the chain and write after it.
func TestRacingWritersNeverOverwrite(t *testing.T) {
	ctx := context.Background()
	store, successor, race, zombie := racingWriters(t)
	race.before = func() {
		if _, err := successor.Append(ctx, "events-3", batchEvents("events", 3, 10, 19)); err != nil {
			t.Error(err)
		}
	}
	// The zombie's batch overlaps the successor's and goes further.
	info, err := zombie.Append(ctx, "events-3", batchEvents("events", 3, 10, 24))
	if err != nil {
		t.Fatal(err)
	}
	if info.Replayed || info.FirstSeq != 6 {
		t.Errorf("the second writer wrote %+v; want a new segment at seq 6, after the first's", info)
	}
	rep := mustVerify(t, store, nil)
	if !rep.OK || rep.Segments != 3 {
		t.Fatalf("verify: %+v", rep)
	}
	evs, err := ReadAll(ctx, store, "lineage/pipeline=card-fraud/chain=events-3")
	if err != nil {
		t.Fatal(err)
	}
	if seq3 := evs[3].Run.Facets.KafkaOffsets; seq3 == nil || seq3.Last != 19 {
		t.Errorf("the segment at seq 3 is not the successor's 10..19 batch: %+v", seq3)
	}
}

// TestRacingWriterBetweenItsWrites: during an upgrade, a writer of an
// earlier build has put its segment but not yet its separate signature
// when a current writer finds the key taken. The unsigned segment is then
// most likely in progress, not a crash's leftover: the current writer
// must leave it alone (ErrConflict, the runner retries) and, once the
// first has signed it, take its own batch for a replay rather than
// overwrite a signed segment.
func TestRacingWriterBetweenItsWrites(t *testing.T) {
	ctx := context.Background()
	store, first, race, second := racingWriters(t)
	const seg = "lineage/pipeline=card-fraud/chain=events-3/00000000000000000003.ndjson"
	race.before = func() {
		// The earlier build's first write: the segment, unsigned.
		if _, err := first.Append(ctx, "events-3", batchEvents("events", 3, 10, 19)); err != nil {
			t.Error(err)
		}
		store.set(seg, withoutSignature(store.get(seg)))
	}
	for attempt := range 2 {
		if _, err := second.Append(ctx, "events-3", batchEvents("events", 3, 10, 19)); !errors.Is(err, ErrConflict) {
			t.Fatalf("attempt %d against a segment another writer has not signed yet: %v, want ErrConflict", attempt+1, err)
		}
	}
	written := store.get(seg)
	if _, sig, err := splitSignature(written); err != nil || sig != nil {
		t.Fatalf("the second writer replaced or signed the first's segment (%v)", err)
	}
	store.set(seg+sigExt, legacySig(testKey(1), written)) // the first writer resumes and signs
	info, err := second.Append(ctx, "events-3", batchEvents("events", 3, 10, 19))
	if err != nil || !info.Replayed {
		t.Fatalf("after the first signed: %+v, %v; want the batch taken for a replay", info, err)
	}
	if !bytes.Equal(store.get(seg), written) {
		t.Fatal("the second writer overwrote the first's signed segment")
	}
	if rep := mustVerify(t, store, nil); !rep.OK || rep.Segments != 2 {
		t.Fatalf("verify: %+v", rep)
	}
}

// TestStraySignatureOfEarlierBuild: builds before the signature moved into
// the segment could, crashing, leave a signature object with no segment
// at the chain's next key. A segment created there carries its own
// signature line, which is the one that counts: the stray object neither
// blocks the append nor makes the segment read as altered.
func TestStraySignatureOfEarlierBuild(t *testing.T) {
	ctx := context.Background()
	store := newMemStore()
	w := newTestWriter(t, store)
	appendBatches(t, w, "events-3", "events", 3, 0, 10, 2)
	const next = "lineage/pipeline=card-fraud/chain=events-3/00000000000000000006.ndjson"
	store.set(next+sigExt, legacySig(testKey(1), []byte("a segment that never landed\n")))
	w = newTestWriter(t, store) // after the upgrade
	if info, err := w.Append(ctx, "events-3", batchEvents("events", 3, 20, 29)); err != nil || info.FirstSeq != 6 {
		t.Fatalf("append: %+v, %v; want the batch written at seq 6", info, err)
	}
	if rep := mustVerify(t, store, nil); !rep.OK || rep.Segments != 3 {
		t.Fatalf("verify: %+v", rep)
	}
	if _, err := newTestWriter(t, store).Append(ctx, "events-3", batchEvents("events", 3, 30, 39)); err != nil {
		t.Fatalf("a restarted writer cannot extend the chain: %v", err)
	}
}

// TestReloadSeesOtherWriters: a writer's LastOffset is what it last knew
// of the chain; after another writer appended (the partition was processed
// elsewhere), Reload makes it read the chain's tail again.
func TestReloadSeesOtherWriters(t *testing.T) {
	ctx := context.Background()
	_, a, _ := staleWriters(t)
	if last, _, err := a.LastOffset(ctx, "events-3"); err != nil || last != 9 {
		t.Fatalf("LastOffset before Reload = %d, %v; want what a itself wrote (9)", last, err)
	}
	if err := a.Reload(ctx, "events-3"); err != nil {
		t.Fatal(err)
	}
	if last, _, err := a.LastOffset(ctx, "events-3"); err != nil || last != 19 {
		t.Fatalf("LastOffset after Reload = %d, %v; want b's 19", last, err)
	}
}

func TestAppendRejects(t *testing.T) {
	ctx := context.Background()
	cases := []struct {
		name   string
		chain  string
		events func() []*Event
	}{
		{"no events", "events-3", func() []*Event { return nil }},
		{"nil event", "events-3", func() []*Event { return []*Event{nil} }},
		{"bad chain name", "events/3", func() []*Event { return batchEvents("events", 3, 20, 29) }},
		{"offset not accounted for", "events-3", func() []*Event { return batchEvents("events", 3, 20, 29)[:2] }},
		{"offset counted twice", "events-3", func() []*Event {
			evs := batchEvents("events", 3, 20, 29)
			evs[1].Run.Facets.KafkaOffsets.Ranges = [][2]int64{{21, 22}}
			return evs
		}},
		{"two batches in one call", "events-3", func() []*Event {
			return append(batchEvents("events", 3, 20, 29), batchEvents("events", 3, 30, 39)...)
		}},
		{"another partition", "events-3", func() []*Event { return batchEvents("events", 4, 20, 29) }},
		{"invalid event", "events-3", func() []*Event {
			evs := batchEvents("events", 3, 20, 29)
			evs[0].Job.Name = ""
			return evs
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			store := newMemStore()
			w := newTestWriter(t, store)
			appendBatches(t, w, "events-3", "events", 3, 0, 10, 2)
			before := len(store.keys(""))
			_, err := w.Append(ctx, tc.chain, tc.events())
			if err == nil {
				t.Fatal("Append accepted it")
			}
			if tc.chain == "events-3" && !errors.Is(err, ErrInvalidEvent) {
				t.Errorf("error %v does not match ErrInvalidEvent", err)
			}
			if n := len(store.keys("")); n != before {
				t.Errorf("a rejected Append wrote %d objects", n-before)
			}
			// The chain is still usable.
			if _, err := w.Append(ctx, "events-3", batchEvents("events", 3, 20, 29)); err != nil {
				t.Fatal(err)
			}
			if rep := mustVerify(t, store, nil); !rep.OK {
				t.Fatal(rep.Problems)
			}
		})
	}
}

func TestConcurrentAppends(t *testing.T) {
	ctx := context.Background()
	store := newMemStore()
	w := newTestWriter(t, store)
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for p := range 4 {
		wg.Go(func() {
			for i := range 8 {
				first := int64(i * 10)
				if _, err := w.Append(ctx, ChainFor("events", p), batchEvents("events", p, first, first+9)); err != nil {
					errs <- err
				}
			}
		})
	}
	// Replays of one chain from another goroutine race with its appends.
	wg.Go(func() {
		for range 8 {
			if _, err := w.Append(ctx, ChainFor("events", 0), batchEvents("events", 0, 0, 9)); err != nil {
				errs <- err
			}
		}
	})
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	rep := mustVerify(t, store, w.PublicKey())
	if !rep.OK || rep.Chains != 4 || rep.Segments != 32 {
		t.Fatalf("verify: %+v", rep)
	}
}

func TestKeys(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "secrets", "lineage", "ed25519.pem")
	k1, err := LoadOrCreateKey(path)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("key file mode %v, want 0600", fi.Mode().Perm())
	}
	k2, err := LoadOrCreateKey(path)
	if err != nil {
		t.Fatal(err)
	}
	if !k1.Equal(k2) {
		t.Fatal("LoadOrCreateKey made a new key although one existed")
	}

	pemBytes, err := MarshalPublicKey(k1.Public().(ed25519.PublicKey))
	if err != nil {
		t.Fatal(err)
	}
	for name, data := range map[string][]byte{"pem": pemBytes, "raw": []byte(k1.Public().(ed25519.PublicKey))} {
		pub, err := ParsePublicKey(data)
		if err != nil || !pub.Equal(k1.Public()) {
			t.Errorf("%s: ParsePublicKey = %v, %v", name, pub, err)
		}
	}
	if _, err := ParsePublicKey([]byte("not a key")); !errors.Is(err, ErrKey) {
		t.Errorf("ParsePublicKey(garbage) = %v, want ErrKey", err)
	}

	store := newMemStore()
	w1, _ := NewWriter(store, WriterConfig{Pipeline: testPipeline, Key: k1})
	if err := w1.PublishKey(ctx); err != nil {
		t.Fatal(err)
	}
	if err := w1.PublishKey(ctx); err != nil {
		t.Fatalf("publishing the same key again: %v", err)
	}
	w2, _ := NewWriter(store, WriterConfig{Pipeline: testPipeline, Key: testKey(9)})
	if err := w2.PublishKey(ctx); !errors.Is(err, ErrKey) {
		t.Fatalf("publishing a different key over the published one: %v, want ErrKey", err)
	}
	// A writer with another key refuses to extend a chain it cannot verify.
	appendBatches(t, w1, "events-3", "events", 3, 0, 10, 1)
	if _, err := w2.Append(ctx, "events-3", batchEvents("events", 3, 10, 19)); !errors.Is(err, ErrKey) {
		t.Fatalf("appending with another key: %v, want ErrKey", err)
	}
	store.del("lineage/pipeline=card-fraud/_keys/ed25519.pub")
	w3, _ := NewWriter(store, WriterConfig{Pipeline: testPipeline, Key: testKey(9)})
	if _, err := w3.Append(ctx, "events-3", batchEvents("events", 3, 10, 19)); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("appending with another key to a chain whose key is not published: %v, want ErrCorrupt", err)
	}
}

func TestNewWriterRejects(t *testing.T) {
	cases := map[string]WriterConfig{
		"no pipeline":   {Key: testKey(1)},
		"slash in name": {Pipeline: "a/b", Key: testKey(1)},
		"no key":        {Pipeline: testPipeline},
	}
	for name, cfg := range cases {
		t.Run(name, func(t *testing.T) {
			if _, err := NewWriter(newMemStore(), cfg); err == nil {
				t.Error("NewWriter accepted it")
			}
		})
	}
}
