package ingest

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"math/bits"
	"strconv"
	"strings"
	"time"
	"unicode/utf16"
	"unicode/utf8"
	"unsafe"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
)

// Errors a Decoder returns, wrapped in a *DecodeError; match them with
// errors.Is.
var (
	// ErrMalformed means the record is not a well-formed JSON object.
	ErrMalformed = errors.New("malformed JSON")
	// ErrFieldType means a value has the wrong JSON type for its field, or
	// does not fit it (an int32 overflow, a string that is not a timestamp).
	ErrFieldType = errors.New("wrong field type")
	// ErrMissingField means a non-nullable field is absent.
	ErrMissingField = errors.New("missing required field")
	// ErrSchema means NewDecoder was given fields it cannot decode.
	ErrSchema = errors.New("ingest: invalid decoder fields")
)

// DecodeError says why one record could not be decoded. Its message is the
// dead letter's Reason.
type DecodeError struct {
	// Err is ErrMalformed, ErrFieldType or ErrMissingField.
	Err error
	// Field is the column name; empty for ErrMalformed.
	Field string
	// Offset is the byte offset in the record where decoding stopped.
	Offset int
	// Detail is the human-readable part after the field or offset.
	Detail string
}

func (e *DecodeError) Error() string {
	switch {
	case errors.Is(e.Err, ErrMalformed):
		if e.Detail == "" {
			return fmt.Sprintf("malformed JSON at byte %d", e.Offset)
		}
		return fmt.Sprintf("malformed JSON at byte %d: %s", e.Offset, e.Detail)
	case errors.Is(e.Err, ErrMissingField):
		return fmt.Sprintf("missing required field %q", e.Field)
	default:
		return fmt.Sprintf("field %q: %s", e.Field, e.Detail)
	}
}

func (e *DecodeError) Unwrap() error { return e.Err }

// maxDepth bounds how deeply nested the JSON of one record may be, so that a
// hostile record cannot exhaust the stack.
const maxDepth = 512

// kind is the decoder's view of a field's Arrow type.
type kind uint8

const (
	kBool kind = iota
	kInt32
	kInt64
	kFloat32
	kFloat64
	kString
	kTimestamp
)

var kindNames = [...]string{"bool", "int32", "int64", "float32", "float64", "string", "timestamp"}

// slot states of the per-record scratch.
const (
	absent uint8 = iota
	isNull
	isSet
)

// slot holds one field's value of the record being decoded until the whole
// record is known to be good.
type slot struct {
	state uint8
	b     bool
	i     int64
	f     float64
	s     []byte
}

type column struct {
	name     string
	kind     kind
	nullable bool
	unit     arrow.TimeUnit
	builder  array.Builder
}

// node is one level of the dotted-path trie. A node is either a leaf (field
// >= 0) or has children.
type node struct {
	names    []string
	children []*node
	field    int
	// hint is the index after the last key found: records of one stream
	// usually list their keys in the same order, so it is tried first.
	hint int
}

func (n *node) lookup(key []byte) *node {
	if h := n.hint; h < len(n.names) && n.names[h] == string(key) {
		n.hint = h + 1
		return n.children[h]
	}
	for i, name := range n.names {
		if name == string(key) {
			n.hint = i + 1
			return n.children[i]
		}
	}
	return nil
}

// firstField is the first leaf below n, used to name errors about an
// intermediate object.
func (n *node) firstField() int {
	for n.field < 0 {
		n = n.children[0]
	}
	return n.field
}

// Decoder decodes JSON records straight into Arrow builders, one record per
// Append, following a fixed list of Fields.
//
// Each Field's Path (or Name) is a dotted path into nested objects; keys that
// no Field names are skipped. Values map onto Arrow types as follows:
//
//   - bool: JSON true or false.
//   - int32, int64: a JSON number with an integral value that fits the type
//     (1e3 is 1000; 1.5 and int32 overflows are errors).
//   - float32, float64: a JSON number; overflowing the type is an error.
//   - string: a JSON string (numbers are not converted); it must be valid
//     UTF-8 once unescaped.
//   - timestamp: an RFC 3339 string, or an epoch number: values above 1e14
//     are microseconds, all others milliseconds (1e14 ms is the year 5138,
//     1e14 µs is 1973). The result is stored in the column's time unit.
//
// A missing or null value becomes null in a nullable column and an error in
// a non-nullable one. Keys are matched exactly and case-sensitively; a key
// that itself contains a dot cannot be addressed. When a key repeats, the
// last value wins.
//
// Append is all-or-nothing: a record that fails leaves the builders as if it
// had never been appended. A Decoder is not safe for concurrent use.
type Decoder struct {
	schema *arrow.Schema
	rb     *array.RecordBuilder
	cols   []column
	root   *node
	vals   []slot
	buf    []byte // reused for unescaped strings
	rows   int
}

// NewDecoder returns a Decoder for fields, allocating the Arrow buffers from
// mem (memory.DefaultAllocator if nil). The caller must Release it.
func NewDecoder(fields []Field, mem memory.Allocator) (*Decoder, error) {
	if len(fields) == 0 {
		return nil, fmt.Errorf("%w: no fields", ErrSchema)
	}
	if mem == nil {
		mem = memory.DefaultAllocator
	}
	d := &Decoder{
		root: &node{field: -1},
		cols: make([]column, len(fields)),
		vals: make([]slot, len(fields)),
	}
	afs := make([]arrow.Field, len(fields))
	names := make(map[string]bool, len(fields))
	for i, f := range fields {
		if f.Name == "" {
			return nil, fmt.Errorf("%w: field %d has no name", ErrSchema, i)
		}
		if names[f.Name] {
			return nil, fmt.Errorf("%w: duplicate field %q", ErrSchema, f.Name)
		}
		names[f.Name] = true
		c := column{name: f.Name, nullable: f.Nullable}
		if f.Type == nil {
			return nil, fmt.Errorf("%w: field %q has no type", ErrSchema, f.Name)
		}
		switch t := f.Type.(type) {
		case *arrow.BooleanType:
			c.kind = kBool
		case *arrow.Int32Type:
			c.kind = kInt32
		case *arrow.Int64Type:
			c.kind = kInt64
		case *arrow.Float32Type:
			c.kind = kFloat32
		case *arrow.Float64Type:
			c.kind = kFloat64
		case *arrow.StringType:
			c.kind = kString
		case *arrow.TimestampType:
			c.kind = kTimestamp
			c.unit = t.Unit
		default:
			return nil, fmt.Errorf("%w: field %q has unsupported type %s", ErrSchema, f.Name, f.Type)
		}
		d.cols[i] = c
		afs[i] = arrow.Field{Name: f.Name, Type: f.Type, Nullable: f.Nullable}
		path := f.Path
		if path == "" {
			path = f.Name
		}
		if err := d.root.insert(strings.Split(path, "."), i); err != nil {
			return nil, fmt.Errorf("%w: field %q path %q: %v", ErrSchema, f.Name, path, err)
		}
	}
	d.schema = arrow.NewSchema(afs, nil)
	d.rb = array.NewRecordBuilder(mem, d.schema)
	for i := range d.cols {
		d.cols[i].builder = d.rb.Field(i)
	}
	return d, nil
}

func (n *node) insert(path []string, field int) error {
	for _, seg := range path {
		if seg == "" {
			return errors.New("empty path segment")
		}
		if n.field >= 0 {
			return errors.New("a prefix of it is another field")
		}
		next := n.lookup([]byte(seg))
		if next == nil {
			next = &node{field: -1}
			n.names = append(n.names, seg)
			n.children = append(n.children, next)
		}
		n = next
	}
	if n.field >= 0 || len(n.children) > 0 {
		return errors.New("it overlaps another field's path")
	}
	n.field = field
	return nil
}

// Schema is the schema of the records NewRecord returns.
func (d *Decoder) Schema() *arrow.Schema { return d.schema }

// Len is the number of rows appended since the last NewRecord.
func (d *Decoder) Len() int { return d.rows }

// NewRecord returns the rows appended since the last call (possibly none)
// and resets the builders. The caller owns the record and must Release it.
func (d *Decoder) NewRecord() arrow.RecordBatch {
	d.rows = 0
	return d.rb.NewRecordBatch()
}

// Release frees the builders. Records already returned stay valid.
func (d *Decoder) Release() {
	if d.rb != nil {
		d.rb.Release()
		d.rb = nil
	}
}

// Append decodes one JSON object and appends it as a row. On error nothing
// is appended and the error is a *DecodeError.
func (d *Decoder) Append(value []byte) error {
	for i := range d.vals {
		d.vals[i].state = absent
	}
	s := scanner{data: value, buf: d.buf[:0]}
	defer func() { d.buf = s.buf }()
	s.skipWS()
	if s.pos >= len(s.data) || s.data[s.pos] != '{' {
		if s.pos >= len(s.data) {
			return s.malformed("empty record")
		}
		return s.malformed("record is not a JSON object")
	}
	if err := d.object(&s, d.root, 0); err != nil {
		return err
	}
	s.skipWS()
	if s.pos != len(s.data) {
		return s.malformed("data after the record")
	}
	for i := range d.cols {
		if d.vals[i].state == absent && !d.cols[i].nullable {
			return &DecodeError{Err: ErrMissingField, Field: d.cols[i].name, Offset: s.pos}
		}
	}
	d.commit()
	return nil
}

// commit appends the scratch values; it cannot fail.
func (d *Decoder) commit() {
	for i := range d.cols {
		c := &d.cols[i]
		v := &d.vals[i]
		if v.state != isSet {
			c.builder.AppendNull()
			continue
		}
		switch c.kind {
		case kBool:
			c.builder.(*array.BooleanBuilder).Append(v.b)
		case kInt32:
			c.builder.(*array.Int32Builder).Append(int32(v.i))
		case kInt64:
			c.builder.(*array.Int64Builder).Append(v.i)
		case kFloat32:
			c.builder.(*array.Float32Builder).Append(float32(v.f))
		case kFloat64:
			c.builder.(*array.Float64Builder).Append(v.f)
		case kString:
			c.builder.(*array.StringBuilder).BinaryBuilder.Append(v.s)
		case kTimestamp:
			c.builder.(*array.TimestampBuilder).Append(arrow.Timestamp(v.i))
		}
	}
	d.rows++
}

// object decodes the object starting at s.pos ('{') against trie node n.
func (d *Decoder) object(s *scanner, n *node, depth int) error {
	if depth >= maxDepth {
		return s.malformed("nested too deeply")
	}
	s.pos++ // '{'
	s.skipWS()
	if s.pos < len(s.data) && s.data[s.pos] == '}' {
		s.pos++
		return nil
	}
	for {
		if s.pos >= len(s.data) || s.data[s.pos] != '"' {
			return s.malformed("expected object key")
		}
		key, _, err := s.str()
		if err != nil {
			return err
		}
		s.skipWS()
		if s.pos >= len(s.data) || s.data[s.pos] != ':' {
			return s.malformed("expected ':' after object key")
		}
		s.pos++
		s.skipWS()
		if s.pos >= len(s.data) {
			return s.malformed("unexpected end of record")
		}
		child := n.lookup(key)
		switch {
		case child == nil:
			if err := s.skip(depth + 1); err != nil {
				return err
			}
		case child.field >= 0:
			if err := d.leaf(s, child.field); err != nil {
				return err
			}
		case s.data[s.pos] == '{':
			if err := d.object(s, child, depth+1); err != nil {
				return err
			}
		case s.data[s.pos] == 'n':
			// A null parent leaves its fields absent.
			if err := s.literal("null"); err != nil {
				return err
			}
		default:
			start := s.pos
			if err := s.skip(depth + 1); err != nil {
				return err
			}
			f := child.firstField()
			return d.typeErr(f, start, s.data[start:s.pos], "object at "+strconv.Quote(string(key)))
		}
		s.skipWS()
		if s.pos >= len(s.data) {
			return s.malformed("unexpected end of record")
		}
		switch s.data[s.pos] {
		case ',':
			s.pos++
			s.skipWS()
		case '}':
			s.pos++
			return nil
		default:
			return s.malformed("expected ',' or '}' in object")
		}
	}
}

// leaf decodes the value at s.pos into field f's slot.
func (d *Decoder) leaf(s *scanner, f int) error {
	c := &d.cols[f]
	v := &d.vals[f]
	start := s.pos
	switch ch := s.data[s.pos]; {
	case ch == 'n':
		if err := s.literal("null"); err != nil {
			return err
		}
		if !c.nullable {
			return d.typeErr(f, start, s.data[start:s.pos], kindNames[c.kind])
		}
		v.state = isNull
		return nil
	case ch == 't' || ch == 'f':
		lit := "true"
		if ch == 'f' {
			lit = "false"
		}
		if err := s.literal(lit); err != nil {
			return err
		}
		if c.kind != kBool {
			return d.typeErr(f, start, s.data[start:s.pos], kindNames[c.kind])
		}
		v.state, v.b = isSet, ch == 't'
		return nil
	case ch == '"':
		str, ascii, err := s.str()
		if err != nil {
			return err
		}
		switch c.kind {
		case kString:
			if !ascii && !utf8.Valid(str) {
				return &DecodeError{Err: ErrFieldType, Field: c.name, Offset: start, Detail: "string is not valid UTF-8"}
			}
			v.state, v.s = isSet, str
			return nil
		case kTimestamp:
			// unsafe.String: time.Parse keeps no reference to its input
			// in the returned Time, and the error is dropped here.
			t, err := time.Parse(time.RFC3339Nano, unsafe.String(unsafe.SliceData(str), len(str)))
			if err != nil {
				return d.typeErr(f, start, s.data[start:s.pos], "timestamp (RFC 3339 or epoch number)")
			}
			ts, ok := fromTime(t, c.unit)
			if !ok {
				return &DecodeError{Err: ErrFieldType, Field: c.name, Offset: start,
					Detail: fmt.Sprintf("timestamp %s out of range", t.Format(time.RFC3339Nano))}
			}
			v.state, v.i = isSet, ts
			return nil
		default:
			return d.typeErr(f, start, s.data[start:s.pos], kindNames[c.kind])
		}
	case ch == '-' || (ch >= '0' && ch <= '9'):
		num, err := s.number()
		if err != nil {
			return err
		}
		return d.numberInto(f, start, num)
	case ch == '{' || ch == '[':
		if err := s.skip(1); err != nil {
			return err
		}
		return d.typeErr(f, start, s.data[start:s.pos], kindNames[c.kind])
	default:
		return s.malformed("unexpected character " + strconv.QuoteRune(rune(ch)))
	}
}

func (d *Decoder) numberInto(f, start int, n num) error {
	c := &d.cols[f]
	v := &d.vals[f]
	switch c.kind {
	case kInt32, kInt64:
		i, ok := n.integer()
		if !ok {
			return d.typeErr(f, start, n.text, kindNames[c.kind])
		}
		if c.kind == kInt32 && (i < math.MinInt32 || i > math.MaxInt32) {
			return &DecodeError{Err: ErrFieldType, Field: c.name, Offset: start,
				Detail: fmt.Sprintf("%s overflows int32", n.text)}
		}
		v.state, v.i = isSet, i
	case kFloat64:
		x, ok := n.float(64)
		if !ok {
			return &DecodeError{Err: ErrFieldType, Field: c.name, Offset: start,
				Detail: fmt.Sprintf("%s overflows float64", n.text)}
		}
		v.state, v.f = isSet, x
	case kFloat32:
		x, ok := n.float(32)
		if !ok {
			return &DecodeError{Err: ErrFieldType, Field: c.name, Offset: start,
				Detail: fmt.Sprintf("%s overflows float32", n.text)}
		}
		v.state, v.f = isSet, x
	case kTimestamp:
		us, ok := epochMicros(n)
		if ok {
			us, ok = convertMicros(us, c.unit)
		}
		if !ok {
			return &DecodeError{Err: ErrFieldType, Field: c.name, Offset: start,
				Detail: fmt.Sprintf("epoch %s out of range", n.text)}
		}
		v.state, v.i = isSet, us
	default:
		return d.typeErr(f, start, n.text, kindNames[c.kind])
	}
	return nil
}

// typeErr reports that field f wanted want but found the JSON value raw.
func (d *Decoder) typeErr(f, offset int, raw []byte, want string) error {
	return &DecodeError{Err: ErrFieldType, Field: d.cols[f].name, Offset: offset,
		Detail: "want " + want + ", got " + describe(raw)}
}

// describe names a raw JSON value for an error message, quoting a short
// prefix of it.
func describe(raw []byte) string {
	const max = 40
	if len(raw) == 0 {
		return "nothing"
	}
	var what string
	switch raw[0] {
	case '"':
		what = "string"
	case '{':
		return "object"
	case '[':
		return "array"
	case 't', 'f':
		what = "bool"
	case 'n':
		return "null"
	default:
		what = "number"
	}
	text := string(raw)
	if len(text) > max {
		text = text[:max] + "…"
	}
	if what == "string" {
		// Keep the JSON quoting the record had, minus the surrounding quotes.
		text = strings.TrimSuffix(strings.TrimPrefix(text, `"`), `"`)
		return what + ` "` + text + `"`
	}
	return what + " " + text
}

// epochMicros turns an epoch number into microseconds: values above 1e14 are
// taken as microseconds, all others as milliseconds.
func epochMicros(n num) (int64, bool) {
	if i, ok := n.integer(); ok {
		if i > 1e14 {
			return i, true
		}
		if i > math.MaxInt64/1000 || i < math.MinInt64/1000 {
			return 0, false
		}
		return i * 1000, true
	}
	x, ok := n.float(64)
	if !ok {
		return 0, false
	}
	if x <= 1e14 {
		x *= 1000
	}
	x = math.Round(x)
	if x >= math.MaxInt64 || x <= math.MinInt64 {
		return 0, false
	}
	return int64(x), true
}

func convertMicros(us int64, unit arrow.TimeUnit) (int64, bool) {
	switch unit {
	case arrow.Second:
		return floorDiv(us, 1e6), true
	case arrow.Millisecond:
		return floorDiv(us, 1e3), true
	case arrow.Nanosecond:
		if us > math.MaxInt64/1000 || us < math.MinInt64/1000 {
			return 0, false
		}
		return us * 1000, true
	default:
		return us, true
	}
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && a < 0 {
		q--
	}
	return q
}

func fromTime(t time.Time, unit arrow.TimeUnit) (int64, bool) {
	switch unit {
	case arrow.Second:
		return t.Unix(), true
	case arrow.Millisecond:
		return t.UnixMilli(), true
	case arrow.Nanosecond:
		if t.Year() < 1678 || t.Year() > 2261 {
			return 0, false
		}
		return t.UnixNano(), true
	default:
		return t.UnixMicro(), true
	}
}

// SWAR constants: one in each byte, and each byte's high bit.
const (
	swarLo = 0x0101010101010101
	swarHi = 0x8080808080808080
)

// scanner walks one JSON record.
type scanner struct {
	data []byte
	pos  int
	// buf receives unescaped strings; slices of it stay valid for the
	// record even when it grows, since append leaves old arrays intact.
	buf []byte
}

func (s *scanner) malformed(detail string) error {
	return &DecodeError{Err: ErrMalformed, Offset: s.pos, Detail: detail}
}

func (s *scanner) skipWS() {
	for s.pos < len(s.data) {
		switch s.data[s.pos] {
		case ' ', '\t', '\n', '\r':
			s.pos++
		default:
			return
		}
	}
}

func (s *scanner) literal(lit string) error {
	if len(s.data)-s.pos < len(lit) || string(s.data[s.pos:s.pos+len(lit)]) != lit {
		return s.malformed("invalid literal")
	}
	s.pos += len(lit)
	return nil
}

// str reads the string at s.pos ('"'). Without escapes the result aliases
// the record; with escapes it is unescaped into *buf. ascii reports that no
// byte is >= 0x80, so UTF-8 validation can be skipped.
func (s *scanner) str() (out []byte, ascii bool, err error) {
	s.pos++ // opening quote
	start := s.pos
	ascii = true
	i := s.pos
	// Eight bytes at a time while none is special: a quote, a backslash,
	// a control character or a non-ASCII byte. The lowest flagged byte is
	// exact (borrows only run upwards), so the loop below starts there.
	for ; i+8 <= len(s.data); i += 8 {
		w := binary.LittleEndian.Uint64(s.data[i:])
		q, b := w^(swarLo*'"'), w^(swarLo*'\\')
		m := ((q - swarLo) &^ q) | ((b - swarLo) &^ b) | ((w - swarLo*0x20) &^ w) | w
		if m&swarHi != 0 {
			i += bits.TrailingZeros64(m&swarHi) >> 3
			break
		}
	}
	for ; i < len(s.data); i++ {
		c := s.data[i]
		switch {
		case c == '"':
			s.pos = i + 1
			return s.data[start:i], ascii, nil
		case c == '\\':
			s.pos = i
			return s.strEscaped(start)
		case c < 0x20:
			s.pos = i
			return nil, false, s.malformed("control character in string")
		case c >= 0x80:
			ascii = false
		}
	}
	s.pos = len(s.data)
	return nil, false, s.malformed("unterminated string")
}

func (s *scanner) strEscaped(start int) ([]byte, bool, error) {
	b := s.buf
	from := len(b)
	b = append(b, s.data[start:s.pos]...)
	ascii := true
	for _, c := range b[from:] {
		if c >= 0x80 {
			ascii = false
		}
	}
	for s.pos < len(s.data) {
		c := s.data[s.pos]
		switch {
		case c == '"':
			s.pos++
			s.buf = b
			return b[from:], ascii, nil
		case c < 0x20:
			return nil, false, s.malformed("control character in string")
		case c != '\\':
			if c >= 0x80 {
				ascii = false
			}
			b = append(b, c)
			s.pos++
			continue
		}
		if s.pos+1 >= len(s.data) {
			return nil, false, s.malformed("unterminated string")
		}
		e := s.data[s.pos+1]
		s.pos += 2
		switch e {
		case '"', '\\', '/':
			b = append(b, e)
		case 'b':
			b = append(b, '\b')
		case 'f':
			b = append(b, '\f')
		case 'n':
			b = append(b, '\n')
		case 'r':
			b = append(b, '\r')
		case 't':
			b = append(b, '\t')
		case 'u':
			r, ok := s.hex4()
			if !ok {
				return nil, false, s.malformed("invalid \\u escape")
			}
			if utf16.IsSurrogate(r) {
				r2 := rune(-1)
				if s.pos+1 < len(s.data) && s.data[s.pos] == '\\' && s.data[s.pos+1] == 'u' {
					save := s.pos
					s.pos += 2
					var ok2 bool
					if r2, ok2 = s.hex4(); !ok2 {
						return nil, false, s.malformed("invalid \\u escape")
					}
					if utf16.DecodeRune(r, r2) == utf8.RuneError {
						s.pos = save
						r2 = -1
					}
				}
				if r2 < 0 {
					r = utf8.RuneError
				} else {
					r = utf16.DecodeRune(r, r2)
				}
			}
			if r >= 0x80 {
				ascii = false
			}
			b = utf8.AppendRune(b, r)
		default:
			s.pos -= 2
			return nil, false, s.malformed("invalid escape in string")
		}
	}
	return nil, false, s.malformed("unterminated string")
}

func (s *scanner) hex4() (rune, bool) {
	if len(s.data)-s.pos < 4 {
		return 0, false
	}
	var r rune
	for _, c := range s.data[s.pos : s.pos+4] {
		r <<= 4
		switch {
		case c >= '0' && c <= '9':
			r |= rune(c - '0')
		case c >= 'a' && c <= 'f':
			r |= rune(c - 'a' + 10)
		case c >= 'A' && c <= 'F':
			r |= rune(c - 'A' + 10)
		default:
			return 0, false
		}
	}
	s.pos += 4
	return r, true
}

// num is a JSON number as scanned.
type num struct {
	text []byte
	// mant holds the digits without sign or point when they fit (digits <=
	// 19); exp10 is the power of ten to apply; plain means no fraction or
	// exponent was written.
	mant   uint64
	digits int
	exp10  int
	neg    bool
	plain  bool
}

var pow10 = [...]float64{1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10,
	1e11, 1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22}

// integer returns the number's value when it is integral and fits int64.
func (n num) integer() (int64, bool) {
	if n.plain && n.digits <= 19 {
		if n.neg {
			if n.mant > 1<<63 {
				return 0, false
			}
			return -int64(n.mant), true
		}
		if n.mant > math.MaxInt64 {
			return 0, false
		}
		return int64(n.mant), true
	}
	x, ok := n.float(64)
	if !ok || x != math.Trunc(x) || x < -(1<<63) || x >= 1<<63 {
		return 0, false
	}
	return int64(x), true
}

// float returns the number at the given precision; false when it overflows.
func (n num) float(bits int) (float64, bool) {
	// Exact fast path: the mantissa and the power of ten are both exactly
	// representable, so one IEEE operation rounds correctly.
	if bits == 64 && n.digits <= 15 && n.exp10 >= -22 && n.exp10 <= 22 {
		x := float64(n.mant)
		if n.exp10 < 0 {
			x /= pow10[-n.exp10]
		} else {
			x *= pow10[n.exp10]
		}
		if n.neg {
			x = -x
		}
		return x, true
	}
	// The grammar was checked by the scanner, so the only error is ErrRange.
	// unsafe.String: ParseFloat copies its input into any error it returns.
	x, err := strconv.ParseFloat(unsafe.String(unsafe.SliceData(n.text), len(n.text)), bits)
	if err != nil && math.IsInf(x, 0) {
		return 0, false
	}
	return x, true
}

// number scans a JSON number at s.pos, checking its grammar.
func (s *scanner) number() (num, error) {
	var n num
	start := s.pos
	d := s.data
	i := s.pos
	if d[i] == '-' {
		n.neg = true
		i++
	}
	if i >= len(d) {
		s.pos = i
		return n, s.malformed("invalid number")
	}
	n.plain = true
	// digit keeps up to 19 significant digits in mant; beyond that only
	// the magnitude is tracked and ParseFloat supplies the precision.
	digit := func(c byte, frac bool) {
		if n.digits < 19 {
			n.mant = n.mant*10 + uint64(c-'0')
			if frac {
				n.exp10--
			}
		} else if !frac {
			n.exp10++
		}
		if n.digits > 0 || c != '0' {
			n.digits++
		}
	}
	switch {
	case d[i] == '0':
		i++
	case d[i] >= '1' && d[i] <= '9':
		for i < len(d) && d[i] >= '0' && d[i] <= '9' {
			digit(d[i], false)
			i++
		}
	default:
		s.pos = i
		return n, s.malformed("invalid number")
	}
	if i < len(d) && d[i] == '.' {
		n.plain = false
		i++
		if i >= len(d) || d[i] < '0' || d[i] > '9' {
			s.pos = i
			return n, s.malformed("invalid number")
		}
		for i < len(d) && d[i] >= '0' && d[i] <= '9' {
			digit(d[i], true)
			i++
		}
	}
	if i < len(d) && (d[i] == 'e' || d[i] == 'E') {
		n.plain = false
		i++
		eneg := false
		if i < len(d) && (d[i] == '+' || d[i] == '-') {
			eneg = d[i] == '-'
			i++
		}
		if i >= len(d) || d[i] < '0' || d[i] > '9' {
			s.pos = i
			return n, s.malformed("invalid number")
		}
		e := 0
		for i < len(d) && d[i] >= '0' && d[i] <= '9' {
			if e < 100000 {
				e = e*10 + int(d[i]-'0')
			}
			i++
		}
		if eneg {
			e = -e
		}
		n.exp10 += e
	}
	s.pos = i
	n.text = d[start:i]
	return n, nil
}

// skip validates and skips the value at s.pos.
func (s *scanner) skip(depth int) error {
	if depth >= maxDepth {
		return s.malformed("nested too deeply")
	}
	if s.pos >= len(s.data) {
		return s.malformed("unexpected end of record")
	}
	switch c := s.data[s.pos]; {
	case c == '"':
		return s.skipStr()
	case c == '-' || (c >= '0' && c <= '9'):
		_, err := s.number()
		return err
	case c == 't':
		return s.literal("true")
	case c == 'f':
		return s.literal("false")
	case c == 'n':
		return s.literal("null")
	case c == '{':
		s.pos++
		s.skipWS()
		if s.pos < len(s.data) && s.data[s.pos] == '}' {
			s.pos++
			return nil
		}
		for {
			if s.pos >= len(s.data) || s.data[s.pos] != '"' {
				return s.malformed("expected object key")
			}
			if err := s.skipStr(); err != nil {
				return err
			}
			s.skipWS()
			if s.pos >= len(s.data) || s.data[s.pos] != ':' {
				return s.malformed("expected ':' after object key")
			}
			s.pos++
			s.skipWS()
			if err := s.skip(depth + 1); err != nil {
				return err
			}
			s.skipWS()
			if s.pos >= len(s.data) {
				return s.malformed("unexpected end of record")
			}
			switch s.data[s.pos] {
			case ',':
				s.pos++
				s.skipWS()
			case '}':
				s.pos++
				return nil
			default:
				return s.malformed("expected ',' or '}' in object")
			}
		}
	case c == '[':
		s.pos++
		s.skipWS()
		if s.pos < len(s.data) && s.data[s.pos] == ']' {
			s.pos++
			return nil
		}
		for {
			if err := s.skip(depth + 1); err != nil {
				return err
			}
			s.skipWS()
			if s.pos >= len(s.data) {
				return s.malformed("unexpected end of record")
			}
			switch s.data[s.pos] {
			case ',':
				s.pos++
				s.skipWS()
			case ']':
				s.pos++
				return nil
			default:
				return s.malformed("expected ',' or ']' in array")
			}
		}
	default:
		return s.malformed("unexpected character " + strconv.QuoteRune(rune(c)))
	}
}

// skipStr checks a string without keeping it.
func (s *scanner) skipStr() error {
	for i := s.pos + 1; i < len(s.data); i++ {
		c := s.data[i]
		if c == '"' {
			s.pos = i + 1
			return nil
		}
		if c == '\\' || c < 0x20 {
			break
		}
	}
	mark := len(s.buf)
	_, _, err := s.str()
	s.buf = s.buf[:mark]
	return err
}
