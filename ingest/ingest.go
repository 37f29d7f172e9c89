package ingest

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
)

// ErrClosed is returned by Source.Next after Close.
var ErrClosed = errors.New("ingest: source closed")

// ErrTooLarge means a record is bigger than the per-record limit
// (batching.max_record_bytes). A Source does not decode such a record: it
// hands it out whole as a dead letter, so one hostile record costs no more
// than its own bytes and nothing is lost. It is wrapped in a *SizeError;
// match it with errors.Is.
var ErrTooLarge = errors.New("record too large")

// SizeError says why one record was too large to decode. Its message is
// the dead letter's Reason.
type SizeError struct {
	// Size is the record's key and value bytes together.
	Size int64
	// Limit is the largest Size that is decoded.
	Limit int64
}

func (e *SizeError) Error() string {
	return fmt.Sprintf("record is %d bytes; the limit is %d (batching.max_record_bytes)", e.Size, e.Limit)
}

func (e *SizeError) Unwrap() error { return ErrTooLarge }

// AckFunc reports the fate of a batch back to its Source. err == nil means
// every record of the batch (feature rows, dead letters, quarantined rows) is
// durable together with its lineage, so the batch's offsets may be committed.
// A non-nil err means the batch was not made durable: its offsets are never
// committed and the records are read again by whoever owns the partition next.
// Acks may arrive out of order; a Source commits, per partition, only the
// highest contiguous acked offset. An AckFunc is called at most once.
type AckFunc func(ctx context.Context, err error) error

// Field describes one column of the decoded batch.
type Field struct {
	// Name is the Arrow column name.
	Name string
	// Path is the dotted path of the value inside the JSON record
	// ("merchant.mcc"); empty means Name.
	Path string
	// Type is one of arrow.FixedWidthTypes.Boolean, PrimitiveTypes.Int32,
	// Int64, Float32, Float64, BinaryTypes.String, or
	// arrow.FixedWidthTypes.Timestamp_us (UTC).
	Type arrow.DataType
	// Nullable fields may be absent or null; a missing non-nullable field
	// makes the record a dead letter.
	Nullable bool
}

// DeadLetter is a record that could not be decoded, or was too large to
// try. It keeps the raw bytes so nothing is lost.
type DeadLetter struct {
	Topic     string
	Partition int
	Offset    int64
	Key       []byte
	Value     []byte
	Time      time.Time
	// Reason says why, e.g. `field "amount": want float64, got string`;
	// it is Err's message.
	Reason string
	// Err is why as an error: it matches ErrMalformed, ErrFieldType,
	// ErrMissingField or ErrTooLarge with errors.Is. Nil when the dead
	// letter was built from a Reason alone.
	Err error
}

// Batch is a decoded slice of one partition: offsets First..Last inclusive,
// every offset in that range accounted for either as a row of Record (in
// offset order, Offsets[i] is the offset of row i) or as a DeadLetter.
//
// Ownership: the receiver of a Batch owns Record and must Release it.
type Batch struct {
	Topic     string
	Partition int
	First     int64
	Last      int64
	// Record holds the decoded rows; it may have zero rows when every record
	// was a dead letter.
	Record arrow.RecordBatch
	// Offsets[i] is the Kafka offset of row i of Record.
	Offsets []int64
	// Time is the Kafka timestamp of the first record of the batch; it
	// makes date-partitioned keys deterministic across replays.
	Time        time.Time
	DeadLetters []DeadLetter
	// Assigned is set on the first batch of the partition since the source
	// was (re)assigned it: another consumer may have processed the
	// partition since this process last saw it, and batches of this
	// process's previous assignment may still be in flight.
	Assigned bool
	// Ack must be called exactly once when the batch is done.
	Ack AckFunc
}

// Source hands out batches. Next blocks until a batch is ready or ctx ends.
// Close stops fetching; batches handed out but not acked are not committed.
// Next is called from one goroutine; AckFunc may be called from any.
type Source interface {
	Next(ctx context.Context) (*Batch, error)
	Close() error
}
