package main

import (
	"bytes"
	"testing"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/apache/arrow-go/v18/parquet"
	"github.com/apache/arrow-go/v18/parquet/compress"
	"github.com/apache/arrow-go/v18/parquet/pqarrow"
	"github.com/sluice-dev/sluice/ingest"
)

func enc(b *testing.B, rec arrow.RecordBatch, extra ...parquet.WriterProperty) int {
	props := parquet.NewWriterProperties(append([]parquet.WriterProperty{
		parquet.WithCompression(compress.Codecs.Zstd),
		parquet.WithMaxRowGroupLength(rec.NumRows()),
		parquet.WithDictionaryDefault(false),
		parquet.WithCompressionLevel(1)}, extra...)...)
	var buf bytes.Buffer
	w, err := pqarrow.NewFileWriter(rec.Schema(), &buf, props, pqarrow.NewArrowWriterProperties(pqarrow.WithStoreSchema()))
	if err != nil {
		b.Fatal(err)
	}
	if err := w.Write(rec); err != nil {
		b.Fatal(err)
	}
	if err := w.Close(); err != nil {
		b.Fatal(err)
	}
	return buf.Len()
}

func BenchmarkQuarantineEncode(b *testing.B) {
	spec, err := demoSpec(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	dec, err := ingest.NewDecoder(spec.IngestFields(), memory.DefaultAllocator)
	if err != nil {
		b.Fatal(err)
	}
	g := newGenerator(1, 2000)
	for range 2000 {
		_ = dec.Append(g.next().value)
	}
	sub := dec.NewRecord()
	n := sub.NumRows()
	ob := array.NewInt64Builder(memory.DefaultAllocator)
	rb := array.NewStringBuilder(memory.DefaultAllocator)
	for i := range n {
		ob.Append(i * 3)
		if i%3 == 0 {
			rb.Append("IN data: DPDP Act s.16 (IN): personal data of Indian residents is processed in India only")
		} else {
			rb.Append("BR data: LGPD art. 33: transfers of Brazilian personal data need an adequacy decision")
		}
	}
	fields := append(sub.Schema().Fields(), arrow.Field{Name: "offset", Type: arrow.PrimitiveTypes.Int64}, arrow.Field{Name: "reason", Type: arrow.BinaryTypes.String})
	cols := append(sub.Columns(), ob.NewArray(), rb.NewArray())
	rec := array.NewRecordBatch(arrow.NewSchema(fields, nil), cols, n)
	var strs []parquet.WriterProperty
	for _, f := range fields {
		if f.Type.ID() == arrow.STRING {
			strs = append(strs, parquet.WithDictionaryFor(f.Name, true))
		}
	}
	for name, extra := range map[string][]parquet.WriterProperty{
		"plain":      nil,
		"dictReason": {parquet.WithDictionaryFor("reason", true)},
		"dictStrings": strs,
		"dictAll":    {parquet.WithDictionaryDefault(true)},
	} {
		b.Run(name, func(b *testing.B) {
			var sz int
			for b.Loop() {
				sz = enc(b, rec, extra...)
			}
			b.ReportMetric(float64(sz), "bytes")
		})
	}
}
