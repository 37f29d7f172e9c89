package kafka

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/segmentio/kafka-go"

	"github.com/sluice-dev/sluice/ingest"
)

// ErrAcked is returned by an AckFunc called a second time.
var ErrAcked = errors.New("kafka: batch already acked")

// Source is an ingest.Source reading one topic as a member of a consumer
// group.
//
// Batches never mix partitions and cover contiguous offsets: every offset in
// First..Last is a row or a dead letter. A gap in the log (compaction,
// transaction markers) ends a batch, so the next one starts after the gap.
//
// Commits follow acks only. Per partition, the source remembers the batches
// it handed out in offset order and commits Last+1 of the longest prefix of
// them that has been acked with a nil error, so acks may come in any order. A
// batch acked with an error is never committed, and no later batch of that
// partition is committed in the same generation: its records are read again
// once the partition is reassigned, after a rebalance or a restart. When a
// generation ends (rebalance, Close), acks of its batches no longer commit
// anything, and the partitions this member keeps or gets resume from the
// group's committed offsets, so batches still in flight at a rebalance are
// delivered again (at least once; storage keys make replays idempotent).
//
// Next must be called from one goroutine; AckFuncs, Stats and Close may be
// called from any.
type Source struct {
	cfg   Config
	log   *slog.Logger
	group *kafka.ConsumerGroup

	out    chan *ingest.Batch // unbuffered: readers hand batches to Next
	sem    chan struct{}      // one token per batch handed out and not acked
	closed chan struct{}
	done   chan struct{} // run has returned
	cancel context.CancelFunc
	once   sync.Once

	records, deadLetters, batches atomic.Int64
	mu                            sync.Mutex // guards the fields below
	committed, highWater          map[int]int64
	assigned                      []int
	current                       *generation
}

var _ ingest.Source = (*Source)(nil)

// Stats is a snapshot of a Source's progress.
type Stats struct {
	// Records counts the Kafka records handed out in batches, rows and dead
	// letters together; DeadLetters counts the latter.
	Records, DeadLetters int64
	// Batches counts the batches handed out.
	Batches int64
	// Committed is, per partition, the group's committed offset (the next
	// offset to read) as last committed or read by this member.
	Committed map[int]int64
	// HighWater is, per partition, the last high-water mark seen.
	HighWater map[int]int64
	// Assigned lists the partitions of the current generation, in no
	// particular order; empty between generations.
	Assigned []int
}

// Lag is the number of records between the committed offsets and the
// high-water marks, over the partitions both are known for.
func (s Stats) Lag() int64 {
	var lag int64
	for p, hw := range s.HighWater {
		if c, ok := s.Committed[p]; ok && hw > c {
			lag += hw - c
		}
	}
	return lag
}

// NewSource checks cfg and that the topic exists, then joins the group in
// the background; the first batch arrives through Next once partitions are
// assigned. ctx bounds only this setup. The caller must Close the Source.
func NewSource(ctx context.Context, cfg Config) (*Source, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	if err := checkTopic(ctx, cfg.Dialer, cfg.Brokers, cfg.Topic); err != nil {
		return nil, err
	}
	if cfg.ResetToTime {
		if err := resetGroup(ctx, cfg); err != nil {
			return nil, err
		}
	}
	start := kafka.FirstOffset
	if cfg.StartOffset == StartLatest {
		start = kafka.LastOffset
	}
	debug := kafka.LoggerFunc(func(msg string, args ...any) {
		cfg.Logger.Debug("kafka-go: " + fmt.Sprintf(msg, args...))
	})
	group, err := kafka.NewConsumerGroup(kafka.ConsumerGroupConfig{
		ID:                    cfg.Group,
		Brokers:               cfg.Brokers,
		Dialer:                cfg.Dialer,
		Topics:                []string{cfg.Topic},
		HeartbeatInterval:     cfg.HeartbeatInterval,
		SessionTimeout:        cfg.SessionTimeout,
		RebalanceTimeout:      cfg.RebalanceTimeout,
		JoinGroupBackoff:      cfg.JoinGroupBackoff,
		WatchPartitionChanges: true,
		StartOffset:           start,
		Logger:                debug,
		ErrorLogger:           debug,
	})
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrConfig, err)
	}
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	s := &Source{
		cfg:       cfg,
		log:       cfg.Logger.With("topic", cfg.Topic, "group", cfg.Group),
		group:     group,
		out:       make(chan *ingest.Batch),
		sem:       make(chan struct{}, cfg.MaxInFlight),
		closed:    make(chan struct{}),
		done:      make(chan struct{}),
		cancel:    cancel,
		committed: map[int]int64{},
		highWater: map[int]int64{},
	}
	go s.run(runCtx)
	return s, nil
}

// checkTopic fails fast on a topic that does not exist or brokers that
// cannot be reached, instead of letting the group retry forever.
func checkTopic(ctx context.Context, d *kafka.Dialer, brokers []string, topic string) error {
	var errs []error
	for _, b := range brokers {
		parts, err := d.LookupPartitions(ctx, "tcp", b, topic)
		if err == nil {
			if len(parts) == 0 {
				return fmt.Errorf("kafka: topic %q has no partitions", topic)
			}
			return nil
		}
		if errors.Is(err, kafka.UnknownTopicOrPartition) {
			return fmt.Errorf("kafka: topic %q: %w", topic, err)
		}
		errs = append(errs, fmt.Errorf("broker %s: %w", b, explain(err)))
	}
	return fmt.Errorf("kafka: look up topic %q: %w", topic, errors.Join(errs...))
}

// Next returns the next batch, blocking while MaxInFlight batches are
// un-acked, until a batch is ready, ctx ends, or the Source is closed
// (ingest.ErrClosed).
func (s *Source) Next(ctx context.Context) (*ingest.Batch, error) {
	select {
	case <-s.closed:
		return nil, ingest.ErrClosed
	default:
	}
	select {
	case s.sem <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-s.closed:
		return nil, ingest.ErrClosed
	}
	select {
	case b := <-s.out:
		return b, nil
	case <-ctx.Done():
		<-s.sem
		return nil, ctx.Err()
	case <-s.closed:
		<-s.sem
		return nil, ingest.ErrClosed
	}
}

// Close stops fetching, commits what has been acked so far, and leaves the
// group. Batches handed out and not yet acked are not committed. Close is
// idempotent.
func (s *Source) Close() error {
	s.once.Do(func() {
		close(s.closed)
		s.cancel()
		_ = s.group.Close() // ends the generation (final commit) and leaves
		<-s.done
	})
	return nil
}

// Stats returns a snapshot of the source's progress.
func (s *Source) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return Stats{
		Records:     s.records.Load(),
		DeadLetters: s.deadLetters.Load(),
		Batches:     s.batches.Load(),
		Committed:   maps.Clone(s.committed),
		HighWater:   maps.Clone(s.highWater),
		Assigned:    slices.Clone(s.assigned),
	}
}

// Lag is Stats().Lag().
func (s *Source) Lag() int64 { return s.Stats().Lag() }

func (s *Source) setCommitted(partition int, offset int64) {
	s.mu.Lock()
	s.committed[partition] = offset
	s.mu.Unlock()
}

// ended forgets g's assignment unless a newer generation replaced it.
func (s *Source) ended(g *generation) {
	s.mu.Lock()
	if s.current == g {
		s.assigned, s.current = nil, nil
	}
	s.mu.Unlock()
}

func (s *Source) setHighWater(partition int, hw int64) {
	s.mu.Lock()
	s.highWater[partition] = hw
	s.mu.Unlock()
}

// run follows the group from generation to generation. Every function it
// starts on a generation runs until the generation ends: one that returned
// early would end the generation for everyone.
func (s *Source) run(ctx context.Context) {
	defer close(s.done)
	for {
		gen, err := s.group.Next(ctx)
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, kafka.ErrGroupClosed) {
				return
			}
			s.log.Warn("kafka: consumer group", "err", err)
			continue // kafka-go backs off before the next attempt
		}
		g := newGeneration(s, gen)
		assigned := gen.Assignments[s.cfg.Topic]
		ids := make([]int, 0, len(assigned))
		for _, a := range assigned {
			ids = append(ids, a.ID)
			g.parts[a.ID] = &partState{ready: -1, committed: a.Offset}
			if a.Offset >= 0 {
				s.setCommitted(a.ID, a.Offset)
			}
		}
		s.mu.Lock()
		s.assigned, s.current = ids, g
		s.mu.Unlock()
		s.log.Info("kafka: generation started", "generation", gen.ID, "member", gen.MemberID, "partitions", ids)
		gen.Start(g.commitLoop)
		for _, a := range assigned {
			gen.Start(func(ctx context.Context) {
				r := &reader{s: s, g: g, partition: a.ID, next: a.Offset}
				r.run(ctx)
			})
		}
	}
}
