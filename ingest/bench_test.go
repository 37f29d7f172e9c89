package ingest

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"runtime"
	"syscall"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
)

// benchRecords is the size of the NDJSON input of BenchmarkDecode.
const benchRecords = 1_000_000

// benchFields is the 10-field schema of the decode benchmark; two fields
// sit in a nested object.
func benchFields() []Field {
	return []Field{
		{Name: "event_id", Type: arrow.BinaryTypes.String},
		{Name: "user_id", Type: arrow.PrimitiveTypes.Int64},
		{Name: "amount", Type: arrow.PrimitiveTypes.Float64},
		{Name: "currency", Type: arrow.BinaryTypes.String},
		{Name: "country", Type: arrow.BinaryTypes.String},
		{Name: "mcc", Path: "merchant.mcc", Type: arrow.PrimitiveTypes.Int32},
		{Name: "merchant", Path: "merchant.name", Type: arrow.BinaryTypes.String, Nullable: true},
		{Name: "card_present", Type: arrow.FixedWidthTypes.Boolean},
		{Name: "risk", Type: arrow.PrimitiveTypes.Float32, Nullable: true},
		{Name: "ts", Type: arrow.FixedWidthTypes.Timestamp_us},
	}
}

// benchSchema is the same record for arrow-go's JSON reader, which has no
// dotted paths: the merchant object is a struct column.
var benchSchema = arrow.NewSchema([]arrow.Field{
	{Name: "event_id", Type: arrow.BinaryTypes.String},
	{Name: "user_id", Type: arrow.PrimitiveTypes.Int64},
	{Name: "amount", Type: arrow.PrimitiveTypes.Float64},
	{Name: "currency", Type: arrow.BinaryTypes.String},
	{Name: "country", Type: arrow.BinaryTypes.String},
	{Name: "merchant", Type: arrow.StructOf(
		arrow.Field{Name: "mcc", Type: arrow.PrimitiveTypes.Int32},
		arrow.Field{Name: "name", Type: arrow.BinaryTypes.String, Nullable: true},
	)},
	{Name: "card_present", Type: arrow.FixedWidthTypes.Boolean},
	{Name: "risk", Type: arrow.PrimitiveTypes.Float32, Nullable: true},
	{Name: "ts", Type: arrow.FixedWidthTypes.Timestamp_us},
}, nil)

// benchNDJSON returns n card-transaction records of about 190 bytes, one
// per line, the same for every run (fixed seed), and where each line ends.
func benchNDJSON(n int) (data []byte, ends []int) {
	rng := rand.New(rand.NewPCG(1, 2))
	countries := []string{"DE", "FR", "US", "IN", "BR"}
	currencies := []string{"EUR", "EUR", "USD", "INR", "BRL"}
	merchants := []string{`Bäcker \"Post\"`, "FreshMart", "Tankstelle", "Digital Ltd", "Café Zentral"}
	data = make([]byte, 0, n*195)
	ends = make([]int, 0, n)
	for i := range n {
		c := rng.IntN(len(countries))
		data = fmt.Appendf(data, `{"event_id":"e%07d","user_id":%d,"amount":%d.%02d,"currency":"%s","country":"%s",`+
			`"merchant":{"mcc":%d,"name":"%s"},"card_present":%t,"risk":%.2f,"ts":"2024-03-%02dT%02d:%02d:%02dZ"}`,
			i, 10000+rng.IntN(90000), rng.IntN(5000), rng.IntN(100), currencies[c], countries[c],
			5000+rng.IntN(1000), merchants[rng.IntN(len(merchants))], rng.IntN(2) == 0, rng.Float64(),
			1+rng.IntN(28), rng.IntN(24), rng.IntN(60), rng.IntN(60))
		ends = append(ends, len(data))
		data = append(data, '\n')
	}
	return data, ends
}

// BenchmarkDecode decodes the same 1M-record NDJSON with sluice's Decoder
// and with arrow-go's JSON reader, in batches of 8192 rows. One operation
// is the whole input; run it with -benchtime=1x (or 3x) and read
// records/s, ns/record and allocs/record.
func BenchmarkDecode(b *testing.B) {
	data, ends := benchNDJSON(benchRecords)
	// cpu-ns/record is the process's CPU time (GC included) per record:
	// on a shared machine it is steadier than the wall-clock records/s.
	report := func(b *testing.B, mallocs uint64, cpu time.Duration) {
		recs := float64(b.N) * benchRecords
		b.ReportMetric(float64(cpu.Nanoseconds())/recs, "cpu-ns/record")
		b.ReportMetric(recs/b.Elapsed().Seconds(), "records/s")
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/recs, "ns/record")
		b.ReportMetric(float64(mallocs)/recs, "allocs/record")
	}
	b.Run("sluice", func(b *testing.B) {
		dec, err := NewDecoder(benchFields(), memory.NewGoAllocator())
		if err != nil {
			b.Fatal(err)
		}
		defer dec.Release()
		b.SetBytes(int64(len(data)))
		mallocs, cpu := mallocs(), cpuTime()
		for b.Loop() {
			rows, start := 0, 0
			for _, end := range ends {
				if err := dec.Append(data[start:end]); err != nil {
					b.Fatalf("record at byte %d: %v", start, err)
				}
				start = end + 1
				if dec.Len() == 8192 {
					rows += 8192
					dec.NewRecord().Release()
				}
			}
			rows += dec.Len()
			dec.NewRecord().Release()
			if rows != benchRecords {
				b.Fatalf("decoded %d rows", rows)
			}
		}
		report(b, mallocs(), cpu())
	})
	b.Run("arrowjson", func(b *testing.B) {
		mem := memory.NewGoAllocator()
		b.SetBytes(int64(len(data)))
		mallocs, cpu := mallocs(), cpuTime()
		for b.Loop() {
			r := array.NewJSONReader(bytes.NewReader(data), benchSchema, array.WithChunk(8192), array.WithAllocator(mem))
			rows := 0
			for r.Next() {
				rows += int(r.RecordBatch().NumRows())
			}
			if err := r.Err(); err != nil {
				b.Fatal(err)
			}
			r.Release()
			if rows != benchRecords {
				b.Fatalf("decoded %d rows", rows)
			}
		}
		report(b, mallocs(), cpu())
	})
}

// mallocs returns a function that reports the heap allocations since it
// was made.
func mallocs() func() uint64 {
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	before := m.Mallocs
	return func() uint64 {
		runtime.ReadMemStats(&m)
		return m.Mallocs - before
	}
}

// cpuTime returns a function that reports the CPU time this process has
// used since it was made.
func cpuTime() func() time.Duration {
	used := func() time.Duration {
		var ru syscall.Rusage
		if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
			return 0
		}
		return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	before := used()
	return func() time.Duration { return used() - before }
}

// TestBenchInputAgrees checks that both benchmark decoders read the same
// values from the benchmark's input, so the comparison is fair.
func TestBenchInputAgrees(t *testing.T) {
	data, ends := benchNDJSON(3000)
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer mem.AssertSize(t, 0)
	dec, err := NewDecoder(benchFields(), mem)
	if err != nil {
		t.Fatal(err)
	}
	defer dec.Release()
	start := 0
	for _, end := range ends {
		if err := dec.Append(data[start:end]); err != nil {
			t.Fatalf("record %q: %v", data[start:end], err)
		}
		start = end + 1
	}
	got := dec.NewRecord()
	defer got.Release()
	if n := float64(len(data)) / float64(len(ends)); n < 170 || n > 210 {
		t.Errorf("records average %.0f bytes, want about 190", n)
	}

	r := array.NewJSONReader(bytes.NewReader(data), benchSchema, array.WithChunk(len(ends)), array.WithAllocator(mem))
	defer r.Release()
	if !r.Next() {
		t.Fatalf("arrow-go reader: %v", r.Err())
	}
	want := r.RecordBatch()
	if want.NumRows() != got.NumRows() {
		t.Fatalf("arrow-go read %d rows, sluice %d", want.NumRows(), got.NumRows())
	}
	st := want.Column(5).(*array.Struct)
	wantCols := []arrow.Array{want.Column(0), want.Column(1), want.Column(2), want.Column(3), want.Column(4),
		st.Field(0), st.Field(1), want.Column(6), want.Column(7), want.Column(8)}
	for c, w := range wantCols {
		if !array.Equal(w, got.Column(c)) {
			t.Errorf("column %s differs between arrow-go and sluice", got.ColumnName(c))
		}
	}
}
