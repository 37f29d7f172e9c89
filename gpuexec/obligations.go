package gpuexec

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"hash"
	"unsafe"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
)

// MaskValue replaces every non-null string value of a masked column.
const MaskValue = "****"

// Applied lists the obligations ApplyObligations actually carried out, by
// column name, for lineage. A name appears at most once, under the
// strongest obligation applied to it.
type Applied struct {
	Mask []string `json:"mask,omitempty"`
	Drop []string `json:"drop,omitempty"`
	Hash []string `json:"hash,omitempty"`
}

// Empty reports whether nothing was applied.
func (a Applied) Empty() bool { return len(a.Mask)+len(a.Drop)+len(a.Hash) == 0 }

// ApplyObligations returns a new batch with a policy decision's obligations
// carried out on rec. It does not release rec; the caller releases the
// result. Columns not named are the same arrays, retained.
//
//   - drop removes the column.
//   - mask replaces every non-null value of a string column with MaskValue
//     ("****"); a column of any other type becomes all null (same type,
//     now nullable).
//   - hash replaces each non-null value with the lowercase hex of
//     HMAC-SHA256(key, value) truncated to its first 16 bytes (32 hex
//     characters). The same value hashes the same in every batch under one
//     key, so pseudonymised columns stay joinable, while nobody without the
//     key can test a guess. A nil or empty key uses plain SHA-256 instead,
//     which is weaker: anyone can hash candidate values (phone numbers,
//     e-mails) and compare. A string column is hashed over its UTF-8 bytes;
//     any other type is hashed over its Arrow text form (array ValueStr,
//     e.g. "42" for an integer) and becomes a string column.
//
// Nulls stay null. A column named twice takes the strongest obligation:
// drop, then mask, then hash. A name that is not a column of rec is not an
// error (a policy may name columns of other data) and is left out of the
// returned Applied. mem allocates the new columns; nil means
// memory.DefaultAllocator.
func ApplyObligations(rec arrow.RecordBatch, mask, drop, hash []string, key []byte, mem memory.Allocator) (arrow.RecordBatch, Applied, error) {
	if rec == nil {
		return nil, Applied{}, errors.New("gpuexec: obligations: record is nil")
	}
	if mem == nil {
		mem = memory.DefaultAllocator
	}
	var applied Applied
	schema := rec.Schema()
	action := make([]OpKind, schema.NumFields())
	// Strongest first: a later, weaker obligation never overrides.
	for _, ob := range []struct {
		kind  OpKind
		names []string
		out   *[]string
	}{{OpDrop, drop, &applied.Drop}, {OpMask, mask, &applied.Mask}, {OpHash, hash, &applied.Hash}} {
		for _, name := range ob.names {
			hit := false
			for _, idx := range schema.FieldIndices(name) {
				if action[idx] == "" {
					action[idx] = ob.kind
					hit = true
				}
			}
			if hit {
				*ob.out = append(*ob.out, name)
			}
		}
	}

	fields := make([]arrow.Field, 0, len(action))
	cols := make([]arrow.Array, 0, len(action))
	var made []arrow.Array
	defer func() {
		for _, a := range made {
			a.Release()
		}
	}()
	for i, act := range action {
		f := schema.Field(i)
		col := rec.Column(i)
		switch act {
		case OpDrop:
			continue
		case OpMask:
			col = maskColumn(col, mem)
			made = append(made, col)
			f.Nullable = f.Nullable || !isStringType(f.Type)
			f.Type = col.DataType()
		case OpHash:
			col = hashColumn(col, key, mem)
			made = append(made, col)
			f.Type = col.DataType()
		}
		fields = append(fields, f)
		cols = append(cols, col)
	}
	md := schema.Metadata()
	out := array.NewRecordBatch(arrow.NewSchema(fields, &md), cols, rec.NumRows())
	return out, applied, nil
}

// stringBuilder returns a builder for the string type an obligation on a
// column of type dt produces: large strings stay large, everything else
// becomes utf8.
func stringBuilder(dt arrow.DataType, mem memory.Allocator) (array.Builder, *array.BinaryBuilder) {
	if dt.ID() == arrow.LARGE_STRING {
		b := array.NewLargeStringBuilder(mem)
		return b, b.BinaryBuilder
	}
	b := array.NewStringBuilder(mem)
	return b, b.BinaryBuilder
}

func maskColumn(col arrow.Array, mem memory.Allocator) arrow.Array {
	n := col.Len()
	if !isStringType(col.DataType()) {
		return array.MakeArrayOfNull(mem, col.DataType(), n)
	}
	outer, b := stringBuilder(col.DataType(), mem)
	defer outer.Release()
	b.Reserve(n)
	b.ReserveData((n - col.NullN()) * len(MaskValue))
	masked := []byte(MaskValue)
	for i := range n {
		if col.IsNull(i) {
			b.AppendNull()
		} else {
			b.Append(masked)
		}
	}
	return outer.NewArray()
}

func hashColumn(col arrow.Array, key []byte, mem memory.Allocator) arrow.Array {
	var h hash.Hash
	if len(key) == 0 {
		h = sha256.New()
	} else {
		h = hmac.New(sha256.New, key)
	}
	n := col.Len()
	outer, b := stringBuilder(col.DataType(), mem)
	defer outer.Release()
	b.Reserve(n)
	b.ReserveData((n - col.NullN()) * 32)
	var sum [sha256.Size]byte
	var text [32]byte
	sv, isString := col.(stringValues)
	for i := range n {
		if col.IsNull(i) {
			b.AppendNull()
			continue
		}
		var s string
		if isString && isStringType(col.DataType()) {
			s = sv.Value(i)
		} else {
			s = col.ValueStr(i)
		}
		h.Reset()
		h.Write(unsafe.Slice(unsafe.StringData(s), len(s))) // Write does not keep or change it
		h.Sum(sum[:0])
		hex.Encode(text[:], sum[:16])
		b.Append(text[:])
	}
	return outer.NewArray()
}
