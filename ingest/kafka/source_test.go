package kafka

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/segmentio/kafka-go"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluice-dev/sluice/ingest"
)

const testTopic = "events"

var testFields = []ingest.Field{
	{Name: "p", Type: arrow.PrimitiveTypes.Int32},
	{Name: "seq", Type: arrow.PrimitiveTypes.Int64},
	{Name: "country", Type: arrow.BinaryTypes.String, Nullable: true},
}

// cluster starts a one-broker kfake with testTopic of n partitions.
func cluster(t testing.TB, partitions int32) []string {
	t.Helper()
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(partitions, testTopic))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c.ListenAddrs()
}

// record is the JSON test record for offset seq of partition p.
func record(p, seq int) []byte {
	return fmt.Appendf(nil, `{"p":%d,"seq":%d,"country":"DE"}`, p, seq)
}

// produce writes values to partition p and returns the time stamped on
// them.
func produce(t testing.TB, brokers []string, p int32, values ...[]byte) time.Time {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ts := time.Now().Truncate(time.Millisecond)
	recs := make([]*kgo.Record, len(values))
	for i, v := range values {
		recs[i] = &kgo.Record{Topic: testTopic, Partition: p, Key: fmt.Appendf(nil, "k%d", i), Value: v, Timestamp: ts}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	return ts
}

func produceN(t testing.TB, brokers []string, p int32, from, to int) {
	t.Helper()
	var vals [][]byte
	for i := from; i < to; i++ {
		vals = append(vals, record(int(p), i))
	}
	produce(t, brokers, p, vals...)
}

// testConfig is tuned for fast group joins and small batches.
func testConfig(t testing.TB, brokers []string, group string, mem memory.Allocator) Config {
	return Config{
		Brokers:           brokers,
		Topic:             testTopic,
		Group:             group,
		MaxRecords:        100,
		Linger:            50 * time.Millisecond,
		SessionTimeout:    6 * time.Second,
		HeartbeatInterval: 200 * time.Millisecond,
		RebalanceTimeout:  3 * time.Second,
		JoinGroupBackoff:  200 * time.Millisecond,
		Fields:            testFields,
		Allocator:         mem,
		Logger:            slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn})),
	}
}

func newSource(t testing.TB, cfg Config) *Source {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := NewSource(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// next returns the next batch or fails the test after d.
func next(t testing.TB, s *Source, d time.Duration) *ingest.Batch {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	b, err := s.Next(ctx)
	if err != nil {
		t.Fatalf("Next: %v", err)
	}
	return b
}

func ack(t testing.TB, b *ingest.Batch, err error) {
	t.Helper()
	if aerr := b.Ack(context.Background(), err); aerr != nil {
		t.Fatalf("Ack: %v", aerr)
	}
}

// committed reads the group's committed offsets with a separate client;
// -1 means none.
func committed(t testing.TB, brokers []string, group string, partitions ...int) map[int]int64 {
	t.Helper()
	cl := &kafka.Client{Addr: kafka.TCP(brokers...), Timeout: 5 * time.Second}
	res, err := cl.OffsetFetch(context.Background(), &kafka.OffsetFetchRequest{
		GroupID: group, Topics: map[string][]int{testTopic: partitions},
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.Error != nil {
		t.Fatal(res.Error)
	}
	out := map[int]int64{}
	for _, p := range res.Topics[testTopic] {
		if p.Error != nil {
			t.Fatal(p.Error)
		}
		out[p.Partition] = p.CommittedOffset
	}
	return out
}

// waitCommitted polls until partition p's committed offset is want.
func waitCommitted(t testing.TB, brokers []string, group string, p int, want int64) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		got := committed(t, brokers, group, p)[p]
		if got == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("partition %d committed offset = %d, want %d", p, got, want)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// stayCommitted checks that partition p's committed offset stays want for
// longer than the source's commit retry period.
func stayCommitted(t testing.TB, brokers []string, group string, p int, want int64) {
	t.Helper()
	end := time.Now().Add(commitRetry + 300*time.Millisecond)
	for time.Now().Before(end) {
		if got := committed(t, brokers, group, p)[p]; got != want {
			t.Fatalf("partition %d committed offset = %d, want it to stay %d", p, got, want)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// checkBatch checks the batch invariants every consumer relies on and
// returns the rows' (p, seq) values.
// checkRowSeqs checks b (checkBatch) and that each row's seq field is its
// offset, as the tests' producers write them; it returns the rows' offsets.
func checkRowSeqs(t testing.TB, b *ingest.Batch) []int64 {
	t.Helper()
	_, seqs := checkBatch(t, b)
	for i, o := range b.Offsets {
		if seqs[i] != o {
			t.Errorf("row at offset %d has seq %d", o, seqs[i])
		}
	}
	return b.Offsets
}

func checkBatch(t testing.TB, b *ingest.Batch) (ps []int32, seqs []int64) {
	t.Helper()
	if b.Topic != testTopic || b.First > b.Last {
		t.Fatalf("batch %s/%d %d..%d", b.Topic, b.Partition, b.First, b.Last)
	}
	if int(b.Record.NumRows()) != len(b.Offsets) {
		t.Fatalf("batch has %d rows and %d offsets", b.Record.NumRows(), len(b.Offsets))
	}
	// Every offset of First..Last is exactly one row or dead letter.
	covered := map[int64]int{}
	for _, o := range b.Offsets {
		covered[o]++
	}
	for _, d := range b.DeadLetters {
		covered[d.Offset]++
		if d.Partition != b.Partition || d.Topic != b.Topic {
			t.Errorf("dead letter %s/%d in batch %s/%d", d.Topic, d.Partition, b.Topic, b.Partition)
		}
	}
	for o := b.First; o <= b.Last; o++ {
		if covered[o] != 1 {
			t.Fatalf("offset %d of batch %d..%d covered %d times", o, b.First, b.Last, covered[o])
		}
	}
	if len(covered) != int(b.Last-b.First+1) {
		t.Fatalf("batch %d..%d covers %d offsets", b.First, b.Last, len(covered))
	}
	if !slices.IsSorted(b.Offsets) {
		t.Fatalf("offsets not in order: %v", b.Offsets)
	}
	pc := b.Record.Column(0).(*array.Int32)
	sc := b.Record.Column(1).(*array.Int64)
	for i := 0; i < int(b.Record.NumRows()); i++ {
		ps = append(ps, pc.Value(i))
		seqs = append(seqs, sc.Value(i))
	}
	return ps, seqs
}

func TestSourceDeliversEveryRecordInOrder(t *testing.T) {
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer mem.AssertSize(t, 0)
	brokers := cluster(t, 4)
	const per = 250
	var times [4]time.Time
	for p := range int32(4) {
		var vals [][]byte
		for i := 0; i < per; i++ {
			vals = append(vals, record(int(p), i))
		}
		times[p] = produce(t, brokers, p, vals...)
	}
	s := newSource(t, testConfig(t, brokers, "g-order", mem))
	defer s.Close()

	nextOffset := map[int]int64{}
	for total := 0; total < 4*per; {
		b := next(t, s, 10*time.Second)
		ps, seqs := checkBatch(t, b)
		if b.First != nextOffset[b.Partition] {
			t.Fatalf("partition %d batch starts at %d, want %d", b.Partition, b.First, nextOffset[b.Partition])
		}
		nextOffset[b.Partition] = b.Last + 1
		if len(b.DeadLetters) != 0 {
			t.Fatalf("unexpected dead letters: %+v", b.DeadLetters)
		}
		if b.Last-b.First+1 > 100 {
			t.Errorf("batch of %d records exceeds MaxRecords 100", b.Last-b.First+1)
		}
		if !b.Time.Equal(times[b.Partition]) {
			t.Errorf("batch time %v, want %v", b.Time, times[b.Partition])
		}
		for i := range seqs {
			// The producer wrote seq i at offset i of partition p.
			if int(ps[i]) != b.Partition || seqs[i] != b.Offsets[i] {
				t.Fatalf("row (p=%d, seq=%d) at partition %d offset %d", ps[i], seqs[i], b.Partition, b.Offsets[i])
			}
		}
		total += len(seqs)
		b.Record.Release()
		ack(t, b, nil)
	}
	for p := 0; p < 4; p++ {
		waitCommitted(t, brokers, "g-order", p, per)
	}
	st := s.Stats()
	if st.Records != 4*per || st.DeadLetters != 0 {
		t.Errorf("stats records %d dead %d, want %d and 0", st.Records, st.DeadLetters, 4*per)
	}
	if len(st.Committed) != 4 || st.Committed[3] != per || st.Lag() != 0 {
		t.Errorf("stats committed %v lag %d", st.Committed, st.Lag())
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Next(context.Background()); !errors.Is(err, ingest.ErrClosed) {
		t.Errorf("Next after Close = %v, want ErrClosed", err)
	}
}

func TestSourceDeadLetters(t *testing.T) {
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer mem.AssertSize(t, 0)
	brokers := cluster(t, 1)
	vals := [][]byte{
		record(0, 0),
		[]byte(`{"p":0,"seq":"one"}`),
		[]byte(`not json`),
		record(0, 3),
		[]byte(`{"p":0}`),
		[]byte(`{"p":3000000000,"seq":5}`),
		record(0, 6),
	}
	produce(t, brokers, 0, vals...)
	s := newSource(t, testConfig(t, brokers, "g-dead", mem))
	defer s.Close()

	wantDead := map[int64]string{
		1: `field "seq": want int64, got string "one"`,
		2: `malformed JSON at byte 0: record is not a JSON object`,
		4: `missing required field "seq"`,
		5: `field "p": 3000000000 overflows int32`,
	}
	seen := map[int64]bool{}
	for len(seen) < len(vals) {
		b := next(t, s, 10*time.Second)
		for _, o := range checkRowSeqs(t, b) {
			seen[o] = true
		}
		for _, d := range b.DeadLetters {
			if d.Reason != wantDead[d.Offset] {
				t.Errorf("dead letter at %d: reason %q, want %q", d.Offset, d.Reason, wantDead[d.Offset])
			}
			if string(d.Value) != string(vals[d.Offset]) || string(d.Key) != fmt.Sprintf("k%d", d.Offset) {
				t.Errorf("dead letter at %d keeps key %q value %q", d.Offset, d.Key, d.Value)
			}
			if d.Time.IsZero() {
				t.Errorf("dead letter at %d has no time", d.Offset)
			}
			seen[d.Offset] = true
		}
		b.Record.Release()
		ack(t, b, nil)
	}
	if st := s.Stats(); st.DeadLetters != 4 || st.Records != 7 {
		t.Errorf("stats: %d records, %d dead letters; want 7 and 4", st.Records, st.DeadLetters)
	}
	waitCommitted(t, brokers, "g-dead", 0, 7)
}

func TestSourceCommitsContiguousAckedPrefix(t *testing.T) {
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer mem.AssertSize(t, 0)
	brokers := cluster(t, 1)
	produceN(t, brokers, 0, 0, 15)
	cfg := testConfig(t, brokers, "g-commit", mem)
	cfg.MaxRecords = 5
	s := newSource(t, cfg)
	defer s.Close()

	var bs []*ingest.Batch
	for len(bs) < 3 {
		b := next(t, s, 10*time.Second)
		checkBatch(t, b)
		b.Record.Release()
		bs = append(bs, b)
	}
	for i, b := range bs {
		if b.First != int64(5*i) || b.Last != int64(5*i+4) {
			t.Fatalf("batch %d covers %d..%d", i, b.First, b.Last)
		}
	}
	// Nothing is committed before an ack.
	stayCommitted(t, brokers, "g-commit", 0, -1)
	// An ack past a gap of un-acked batches commits nothing.
	ack(t, bs[2], nil)
	stayCommitted(t, brokers, "g-commit", 0, -1)
	// Acking the first batch commits it alone: the second is still out.
	ack(t, bs[0], nil)
	waitCommitted(t, brokers, "g-commit", 0, 5)
	stayCommitted(t, brokers, "g-commit", 0, 5)
	// Closing the gap commits through the third.
	ack(t, bs[1], nil)
	waitCommitted(t, brokers, "g-commit", 0, 15)
	if err := bs[1].Ack(context.Background(), nil); !errors.Is(err, ErrAcked) {
		t.Errorf("second ack = %v, want ErrAcked", err)
	}
}

func TestSourceNackedBatchIsReadAgain(t *testing.T) {
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer mem.AssertSize(t, 0)
	brokers := cluster(t, 1)
	produceN(t, brokers, 0, 0, 15)
	cfg := testConfig(t, brokers, "g-nack", mem)
	cfg.MaxRecords = 5
	s := newSource(t, cfg)
	var bs []*ingest.Batch
	for len(bs) < 3 {
		b := next(t, s, 10*time.Second)
		b.Record.Release()
		bs = append(bs, b)
	}
	ack(t, bs[0], nil)
	ack(t, bs[1], errors.New("sink down"))
	ack(t, bs[2], nil) // after a nack, later batches of the partition do not commit
	waitCommitted(t, brokers, "g-nack", 0, 5)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	stayCommitted(t, brokers, "g-nack", 0, 5)

	s2 := newSource(t, cfg)
	defer s2.Close()
	b := next(t, s2, 10*time.Second)
	defer b.Record.Release()
	_, seqs := checkBatch(t, b)
	if b.First != 5 || seqs[0] != 5 {
		t.Fatalf("restarted source starts at offset %d (seq %v), want 5", b.First, seqs)
	}
}

func TestSourceMaxInFlight(t *testing.T) {
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer mem.AssertSize(t, 0)
	brokers := cluster(t, 1)
	produceN(t, brokers, 0, 0, 10)
	cfg := testConfig(t, brokers, "g-inflight", mem)
	cfg.MaxRecords = 1
	cfg.MaxInFlight = 2
	s := newSource(t, cfg)
	defer s.Close()
	b1 := next(t, s, 10*time.Second)
	b2 := next(t, s, 10*time.Second)
	b1.Record.Release()
	b2.Record.Release()

	ctx, cancel := context.WithTimeout(context.Background(), 700*time.Millisecond)
	defer cancel()
	if b, err := s.Next(ctx); !errors.Is(err, context.DeadlineExceeded) {
		if b != nil {
			b.Record.Release()
		}
		t.Fatalf("third Next with 2 batches un-acked = %v, want to block", err)
	}
	ack(t, b2, nil)
	b3 := next(t, s, 5*time.Second)
	b3.Record.Release()
	if b3.First != 2 {
		t.Errorf("third batch starts at %d, want 2", b3.First)
	}
	ack(t, b1, nil)
	ack(t, b3, nil)
	waitCommitted(t, brokers, "g-inflight", 0, 3)
}

// consumer runs Next/ack in a goroutine and records which offsets it saw.
type consumer struct {
	s    *Source
	mu   sync.Mutex
	seen map[[2]int64]int // (partition, offset) -> times
	stop context.CancelFunc
	done chan struct{}
}

func consume(t testing.TB, s *Source) *consumer {
	ctx, cancel := context.WithCancel(context.Background())
	c := &consumer{s: s, seen: map[[2]int64]int{}, stop: cancel, done: make(chan struct{})}
	go func() {
		defer close(c.done)
		for {
			b, err := s.Next(ctx)
			if err != nil {
				return
			}
			c.mu.Lock()
			for _, o := range b.Offsets {
				c.seen[[2]int64{int64(b.Partition), o}]++
			}
			c.mu.Unlock()
			b.Record.Release()
			_ = b.Ack(ctx, nil)
		}
	}()
	return c
}

func (c *consumer) has(p int, o int64) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.seen[[2]int64{int64(p), o}] > 0
}

func (c *consumer) close() {
	c.stop()
	<-c.done
	c.s.Close()
}

// waitAssigned waits until the sources' assignments are disjoint and cover
// all partitions, and returns them.
func waitAssigned(t testing.TB, n int, srcs ...*Source) [][]int {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		var all []int
		var got [][]int
		for _, s := range srcs {
			a := s.Stats().Assigned
			slices.Sort(a)
			got = append(got, a)
			all = append(all, a...)
		}
		slices.Sort(all)
		ok := len(all) == n && len(slices.Compact(all)) == n
		for _, a := range got {
			ok = ok && len(a) > 0
		}
		if ok {
			return got
		}
		if time.Now().After(deadline) {
			t.Fatalf("assignments %v never split %d partitions", got, n)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestSourceGroupRebalance(t *testing.T) {
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer mem.AssertSize(t, 0)
	brokers := cluster(t, 4)
	cfg := testConfig(t, brokers, "g-rebalance", mem)
	a := consume(t, newSource(t, cfg))
	defer a.close()
	b := consume(t, newSource(t, cfg))
	bClosed := false
	defer func() {
		if !bClosed {
			b.close()
		}
	}()
	split := waitAssigned(t, 4, a.s, b.s)

	for p := range int32(4) {
		produceN(t, brokers, p, 0, 50)
	}
	owner := map[int]*consumer{}
	for _, p := range split[0] {
		owner[p] = a
	}
	for _, p := range split[1] {
		owner[p] = b
	}
	waitAll := func(from, to int64, who func(p int) *consumer) {
		t.Helper()
		deadline := time.Now().Add(15 * time.Second)
		for p := 0; p < 4; p++ {
			for o := from; o < to; o++ {
				for !who(p).has(p, o) {
					if time.Now().After(deadline) {
						t.Fatalf("record %d/%d never arrived", p, o)
					}
					time.Sleep(20 * time.Millisecond)
				}
			}
		}
	}
	// Each partition's records go to the member that owns it.
	waitAll(0, 50, func(p int) *consumer { return owner[p] })

	// When b leaves, a takes over its partitions from the committed offsets.
	b.close()
	bClosed = true
	waitAssigned(t, 4, a.s)
	for p := range int32(4) {
		produceN(t, brokers, p, 50, 80)
	}
	waitAll(50, 80, func(int) *consumer { return a })
}

func TestNewSourceRejects(t *testing.T) {
	brokers := cluster(t, 1)
	ctx := context.Background()
	if _, err := NewSource(ctx, Config{Brokers: brokers, Topic: "missing", Group: "g", Fields: testFields}); !errors.Is(err, kafka.UnknownTopicOrPartition) {
		t.Errorf("unknown topic: err = %v", err)
	}
	if _, err := NewSource(ctx, Config{Brokers: brokers, Topic: testTopic, Group: "g"}); !errors.Is(err, ErrConfig) {
		t.Errorf("no fields: err = %v", err)
	}
}

func TestConfigValidate(t *testing.T) {
	base := Config{Brokers: []string{"localhost:9092"}, Topic: "t", Group: "g", Fields: testFields}
	tests := []struct {
		name   string
		modify func(*Config)
		ok     bool
	}{
		{"defaults", func(*Config) {}, true},
		{"latest", func(c *Config) { c.StartOffset = StartLatest }, true},
		{"no brokers", func(c *Config) { c.Brokers = nil }, false},
		{"no topic", func(c *Config) { c.Topic = "" }, false},
		{"no group", func(c *Config) { c.Group = "" }, false},
		{"bad start", func(c *Config) { c.StartOffset = "middle" }, false},
		{"negative records", func(c *Config) { c.MaxRecords = -1 }, false},
		{"negative bytes", func(c *Config) { c.MaxBytes = -1 }, false},
		{"negative record bytes", func(c *Config) { c.MaxRecordBytes = -1 }, false},
		{"negative linger", func(c *Config) { c.Linger = -time.Second }, false},
		{"negative in flight", func(c *Config) { c.MaxInFlight = -1 }, false},
		{"short session", func(c *Config) { c.SessionTimeout = 5 * time.Second }, false},
		{"heartbeat above session", func(c *Config) { c.HeartbeatInterval = 20 * time.Second }, false},
		{"no fields", func(c *Config) { c.Fields = nil }, false},
		{"bad field", func(c *Config) { c.Fields = []ingest.Field{{Name: "x", Type: arrow.PrimitiveTypes.Uint16}} }, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := base
			tt.modify(&c)
			err := c.Validate()
			if tt.ok && err != nil {
				t.Fatalf("Validate = %v", err)
			}
			if !tt.ok && !errors.Is(err, ErrConfig) {
				t.Fatalf("Validate = %v, want ErrConfig", err)
			}
		})
	}
}
