package transform_test

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"io"
	"path"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/sluice-dev/sluice/gpuexec"
	"github.com/sluice-dev/sluice/ingest"
	"github.com/sluice-dev/sluice/lineage"
	"github.com/sluice-dev/sluice/storage"
	"github.com/sluice-dev/sluice/transform"
)

// TestRunnerMemoryStaysFlat runs thousands of small batches through one
// Runner, into stores that keep nothing that grows, and checks that the
// heap after the last batch is no larger than after the first thousand:
// whatever the runner keeps per batch (it kept every batch's ticket until
// session 5) grows a long-running process without bound, which no
// benchmark of minutes shows.
func TestRunnerMemoryStaysFlat(t *testing.T) {
	if testing.Short() {
		t.Skip("runs 9000 batches")
	}
	spec, err := transform.Parse("runner_test.yaml", []byte(runnerSpec))
	if err != nil {
		t.Fatal(err)
	}
	const warm, total = 1000, 9000
	src := &genSource{spec: spec, pause: map[int]chan struct{}{warm: make(chan struct{})}, total: total,
		acked: make(chan struct{}, total)}
	_, key, _ := ed25519.GenerateKey(nil)
	lw, err := lineage.NewWriter(newTailStore(), lineage.WriterConfig{Pipeline: "t", Key: key})
	if err != nil {
		t.Fatal(err)
	}
	loc := spec.Executors
	runner, err := transform.NewRunner(transform.RunnerConfig{
		Spec: spec, Source: src, Decider: fakeDecider{},
		Router: gpuexec.NewRouter([]gpuexec.Executor{
			gpuexec.NewCPU("onprem", loc[0].Location, gpuexec.CPUOptions{}),
			gpuexec.NewCPU("cloud", loc[1].Location, gpuexec.CPUOptions{}),
		}, gpuexec.RouterOptions{}),
		Sinks:       map[string]storage.ObjectStore{"fra": discardStore{}, "us": discardStore{}},
		DeadLetters: discardDLQ{}, Lineage: lw, HashKey: []byte("0123456789abcdef"),
		Allocator: memory.NewGoAllocator(), RetryMin: time.Millisecond, RetryMax: 10 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- runner.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()

	// heapAt waits until n batches are acked (the source holds back the
	// next), and returns the live heap.
	heapAt := func(n int) uint64 {
		t.Helper()
		for range n - src.counted {
			select {
			case <-src.acked:
			case <-time.After(time.Minute):
				t.Fatalf("only %d of %d batches acked", src.counted, n)
			}
			src.counted++
		}
		var ms runtime.MemStats
		for range 3 { // a third cycle clears the sync.Pools' victims too
			runtime.GC()
		}
		runtime.ReadMemStats(&ms)
		return ms.HeapAlloc
	}
	before := heapAt(warm)
	close(src.pause[warm])
	after := heapAt(total)
	if s := runner.Stats(); s.FeatureRows == 0 || s.Quarantined == 0 {
		t.Fatalf("the batches did not reach every outcome: %+v", s)
	}
	grew := int64(after) - int64(before)
	t.Logf("heap after %d batches %d KiB, after %d %d KiB (%+d bytes per batch)",
		warm, before>>10, total, after>>10, grew/int64(total-warm))
	// 512 KiB over 8000 batches is 64 bytes a batch: less than any
	// structure kept per batch (the tickets were 300), several times what
	// caches settling in add (80–130 KiB, measured up to 24000 batches).
	if grew > 512<<10 {
		t.Errorf("the heap grew by %d KiB over %d batches: something is kept per batch", grew>>10, total-warm)
	}
}

// genSource makes total batches of four rows (DE, US, IN and a malformed
// one) over two partitions, and holds back batch i until pause[i] is
// closed.
type genSource struct {
	spec    *transform.Spec
	next    int
	total   int
	pause   map[int]chan struct{}
	acked   chan struct{}
	counted int // acks the test has taken from acked
}

func (s *genSource) Next(ctx context.Context) (*ingest.Batch, error) {
	if s.next == s.total {
		<-ctx.Done()
		return nil, ctx.Err()
	}
	if p := s.pause[s.next]; p != nil {
		select {
		case <-p:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	i := s.next
	s.next++
	dec, err := ingest.NewDecoder(s.spec.IngestFields(), memory.NewGoAllocator())
	if err != nil {
		return nil, err
	}
	part := i % 2
	first := int64(i/2) * 4
	b := &ingest.Batch{Topic: "in", Partition: part, First: first, Last: first + 3,
		Time: time.Date(2026, 11, 27, 0, 0, 0, 0, time.UTC), Assigned: i < 2}
	for j, l := range []string{
		fmt.Sprintf(`{"id":"d-%d","country":"DE","user_id":"u-%d","amount":%d}`, i, i%997, i%100),
		fmt.Sprintf(`{"id":"u-%d","country":"US","user_id":"u-%d","amount":%d}`, i, i%991, i%50),
		fmt.Sprintf(`{"id":"i-%d","country":"IN","user_id":"u-%d","amount":1}`, i, i%89),
		`{"id":"bad","country":"DE","amount":"NaN?"}`,
	} {
		if err := dec.Append([]byte(l)); err != nil {
			b.DeadLetters = append(b.DeadLetters, ingest.DeadLetter{Topic: "in", Partition: part, Offset: first + int64(j), Value: []byte(l), Reason: err.Error()})
		} else {
			b.Offsets = append(b.Offsets, first+int64(j))
		}
	}
	b.Record = dec.NewRecord()
	b.Ack = func(_ context.Context, err error) error {
		if err != nil {
			return err
		}
		s.acked <- struct{}{}
		return nil
	}
	return b, nil
}

func (s *genSource) Close() error { return nil }

// discardDLQ takes dead letters and keeps none.
type discardDLQ struct{}

func (discardDLQ) Write(context.Context, []ingest.DeadLetter) error { return nil }

// discardStore takes every object and keeps none.
type discardStore struct{}

func (discardStore) Put(_ context.Context, _ string, r io.Reader, _ int64) error {
	_, err := io.Copy(io.Discard, r)
	return err
}
func (d discardStore) Create(ctx context.Context, key string, r io.Reader, size int64) error {
	return d.Put(ctx, key, r, size)
}
func (discardStore) Delete(context.Context, string) error { return nil }
func (discardStore) Get(_ context.Context, key string) (io.ReadCloser, error) {
	return nil, fmt.Errorf("%s: %w", key, storage.ErrNotExist)
}
func (discardStore) Stat(_ context.Context, key string) (storage.Attrs, error) {
	return storage.Attrs{}, fmt.Errorf("%s: %w", key, storage.ErrNotExist)
}
func (discardStore) Iter(context.Context, string, func(string) error) error { return nil }

// tailStore is a memStore that keeps only the newest object of each
// folder: enough for a lineage writer, which reads a chain's tail once and
// then appends.
type tailStore struct {
	*memStore
	mu     sync.Mutex
	latest map[string]string // folder -> its newest key
}

func newTailStore() *tailStore {
	return &tailStore{memStore: newMemStore(), latest: map[string]string{}}
}

func (s *tailStore) Put(ctx context.Context, key string, r io.Reader, size int64) error {
	return s.keep(ctx, key, s.memStore.Put(ctx, key, r, size))
}

func (s *tailStore) Create(ctx context.Context, key string, r io.Reader, size int64) error {
	return s.keep(ctx, key, s.memStore.Create(ctx, key, r, size))
}

// keep drops the folder's previous newest object once key is written.
func (s *tailStore) keep(ctx context.Context, key string, err error) error {
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	dir := path.Dir(key)
	if old := s.latest[dir]; old < key {
		if old != "" {
			_ = s.memStore.Delete(ctx, old)
		}
		s.latest[dir] = key
	}
	return nil
}
