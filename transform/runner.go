package transform

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/sluice-dev/sluice/gpuexec"
	"github.com/sluice-dev/sluice/ingest"
	"github.com/sluice-dev/sluice/lineage"
	"github.com/sluice-dev/sluice/policy"
	"github.com/sluice-dev/sluice/storage"
)

// DeadLetterSink keeps records that could not be decoded. Write returns nil
// only when every dead letter is durable.
type DeadLetterSink interface {
	Write(ctx context.Context, dls []ingest.DeadLetter) error
}

// LineageWriter records a batch's lineage events durably; Append returns
// nil only when they are. *lineage.Writer is the implementation; the
// interface lets benchmarks measure what lineage costs.
type LineageWriter interface {
	Append(ctx context.Context, chain string, events []*lineage.Event) (lineage.SegmentInfo, error)
}

// RunnerConfig wires the stages of one pipeline. Every field without a
// default is required.
type RunnerConfig struct {
	Spec    *Spec
	Source  ingest.Source
	Decider policy.Decider
	Router  *gpuexec.Router
	// Sinks maps each sink name of the spec to its store.
	Sinks       map[string]storage.ObjectStore
	DeadLetters DeadLetterSink
	Lineage     LineageWriter
	// Producer is the OpenLineage producer URI; default
	// "https://github.com/sluice-dev/sluice".
	Producer string
	// SourceNamespace is the OpenLineage namespace of the source topic,
	// e.g. "kafka://broker:9092"; default "kafka://" + first broker.
	SourceNamespace string
	// HashKey keys the pseudonymisation (HMAC) of hashed columns; it must
	// stay the same across restarts for replays to write the same bytes.
	HashKey []byte
	// Workers is how many batches are processed at once; default 4.
	// Batches of one partition may overlap, but their lineage is appended
	// in offset order, and a batch is committed only if every earlier one
	// of its partition was.
	Workers int
	// Allocator defaults to memory.DefaultAllocator.
	Allocator memory.Allocator
	// Logger defaults to slog.Default().
	Logger *slog.Logger
	// RetryMin and RetryMax bound the backoff while a store, the dead-letter
	// topic or an executor is down; defaults 100ms and 5s. The runner never
	// skips a batch: it stalls until the outage ends or ctx is done.
	RetryMin, RetryMax time.Duration
	// ShutdownGrace is how long batches in progress may take to finish
	// after Run's context ends; default 10s. Past it they are abandoned
	// (not committed).
	ShutdownGrace time.Duration
}

// Runner moves batches from the Source through policy, routing, execution,
// storage and lineage, and acks each batch when all of it is durable.
type Runner struct {
	mu    sync.Mutex
	swept map[int]bool            // partitions whose unrecorded objects were swept
	fatal context.CancelCauseFunc // stops the current Run
	cfg   RunnerConfig
	plan  *gpuexec.Plan
	route *router
	stats *Stats
}

// NewRunner checks the configuration and prepares the plan.
func NewRunner(cfg RunnerConfig) (*Runner, error) {
	switch {
	case cfg.Spec == nil:
		return nil, errors.New("transform: runner needs a Spec")
	case cfg.Source == nil:
		return nil, errors.New("transform: runner needs a Source")
	case cfg.Decider == nil:
		return nil, errors.New("transform: runner needs a policy Decider")
	case cfg.Router == nil:
		return nil, errors.New("transform: runner needs a Router")
	case cfg.Lineage == nil:
		return nil, errors.New("transform: runner needs a lineage Writer")
	case cfg.DeadLetters == nil:
		return nil, errors.New("transform: runner needs a DeadLetterSink")
	}
	for _, ex := range cfg.Spec.Executors {
		if _, ok := cfg.Sinks[ex.Sink]; !ok {
			return nil, fmt.Errorf("transform: executor %q writes to sink %q, which has no store", ex.ID, ex.Sink)
		}
		if _, ok := cfg.Router.Get(ex.ID); !ok {
			return nil, fmt.Errorf("transform: executor %q of the spec is not in the router", ex.ID)
		}
	}
	if _, ok := cfg.Sinks[cfg.Spec.Quarantine.Sink]; !ok {
		return nil, fmt.Errorf("transform: quarantine sink %q has no store", cfg.Spec.Quarantine.Sink)
	}
	if cfg.Producer == "" {
		cfg.Producer = "https://github.com/sluice-dev/sluice"
	}
	if cfg.SourceNamespace == "" && len(cfg.Spec.Source.Brokers) > 0 {
		cfg.SourceNamespace = "kafka://" + cfg.Spec.Source.Brokers[0]
	}
	if cfg.Workers <= 0 {
		cfg.Workers = 4
	}
	if cfg.Allocator == nil {
		cfg.Allocator = memory.DefaultAllocator
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.RetryMin <= 0 {
		cfg.RetryMin = 100 * time.Millisecond
	}
	if cfg.RetryMax <= 0 {
		cfg.RetryMax = 5 * time.Second
	}
	if cfg.ShutdownGrace <= 0 {
		cfg.ShutdownGrace = 10 * time.Second
	}
	r := &Runner{swept: map[int]bool{}, cfg: cfg, plan: cfg.Spec.Plan(), stats: newStats()}
	r.route = newRouter(cfg.Spec, cfg.Decider, cfg.Router)
	return r, nil
}

// sweep reports whether partition p still needs its sweep of unrecorded
// objects, and marks it done.
func (r *Runner) sweep(p int) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.swept[p] {
		return false
	}
	r.swept[p] = true
	return true
}

// Stats returns a snapshot of the counters.
func (r *Runner) Stats() Snapshot { return r.stats.snapshot() }

// Run consumes until ctx is done or the Source fails. When ctx ends, Run
// stops fetching, lets the batches being processed finish for up to
// ShutdownGrace, and acks the rest with an error so their offsets are not
// committed and they are read again on restart. Run returns nil when ctx
// ended it, and an error when the Source failed or a batch failed in a way
// no retry can fix (a plan that does not fit the data): the process should
// then exit and be restarted, which re-reads the batch from the commit.
func (r *Runner) Run(ctx context.Context) error {
	// A batch that fails in a way retrying cannot fix (errPermanent) stops
	// the run: carrying on would only process the partition's later
	// batches to throw them away, and a restart re-reads from the commit.
	ctx, stop := context.WithCancelCause(ctx)
	defer stop(nil)
	r.mu.Lock()
	r.fatal = stop
	r.mu.Unlock()
	// Batches in progress get their own context: a shutdown gives them
	// ShutdownGrace to become durable instead of cutting a write short.
	workCtx, cancelWork := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelWork()
	finished := make(chan struct{})
	defer close(finished)
	go func() {
		select {
		case <-ctx.Done():
		case <-finished:
			return
		}
		t := time.NewTimer(r.cfg.ShutdownGrace)
		defer t.Stop()
		select {
		case <-t.C:
			r.cfg.Logger.Warn("shutdown grace over; abandoning batches in progress", "grace", r.cfg.ShutdownGrace)
			cancelWork()
		case <-finished:
		}
	}()

	// Workers take batches in the order the source hands them out (one
	// FIFO channel), so a batch's predecessor in its partition is always
	// started first and waiting for it cannot deadlock.
	work := make(chan job, r.cfg.Workers)
	var wg sync.WaitGroup
	for range r.cfg.Workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range work {
				if ctx.Err() != nil {
					// Queued but not started: leave it for the next owner.
					r.abandon(j.b, ctx.Err())
					j.t.finish(false)
					continue
				}
				r.handle(workCtx, j)
			}
		}()
	}
	last := map[int]*ticket{}
	var err error
	for {
		var b *ingest.Batch
		b, err = r.cfg.Source.Next(ctx)
		if err != nil {
			break
		}
		t := newTicket(last[b.Partition], b)
		last[b.Partition] = t
		select {
		case work <- job{b: b, t: t}:
		case <-ctx.Done():
			r.abandon(b, ctx.Err())
			t.finish(false)
		}
	}
	close(work)
	wg.Wait()
	if cause := context.Cause(ctx); errors.Is(cause, errPermanent) {
		return fmt.Errorf("transform: stopped: %w", cause)
	}
	if ctx.Err() != nil && (errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, ingest.ErrClosed)) {
		return nil
	}
	return fmt.Errorf("transform: source: %w", err)
}

// job is a batch and its place in its partition's order.
type job struct {
	b *ingest.Batch
	t *ticket
}

// ticket orders the lineage appends of one partition: batches are
// processed concurrently, but each appends its lineage only after its
// predecessor did, and not at all if its predecessor failed (a gap in the
// chain would make a later replay skip the failed batch's records).
type ticket struct {
	prev *ticket
	done chan struct{}
	ok   bool // set before done is closed
	// first is the partition's first ticket in this Run; its ready is
	// closed once the partition is prepared (see Runner.skipRecorded), and
	// no batch of the partition writes anything before that.
	first *ticket
	ready chan struct{}
	// checked is closed once the batch has read how far its chain had
	// recorded (see Runner.recorded); recorded is that offset (-1:
	// nothing), valid when known is true. to is the batch's last offset as
	// the source cut it, and hi the highest last offset of the batches
	// handed out before it in this Run (-1: none): after a rebalance the
	// source re-reads from the commit, so a batch may overlap earlier ones
	// still in flight.
	checked  chan struct{}
	known    bool
	recorded int64
	to, hi   int64
}

func newTicket(prev *ticket, b *ingest.Batch) *ticket {
	t := &ticket{prev: prev, done: make(chan struct{}), checked: make(chan struct{}), to: b.Last, hi: -1}
	if prev == nil {
		t.first, t.ready = t, make(chan struct{})
	} else {
		t.first, t.hi = prev.first, max(prev.hi, prev.to)
	}
	return t
}

func (t *ticket) finish(ok bool) {
	// Only the ticket's own batch reads prev; its successor reads this
	// ticket, never further back. Dropping the link lets finished tickets
	// be collected: otherwise the partition's latest ticket keeps every
	// ticket of the Run reachable, a few hundred bytes per batch for as
	// long as the process runs.
	t.prev = nil
	t.ok = ok
	close(t.done)
	t.markReady()
	t.markChecked(false, 0)
}

// markChecked records what the batch saw of its chain and closes checked
// (once).
func (t *ticket) markChecked(known bool, recorded int64) {
	select {
	case <-t.checked:
	default:
		t.known, t.recorded = known, recorded
		close(t.checked)
	}
}

// markReady closes ready on a first ticket (once).
func (t *ticket) markReady() {
	if t.ready != nil {
		select {
		case <-t.ready:
		default:
			close(t.ready)
		}
	}
}

// errPredecessor means an earlier batch of the partition was not made
// durable, so this one must not be either.
var errPredecessor = errors.New("an earlier batch of this partition was not committed")

// waitTurn blocks until the predecessor has finished.
func (t *ticket) waitTurn(ctx context.Context) error {
	if t.prev == nil {
		return nil
	}
	select {
	case <-t.prev.done:
	case <-ctx.Done():
		return ctx.Err()
	}
	if !t.prev.ok {
		return errPredecessor
	}
	return nil
}

func (r *Runner) abandon(b *ingest.Batch, cause error) {
	if b.Record != nil {
		b.Record.Release()
	}
	// A fresh context: the run's own may be done, and the ack must still
	// reach the source so it forgets the batch.
	_ = b.Ack(context.Background(), cause)
}

// handle processes one batch and acks it. Errors from stores, the
// dead-letter topic and executors are retried until they succeed or ctx
// ends; only then is the batch acked with an error.
func (r *Runner) handle(ctx context.Context, j job) {
	b := j.b
	start := time.Now()
	out, err := r.process(ctx, b, j.t)
	j.t.finish(err == nil)
	if err != nil {
		r.cfg.Logger.Warn("batch not committed", "topic", b.Topic, "partition", b.Partition,
			"first", b.First, "last", b.Last, "err", err)
		r.abandon(b, err)
		if errors.Is(err, errPermanent) {
			r.mu.Lock()
			r.fatal(fmt.Errorf("batch %s/%d@%d..%d: %w", b.Topic, b.Partition, b.First, b.Last, err))
			r.mu.Unlock()
		}
		return
	}
	if b.Record != nil {
		b.Record.Release()
	}
	if err := b.Ack(ctx, nil); err != nil {
		r.cfg.Logger.Warn("ack failed", "partition", b.Partition, "first", b.First, "err", err)
		return
	}
	out.elapsed = time.Since(start)
	r.stats.add(out)
}

// retry calls fn until it succeeds or ctx ends, backing off between tries.
func (r *Runner) retry(ctx context.Context, what string, fn func() error) error {
	wait := r.cfg.RetryMin
	for attempt := 1; ; attempt++ {
		err := fn()
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return fmt.Errorf("%s: %w (gave up: %v)", what, err, ctx.Err())
		}
		if errors.Is(err, errPermanent) {
			return fmt.Errorf("%s: %w", what, err)
		}
		r.stats.stall()
		r.cfg.Logger.Warn("stalled, retrying", "what", what, "attempt", attempt, "wait", wait, "err", err)
		select {
		case <-time.After(wait):
		case <-ctx.Done():
			return fmt.Errorf("%s: %w (gave up: %v)", what, err, ctx.Err())
		}
		wait = min(wait*2, r.cfg.RetryMax)
	}
}

// errPermanent marks errors that retrying cannot fix (a plan that does not
// fit the data); the batch is left uncommitted and the runner moves on.
var errPermanent = errors.New("permanent")
