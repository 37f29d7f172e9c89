package kafka

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/sluice-dev/sluice/ingest"
)

// Reconnect backoff of a partition reader after an error.
const (
	minBackoff = 100 * time.Millisecond
	maxBackoff = 5 * time.Second
)

// reader consumes one partition for one generation and builds its batches.
type reader struct {
	s         *Source
	g         *generation
	partition int
	// next is the next offset to read; kafka.FirstOffset or LastOffset
	// until resolved against the log.
	next int64

	dec *ingest.Decoder
	// the batch being built
	n       int // records in it, rows and dead letters
	first   int64
	last    int64
	bytes   int64
	started time.Time // when its first record was read, for Linger
	time    time.Time // Kafka timestamp of its first record
	offsets []int64
	dead    []ingest.DeadLetter
	emitted bool // a batch was handed out: the next is not Assigned
}

// run reads until ctx (the generation) ends, reconnecting after errors. It
// must not return earlier: that would end the generation.
func (r *reader) run(ctx context.Context) {
	log := r.s.log.With("partition", r.partition)
	dec, err := ingest.NewDecoder(r.s.cfg.Fields, r.s.cfg.Allocator)
	if err != nil { // Validate built the same decoder, so this is a bug
		log.Error("kafka: decoder", "err", err)
		<-ctx.Done()
		return
	}
	r.dec = dec
	defer func() {
		// A batch still being built was never handed out; its records are
		// read again by the partition's next owner.
		r.dec.NewRecord().Release()
		r.dec.Release()
	}()
	backoff := minBackoff
	for ctx.Err() == nil {
		progressed, err := r.session(ctx)
		if ctx.Err() != nil {
			return
		}
		if progressed {
			backoff = minBackoff
		}
		log.Warn("kafka: partition reader", "offset", r.next, "err", err, "retry_in", backoff)
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, maxBackoff)
	}
}

// session reads over one connection to the partition leader until an error
// or the end of ctx. progressed reports that records were read.
func (r *reader) session(ctx context.Context) (progressed bool, err error) {
	conn, err := r.dial(ctx)
	if err != nil {
		return false, err
	}
	// ReadBatch takes no context; closing the connection unblocks it.
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer func() {
		stop()
		conn.Close()
	}()
	if err := r.seek(conn); err != nil {
		return false, err
	}
	cfg := &r.s.cfg
	maxBytes := int(min(cfg.MaxBytes, 64<<20))
	for {
		wait := maxFetchWait
		if r.n > 0 {
			left := cfg.Linger - time.Since(r.started)
			if left <= 0 {
				if err := r.emit(ctx); err != nil {
					return progressed, err
				}
			} else {
				wait = min(wait, left)
			}
		}
		wait = max(wait, time.Millisecond)
		batch := conn.ReadBatchWith(kafka.ReadBatchConfig{MinBytes: 1, MaxBytes: maxBytes, MaxWait: wait})
		if batch.Err() == nil {
			r.s.setHighWater(r.partition, batch.HighWaterMark())
		}
		var rerr error
		for {
			m, err := batch.ReadMessage()
			if err != nil {
				// RequestTimedOut is how kafka-go reports an empty fetch.
				if !errors.Is(err, io.EOF) && !errors.Is(err, kafka.RequestTimedOut) {
					rerr = err
				}
				break
			}
			if m.Offset < r.next {
				// Compressed batches may start before the offset asked for.
				continue
			}
			progressed = true
			if rerr = r.add(ctx, &m); rerr != nil {
				break
			}
		}
		cerr := batch.Close()
		if errors.Is(cerr, kafka.RequestTimedOut) {
			cerr = nil
		}
		switch {
		case ctx.Err() != nil:
			return progressed, ctx.Err()
		case rerr != nil:
			return progressed, rerr
		case cerr != nil:
			return progressed, cerr
		}
	}
}

func (r *reader) dial(ctx context.Context) (*kafka.Conn, error) {
	var errs []error
	for _, b := range r.s.cfg.Brokers {
		dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		conn, err := r.s.cfg.Dialer.DialLeader(dctx, "tcp", b, r.s.cfg.Topic, r.partition)
		cancel()
		if err == nil {
			return conn, nil
		}
		errs = append(errs, fmt.Errorf("broker %s: %w", b, err))
	}
	return nil, fmt.Errorf("dial leader: %w", errors.Join(errs...))
}

// seek positions conn at r.next, resolving the start placeholders and an
// offset that has left the log according to StartOffset.
func (r *reader) seek(conn *kafka.Conn) error {
	if r.next >= 0 {
		_, err := conn.Seek(r.next, kafka.SeekAbsolute)
		if err == nil {
			return nil
		}
		if !errors.Is(err, kafka.OffsetOutOfRange) {
			return fmt.Errorf("seek %d: %w", r.next, err)
		}
		r.s.log.Warn("kafka: offset out of range; restarting per start offset",
			"partition", r.partition, "offset", r.next, "start_offset", r.s.cfg.StartOffset)
	}
	var err error
	var off int64
	switch {
	case r.next < 0 && !r.s.cfg.StartTime.IsZero():
		// No committed offset and a start time: kafka-go puts the
		// StartOffset placeholder in the assignment.
		off, err = offsetAt(conn, r.s.cfg.StartTime)
	case r.next == kafka.LastOffset || (r.next >= 0 && r.s.cfg.StartOffset == StartLatest):
		off, err = conn.ReadLastOffset()
	default:
		off, err = conn.ReadFirstOffset()
	}
	if err != nil {
		return fmt.Errorf("resolve start offset: %w", err)
	}
	if _, err := conn.Seek(off, kafka.SeekAbsolute|kafka.SeekDontCheck); err != nil {
		return fmt.Errorf("seek %d: %w", off, err)
	}
	r.next = off
	return nil
}

// add appends one message to the batch being built, as a row or, when it
// cannot be decoded or is over MaxRecordBytes, as a dead letter; it hands
// the batch out first when the message does not follow it, and after when
// it is full.
func (r *reader) add(ctx context.Context, m *kafka.Message) error {
	if r.n > 0 && m.Offset != r.last+1 {
		if err := r.emit(ctx); err != nil {
			return err
		}
	}
	if r.n == 0 {
		r.first = m.Offset
		r.time = m.Time
		r.started = time.Now()
	}
	size := int64(len(m.Key) + len(m.Value))
	var err error
	if size > r.s.cfg.MaxRecordBytes {
		// Not decoded: its bytes are already in memory, but a row of that
		// size would be copied into Arrow, the policy input and the sinks.
		err = &ingest.SizeError{Size: size, Limit: r.s.cfg.MaxRecordBytes}
	} else {
		err = r.dec.Append(m.Value)
	}
	if err != nil {
		r.dead = append(r.dead, ingest.DeadLetter{
			Topic:     m.Topic,
			Partition: m.Partition,
			Offset:    m.Offset,
			Key:       m.Key,
			Value:     m.Value,
			Time:      m.Time,
			Reason:    err.Error(),
			Err:       err,
		})
	} else {
		r.offsets = append(r.offsets, m.Offset)
	}
	r.n++
	r.last = m.Offset
	r.next = m.Offset + 1
	r.bytes += size
	if r.n >= r.s.cfg.MaxRecords || r.bytes >= r.s.cfg.MaxBytes {
		return r.emit(ctx)
	}
	return nil
}

// emit hands the batch being built to Next, blocking until Next takes it or
// ctx ends; in the latter case the batch is dropped, never acked.
func (r *reader) emit(ctx context.Context) error {
	rec := r.dec.NewRecord()
	b := &ingest.Batch{
		Topic:       r.s.cfg.Topic,
		Partition:   r.partition,
		First:       r.first,
		Last:        r.last,
		Assigned:    !r.emitted,
		Record:      rec,
		Offsets:     r.offsets,
		Time:        r.time,
		DeadLetters: r.dead,
	}
	n, dead := r.n, len(r.dead)
	r.n, r.bytes, r.offsets, r.dead = 0, 0, nil, nil
	b.Ack = r.g.track(r.partition, b.Last)
	select {
	case r.s.out <- b:
		r.emitted = true
		r.s.records.Add(int64(n))
		r.s.deadLetters.Add(int64(dead))
		r.s.batches.Add(1)
		return nil
	case <-ctx.Done():
		rec.Release()
		return ctx.Err()
	}
}

// offsetAt is the first offset whose record's timestamp is at or after t,
// or the end of the log when no record is that recent.
func offsetAt(conn *kafka.Conn, t time.Time) (int64, error) {
	off, err := conn.ReadOffset(t)
	if err != nil {
		return 0, fmt.Errorf("offset at %s: %w", t.Format(time.RFC3339Nano), err)
	}
	if off < 0 {
		return conn.ReadLastOffset()
	}
	return off, nil
}
