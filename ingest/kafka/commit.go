package kafka

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/sluice-dev/sluice/ingest"
)

// commitRetry is how often a failed commit is retried while the generation
// lives.
const commitRetry = time.Second

// generation is the commit state of one consumer-group generation. It is
// dropped with the generation: acks that arrive later change nothing.
type generation struct {
	s   *Source
	gen *kafka.Generation

	mu    sync.Mutex
	parts map[int]*partState // assigned partitions; the map is fixed after start
	kick  chan struct{}      // an ack made something committable
}

// partState tracks the batches of one partition in offset order.
type partState struct {
	pending   []*pending // handed out (or about to be), not yet committable
	failed    bool       // a batch was nacked: commit nothing more
	ready     int64      // next offset that may be committed; -1 none yet
	committed int64      // next offset committed; negative when unknown
}

type pending struct {
	last  int64
	acked bool
}

func newGeneration(s *Source, gen *kafka.Generation) *generation {
	return &generation{s: s, gen: gen, parts: map[int]*partState{}, kick: make(chan struct{}, 1)}
}

// track registers a batch about to be handed out and returns its AckFunc.
func (g *generation) track(partition int, last int64) ingest.AckFunc {
	g.mu.Lock()
	ps := g.parts[partition]
	var p *pending
	if !ps.failed {
		p = &pending{last: last}
		ps.pending = append(ps.pending, p)
	}
	g.mu.Unlock()

	var acked atomic.Bool
	return func(_ context.Context, err error) error {
		if !acked.CompareAndSwap(false, true) {
			return ErrAcked
		}
		<-g.s.sem
		g.ack(partition, p, err)
		return nil
	}
}

func (g *generation) ack(partition int, p *pending, err error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	ps := g.parts[partition]
	if err != nil {
		if !ps.failed {
			g.s.log.Warn("kafka: batch failed; no more commits for the partition until it is reassigned",
				"partition", partition, "last", p.lastOrNeg(), "err", err)
		}
		ps.failed = true
		ps.pending = nil
		return
	}
	if p == nil || ps.failed {
		return
	}
	p.acked = true
	n := 0
	for n < len(ps.pending) && ps.pending[n].acked {
		ps.ready = ps.pending[n].last + 1
		n++
	}
	if n == 0 {
		return
	}
	ps.pending = ps.pending[n:]
	select {
	case g.kick <- struct{}{}:
	default:
	}
}

func (p *pending) lastOrNeg() int64 {
	if p == nil {
		return -1
	}
	return p.last
}

// commitLoop commits ready offsets whenever acks make some, and once more
// when the generation ends, so that Close keeps what was acked.
func (g *generation) commitLoop(ctx context.Context) {
	t := time.NewTicker(commitRetry)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			g.commit()
			g.s.ended(g)
			return
		case <-g.kick:
			g.commit()
		case <-t.C:
			g.commit()
		}
	}
}

func (g *generation) commit() {
	g.mu.Lock()
	offsets := map[int]int64{}
	for p, ps := range g.parts {
		if ps.ready >= 0 && ps.ready != ps.committed {
			offsets[p] = ps.ready
		}
	}
	g.mu.Unlock()
	if len(offsets) == 0 {
		return
	}
	if err := g.gen.CommitOffsets(map[string]map[int]int64{g.s.cfg.Topic: offsets}); err != nil {
		g.s.log.Warn("kafka: commit offsets", "generation", g.gen.ID, "offsets", offsets, "err", err)
		return
	}
	g.mu.Lock()
	for p, o := range offsets {
		g.parts[p].committed = o
	}
	g.mu.Unlock()
	for p, o := range offsets {
		g.s.setCommitted(p, o)
	}
	g.s.log.Debug("kafka: committed", "generation", g.gen.ID, "offsets", offsets)
}
