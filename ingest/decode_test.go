package ingest

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
)

// value reads row i of column c as a Go value; nil means null.
func value(t *testing.T, c arrow.Array, i int) any {
	t.Helper()
	if c.IsNull(i) {
		return nil
	}
	switch a := c.(type) {
	case *array.Boolean:
		return a.Value(i)
	case *array.Int32:
		return a.Value(i)
	case *array.Int64:
		return a.Value(i)
	case *array.Float32:
		return a.Value(i)
	case *array.Float64:
		return a.Value(i)
	case *array.String:
		return a.Value(i)
	case *array.Timestamp:
		return a.Value(i)
	}
	t.Fatalf("unexpected array type %T", c)
	return nil
}

func TestDecodeValues(t *testing.T) {
	ts := func(s string) arrow.Timestamp {
		tm, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			t.Fatal(err)
		}
		return arrow.Timestamp(tm.UnixMicro())
	}
	tests := []struct {
		name  string
		typ   arrow.DataType
		json  string // the value of key "v"; "" means the key is absent
		want  any
		field Field // optional override of the single field
	}{
		{name: "bool true", typ: arrow.FixedWidthTypes.Boolean, json: `true`, want: true},
		{name: "bool false", typ: arrow.FixedWidthTypes.Boolean, json: `false`, want: false},
		{name: "int32", typ: arrow.PrimitiveTypes.Int32, json: `-2147483648`, want: int32(math.MinInt32)},
		{name: "int32 max", typ: arrow.PrimitiveTypes.Int32, json: `2147483647`, want: int32(math.MaxInt32)},
		{name: "int32 from exponent", typ: arrow.PrimitiveTypes.Int32, json: `1e3`, want: int32(1000)},
		{name: "int32 from integral fraction", typ: arrow.PrimitiveTypes.Int32, json: `7.0`, want: int32(7)},
		{name: "int64 max", typ: arrow.PrimitiveTypes.Int64, json: `9223372036854775807`, want: int64(math.MaxInt64)},
		{name: "int64 min", typ: arrow.PrimitiveTypes.Int64, json: `-9223372036854775808`, want: int64(math.MinInt64)},
		{name: "int64 zero", typ: arrow.PrimitiveTypes.Int64, json: `0`, want: int64(0)},
		{name: "float64", typ: arrow.PrimitiveTypes.Float64, json: `12.34`, want: 12.34},
		{name: "float64 negative exponent", typ: arrow.PrimitiveTypes.Float64, json: `-1.5e-3`, want: -0.0015},
		{name: "float64 integer", typ: arrow.PrimitiveTypes.Float64, json: `42`, want: 42.0},
		{name: "float64 long mantissa", typ: arrow.PrimitiveTypes.Float64, json: `0.1000000000000000055511151231257827`, want: 0.1},
		{name: "float64 many digits", typ: arrow.PrimitiveTypes.Float64, json: `123456789012345678901234567890`, want: 1.2345678901234568e29},
		{name: "float64 big exponent", typ: arrow.PrimitiveTypes.Float64, json: `1.7976931348623157e308`, want: math.MaxFloat64},
		{name: "float32", typ: arrow.PrimitiveTypes.Float32, json: `3.14`, want: float32(3.14)},
		{name: "string", typ: arrow.BinaryTypes.String, json: `"DE"`, want: "DE"},
		{name: "string empty", typ: arrow.BinaryTypes.String, json: `""`, want: ""},
		{name: "string escapes", typ: arrow.BinaryTypes.String, json: `"a\"b\\c\/d\n\t\u00e9\ud83d\ude00"`, want: "a\"b\\c/d\n\té😀"},
		{name: "string lone surrogate", typ: arrow.BinaryTypes.String, json: `"\ud800x"`, want: "\uFFFDx"},
		{name: "string utf8", typ: arrow.BinaryTypes.String, json: `"Grüße"`, want: "Grüße"},
		{name: "timestamp RFC 3339", typ: arrow.FixedWidthTypes.Timestamp_us, json: `"2024-03-01T12:00:00Z"`, want: ts("2024-03-01T12:00:00Z")},
		{name: "timestamp RFC 3339 offset and fraction", typ: arrow.FixedWidthTypes.Timestamp_us, json: `"2024-03-01T14:00:00.123456+02:00"`, want: ts("2024-03-01T12:00:00.123456Z")},
		{name: "timestamp epoch ms", typ: arrow.FixedWidthTypes.Timestamp_us, json: `1709294400000`, want: ts("2024-03-01T12:00:00Z")},
		{name: "timestamp epoch us", typ: arrow.FixedWidthTypes.Timestamp_us, json: `1709294400000001`, want: ts("2024-03-01T12:00:00.000001Z")},
		{name: "timestamp epoch ms fraction", typ: arrow.FixedWidthTypes.Timestamp_us, json: `1709294400000.5`, want: ts("2024-03-01T12:00:00.0005Z")},
		{name: "timestamp 1e14 is ms", typ: arrow.FixedWidthTypes.Timestamp_us, json: `100000000000000`, want: arrow.Timestamp(1e17)},
		{name: "timestamp ms unit", typ: &arrow.TimestampType{Unit: arrow.Millisecond, TimeZone: "UTC"}, json: `"2024-03-01T12:00:00.123Z"`, want: arrow.Timestamp(1709294400123)},
		{name: "timestamp s unit from epoch", typ: &arrow.TimestampType{Unit: arrow.Second}, json: `1709294400999`, want: arrow.Timestamp(1709294400)},
		{name: "timestamp ns unit", typ: &arrow.TimestampType{Unit: arrow.Nanosecond}, json: `"2024-03-01T12:00:00.000000001Z"`, want: arrow.Timestamp(1709294400000000001)},
		{name: "nullable null", typ: arrow.PrimitiveTypes.Int64, json: `null`, want: nil, field: Field{Nullable: true}},
		{name: "nullable missing", typ: arrow.BinaryTypes.String, json: ``, want: nil, field: Field{Nullable: true}},
		{name: "nested path", typ: arrow.PrimitiveTypes.Int32,
			field: Field{Path: "m.x.y"}, want: int32(5)},
		{name: "nested null parent is null", typ: arrow.PrimitiveTypes.Int32,
			field: Field{Path: "m.x.y", Nullable: true}, want: nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
			defer mem.AssertSize(t, 0)
			f := tt.field
			f.Name, f.Type = "v", tt.typ
			dec, err := NewDecoder([]Field{f}, mem)
			if err != nil {
				t.Fatal(err)
			}
			defer dec.Release()
			rec := `{"other": [1, {"v": "ignored"}], "v": ` + tt.json + `, "z": null}`
			if tt.json == "" {
				rec = `{"other": 1}`
			}
			switch tt.name {
			case "nested path":
				rec = `{"v": "not me", "m": {"a": 1, "x": {"y": 5, "q": "r"}}}`
			case "nested null parent is null":
				rec = `{"m": {"x": null}}`
			}
			if err := dec.Append([]byte(rec)); err != nil {
				t.Fatalf("Append(%s): %v", rec, err)
			}
			r := dec.NewRecord()
			defer r.Release()
			if r.NumRows() != 1 {
				t.Fatalf("rows = %d, want 1", r.NumRows())
			}
			if got := value(t, r.Column(0), 0); got != tt.want {
				t.Errorf("value = %#v (%T), want %#v (%T)", got, got, tt.want, tt.want)
			}
		})
	}
}

func TestDecodeErrors(t *testing.T) {
	fields := []Field{
		{Name: "country", Type: arrow.BinaryTypes.String},
		{Name: "amount", Type: arrow.PrimitiveTypes.Float64, Nullable: true},
		{Name: "n32", Type: arrow.PrimitiveTypes.Int32, Nullable: true},
		{Name: "n64", Type: arrow.PrimitiveTypes.Int64, Nullable: true},
		{Name: "f32", Type: arrow.PrimitiveTypes.Float32, Nullable: true},
		{Name: "ok", Type: arrow.FixedWidthTypes.Boolean, Nullable: true},
		{Name: "ts", Type: arrow.FixedWidthTypes.Timestamp_us, Nullable: true},
		{Name: "mcc", Path: "merchant.mcc", Type: arrow.PrimitiveTypes.Int32, Nullable: true},
	}
	tests := []struct {
		name     string
		in       string
		sentinel error
		want     string // the whole message
	}{
		{"type string for float", `{"country":"DE","amount":"abc"}`, ErrFieldType, `field "amount": want float64, got string "abc"`},
		{"type bool for string", `{"country":true}`, ErrFieldType, `field "country": want string, got bool true`},
		{"type number for string", `{"country":42}`, ErrFieldType, `field "country": want string, got number 42`},
		{"type object for int", `{"country":"DE","n64":{"a":1}}`, ErrFieldType, `field "n64": want int64, got object`},
		{"type array for bool", `{"country":"DE","ok":[true]}`, ErrFieldType, `field "ok": want bool, got array`},
		{"null for required", `{"country":null}`, ErrFieldType, `field "country": want string, got null`},
		{"fraction for int", `{"country":"DE","n32":1.5}`, ErrFieldType, `field "n32": want int32, got number 1.5`},
		{"int32 overflow", `{"country":"DE","n32":2147483648}`, ErrFieldType, `field "n32": 2147483648 overflows int32`},
		{"int32 underflow", `{"country":"DE","n32":-2147483649}`, ErrFieldType, `field "n32": -2147483649 overflows int32`},
		{"int64 overflow", `{"country":"DE","n64":9223372036854775808}`, ErrFieldType, `field "n64": want int64, got number 9223372036854775808`},
		{"float32 overflow", `{"country":"DE","f32":1e39}`, ErrFieldType, `field "f32": 1e39 overflows float32`},
		{"float64 overflow", `{"country":"DE","amount":1e400}`, ErrFieldType, `field "amount": 1e400 overflows float64`},
		{"bad timestamp string", `{"country":"DE","ts":"yesterday"}`, ErrFieldType, `field "ts": want timestamp (RFC 3339 or epoch number), got string "yesterday"`},
		{"timestamp bool", `{"country":"DE","ts":true}`, ErrFieldType, `field "ts": want timestamp, got bool true`},
		{"nested not object", `{"country":"DE","merchant":5}`, ErrFieldType, `field "mcc": want object at "merchant", got number 5`},
		{"invalid utf8", "{\"country\":\"\xff\"}", ErrFieldType, `field "country": string is not valid UTF-8`},
		{"missing required", `{"amount":1}`, ErrMissingField, `missing required field "country"`},
		{"long value truncated", `{"country":"DE","amount":"` + strings.Repeat("x", 100) + `"}`, ErrFieldType, `field "amount": want float64, got string "` + strings.Repeat("x", 39) + `…"`},
		{"malformed truncated", `{"country":"DE","amount":1`, ErrMalformed, `malformed JSON at byte 26: unexpected end of record`},
		{"malformed bad literal", `{"country":"DE","ok":tru}`, ErrMalformed, `malformed JSON at byte 21: invalid literal`},
		{"malformed not object", `[1,2]`, ErrMalformed, `malformed JSON at byte 0: record is not a JSON object`},
		{"malformed empty", ``, ErrMalformed, `malformed JSON at byte 0: empty record`},
		{"malformed trailing", `{"country":"DE"} x`, ErrMalformed, `malformed JSON at byte 17: data after the record`},
		{"malformed key", `{country:"DE"}`, ErrMalformed, `malformed JSON at byte 1: expected object key`},
		{"malformed colon", `{"country" "DE"}`, ErrMalformed, `malformed JSON at byte 11: expected ':' after object key`},
		{"malformed in skipped value", `{"country":"DE","x":[1,}`, ErrMalformed, `malformed JSON at byte 23: unexpected character '}'`},
		{"malformed number", `{"country":"DE","amount":-}`, ErrMalformed, `malformed JSON at byte 26: invalid number`},
		{"malformed number exponent", `{"country":"DE","amount":1e}`, ErrMalformed, `malformed JSON at byte 27: invalid number`},
		{"malformed leading zero", `{"country":"DE","amount":01}`, ErrMalformed, `malformed JSON at byte 26: expected ',' or '}' in object`},
		{"malformed escape", `{"country":"D\x"}`, ErrMalformed, `malformed JSON at byte 13: invalid escape in string`},
		{"malformed control char", "{\"country\":\"D\nE\"}", ErrMalformed, `malformed JSON at byte 13: control character in string`},
		{"malformed unterminated", `{"country":"DE`, ErrMalformed, `malformed JSON at byte 14: unterminated string`},
		{"malformed deep", `{"x":` + strings.Repeat("[", 1000) + strings.Repeat("]", 1000) + `}`, ErrMalformed, `malformed JSON at byte 516: nested too deeply`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
			defer mem.AssertSize(t, 0)
			dec, err := NewDecoder(fields, mem)
			if err != nil {
				t.Fatal(err)
			}
			defer dec.Release()
			good := `{"country":"FR","amount":2.5,"n32":1,"n64":2,"f32":3,"ok":true,"ts":0,"merchant":{"mcc":5411}}`
			if err := dec.Append([]byte(good)); err != nil {
				t.Fatal(err)
			}
			err = dec.Append([]byte(tt.in))
			if err == nil {
				t.Fatalf("Append(%s) = nil, want error", tt.in)
			}
			if !errors.Is(err, tt.sentinel) {
				t.Errorf("error %v is not %v", err, tt.sentinel)
			}
			var de *DecodeError
			if !errors.As(err, &de) {
				t.Errorf("error %T is not a *DecodeError", err)
			}
			if err.Error() != tt.want {
				t.Errorf("error = %q\n want   %q", err.Error(), tt.want)
			}
			// All or nothing: the failed record left no partial row behind,
			// and the next record lines up in every column.
			if err := dec.Append([]byte(`{"country":"IT","amount":null}`)); err != nil {
				t.Fatal(err)
			}
			r := dec.NewRecord()
			defer r.Release()
			if r.NumRows() != 2 {
				t.Fatalf("rows = %d, want 2", r.NumRows())
			}
			for c := 0; c < int(r.NumCols()); c++ {
				if r.Column(c).Len() != 2 {
					t.Errorf("column %s has %d values, want 2", r.ColumnName(c), r.Column(c).Len())
				}
			}
			if got := value(t, r.Column(0), 1); got != "IT" {
				t.Errorf("country[1] = %v, want IT", got)
			}
			for c := 1; c < int(r.NumCols()); c++ {
				if !r.Column(c).IsNull(1) {
					t.Errorf("%s[1] is not null", r.ColumnName(c))
				}
			}
		})
	}
}

func TestNewDecoderRejects(t *testing.T) {
	tests := []struct {
		name   string
		fields []Field
	}{
		{"no fields", nil},
		{"no name", []Field{{Type: arrow.PrimitiveTypes.Int64}}},
		{"no type", []Field{{Name: "a"}}},
		{"unsupported type", []Field{{Name: "a", Type: arrow.PrimitiveTypes.Uint8}}},
		{"duplicate name", []Field{{Name: "a", Type: arrow.PrimitiveTypes.Int64}, {Name: "a", Type: arrow.PrimitiveTypes.Int64}}},
		{"same path", []Field{{Name: "a", Type: arrow.PrimitiveTypes.Int64}, {Name: "b", Path: "a", Type: arrow.PrimitiveTypes.Int64}}},
		{"leaf under leaf", []Field{{Name: "a", Type: arrow.PrimitiveTypes.Int64}, {Name: "b", Path: "a.b", Type: arrow.PrimitiveTypes.Int64}}},
		{"leaf over object", []Field{{Name: "b", Path: "a.b", Type: arrow.PrimitiveTypes.Int64}, {Name: "a", Type: arrow.PrimitiveTypes.Int64}}},
		{"empty segment", []Field{{Name: "a", Path: "a..b", Type: arrow.PrimitiveTypes.Int64}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, err := NewDecoder(tt.fields, memory.NewGoAllocator())
			if !errors.Is(err, ErrSchema) {
				if d != nil {
					d.Release()
				}
				t.Fatalf("NewDecoder error = %v, want ErrSchema", err)
			}
		})
	}
}

func testFields() []Field {
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

func testRecord(i int) []byte {
	return fmt.Appendf(nil, `{"event_id":"ev-%08d","user_id":%d,"amount":%d.%02d,"currency":"EUR","country":"DE",`+
		`"merchant":{"mcc":5411,"name":"Shop \"%d\""},"card_present":%t,"risk":0.25,"ts":"2024-03-01T12:00:%02dZ","extra":[1,2,3]}`,
		i, 1000+i, i%500, i%100, i%7, i%2 == 0, i%60)
}

// TestDecodeMany checks rows line up across many records, that NewRecord
// resets, and that every buffer is released.
func TestDecodeMany(t *testing.T) {
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer mem.AssertSize(t, 0)
	dec, err := NewDecoder(testFields(), mem)
	if err != nil {
		t.Fatal(err)
	}
	defer dec.Release()
	var recs []arrow.RecordBatch
	for batch := 0; batch < 3; batch++ {
		for i := 0; i < 1000; i++ {
			if err := dec.Append(testRecord(batch*1000 + i)); err != nil {
				t.Fatal(err)
			}
			if i%100 == 0 {
				if err := dec.Append([]byte(`{"event_id":1}`)); err == nil {
					t.Fatal("bad record accepted")
				}
			}
		}
		if dec.Len() != 1000 {
			t.Fatalf("Len = %d, want 1000", dec.Len())
		}
		recs = append(recs, dec.NewRecord())
	}
	empty := dec.NewRecord()
	if empty.NumRows() != 0 {
		t.Errorf("record after reset has %d rows", empty.NumRows())
	}
	empty.Release()
	for b, r := range recs {
		if r.NumRows() != 1000 {
			t.Fatalf("batch %d rows = %d", b, r.NumRows())
		}
		for _, i := range []int{0, 499, 999} {
			n := b*1000 + i
			if got, want := value(t, r.Column(0), i), fmt.Sprintf("ev-%08d", n); got != want {
				t.Errorf("event_id[%d] = %v, want %v", n, got, want)
			}
			if got, want := value(t, r.Column(1), i), int64(1000+n); got != want {
				t.Errorf("user_id[%d] = %v, want %v", n, got, want)
			}
			if got, want := value(t, r.Column(6), i), fmt.Sprintf(`Shop "%d"`, n%7); got != want {
				t.Errorf("merchant[%d] = %v, want %v", n, got, want)
			}
			if got, want := value(t, r.Column(7), i), n%2 == 0; got != want {
				t.Errorf("card_present[%d] = %v, want %v", n, got, want)
			}
		}
		r.Release()
	}
}

func FuzzDecode(f *testing.F) {
	f.Add(testRecord(1))
	f.Add([]byte(`{"event_id":"x","user_id":1,"amount":1,"currency":"","country":"","merchant":{"mcc":1},"card_present":true,"ts":1}`))
	f.Add([]byte(`{"amount":"abc"}`))
	f.Add([]byte(`{"merchant":null,"risk":1e39}`))
	f.Add([]byte(`{"event_id":"\ud83d\ude00\u0000","x":[{},[],"",-0.0e+1]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
		defer mem.AssertSize(t, 0)
		dec, err := NewDecoder(testFields(), mem)
		if err != nil {
			t.Fatal(err)
		}
		defer dec.Release()
		before := dec.Len()
		err = dec.Append(data)
		want := before
		if err == nil {
			want++
		} else if !errors.As(err, new(*DecodeError)) {
			t.Fatalf("error %T is not a *DecodeError", err)
		}
		if dec.Len() != want {
			t.Fatalf("Len = %d after Append error %v, want %d", dec.Len(), err, want)
		}
		r := dec.NewRecord()
		defer r.Release()
		for c := 0; c < int(r.NumCols()); c++ {
			if r.Column(c).Len() != want {
				t.Fatalf("column %d has %d values, want %d", c, r.Column(c).Len(), want)
			}
		}
		if err := array.ValidateRecordFull(r); err != nil {
			t.Fatalf("invalid record: %v", err)
		}
	})
}

// TestDecodeStringSpecialAtEveryPosition puts each kind of special byte at
// every position of strings longer than the scanner's 8-byte stride, and
// checks the result against encoding/json.
func TestDecodeStringSpecialAtEveryPosition(t *testing.T) {
	specials := []string{`\"`, `\\`, `\n`, `\u00e9`, "é", "😀", "\x01", "\xff"}
	for _, sp := range specials {
		for pos := 0; pos < 20; pos++ {
			raw := strings.Repeat("a", pos) + sp + strings.Repeat("b", 9)
			rec := []byte(`{"s":"` + raw + `","k":"` + raw + `"}`)
			dec, err := NewDecoder([]Field{{Name: "s", Type: arrow.BinaryTypes.String}}, memory.NewGoAllocator())
			if err != nil {
				t.Fatal(err)
			}
			var want struct{ S string }
			jerr := json.Unmarshal(rec, &want)
			valid := jerr == nil && utf8.ValidString(want.S) && !strings.ContainsRune(want.S, utf8.RuneError)
			err = dec.Append(rec)
			if valid != (err == nil) {
				t.Fatalf("%q: Append error %v, encoding/json error %v", rec, err, jerr)
			}
			if err == nil {
				r := dec.NewRecord()
				if got := r.Column(0).(*array.String).Value(0); got != want.S {
					t.Errorf("%q: decoded %q, want %q", rec, got, want.S)
				}
				r.Release()
			}
			dec.Release()
		}
	}
}
