package kafka

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluice-dev/sluice/ingest"
)

// ledger is what a group of consumers did: which offsets each processed
// and which were acked, recorded before the ack is sent.
type ledger struct {
	mu        sync.Mutex
	processed map[[2]int64]int // (partition, offset) -> times, all members
	acked     map[[2]int64]bool
	assigned  int // batches marked Assigned, all members
	batches   int
}

func newLedger() *ledger {
	return &ledger{processed: map[[2]int64]int{}, acked: map[[2]int64]bool{}}
}

// member consumes s until stop, processing each batch slowly enough that
// a rebalance lands mid-stream, and acks batches in pairs, the second
// before the first, so acks also arrive out of order.
func (l *ledger) member(t *testing.T, s *Source, perBatch time.Duration) (stop func() int) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int)
	go func() {
		n := 0
		var held *ingest.Batch
		seen := map[int]bool{} // partitions this member has had a batch of
		defer func() { done <- n }()
		ackOne := func(b *ingest.Batch) {
			l.mu.Lock()
			for o := b.First; o <= b.Last; o++ {
				l.acked[[2]int64{int64(b.Partition), o}] = true
			}
			l.mu.Unlock()
			_ = b.Ack(ctx, nil)
		}
		for {
			nctx, ncancel := context.WithTimeout(ctx, 100*time.Millisecond)
			b, err := s.Next(nctx)
			ncancel()
			if errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil {
				if held != nil { // nothing to pair it with
					ackOne(held)
					held = nil
				}
				continue
			}
			if err != nil {
				return
			}
			checkBatch(t, b)
			if !seen[b.Partition] && !b.Assigned {
				t.Errorf("the member's first batch of partition %d is not marked Assigned", b.Partition)
			}
			seen[b.Partition] = true
			l.mu.Lock()
			for _, o := range b.Offsets {
				l.processed[[2]int64{int64(b.Partition), o}]++
			}
			l.batches++
			if b.Assigned {
				l.assigned++
			}
			l.mu.Unlock()
			n += len(b.Offsets)
			b.Record.Release()
			time.Sleep(perBatch)
			if held == nil {
				held = b
				continue
			}
			ackOne(b)
			ackOne(held)
			held = nil
		}
	}()
	return func() int {
		cancel()
		return <-done
	}
}

func (l *ledger) count() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.processed)
}

// checkCommits fails if a committed offset passes an offset not yet acked.
// The committed offsets are read first: anything they cover must already
// be in the ledger, since members record acks before sending them.
func (l *ledger) checkCommits(t *testing.T, brokers []string, group string, partitions ...int) map[int]int64 {
	t.Helper()
	c := committed(t, brokers, group, partitions...)
	l.mu.Lock()
	defer l.mu.Unlock()
	for p, next := range c {
		for o := int64(0); o < next; o++ {
			if !l.acked[[2]int64{int64(p), o}] {
				t.Fatalf("partition %d committed through %d, but offset %d was never acked", p, next, o)
			}
		}
	}
	return c
}

func TestSourceRebalanceMidStream(t *testing.T) {
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer mem.AssertSize(t, 0)
	const parts, per = 4, 1500
	brokers := cluster(t, parts)
	for p := range int32(parts) {
		produceN(t, brokers, p, 0, per)
	}
	const group = "g-midstream"
	cfg := testConfig(t, brokers, group, mem)
	cfg.MaxRecords = 50
	l := newLedger()

	// Member a consumes alone for a while; then b joins while a is busy.
	a := newSource(t, cfg)
	defer a.Close()
	stopA := l.member(t, a, 3*time.Millisecond)
	waitAssigned(t, parts, a) // the group exists: its commits can be read
	deadline := time.Now().Add(10 * time.Second)
	for l.count() < parts*per/5 {
		if time.Now().After(deadline) {
			t.Fatalf("a processed only %d records", l.count())
		}
		l.checkCommits(t, brokers, group, 0, 1, 2, 3)
		time.Sleep(20 * time.Millisecond)
	}
	if l.count() == parts*per {
		t.Fatal("a finished before b joined; the rebalance is not mid-stream")
	}
	b := newSource(t, cfg)
	defer b.Close()
	stopB := l.member(t, b, 3*time.Millisecond)

	deadline = time.Now().Add(12 * time.Second)
	for {
		c := l.checkCommits(t, brokers, group, 0, 1, 2, 3)
		if l.count() == parts*per && c[0] == per && c[1] == per && c[2] == per && c[3] == per {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("processed %d of %d records; committed %v", l.count(), parts*per, c)
		}
		time.Sleep(20 * time.Millisecond)
	}
	nb := stopB()
	na := stopA()
	if nb == 0 {
		t.Errorf("b processed nothing after joining (a processed %d)", na)
	}
	st := b.Stats()
	if len(st.Assigned) == 0 || len(st.Assigned) == parts {
		t.Errorf("b holds partitions %v after the rebalance, want a share", st.Assigned)
	}
	// a's first assignment marks one batch per partition; the rebalance
	// assigns partitions again, to a and to b, and marks their first
	// batches too. Batches within an assignment (about 30 a partition)
	// are not marked.
	if l.assigned <= parts || l.assigned > l.batches/4 {
		t.Errorf("%d of %d batches marked Assigned; want one per partition per assignment (more than %d, a few)", l.assigned, l.batches, parts)
	}
	t.Logf("a processed %d rows, b %d, for %d offsets; %d redelivered after the rebalance", na, nb, parts*per, na+nb-parts*per)
}

func TestSourceRestartResumesFromCommits(t *testing.T) {
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer mem.AssertSize(t, 0)
	const parts, per = 2, 400
	brokers := cluster(t, parts)
	for p := range int32(parts) {
		produceN(t, brokers, p, 0, per)
	}
	cfg := testConfig(t, brokers, "g-restart", mem)
	cfg.MaxRecords = 40
	done := map[[2]int64]bool{} // acked by the first run

	// The first run acks every other batch: the commit stops at the first
	// gap, and the batches it leaves out must be read again.
	s1 := newSource(t, cfg)
	for i := 0; i < 12; i++ {
		b := next(t, s1, 10*time.Second)
		checkBatch(t, b)
		b.Record.Release()
		if i%2 == 1 {
			continue
		}
		for o := b.First; o <= b.Last; o++ {
			done[[2]int64{int64(b.Partition), o}] = true
		}
		ack(t, b, nil)
	}
	if err := s1.Close(); err != nil {
		t.Fatal(err)
	}
	c := committed(t, brokers, "g-restart", 0, 1)
	for p, next := range c {
		for o := int64(0); o < next; o++ {
			if !done[[2]int64{int64(p), o}] {
				t.Fatalf("partition %d committed through %d but offset %d was not acked", p, next, o)
			}
		}
	}

	s2 := newSource(t, cfg)
	defer s2.Close()
	first := map[int]int64{}
	for seen := 0; seen < parts; {
		b := next(t, s2, 10*time.Second)
		_, seqs := checkBatch(t, b)
		if _, ok := first[b.Partition]; !ok {
			first[b.Partition] = b.First
		}
		for i, o := range b.Offsets {
			if seqs[i] != o {
				t.Fatalf("partition %d offset %d holds seq %d", b.Partition, o, seqs[i])
			}
			done[[2]int64{int64(b.Partition), o}] = true
		}
		b.Record.Release()
		ack(t, b, nil)
		if b.Last == per-1 {
			seen++
		}
	}
	for p := range parts {
		want := max(c[p], 0)
		if first[p] != want {
			t.Errorf("restart read partition %d from %d, want the committed %d", p, first[p], want)
		}
		for o := int64(0); o < per; o++ {
			if !done[[2]int64{int64(p), o}] {
				t.Fatalf("record %d/%d lost across the restart", p, o)
			}
		}
		waitCommitted(t, brokers, "g-restart", p, per)
	}
}

// TestDeadLettersReachTopic runs every kind of bad record through a Source
// and a DeadLetterWriter, as the pipeline does (write the dead letters,
// then ack), and reads the dead-letter topic back.
func TestDeadLettersReachTopic(t *testing.T) {
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer mem.AssertSize(t, 0)
	brokers := securedCluster(t)
	vals := [][]byte{
		record(0, 0),
		[]byte(`not json`),                                 // malformed
		[]byte(`{"p":0,"seq":2,"country":"DE"`),            // truncated
		[]byte(`{"p":0,"seq":"three"}`),                    // wrong type
		[]byte(`{"p":3000000000,"seq":4}`),                 // does not fit
		[]byte(`{"p":0,"seq":5.5}`),                        // not integral
		[]byte(`{"p":0,"country":"DE"}`),                   // missing required
		[]byte("{\"p\":0,\"seq\":7,\"country\":\"\xff\"}"), // invalid UTF-8
		record(0, 8),
	}
	wantReason := map[int64]string{
		1: "malformed JSON",
		2: "malformed JSON",
		3: `field "seq": want int64, got string "three"`,
		4: `field "p": 3000000000 overflows int32`,
		5: `field "seq"`,
		6: `missing required field "seq"`,
		7: `field "country"`,
	}
	produce(t, brokers, 0, vals...)
	const dlq = "dlq"
	w := NewDeadLetterWriter(brokers, dlq)
	defer w.Close()
	s := newSource(t, testConfig(t, brokers, "g-dlq", mem))
	defer s.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for n := 0; n < len(vals); {
		b := next(t, s, 10*time.Second)
		checkBatch(t, b)
		n += int(b.Last - b.First + 1)
		b.Record.Release()
		if err := w.Write(ctx, b.DeadLetters); err != nil {
			t.Fatal(err)
		}
		ack(t, b, nil)
	}
	if st := s.Stats(); st.DeadLetters != int64(len(wantReason)) {
		t.Errorf("Stats().DeadLetters = %d, want %d", st.DeadLetters, len(wantReason))
	}
	waitCommitted(t, brokers, "g-dlq", 0, int64(len(vals)))

	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumeTopics(dlq),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	got := map[int64]*kgo.Record{}
	for len(got) < len(wantReason) && ctx.Err() == nil {
		cl.PollFetches(ctx).EachRecord(func(r *kgo.Record) {
			for _, h := range r.Headers {
				if h.Key == HeaderSourceOffset {
					o, _ := strconv.ParseInt(string(h.Value), 10, 64)
					got[o] = r
				}
			}
		})
	}
	if len(got) != len(wantReason) {
		t.Fatalf("dead-letter topic holds offsets %v, want %d dead letters", keys(got), len(wantReason))
	}
	for o, reason := range wantReason {
		r := got[o]
		h := map[string]string{}
		for _, x := range r.Headers {
			h[x.Key] = string(x.Value)
		}
		if !strings.HasPrefix(h[HeaderReason], reason) {
			t.Errorf("offset %d: reason %q, want it to start with %q", o, h[HeaderReason], reason)
		}
		if h[HeaderSourceTopic] != testTopic || h[HeaderSourcePartition] != "0" || h[HeaderSourceOffset] != fmt.Sprint(o) {
			t.Errorf("offset %d: headers %v", o, h)
		}
		if string(r.Value) != string(vals[o]) || string(r.Key) != fmt.Sprintf("k%d", o) {
			t.Errorf("offset %d: dead letter holds key %q value %q, want the raw record", o, r.Key, r.Value)
		}
	}
}

// TestOversizedRecordIsDeadLetter sends a 2 MiB record, between normal
// ones and one of exactly the limit, through a Source with a 1 MiB
// MaxRecordBytes and a DeadLetterWriter: the big record is a dead letter
// with its size in the reason and its whole value on the dead-letter topic,
// and every other offset is a row.
func TestOversizedRecordIsDeadLetter(t *testing.T) {
	const limit = 1 << 20
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer mem.AssertSize(t, 0)
	// kfake, like Kafka, takes batches up to about 1 MiB by default; the
	// source and dead-letter topics must both take the big record.
	brokers := securedCluster(t, kfake.BrokerConfigs(map[string]string{"message.max.bytes": strconv.Itoa(8 << 20)}))
	// pad makes a valid record whose key ("kN") and value are n bytes
	// together, so only its size can make it a dead letter.
	pad := func(seq, n int) []byte {
		v := fmt.Appendf(nil, `{"p":0,"seq":%d,"country":""}`, seq)
		return slices.Insert(v, len(v)-2, bytes.Repeat([]byte("x"), n-len(v)-len(fmt.Sprintf("k%d", seq)))...)
	}
	vals := [][]byte{
		record(0, 0),
		record(0, 1),
		pad(2, 2<<20),
		record(0, 3),
		pad(4, limit),
		record(0, 5),
	}
	const big = 2
	const reason = "record is 2097152 bytes; the limit is 1048576 (batching.max_record_bytes)"

	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.RecordPartitioner(kgo.ManualPartitioner()),
		kgo.ProducerBatchMaxBytes(8<<20))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for i, v := range vals {
		r := &kgo.Record{Topic: testTopic, Key: fmt.Appendf(nil, "k%d", i), Value: v}
		if err := cl.ProduceSync(ctx, r).FirstErr(); err != nil {
			t.Fatalf("produce offset %d (%d bytes): %v", i, len(v), err)
		}
	}

	w := NewDeadLetterWriter(brokers, "dlq")
	defer w.Close()
	cfg := testConfig(t, brokers, "g-oversized", mem)
	cfg.MaxRecordBytes = limit
	s := newSource(t, cfg)
	defer s.Close()
	seen := map[int64]string{}
	for len(seen) < len(vals) {
		b := next(t, s, 10*time.Second)
		for _, o := range checkRowSeqs(t, b) {
			seen[o] = "row"
		}
		for _, d := range b.DeadLetters {
			if d.Reason != reason || !errors.Is(d.Err, ingest.ErrTooLarge) {
				t.Errorf("dead letter at %d: %q (%v), want %q", d.Offset, d.Reason, d.Err, reason)
			}
			if !bytes.Equal(d.Value, vals[d.Offset]) {
				t.Errorf("dead letter at %d keeps %d of %d value bytes", d.Offset, len(d.Value), len(vals[d.Offset]))
			}
			seen[d.Offset] = "dead letter"
		}
		b.Record.Release()
		if err := w.Write(ctx, b.DeadLetters); err != nil {
			t.Fatal(err)
		}
		ack(t, b, nil)
	}
	for o := range int64(len(vals)) {
		want := "row"
		if o == big {
			want = "dead letter"
		}
		if seen[o] != want {
			t.Errorf("offset %d: %q, want %q", o, seen[o], want)
		}
	}
	if st := s.Stats(); st.Records != int64(len(vals)) || st.DeadLetters != 1 {
		t.Errorf("stats: %d records, %d dead letters; want %d and 1", st.Records, st.DeadLetters, len(vals))
	}
	waitCommitted(t, brokers, "g-oversized", 0, int64(len(vals)))

	rd, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumeTopics("dlq"),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchMaxPartitionBytes(8<<20))
	if err != nil {
		t.Fatal(err)
	}
	defer rd.Close()
	var got []*kgo.Record
	for len(got) == 0 && ctx.Err() == nil {
		got = append(got, rd.PollFetches(ctx).Records()...)
	}
	if len(got) != 1 {
		t.Fatalf("dead-letter topic holds %d records, want 1", len(got))
	}
	h := map[string]string{}
	for _, x := range got[0].Headers {
		h[x.Key] = string(x.Value)
	}
	if h[HeaderReason] != reason || h[HeaderSourceOffset] != strconv.Itoa(big) {
		t.Errorf("dead-letter headers %v", h)
	}
	if !bytes.Equal(got[0].Value, vals[big]) || string(got[0].Key) != fmt.Sprintf("k%d", big) {
		t.Errorf("dead-letter topic holds key %q and %d value bytes, want the raw %d", got[0].Key, len(got[0].Value), len(vals[big]))
	}
}

func keys[V any](m map[int64]V) []int64 {
	var out []int64
	for k := range m {
		out = append(out, k)
	}
	return out
}

// produceAt writes values to partition 0 of testTopic with timestamp ts.
func produceAt(t *testing.T, brokers []string, ts time.Time, from, to int) {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	var recs []*kgo.Record
	for i := from; i < to; i++ {
		recs = append(recs, &kgo.Record{Topic: testTopic, Value: record(0, i), Timestamp: ts})
	}
	if err := cl.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
}

func TestSourceStartTime(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, testTopic))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	brokers := c.ListenAddrs()
	base := time.Date(2024, 3, 1, 12, 0, 0, 0, time.UTC)
	produceAt(t, brokers, base, 0, 10)                   // offsets 0..9
	produceAt(t, brokers, base.Add(time.Hour), 10, 20)   // offsets 10..19
	produceAt(t, brokers, base.Add(2*time.Hour), 20, 30) // offsets 20..29

	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer mem.AssertSize(t, 0)
	// firstOffset starts a source and returns the first offset it reads,
	// acking (and so committing) through commitTo when commitTo > first.
	firstOffset := func(t *testing.T, cfg Config, commitTo int64) int64 {
		t.Helper()
		s := newSource(t, cfg)
		defer s.Close()
		b := next(t, s, 10*time.Second)
		_, seqs := checkBatch(t, b)
		b.Record.Release()
		if len(seqs) == 0 || seqs[0] != b.First {
			t.Fatalf("batch %d..%d holds seqs %v", b.First, b.Last, seqs)
		}
		for b.Last+1 < commitTo {
			ack(t, b, nil)
			b = next(t, s, 10*time.Second)
			b.Record.Release()
		}
		ack(t, b, nil)
		if commitTo > 0 {
			waitCommitted(t, brokers, cfg.Group, 0, commitTo)
		}
		return seqs[0]
	}
	cfgFor := func(group string, start time.Time, reset bool) Config {
		cfg := testConfig(t, brokers, group, mem)
		cfg.MaxRecords = 5
		cfg.StartTime, cfg.ResetToTime = start, reset
		return cfg
	}

	t.Run("new group starts at the time", func(t *testing.T) {
		if got := firstOffset(t, cfgFor("g-time-new", base.Add(30*time.Minute), false), 0); got != 10 {
			t.Errorf("first offset %d, want 10 (first record at or after the start time)", got)
		}
		if got := firstOffset(t, cfgFor("g-time-exact", base.Add(2*time.Hour), false), 0); got != 20 {
			t.Errorf("first offset %d, want 20 (a record exactly at the start time)", got)
		}
	})
	t.Run("committed offsets win without reset", func(t *testing.T) {
		firstOffset(t, cfgFor("g-time-keep", time.Time{}, false), 15)
		if got := firstOffset(t, cfgFor("g-time-keep", base, false), 0); got != 15 {
			t.Errorf("first offset %d, want the committed 15", got)
		}
	})
	t.Run("reset replays from the time", func(t *testing.T) {
		firstOffset(t, cfgFor("g-time-reset", time.Time{}, false), 25)
		if got := firstOffset(t, cfgFor("g-time-reset", base.Add(time.Minute), true), 0); got != 10 {
			t.Errorf("first offset %d, want 10 after a reset to the time", got)
		}
		// The reset is committed to the group: a plain restart resumes
		// from it, not from the 25 committed before.
		if c := committed(t, brokers, "g-time-reset", 0)[0]; c < 10 || c >= 25 {
			t.Errorf("committed offset %d after the replay started, want between 10 and 25", c)
		}
	})
	t.Run("a time after the log starts at its end", func(t *testing.T) {
		cfg := cfgFor("g-time-future", base.Add(24*time.Hour), false)
		s := newSource(t, cfg)
		defer s.Close()
		deadline := time.Now().Add(10 * time.Second)
		for len(s.Stats().Assigned) == 0 {
			if time.Now().After(deadline) {
				t.Fatal("never assigned")
			}
			time.Sleep(20 * time.Millisecond)
		}
		time.Sleep(300 * time.Millisecond) // let the reader resolve its start
		produceAt(t, brokers, base.Add(25*time.Hour), 30, 31)
		b := next(t, s, 10*time.Second)
		b.Record.Release()
		ack(t, b, nil)
		if b.First != 30 {
			t.Errorf("first batch starts at %d, want 30 (only records produced later)", b.First)
		}
	})
	t.Run("reset refuses a group with active members", func(t *testing.T) {
		cfg := cfgFor("g-time-busy", time.Time{}, false)
		s := newSource(t, cfg)
		defer s.Close()
		b := next(t, s, 10*time.Second) // a is a member now
		b.Record.Release()
		ack(t, b, nil)
		cfg.StartTime, cfg.ResetToTime = base, true
		_, err := NewSource(context.Background(), cfg)
		if err == nil || !strings.Contains(err.Error(), "active members") {
			t.Errorf("NewSource with a reset of a busy group = %v, want an error about active members", err)
		}
	})
	t.Run("reset needs a time", func(t *testing.T) {
		cfg := cfgFor("g-time-none", time.Time{}, true)
		if _, err := NewSource(context.Background(), cfg); !errors.Is(err, ErrConfig) {
			t.Errorf("NewSource = %v, want ErrConfig", err)
		}
	})
}
