package transform_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/apache/arrow-go/v18/parquet/compress"
	"github.com/apache/arrow-go/v18/parquet/file"

	"github.com/sluice-dev/sluice/gpuexec"
	"github.com/sluice-dev/sluice/ingest"
	"github.com/sluice-dev/sluice/lineage"
	"github.com/sluice-dev/sluice/policy"
	"github.com/sluice-dev/sluice/storage"
	"github.com/sluice-dev/sluice/transform"
)

const runnerSpec = `
name: t
purpose: analytics
source: {brokers: ["127.0.0.1:9092"], topic: in}
schema:
  - {name: id, type: string}
  - {name: country, type: string}
  - {name: user_id, type: string, nullable: true, classes: [pii]}
  - {name: amount, type: float64, nullable: true}
entity: [id, user_id]
residency: {jurisdiction: country}
features:
  - {name: amount_log, input: amount, ops: [{op: fill_missing, value: 0}, log1p]}
executors:
  - {id: onprem, location: {name: fra, kind: onprem, jurisdiction: DE}, sink: fra}
  - {id: cloud, location: {name: use1, kind: cloud, provider: aws, region: us-east-1, jurisdiction: US}, sink: us}
sinks:
  - {name: fra, url: "file:///unused/fra"}
  - {name: us, url: "file:///unused/us"}
quarantine: {sink: fra}
lineage: {url: "file:///unused/lineage"}
`

// fakeDecider: EU data only on-prem; US data anywhere, with user_id hashed
// on the cloud; IN nowhere; "XX" makes the policy fail.
type fakeDecider struct{}

func (fakeDecider) Revision() string { return "sha256:test" }
func (fakeDecider) Decide(_ context.Context, in policy.Input) (policy.Decision, error) {
	d := policy.Decision{DecisionID: "d-" + in.Data.Jurisdiction + "-" + in.Executor.ID, Revision: "sha256:test"}
	switch j := in.Data.Jurisdiction; {
	case j == "XX":
		return d, errors.New("boom")
	case j == "IN":
		d.Reasons = []string{"IN data must stay in IN"}
		d.Rules = []string{"DPDP"}
	case policy.Region(j) == policy.RegionEU && in.Executor.Kind != "onprem":
		d.Reasons = []string{"EU data must stay in the EU"}
		d.Rules = []string{"GDPR Art. 44"}
	default:
		d.Allow = true
		if in.Executor.Kind == "cloud" {
			d.Obligations.Hash = []string{"user_id"}
		}
	}
	return d, nil
}

// memStore is an ObjectStore in memory whose Puts fail while failing > 0.
type memStore struct {
	mu      sync.Mutex
	objs    map[string][]byte
	failing atomic.Int64
	puts    atomic.Int64
	delay   time.Duration // each Put takes this long
	started chan struct{} // if set, gets a value as each Put starts
	failKey string        // Puts of keys containing it always fail
	holdKey string        // Puts of keys containing it wait for hold to close
	hold    chan struct{}
}

func newMemStore() *memStore { return &memStore{objs: map[string][]byte{}} }

func (m *memStore) Put(ctx context.Context, key string, r io.Reader, size int64) error {
	return m.put(ctx, key, r, false)
}

func (m *memStore) Create(ctx context.Context, key string, r io.Reader, size int64) error {
	return m.put(ctx, key, r, true)
}

func (m *memStore) put(ctx context.Context, key string, r io.Reader, exclusive bool) error {
	if m.failing.Load() > 0 {
		m.failing.Add(-1)
		return errors.New("store down")
	}
	if m.failKey != "" && strings.Contains(key, m.failKey) {
		return errors.New("this key cannot be written")
	}
	if m.holdKey != "" && strings.Contains(key, m.holdKey) {
		select {
		case <-m.hold:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if m.started != nil {
		select {
		case m.started <- struct{}{}:
		default:
		}
	}
	if m.delay > 0 {
		select {
		case <-time.After(m.delay):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	m.mu.Lock()
	if _, ok := m.objs[key]; ok && exclusive {
		m.mu.Unlock()
		return fmt.Errorf("%s: %w", key, storage.ErrExists)
	}
	m.objs[key] = b
	m.mu.Unlock()
	m.puts.Add(1)
	return nil
}

func (m *memStore) Get(ctx context.Context, key string) (io.ReadCloser, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	b, ok := m.objs[key]
	if !ok {
		return nil, fmt.Errorf("%s: %w", key, storage.ErrNotExist)
	}
	return io.NopCloser(bytes.NewReader(b)), nil
}

func (m *memStore) Stat(ctx context.Context, key string) (storage.Attrs, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	b, ok := m.objs[key]
	if !ok {
		return storage.Attrs{}, fmt.Errorf("%s: %w", key, storage.ErrNotExist)
	}
	return storage.Attrs{Size: int64(len(b))}, nil
}

func (m *memStore) Iter(ctx context.Context, prefix string, fn func(string) error) error {
	m.mu.Lock()
	var keys []string
	for k := range m.objs {
		if strings.HasPrefix(k, prefix) {
			keys = append(keys, k)
		}
	}
	m.mu.Unlock()
	slices.Sort(keys)
	for _, k := range keys {
		if err := fn(k); err != nil {
			return err
		}
	}
	return nil
}

func (m *memStore) Delete(ctx context.Context, key string) error {
	m.mu.Lock()
	delete(m.objs, key)
	m.mu.Unlock()
	return nil
}

func (m *memStore) keys(prefix string) []string {
	var ks []string
	_ = m.Iter(context.Background(), prefix, func(k string) error { ks = append(ks, k); return nil })
	return ks
}

// sliceSource hands out prepared batches, then blocks until ctx ends.
type sliceSource struct {
	batches []*ingest.Batch
	next    int
	acks    chan ack
	gates   map[int]chan struct{} // batch i is handed out once gates[i] closes
}

type ack struct {
	first int64
	err   error
	// durable is what the stores held when the ack came.
	features, lineage int
}

func (s *sliceSource) Next(ctx context.Context) (*ingest.Batch, error) {
	if s.next < len(s.batches) {
		if g := s.gates[s.next]; g != nil {
			select {
			case <-g:
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
		b := s.batches[s.next]
		s.next++
		return b, nil
	}
	<-ctx.Done()
	return nil, ctx.Err()
}

func (s *sliceSource) Close() error { return nil }

// flaky is an executor that is unavailable while down is set.
type flaky struct {
	gpuexec.Executor
	down atomic.Bool
	runs atomic.Int64
	// fails makes that many Executes fail with failWith.
	fails    atomic.Int64
	failWith error
}

func (f *flaky) Healthy(ctx context.Context) error {
	if f.down.Load() {
		return fmt.Errorf("%s: %w", f.ID(), gpuexec.ErrUnavailable)
	}
	return f.Executor.Healthy(ctx)
}

func (f *flaky) Execute(ctx context.Context, p *gpuexec.Plan, rec arrow.RecordBatch) (arrow.RecordBatch, error) {
	f.runs.Add(1)
	if f.fails.Load() > 0 {
		f.fails.Add(-1)
		return nil, f.failWith
	}
	return f.Executor.Execute(ctx, p, rec)
}

type dlqSink struct {
	mu  sync.Mutex
	got []ingest.DeadLetter
}

func (d *dlqSink) Write(_ context.Context, dls []ingest.DeadLetter) error {
	d.mu.Lock()
	d.got = append(d.got, dls...)
	d.mu.Unlock()
	return nil
}

type harness struct {
	spec    *transform.Spec
	src     *sliceSource
	fra, us *memStore
	lin     *memStore
	onprem  *flaky
	cloud   *flaky
	dlq     *dlqSink
	runner  *transform.Runner
	mem     *memory.CheckedAllocator
	key     ed25519.PrivateKey
}

// newHarness builds a runner over records given as JSON lines, one batch
// per slice, with offsets counting from 0.
func newHarness(t *testing.T, batches ...[]string) *harness {
	t.Helper()
	return newHarnessOn(t, nil, 0, batches...)
}

// newHarnessOn is newHarness over the stores of prev (a restarted
// process), with the first batch starting at offset first.
func newHarnessOn(t *testing.T, prev *harness, first int64, batches ...[]string) *harness {
	t.Helper()
	spec, err := transform.Parse("runner_test.yaml", []byte(runnerSpec))
	if err != nil {
		t.Fatal(err)
	}
	h := &harness{spec: spec, fra: newMemStore(), us: newMemStore(), lin: newMemStore(), dlq: &dlqSink{},
		mem: memory.NewCheckedAllocator(memory.NewGoAllocator())}
	if prev != nil {
		h.fra, h.us, h.lin = prev.fra, prev.us, prev.lin
	}
	h.src = &sliceSource{acks: make(chan ack, 2*len(batches))}
	off := first
	for _, lines := range batches {
		h.add(t, off, lines)
		off += int64(len(lines))
	}
	h.onprem = &flaky{Executor: gpuexec.NewCPU("onprem", spec.Executors[0].Location, gpuexec.CPUOptions{Allocator: h.mem})}
	h.cloud = &flaky{Executor: gpuexec.NewCPU("cloud", spec.Executors[1].Location, gpuexec.CPUOptions{Allocator: h.mem})}
	_, key, _ := ed25519.GenerateKey(nil)
	if prev != nil {
		key = prev.key
	}
	h.key = key
	lw, err := lineage.NewWriter(h.lin, lineage.WriterConfig{Pipeline: "t", Key: key})
	if err != nil {
		t.Fatal(err)
	}
	h.runner, err = transform.NewRunner(transform.RunnerConfig{
		Spec: spec, Source: h.src, Decider: fakeDecider{},
		Router:      gpuexec.NewRouter([]gpuexec.Executor{h.onprem, h.cloud}, gpuexec.RouterOptions{}),
		Sinks:       map[string]storage.ObjectStore{"fra": h.fra, "us": h.us},
		DeadLetters: h.dlq, Lineage: lw, HashKey: []byte("0123456789abcdef"),
		Allocator: h.mem, RetryMin: time.Millisecond, RetryMax: 10 * time.Millisecond,
		ShutdownGrace: 300 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// add appends to the source a batch of lines at offsets first, first+1...
func (h *harness) add(t *testing.T, first int64, lines []string) {
	t.Helper()
	dec, err := ingest.NewDecoder(h.spec.IngestFields(), h.mem)
	if err != nil {
		t.Fatal(err)
	}
	b := &ingest.Batch{Topic: "in", Partition: 0, First: first, Time: time.Date(2026, 11, 27, 0, 0, 0, 0, time.UTC)}
	off := first
	for _, l := range lines {
		if err := dec.Append([]byte(l)); err != nil {
			b.DeadLetters = append(b.DeadLetters, ingest.DeadLetter{Topic: "in", Offset: off, Value: []byte(l), Reason: err.Error()})
		} else {
			b.Offsets = append(b.Offsets, off)
		}
		off++
	}
	b.Last = off - 1
	b.Record = dec.NewRecord()
	dec.Release()
	b.Ack = func(ctx context.Context, err error) error {
		h.src.acks <- ack{first: first, err: err, features: len(h.fra.keys("pipeline=")) + len(h.us.keys("pipeline=")),
			lineage: len(h.lin.keys("lineage/"))}
		return nil
	}
	h.src.batches = append(h.src.batches, b)
}

// run runs until n acks arrived (or the deadline), then stops the runner.
func (h *harness) run(t *testing.T, n int, during func()) []ack {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- h.runner.Run(ctx) }()
	if during != nil {
		during()
	}
	var acks []ack
	for len(acks) < n {
		select {
		case a := <-h.src.acks:
			acks = append(acks, a)
		case <-ctx.Done():
			t.Fatalf("only %d of %d batches acked", len(acks), n)
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	return acks
}

func rows(country string, n int, start int) []string {
	var out []string
	for i := range n {
		out = append(out, fmt.Sprintf(`{"id":"%s-%d","country":%q,"user_id":"u-%d","amount":%d}`, country, start+i, country, i, i))
	}
	return out
}

func TestRunnerRoutesByDecisionAndAcksAfterDurability(t *testing.T) {
	b0 := append(append(rows("DE", 5, 0), rows("US", 4, 5)...), rows("IN", 3, 9)...)
	b0 = append(b0, `{"id":"bad","country":"DE","amount":"NaN?"}`)
	h := newHarness(t, b0)
	acks := h.run(t, 1, nil)
	if acks[0].err != nil {
		t.Fatalf("batch acked with %v", acks[0].err)
	}
	// By the time of the ack, both feature objects and the lineage segment
	// (and its signature) were durable.
	if acks[0].features != 2 || acks[0].lineage < 2 {
		t.Fatalf("at ack time: %d feature objects, %d lineage objects", acks[0].features, acks[0].lineage)
	}
	s := h.runner.Stats()
	if s.Records != 13 || s.FeatureRows != 9 || s.Quarantined != 3 || s.DeadLetters != 1 {
		t.Fatalf("stats %+v", s)
	}
	// EU rows stayed on-prem; US rows went to the same-jurisdiction
	// executor (the cloud) with user ids hashed.
	if s.RowsByExecutor["onprem"] != 5 || s.RowsByExecutor["cloud"] != 4 {
		t.Fatalf("rows by executor %v", s.RowsByExecutor)
	}
	us := readOne(t, h.us, "pipeline=t/")
	defer us.Release()
	for _, v := range stringCol(t, us, "user_id") {
		if strings.HasPrefix(v, "u-") {
			t.Fatalf("user id %q reached the cloud in clear", v)
		}
	}
	fra := readOne(t, h.fra, "pipeline=t/")
	defer fra.Release()
	for _, v := range stringCol(t, fra, "country") {
		if v != "DE" {
			t.Fatalf("%s row on-prem; want only DE there", v)
		}
	}
	if len(h.fra.keys("quarantine/")) != 1 {
		t.Fatalf("quarantine objects: %v", h.fra.keys("quarantine/"))
	}
	if len(h.dlq.got) != 1 || h.dlq.got[0].Offset != 12 {
		t.Fatalf("dead letters %+v", h.dlq.got)
	}
	rep, err := lineage.Verify(context.Background(), h.lin, "lineage", nil)
	if err != nil || !rep.OK || rep.Events != 4 {
		t.Fatalf("verify: %+v %v", rep, err)
	}
	h.mem.AssertSize(t, 0)
}

func TestRunnerStallsThroughStoreOutage(t *testing.T) {
	h := newHarness(t, rows("DE", 3, 0), rows("DE", 3, 3))
	h.fra.failing.Store(5) // the first five Puts fail
	acks := h.run(t, 2, nil)
	for _, a := range acks {
		if a.err != nil {
			t.Fatalf("batch %d acked with %v; an outage must stall, not fail", a.first, a.err)
		}
	}
	s := h.runner.Stats()
	if s.Stalls < 5 || s.FeatureRows != 6 {
		t.Fatalf("stalls %d, feature rows %d; want >=5 and 6", s.Stalls, s.FeatureRows)
	}
	if got := h.fra.keys("pipeline=t/"); len(got) != 2 {
		t.Fatalf("feature objects %v, want one per batch", got)
	}
	h.mem.AssertSize(t, 0)
}

func TestRunnerWaitsForAnAllowedExecutorAndNeverUsesADisallowedOne(t *testing.T) {
	h := newHarness(t, rows("FR", 4, 0))
	h.onprem.down.Store(true)
	acks := h.run(t, 1, func() {
		// The cloud is healthy but not allowed for FR data: the runner
		// must wait for on-prem.
		time.Sleep(100 * time.Millisecond)
		if h.cloud.runs.Load() != 0 {
			t.Errorf("FR data ran on the cloud")
		}
		h.onprem.down.Store(false)
	})
	if acks[0].err != nil {
		t.Fatal(acks[0].err)
	}
	if s := h.runner.Stats(); s.Stalls == 0 || s.RowsByExecutor["onprem"] != 4 || h.cloud.runs.Load() != 0 {
		t.Fatalf("stats %+v, cloud runs %d", s, h.cloud.runs.Load())
	}
	h.mem.AssertSize(t, 0)
}

func TestRunnerLeavesBatchUncommittedWhenStoppedDuringOutage(t *testing.T) {
	h := newHarness(t, rows("DE", 2, 0))
	h.fra.failing.Store(1 << 30)
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if err := h.runner.Run(ctx); err != nil {
		t.Fatal(err)
	}
	a := <-h.src.acks
	if a.err == nil {
		t.Fatal("batch acked as done although nothing was written")
	}
	if len(h.lin.keys("lineage/pipeline=t/chain")) != 0 {
		t.Fatal("lineage recorded a batch whose output was never written")
	}
	h.mem.AssertSize(t, 0)
}

func TestRunnerQuarantinesWhenPolicyFails(t *testing.T) {
	h := newHarness(t, rows("XX", 2, 0))
	acks := h.run(t, 1, nil)
	if acks[0].err != nil {
		t.Fatal(acks[0].err)
	}
	s := h.runner.Stats()
	if s.Quarantined != 2 || s.FeatureRows != 0 {
		t.Fatalf("stats %+v: a failing policy must deny", s)
	}
	q := readOne(t, h.fra, "quarantine/")
	defer q.Release()
	for _, r := range stringCol(t, q, transform.ReasonColumn) {
		if !strings.Contains(r, "policy evaluation failed") {
			t.Fatalf("quarantine reason %q", r)
		}
	}
	h.mem.AssertSize(t, 0)
}

// TestQuarantineCodec: quarantine objects take the quarantine's codec
// (snappy by default), whatever their sink's, and feature objects keep the
// sink's (zstd by default).
func TestQuarantineCodec(t *testing.T) {
	for _, tc := range []struct {
		spec string
		want compress.Compression
	}{
		{"", compress.Codecs.Snappy},
		{"zstd", compress.Codecs.Zstd},
		{"none", compress.Codecs.Uncompressed},
	} {
		t.Run("quarantine.compression="+tc.spec, func(t *testing.T) {
			h := newHarness(t, append(rows("DE", 3, 0), rows("IN", 3, 3)...))
			h.spec.Quarantine.Compression = tc.spec
			if acks := h.run(t, 1, nil); acks[0].err != nil {
				t.Fatal(acks[0].err)
			}
			codecs := func(prefix string) []compress.Compression {
				t.Helper()
				keys := h.fra.keys(prefix)
				if len(keys) != 1 {
					t.Fatalf("objects under %q: %v, want 1", prefix, keys)
				}
				rc, err := h.fra.Get(context.Background(), keys[0])
				if err != nil {
					t.Fatal(err)
				}
				data, err := io.ReadAll(rc)
				rc.Close()
				if err != nil {
					t.Fatal(err)
				}
				r, err := file.NewParquetReader(bytes.NewReader(data))
				if err != nil {
					t.Fatal(err)
				}
				defer r.Close()
				var out []compress.Compression
				rg := r.MetaData().RowGroup(0)
				for i := range rg.NumColumns() {
					cc, err := rg.ColumnChunk(i)
					if err != nil {
						t.Fatal(err)
					}
					out = append(out, cc.Compression())
				}
				return out
			}
			for i, c := range codecs("quarantine/") {
				if c != tc.want {
					t.Errorf("quarantine column %d written with %s, want %s", i, c, tc.want)
				}
			}
			for i, c := range codecs("pipeline=t/") {
				if c != compress.Codecs.Zstd {
					t.Errorf("feature column %d written with %s, want the sink's zstd", i, c)
				}
			}
			h.mem.AssertSize(t, 0)
		})
	}
}

func readOne(t *testing.T, st *memStore, prefix string) arrow.Table {
	t.Helper()
	keys := st.keys(prefix)
	if len(keys) != 1 {
		t.Fatalf("objects under %q: %v, want 1", prefix, keys)
	}
	tbl, err := storage.ReadParquet(context.Background(), st, keys[0], memory.NewGoAllocator())
	if err != nil {
		t.Fatal(err)
	}
	return tbl
}

func stringCol(t *testing.T, tbl arrow.Table, name string) []string {
	t.Helper()
	idx := tbl.Schema().FieldIndices(name)
	if len(idx) == 0 {
		t.Fatalf("no column %s", name)
	}
	var out []string
	for _, c := range tbl.Column(idx[0]).Data().Chunks() {
		s := c.(*array.String)
		for i := 0; i < s.Len(); i++ {
			out = append(out, s.Value(i))
		}
	}
	return out
}

// TestRunnerReplayAfterCrashWritesNothingTwice: a process recorded offsets
// 0..5 but crashed before committing; its successor reads from 3 (the last
// commit) with another cut. Only 6..9 are processed; no row lands twice.
func TestRunnerReplayAfterCrashWritesNothingTwice(t *testing.T) {
	h1 := newHarness(t, rows("DE", 6, 0))
	h1.run(t, 1, nil)
	h2 := newHarnessOn(t, h1, 3, rows("DE", 7, 3))
	acks := h2.run(t, 1, nil)
	if acks[0].err != nil {
		t.Fatal(acks[0].err)
	}
	s := h2.runner.Stats()
	if s.Replayed != 3 || s.Records != 4 || s.FeatureRows != 4 {
		t.Fatalf("stats %+v: want 3 replayed, 4 processed", s)
	}
	h2.assertStoredOnce(t, 10)
}

// TestRunnerReplayCutIntoSeveralBatches: the chain records 0..9; after a
// crash the re-read starts at 3 and is cut into 3..5 and 6..12. The second
// batch, which reuses what the first read of the chain instead of asking
// the writer again, must still skip 6..9.
func TestRunnerReplayCutIntoSeveralBatches(t *testing.T) {
	h1 := newHarness(t, rows("DE", 10, 0))
	h1.run(t, 1, nil)
	h2 := newHarnessOn(t, h1, 3, rows("DE", 3, 3), rows("DE", 7, 6))
	for _, a := range h2.run(t, 2, nil) {
		if a.err != nil {
			t.Fatal(a.err)
		}
	}
	if s := h2.runner.Stats(); s.Replayed != 7 || s.FeatureRows != 3 {
		t.Fatalf("stats %+v: want 7 replayed (3..9), 3 processed (10..12)", s)
	}
	h2.assertStoredOnce(t, 13)
}

// TestRunnerRereadOverlapsBatchesInFlight: within one Run a rebalance
// makes the source re-read from the commit while batches of the old
// assignment are still in flight. Here 0..9 is recorded, 10..19 is slow to
// write, and the source hands out 0..9 and 10..25 again. The re-read must
// see what 10..19 recorded, and so must 10..25, which follows the re-read
// directly: reusing the re-read's view of the chain would write 10..19 a
// second time.
func TestRunnerRereadOverlapsBatchesInFlight(t *testing.T) {
	h := newHarness(t, rows("DE", 10, 0), rows("DE", 10, 10))
	h.add(t, 0, rows("DE", 10, 0))
	h.add(t, 10, rows("DE", 16, 10))
	h.fra.holdKey, h.fra.hold = "in-0-00000000000000000010-00000000000000000019", make(chan struct{})
	for _, a := range h.run(t, 4, func() {
		time.Sleep(100 * time.Millisecond) // the re-read is under way
		close(h.fra.hold)
	}) {
		if a.err != nil {
			t.Fatal(a.err)
		}
	}
	h.assertStoredOnce(t, 26)
}

// TestRunnerReassignedPartitionRereadsTheChain: this process records
// 0..9, the partition moves to another process, which records 10..19 but
// does not commit, and comes back. The first batch of the new assignment,
// 10..25, must skip what the other process recorded, though it directly
// follows this process's last batch.
func TestRunnerReassignedPartitionRereadsTheChain(t *testing.T) {
	h := newHarness(t, rows("DE", 10, 0))
	h.add(t, 10, rows("DE", 16, 10))
	h.src.batches[0].Assigned, h.src.batches[1].Assigned = true, true
	h.src.gates = map[int]chan struct{}{1: make(chan struct{})}
	acks := h.run(t, 1, func() {
		if a := <-h.src.acks; a.err != nil || a.first != 0 {
			t.Fatalf("first ack %+v", a)
		}
		other := newHarnessOn(t, h, 10, rows("DE", 10, 10))
		if a := other.run(t, 1, nil); a[0].err != nil {
			t.Fatal(a[0].err)
		}
		close(h.src.gates[1])
	})
	if acks[0].err != nil {
		t.Fatal(acks[0].err)
	}
	if s := h.runner.Stats(); s.Replayed != 10 {
		t.Errorf("stats %+v: want the other process's 10 records skipped", s)
	}
	h.assertStoredOnce(t, 26)
}

// assertStoredOnce checks that the Frankfurt feature objects hold want
// rows (each record of a replayed stream once), that the lineage verifies
// without replays, and that no Arrow memory leaked.
func (h *harness) assertStoredOnce(t *testing.T, want int64) {
	t.Helper()
	var total int64
	for _, k := range h.fra.keys("pipeline=t/") {
		tbl, err := storage.ReadParquet(context.Background(), h.fra, k, memory.NewGoAllocator())
		if err != nil {
			t.Fatal(err)
		}
		total += tbl.NumRows()
		tbl.Release()
	}
	if total != want {
		t.Fatalf("feature objects hold %d rows, want each of the %d records once", total, want)
	}
	if rep, err := lineage.Verify(context.Background(), h.lin, "lineage", nil); err != nil || !rep.OK || rep.Replays != 0 {
		t.Fatalf("verify: %+v %v", rep, err)
	}
	h.mem.AssertSize(t, 0)
}

// TestRunnerShutdownFinishesBatchInProgress: a stop while a slow write is
// in flight lets the batch finish (within the grace) and acks it as done.
func TestRunnerShutdownFinishesBatchInProgress(t *testing.T) {
	h := newHarness(t, rows("DE", 2, 0))
	h.fra.delay = 100 * time.Millisecond
	h.fra.started = make(chan struct{}, 1)
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		<-h.fra.started // a write is in flight: stop now
		cancel()
	}()
	if err := h.runner.Run(ctx); err != nil {
		t.Fatal(err)
	}
	a := <-h.src.acks
	if a.err != nil || a.features != 1 {
		t.Fatalf("ack %+v: the batch in progress should have finished during the grace", a)
	}
	h.mem.AssertSize(t, 0)
}

// TestRunnerSweepsObjectsOfACrashedAttempt: a crash left a feature object
// for offsets 6..9 with no lineage; the restarted runner cuts 6..8 and must
// not leave the old object beside the new one.
func TestRunnerSweepsObjectsOfACrashedAttempt(t *testing.T) {
	h1 := newHarness(t, rows("DE", 6, 0))
	h1.run(t, 1, nil)
	recorded := h1.fra.keys("pipeline=t/")
	orphan := "pipeline=t/date=2026-11-27/location=fra/in-0-00000000000000000006-00000000000000000009.parquet"
	qOrphan := "quarantine/pipeline=t/date=2026-11-28/in-0-00000000000000000007-00000000000000000009.parquet"
	other := "pipeline=t/date=2026-11-27/location=fra/in-1-00000000000000000006-00000000000000000009.parquet"
	for _, k := range []string{orphan, qOrphan, other} {
		if err := h1.fra.Put(context.Background(), k, strings.NewReader("x"), 1); err != nil {
			t.Fatal(err)
		}
	}
	h2 := newHarnessOn(t, h1, 6, rows("DE", 3, 6))
	if a := h2.run(t, 1, nil); a[0].err != nil {
		t.Fatal(a[0].err)
	}
	got := h2.fra.keys("")
	for _, k := range []string{orphan, qOrphan} {
		if slices.Contains(got, k) {
			t.Errorf("unrecorded object %s survived the restart", k)
		}
	}
	for _, k := range append(recorded, other) {
		if !slices.Contains(got, k) {
			t.Errorf("%s was deleted; only unrecorded objects of this partition may be", k)
		}
	}
	h2.mem.AssertSize(t, 0)
}

// TestRunnerLaterBatchWaitsForEarlierOne: batches of a partition are
// processed concurrently, but when an earlier one cannot be made durable a
// later one must not be recorded either, or the chain would skip records.
func TestRunnerLaterBatchWaitsForEarlierOne(t *testing.T) {
	h := newHarness(t, rows("DE", 3, 0), rows("DE", 3, 3))
	h.fra.failKey = "in-0-00000000000000000000-" // batch 0's object
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if err := h.runner.Run(ctx); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if a := <-h.src.acks; a.err == nil {
			t.Fatalf("batch %d acked as done although batch 0 never became durable", a.first)
		}
	}
	if segs := h.lin.keys("lineage/pipeline=t/chain"); len(segs) != 0 {
		t.Fatalf("lineage recorded %v past a batch that was not", segs)
	}
	h.mem.AssertSize(t, 0)
}

// TestRunnerRetriesAnExecutorError: an executor's internal error is not
// the data's fault; the batch is routed again and committed.
func TestRunnerRetriesAnExecutorError(t *testing.T) {
	h := newHarness(t, rows("DE", 3, 0))
	h.onprem.failWith = errors.New("internal: kernel exploded")
	h.onprem.fails.Store(2)
	acks := h.run(t, 1, nil)
	if acks[0].err != nil {
		t.Fatalf("batch acked with %v; an executor error must be retried", acks[0].err)
	}
	if s := h.runner.Stats(); s.FeatureRows != 3 || s.Stalls < 2 || h.cloud.runs.Load() != 0 {
		t.Fatalf("stats %+v, cloud runs %d: want 3 rows on-prem after 2 retries", s, h.cloud.runs.Load())
	}
	h.mem.AssertSize(t, 0)
}

// TestRunnerStopsOnAPermanentError: a plan that does not fit the data
// cannot be retried into working; Run stops with the error and nothing is
// committed, so a restart re-reads the batch.
func TestRunnerStopsOnAPermanentError(t *testing.T) {
	h := newHarness(t, rows("DE", 3, 0), rows("DE", 3, 3))
	h.onprem.failWith = fmt.Errorf("column amount: %w", gpuexec.ErrInvalidPlan)
	h.onprem.fails.Store(1 << 30)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := h.runner.Run(ctx)
	if err == nil || !errors.Is(err, gpuexec.ErrInvalidPlan) {
		t.Fatalf("Run returned %v; want it to stop with the plan error", err)
	}
	if ctx.Err() != nil {
		t.Fatal("Run kept going until the deadline")
	}
	for range 2 {
		if a := <-h.src.acks; a.err == nil {
			t.Fatalf("batch %d acked as done", a.first)
		}
	}
	h.mem.AssertSize(t, 0)
}
