package kafka

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/segmentio/kafka-go"

	"github.com/sluice-dev/sluice/ingest"
)

// sized is a valid test record of exactly n bytes (n >= 40), padded in the
// string field.
func sized(seq, n int) []byte {
	v := fmt.Appendf(nil, `{"p":0,"seq":%d,"country":""}`, seq)
	return slices.Insert(v, len(v)-2, bytes.Repeat([]byte("x"), n-len(v))...)
}

// TestReaderAddRecordLimit drives (*reader).add without a broker: a record
// over MaxRecordBytes (key and value together) is a dead letter that keeps
// its bytes, is never decoded, and leaves the records around it alone.
func TestReaderAddRecordLimit(t *testing.T) {
	const limit = 256
	tests := []struct {
		name   string
		key    []byte
		value  []byte
		reason string // empty: a row
		kind   error
	}{
		{"at the limit", []byte("k"), sized(1, limit-1), "", nil},
		{"one byte over", []byte("k"), sized(1, limit), "record is 257 bytes; the limit is 256 (batching.max_record_bytes)", ingest.ErrTooLarge},
		{"the key counts", bytes.Repeat([]byte("k"), 100), sized(1, 200), "record is 300 bytes; the limit is 256 (batching.max_record_bytes)", ingest.ErrTooLarge},
		{"over and malformed", nil, bytes.Repeat([]byte("{"), 1000), "record is 1000 bytes; the limit is 256 (batching.max_record_bytes)", ingest.ErrTooLarge},
		{"under and malformed", nil, []byte(`{"p":0`), "malformed JSON at byte 6: unexpected end of record", ingest.ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
			defer mem.AssertSize(t, 0)
			cfg := Config{MaxRecords: 100, MaxRecordBytes: limit, Fields: testFields, Allocator: mem}.withDefaults()
			dec, err := ingest.NewDecoder(cfg.Fields, cfg.Allocator)
			if err != nil {
				t.Fatal(err)
			}
			defer dec.Release()
			r := &reader{s: &Source{cfg: cfg}, dec: dec}
			ts := time.Unix(1700000000, 0)
			msgs := []kafka.Message{
				{Topic: testTopic, Offset: 10, Key: []byte("a"), Value: sized(10, 64), Time: ts},
				{Topic: testTopic, Offset: 11, Key: tt.key, Value: tt.value, Time: ts},
				{Topic: testTopic, Offset: 12, Key: []byte("c"), Value: sized(12, 64), Time: ts},
			}
			for i := range msgs {
				if err := r.add(context.Background(), &msgs[i]); err != nil {
					t.Fatal(err)
				}
			}
			rec := dec.NewRecord()
			defer rec.Release()

			wantRows := []int64{10, 12}
			if tt.reason == "" {
				wantRows = []int64{10, 11, 12}
			}
			if fmt.Sprint(r.offsets) != fmt.Sprint(wantRows) || rec.NumRows() != int64(len(wantRows)) {
				t.Fatalf("rows at offsets %v (%d decoded), want %v", r.offsets, rec.NumRows(), wantRows)
			}
			if r.n != 3 || r.first != 10 || r.last != 12 {
				t.Errorf("batch %d..%d of %d records, want 10..12 of 3", r.first, r.last, r.n)
			}
			if want := int64(len("a") + 64 + len(tt.key) + len(tt.value) + len("c") + 64); r.bytes != want {
				t.Errorf("batch bytes %d, want %d: a dead letter counts towards MaxBytes", r.bytes, want)
			}
			if tt.reason == "" {
				if len(r.dead) != 0 {
					t.Fatalf("dead letters %+v, want none", r.dead)
				}
				return
			}
			if len(r.dead) != 1 {
				t.Fatalf("%d dead letters, want 1", len(r.dead))
			}
			d := r.dead[0]
			if d.Offset != 11 || d.Reason != tt.reason {
				t.Errorf("dead letter at %d: %q, want 11: %q", d.Offset, d.Reason, tt.reason)
			}
			if !errors.Is(d.Err, tt.kind) || d.Err.Error() != d.Reason {
				t.Errorf("dead letter Err = %v, want %v with the Reason as its message", d.Err, tt.kind)
			}
			if !bytes.Equal(d.Key, tt.key) || !bytes.Equal(d.Value, tt.value) || !d.Time.Equal(ts) {
				t.Errorf("dead letter lost its record: key %d bytes, value %d bytes, time %v", len(d.Key), len(d.Value), d.Time)
			}
		})
	}
}
