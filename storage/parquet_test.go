package storage_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/apache/arrow-go/v18/parquet/compress"
	"github.com/apache/arrow-go/v18/parquet/file"

	"github.com/sluice-dev/sluice/storage"
	"github.com/sluice-dev/sluice/storage/fs"
)

var allTypes = arrow.NewSchema([]arrow.Field{
	{Name: "b", Type: arrow.FixedWidthTypes.Boolean, Nullable: true},
	{Name: "i32", Type: arrow.PrimitiveTypes.Int32, Nullable: true},
	{Name: "i64", Type: arrow.PrimitiveTypes.Int64, Nullable: false},
	{Name: "f32", Type: arrow.PrimitiveTypes.Float32, Nullable: true},
	{Name: "f64", Type: arrow.PrimitiveTypes.Float64, Nullable: true},
	{Name: "s", Type: arrow.BinaryTypes.String, Nullable: true},
	{Name: "ts", Type: &arrow.TimestampType{Unit: arrow.Microsecond, TimeZone: "UTC"}, Nullable: true},
}, nil)

// record builds n rows of every supported type; every third row is null
// in the nullable columns.
func record(mem memory.Allocator, n int) arrow.RecordBatch {
	b := array.NewRecordBuilder(mem, allTypes)
	defer b.Release()
	base := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	for i := range n {
		null := i%3 == 2
		b.Field(2).(*array.Int64Builder).Append(int64(i) * 1_000_000_007)
		if null {
			for _, f := range []int{0, 1, 3, 4, 5, 6} {
				b.Field(f).AppendNull()
			}
			continue
		}
		b.Field(0).(*array.BooleanBuilder).Append(i%2 == 0)
		b.Field(1).(*array.Int32Builder).Append(int32(-i))
		b.Field(3).(*array.Float32Builder).Append(float32(i) / 3)
		b.Field(4).(*array.Float64Builder).Append(float64(i) * 1.5e-3)
		b.Field(5).(*array.StringBuilder).Append([]string{"de", "fr", "ünïcode", ""}[i%4])
		b.Field(6).(*array.TimestampBuilder).Append(arrow.Timestamp(base.Add(time.Duration(i) * time.Second).UnixMicro()))
	}
	return b.NewRecordBatch()
}

func TestParquetRoundTrip(t *testing.T) {
	for _, codec := range append([]string{""}, storage.Codecs...) {
		t.Run("compression="+codec, func(t *testing.T) {
			mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
			defer mem.AssertSize(t, 0)
			ctx := context.Background()
			store, err := fs.New(t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			rec := record(mem, 1000)
			defer rec.Release()

			key := "features/x.parquet"
			obj, err := storage.WriteParquet(ctx, store, key, rec, storage.ParquetOptions{Compression: codec})
			if err != nil {
				t.Fatal(err)
			}
			// Object describes exactly the bytes in the store.
			raw := readAll(t, store, key)
			sum := sha256.Sum256(raw)
			if obj.Key != key || obj.Rows != 1000 || obj.Bytes != int64(len(raw)) || obj.SHA256 != hex.EncodeToString(sum[:]) {
				t.Fatalf("Object = %+v; stored %d bytes with sha256 %x", obj, len(raw), sum)
			}

			tbl, err := storage.ReadParquet(ctx, store, key, mem)
			if err != nil {
				t.Fatal(err)
			}
			defer tbl.Release()
			if !tbl.Schema().Equal(rec.Schema()) {
				t.Fatalf("schema read back:\n%v\nwant\n%v", tbl.Schema(), rec.Schema())
			}
			got := tableRecord(t, tbl)
			defer got.Release()
			if !array.RecordEqual(got, rec) {
				t.Fatalf("record read back differs:\n got %v\nwant %v", got, rec)
			}
			if got.Column(5).NullN() == 0 {
				t.Fatal("test data has no nulls")
			}
		})
	}
}

// tableRecord concatenates a table's chunks into one record.
func tableRecord(t *testing.T, tbl arrow.Table) arrow.RecordBatch {
	t.Helper()
	tr := array.NewTableReader(tbl, -1)
	defer tr.Release()
	if !tr.Next() {
		t.Fatal("empty table")
	}
	rec := tr.RecordBatch()
	rec.Retain()
	if tr.Next() {
		t.Fatal("table read back in more than one chunk")
	}
	return rec
}

func TestParquetDeterministic(t *testing.T) {
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer mem.AssertSize(t, 0)
	// Two records built separately with the same content, encoded a
	// moment apart: a replay after a crash must produce the same bytes.
	r1 := record(mem, 500)
	defer r1.Release()
	a, err := storage.EncodeParquet(r1, storage.ParquetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(1100 * time.Millisecond) // a wall-clock second passes
	r2 := record(mem, 500)
	defer r2.Release()
	b, err := storage.EncodeParquet(r2, storage.ParquetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a, b) {
		t.Fatalf("same record encoded to different bytes (%d vs %d bytes)", len(a), len(b))
	}
	if !bytes.HasPrefix(a, []byte("PAR1")) || !bytes.HasSuffix(a, []byte("PAR1")) {
		t.Fatal("not a Parquet file")
	}
	// And different content gives different bytes.
	r3 := record(mem, 501)
	defer r3.Release()
	c, err := storage.EncodeParquet(r3, storage.ParquetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(a, c) {
		t.Fatal("different records encoded to the same bytes")
	}
}

func TestParquetCompressionOption(t *testing.T) {
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer mem.AssertSize(t, 0)
	rec := record(mem, 5000)
	defer rec.Release()
	sizes := map[string]int{}
	for _, c := range storage.Codecs {
		b, err := storage.EncodeParquet(rec, storage.ParquetOptions{Compression: c})
		if err != nil {
			t.Fatal(err)
		}
		sizes[c] = len(b)
		// The codec named is the one every column chunk is written with.
		r, err := file.NewParquetReader(bytes.NewReader(b))
		if err != nil {
			t.Fatal(err)
		}
		want := map[string]compress.Compression{"zstd": compress.Codecs.Zstd, "snappy": compress.Codecs.Snappy,
			"lz4": compress.Codecs.Lz4Raw, "none": compress.Codecs.Uncompressed}[c]
		rg := r.MetaData().RowGroup(0)
		for i := range rg.NumColumns() {
			cc, err := rg.ColumnChunk(i)
			if err != nil {
				t.Fatal(err)
			}
			if cc.Compression() != want {
				t.Errorf("%s: column %d written with %s", c, i, cc.Compression())
			}
		}
		r.Close()
	}
	for _, c := range []string{"zstd", "snappy", "lz4"} {
		if sizes[c] >= sizes["none"] {
			t.Errorf("%s (%d bytes) not smaller than none (%d bytes)", c, sizes[c], sizes["none"])
		}
	}
	if _, err := storage.EncodeParquet(rec, storage.ParquetOptions{Compression: "lzo"}); err == nil {
		t.Error("unknown compression accepted")
	}
	if err := (storage.ParquetOptions{Compression: "gzip"}).Validate(); err == nil {
		t.Error("Validate accepted unknown compression")
	}
}

func TestParquetEmptyRecord(t *testing.T) {
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer mem.AssertSize(t, 0)
	store, err := fs.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	rec := record(mem, 0)
	defer rec.Release()
	obj, err := storage.WriteParquet(context.Background(), store, "e.parquet", rec, storage.ParquetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if obj.Rows != 0 {
		t.Errorf("Rows = %d", obj.Rows)
	}
	tbl, err := storage.ReadParquet(context.Background(), store, "e.parquet", mem)
	if err != nil {
		t.Fatal(err)
	}
	defer tbl.Release()
	if tbl.NumRows() != 0 || !tbl.Schema().Equal(allTypes) {
		t.Fatalf("read back %d rows, schema %v", tbl.NumRows(), tbl.Schema())
	}
}

func TestReadParquetMissing(t *testing.T) {
	store, err := fs.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	_, err = storage.ReadParquet(context.Background(), store, "nope.parquet", memory.DefaultAllocator)
	if !errors.Is(err, storage.ErrNotExist) {
		t.Fatalf("err = %v, want ErrNotExist", err)
	}
	if err := store.Put(context.Background(), "junk.parquet", bytes.NewReader([]byte("not parquet")), 11); err != nil {
		t.Fatal(err)
	}
	if _, err := storage.ReadParquet(context.Background(), store, "junk.parquet", memory.DefaultAllocator); err == nil {
		t.Fatal("ReadParquet of junk: want an error")
	}
}

// BenchmarkEncodeParquet encodes one 10k-row, 7-column object with each
// codec: rows/s and the object's bytes are what a sink's (or the
// quarantine's) compression setting trades.
func BenchmarkEncodeParquet(b *testing.B) {
	const rows = 10_000
	rec := record(memory.NewGoAllocator(), rows)
	defer rec.Release()
	for _, codec := range storage.Codecs {
		b.Run(codec, func(b *testing.B) {
			b.ReportAllocs()
			var n int
			for b.Loop() {
				data, err := storage.EncodeParquet(rec, storage.ParquetOptions{Compression: codec})
				if err != nil {
					b.Fatal(err)
				}
				n = len(data)
			}
			b.ReportMetric(float64(rows*b.N)/b.Elapsed().Seconds(), "rows/s")
			b.ReportMetric(float64(n), "bytes/object")
		})
	}
}

func readAll(t *testing.T, r storage.BucketReader, key string) []byte {
	t.Helper()
	rc, err := r.Get(context.Background(), key)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestParquetStatsAndDictionaryOptions: a column named in NoStats has no
// min/max statistics and one in Dictionary is dictionary-encoded, the
// others keep arrow-go's plain encoding with statistics, and the values
// read back the same either way.
func TestParquetStatsAndDictionaryOptions(t *testing.T) {
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer mem.AssertSize(t, 0)
	rec := record(mem, 5000)
	defer rec.Release()
	data, err := storage.EncodeParquet(rec, storage.ParquetOptions{NoStats: []string{"s"}, Dictionary: []string{"s"}})
	if err != nil {
		t.Fatal(err)
	}
	rdr, err := file.NewParquetReader(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	defer rdr.Close()
	rg := rdr.MetaData().RowGroup(0)
	for i := range rg.NumColumns() {
		col, err := rg.ColumnChunk(i)
		if err != nil {
			t.Fatal(err)
		}
		name := col.PathInSchema().String()
		stats, err := col.StatsSet()
		if err != nil {
			t.Fatal(err)
		}
		if want := name != "s"; stats != want {
			t.Errorf("column %s: statistics %v, want %v", name, stats, want)
		}
		if want := name == "s"; col.HasDictionaryPage() != want {
			t.Errorf("column %s: dictionary page %v, want %v", name, col.HasDictionaryPage(), want)
		}
	}
	plain, err := storage.EncodeParquet(rec, storage.ParquetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	store, err := fs.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for key, b := range map[string][]byte{"opts.parquet": data, "plain.parquet": plain} {
		if err := store.Put(ctx, key, bytes.NewReader(b), int64(len(b))); err != nil {
			t.Fatal(err)
		}
	}
	a, err := storage.ReadParquet(ctx, store, "opts.parquet", mem)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Release()
	b, err := storage.ReadParquet(ctx, store, "plain.parquet", mem)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Release()
	if !array.TableEqual(a, b) {
		t.Error("the values read back differ from those written without the options")
	}
}
