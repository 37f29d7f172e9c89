package lineage

import (
	"bytes"
	"context"
	"encoding/json"
	"math/rand/v2"
	"syscall"
	"testing"
	"time"

	"github.com/sluice-dev/sluice/storage/fs"
)

// BenchmarkAppend is the cost of one Append of a demo-shaped Kafka batch
// (5000 offsets dealt at random to two feature outputs, the quarantine and
// the dead letters, as an interleaved stream of EU, US and IN/BR data is):
// validation, JSON encoding, hash chaining and the ed25519 signature. The
// memory sub-benchmark writes to an in-memory store (CPU only); folder
// writes to the folder store in a temporary directory, durably (create,
// fsync, link, folder fsync, for the segment and its signature), and
// reports the process's CPU time per append beside the wall time.
func BenchmarkAppend(b *testing.B) {
	b.Run("memory", func(b *testing.B) { benchAppend(b, newMemStore()) })
	b.Run("folder", func(b *testing.B) {
		st, err := fs.New(b.TempDir())
		if err != nil {
			b.Fatal(err)
		}
		benchAppend(b, st)
	})
}

func benchAppend(b *testing.B, store Store) {
	const first, last = 0, 4999
	rng := rand.New(rand.NewPCG(1, 2))
	var parts [4][]int64
	for o := int64(first); o <= last; o++ {
		p := rng.IntN(100)
		switch {
		case p < 52:
			parts[0] = append(parts[0], o)
		case p < 82:
			parts[1] = append(parts[1], o)
		case p < 99:
			parts[2] = append(parts[2], o)
		default:
			parts[3] = append(parts[3], o)
		}
	}
	tmpl := batchEvents("events", 0, first, last)
	w, err := NewWriter(store, WriterConfig{Pipeline: testPipeline, Key: testKey(1)})
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	var bytes int64
	n := int64(0)
	cpu0 := cpuTime()
	for b.Loop() {
		// Each iteration is the next batch of the chain.
		off := n * (last + 1)
		events := make([]*Event, len(parts))
		for i, offs := range parts {
			ev := *tmpl[min(i, len(tmpl)-1)]
			shifted := make([]int64, len(offs))
			for j, o := range offs {
				shifted[j] = o + off
			}
			ev.SetKafkaOffsets("events", 0, first+off, last+off, shifted)
			events[i] = &ev
		}
		info, err := w.Append(ctx, "events-0", events)
		if err != nil {
			b.Fatal(err)
		}
		bytes += info.Bytes
		n++
	}
	b.ReportMetric(float64(bytes)/float64(n), "segment-bytes")
	b.ReportMetric(float64((cpuTime()-cpu0).Microseconds())/float64(n), "cpu-µs/op")
}

// cpuTime is the user and system CPU time this process has used.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// TestCoverBitmapAgreesWithSort deals random batches, some with an offset
// missing or counted twice, and checks that the bitmap coverage check and
// the sorting one (used for huge spans) reach the same verdict.
func TestCoverBitmapAgreesWithSort(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	bad := 0
	for trial := range 2000 {
		first := int64(rng.IntN(1000))
		last := first + int64(rng.IntN(300))
		var parts [3][]int64
		for o := first; o <= last; o++ {
			k := rng.IntN(3)
			parts[k] = append(parts[k], o)
		}
		switch rng.IntN(3) {
		case 1: // one offset dropped
			if p := &parts[rng.IntN(3)]; len(*p) > 0 {
				*p = append((*p)[:0:0], (*p)[1:]...)
			}
		case 2: // one offset counted twice
			o := first + int64(rng.IntN(int(last-first+1)))
			k := rng.IntN(3)
			parts[k] = append(parts[k], o)
		}
		var events []Event
		for _, p := range parts {
			var ev Event
			ev.SetKafkaOffsets("events", 0, first, last, p)
			events = append(events, ev)
		}
		b := &batchRef{"events", 0, first, last}
		errB, errS := coverBitmap(events, b), coverSorted(events, b, 0)
		if (errB == nil) != (errS == nil) {
			t.Fatalf("trial %d: bitmap says %v, sort says %v", trial, errB, errS)
		}
		if errB != nil {
			bad++
		}
	}
	if bad < 500 || bad > 1500 {
		t.Fatalf("%d of 2000 trials were broken batches; the test is not exercising both verdicts", bad)
	}
}

// TestMarshalEventMatchesEncodingJSON: the chain hashes and signs the
// bytes appendEvent makes, so they must be json.Marshal's to the byte,
// also when strings hold the text it searches for.
func TestMarshalEventMatchesEncodingJSON(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	for trial := range 200 {
		events := batchEvents("events", trial%4, 0, int64(10+rng.IntN(5000)))
		if trial%3 == 0 {
			// Strings that look like the splice points.
			events[0].Producer = `"sluice_kafkaOffsets":{"ranges":null}`
			events[0].Run.Facets.Outcome.Reasons = map[string]int64{`"ranges":null`: 1}
		}
		for _, ev := range events {
			var offs []int64
			for o := ev.Run.Facets.KafkaOffsets.First; o <= ev.Run.Facets.KafkaOffsets.Last; o++ {
				if rng.IntN(3) == 0 {
					offs = append(offs, o)
				}
			}
			k := ev.Run.Facets.KafkaOffsets
			ev.SetKafkaOffsets(k.Topic, k.Partition, k.First, k.Last, offs)
			want, err := json.Marshal(ev)
			if err != nil {
				t.Fatal(err)
			}
			got, err := appendEvent([]byte("prefix"), ev)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, append([]byte("prefix"), want...)) {
				t.Fatalf("trial %d: appendEvent differs from json.Marshal:\n got %.300s\nwant %.300s", trial, got, want)
			}
		}
	}
}
