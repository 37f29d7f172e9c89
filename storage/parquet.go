package storage

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/apache/arrow-go/v18/parquet"
	"github.com/apache/arrow-go/v18/parquet/compress"
	"github.com/apache/arrow-go/v18/parquet/file"
	"github.com/apache/arrow-go/v18/parquet/pqarrow"
)

// ParquetOptions configure how a record batch is encoded.
type ParquetOptions struct {
	// Compression is the codec of every column, one of Codecs. Default
	// (empty): "zstd".
	Compression string `yaml:"compression"`
	// NoStats names top-level columns written without min/max statistics.
	// Statistics let readers skip files by value; on long strings that no
	// query filters by range (a quarantine reason, an id) they cost a
	// string comparison per value and buy nothing.
	NoStats []string `yaml:"-"`
	// Dictionary names top-level columns written dictionary-encoded, for
	// columns with few distinct values (a reason repeated on every row).
	// Other columns are not: for the ids and numbers of feature columns,
	// dictionaries cost time and bytes.
	Dictionary []string `yaml:"-"`
}

// Validate reports an unknown option value.
func (o ParquetOptions) Validate() error {
	_, err := o.codec()
	return err
}

// Codecs are the values ParquetOptions.Compression accepts:
//
//   - zstd (level 1): the smallest objects; the default.
//   - snappy: about a quarter less encoding time than zstd on small
//     objects, half again the bytes; read by every Parquet reader.
//   - lz4: Parquet's LZ4_RAW, the fastest to encode, larger than snappy;
//     read by DuckDB, pyarrow and Spark 3.4 or later, not by older readers.
//   - none.
var Codecs = []string{"zstd", "snappy", "lz4", "none"}

func (o ParquetOptions) codec() (compress.Compression, error) {
	switch o.Compression {
	case "", "zstd":
		return compress.Codecs.Zstd, nil
	case "snappy":
		return compress.Codecs.Snappy, nil
	case "lz4":
		return compress.Codecs.Lz4Raw, nil
	case "none":
		return compress.Codecs.Uncompressed, nil
	}
	return 0, fmt.Errorf("storage: parquet compression %q: want one of %s", o.Compression, strings.Join(Codecs, ", "))
}

// Object describes a written object, as lineage records it.
type Object struct {
	Key    string `json:"key"`
	Bytes  int64  `json:"bytes"`
	SHA256 string `json:"sha256"` // hex of the object's bytes
	Rows   int64  `json:"rows"`
}

// EncodeParquet encodes rec as one Parquet file with one row group. The
// Arrow schema is stored in the file, so ReadParquet gives back the same
// types (time zones, string vs. large string). Encoding is deterministic:
// the same record and options give the same bytes, which is what makes a
// replay rewrite an object with identical content. rec is not released.
func EncodeParquet(rec arrow.RecordBatch, opts ParquetOptions) ([]byte, error) {
	codec, err := opts.codec()
	if err != nil {
		return nil, err
	}
	props := []parquet.WriterProperty{
		parquet.WithCompression(codec),
		// One row group per object: objects are sized by the batcher.
		parquet.WithMaxRowGroupLength(max(rec.NumRows(), 1)),
		// Feature columns are mostly high-cardinality numbers and ids, for
		// which dictionaries cost time and bytes: on the demo's objects,
		// dictionary off plus zstd level 1 encodes 1.8x faster and 17%
		// smaller than arrow-go's defaults.
		parquet.WithDictionaryDefault(false),
		parquet.WithCompressionLevel(1),
	}
	for _, c := range opts.NoStats {
		props = append(props, parquet.WithStatsFor(c, false))
	}
	for _, c := range opts.Dictionary {
		props = append(props, parquet.WithDictionaryFor(c, true))
	}
	var buf bytes.Buffer
	w, err := pqarrow.NewFileWriter(rec.Schema(), &buf, parquet.NewWriterProperties(props...), pqarrow.NewArrowWriterProperties(pqarrow.WithStoreSchema()))
	if err != nil {
		return nil, fmt.Errorf("storage: parquet writer: %w", err)
	}
	if err := w.Write(rec); err != nil {
		_ = w.Close()
		return nil, fmt.Errorf("storage: parquet write: %w", err)
	}
	if err := w.Close(); err != nil {
		return nil, fmt.Errorf("storage: parquet close: %w", err)
	}
	return buf.Bytes(), nil
}

// WriteParquet encodes rec and puts it at key. When it returns nil the
// object is durable and Object describes it. rec is not released.
func WriteParquet(ctx context.Context, store ObjectStore, key string, rec arrow.RecordBatch, opts ParquetOptions) (Object, error) {
	data, err := EncodeParquet(rec, opts)
	if err != nil {
		return Object{}, err
	}
	sum := sha256.Sum256(data)
	if err := store.Put(ctx, key, bytes.NewReader(data), int64(len(data))); err != nil {
		return Object{}, fmt.Errorf("storage: put %s: %w", key, err)
	}
	return Object{
		Key:    key,
		Bytes:  int64(len(data)),
		SHA256: hex.EncodeToString(sum[:]),
		Rows:   rec.NumRows(),
	}, nil
}

// ReadParquet reads the Parquet object at key into a table allocated from
// mem. The caller releases the table. It reads the whole object into
// memory; it is meant for tests and inspection, not for bulk reads.
func ReadParquet(ctx context.Context, r BucketReader, key string, mem memory.Allocator) (arrow.Table, error) {
	rc, err := r.Get(ctx, key)
	if err != nil {
		return nil, fmt.Errorf("storage: read parquet %s: %w", key, err)
	}
	data, err := io.ReadAll(rc)
	if cerr := rc.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, fmt.Errorf("storage: read parquet %s: %w", key, err)
	}
	pf, err := file.NewParquetReader(bytes.NewReader(data), file.WithReadProps(parquet.NewReaderProperties(mem)))
	if err != nil {
		return nil, fmt.Errorf("storage: open parquet %s: %w", key, err)
	}
	defer pf.Close()
	fr, err := pqarrow.NewFileReader(pf, pqarrow.ArrowReadProperties{}, mem)
	if err != nil {
		return nil, fmt.Errorf("storage: open parquet %s: %w", key, err)
	}
	tbl, err := fr.ReadTable(ctx)
	if err != nil {
		return nil, fmt.Errorf("storage: decode parquet %s: %w", key, err)
	}
	return dropUnsetFieldIDs(tbl), nil
}

// fieldIDKey is the field metadata pqarrow adds on read, "-1" when the
// writer set no field id (EncodeParquet never does).
const fieldIDKey = "PARQUET:field_id"

// dropUnsetFieldIDs removes the "-1" field ids the reader adds, so the
// schema read back equals the one written. It takes ownership of tbl.
func dropUnsetFieldIDs(tbl arrow.Table) arrow.Table {
	sc := tbl.Schema()
	fields := slices.Clone(sc.Fields())
	changed := false
	for i, f := range fields {
		if v, ok := f.Metadata.GetValue(fieldIDKey); !ok || v != "-1" {
			continue
		}
		var keys, vals []string
		for j, k := range f.Metadata.Keys() {
			if k != fieldIDKey {
				keys = append(keys, k)
				vals = append(vals, f.Metadata.Values()[j])
			}
		}
		fields[i].Metadata = arrow.NewMetadata(keys, vals)
		changed = true
	}
	if !changed {
		return tbl
	}
	defer tbl.Release()
	md := sc.Metadata()
	newSchema := arrow.NewSchema(fields, &md)
	cols := make([]arrow.Column, len(fields))
	for i := range cols {
		cols[i] = *arrow.NewColumn(fields[i], tbl.Column(i).Data())
	}
	out := array.NewTable(newSchema, cols, tbl.NumRows())
	for i := range cols {
		cols[i].Release() // NewTable retained them
	}
	return out
}
