package storage_test

import (
	"testing"

	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/sluice-dev/sluice/storage"
)

func TestCountRows(t *testing.T) {
	rec := record(memory.NewGoAllocator(), 1234)
	defer rec.Release()
	pq, err := storage.EncodeParquet(rec, storage.ParquetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		key     string
		data    []byte
		rows    int64
		ok      bool
		wantErr bool
	}{
		{"parquet", "f/x.parquet", pq, 1234, true, false},
		{"parquet cut short", "f/x.parquet", pq[:len(pq)/2], 0, true, true},
		{"ndjson", "dl/x.ndjson", []byte("{}\n{}\n{}\n"), 3, true, false},
		{"ndjson empty", "dl/x.ndjson", nil, 0, true, false},
		{"ndjson unterminated", "dl/x.ndjson", []byte("{}\n{"), 0, true, true},
		{"unknown format", "x.bin", pq, 0, false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rows, ok, err := storage.CountRows(tc.key, tc.data)
			if (err != nil) != tc.wantErr || ok != tc.ok || (err == nil && rows != tc.rows) {
				t.Fatalf("CountRows = %d, %v, %v; want %d, %v, error %v", rows, ok, err, tc.rows, tc.ok, tc.wantErr)
			}
		})
	}
}
