package gpuexec

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"testing"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/memory"
)

// hmacHex is the documented pseudonym, computed independently here.
func hmacHex(key []byte, v string) string {
	var sum []byte
	if len(key) == 0 {
		s := sha256.Sum256([]byte(v))
		sum = s[:]
	} else {
		m := hmac.New(sha256.New, key)
		m.Write([]byte(v))
		sum = m.Sum(nil)
	}
	return hex.EncodeToString(sum[:16])
}

func obligationRecord(t *testing.T, mem memory.Allocator) arrow.RecordBatch {
	return buildRecord(t, mem,
		column{"user_id", i64, []any{1, 2, 3}},
		column{"name", str, []any{"alice", nil, "bob"}},
		column{"age", i32, []any{30, nil, 41}},
		column{"email", arrow.BinaryTypes.LargeString, []any{"a@x.io", "b@y.io", nil}},
		column{"ssn", str, []any{"123", "456", "789"}},
		column{"amount", f64, []any{1.5, 2.5, nil}},
	)
}

func TestApplyObligations(t *testing.T) {
	key := []byte("pipeline-secret")
	tests := []struct {
		name             string
		mask, drop, hash []string
		key              []byte
		wantCols         []string
		wantApplied      Applied
		check            map[string][]any // column -> expected values
		wantType         map[string]arrow.DataType
	}{
		{
			name:        "mask strings and non-strings",
			mask:        []string{"name", "age", "absent"},
			wantCols:    []string{"user_id", "name", "age", "email", "ssn", "amount"},
			wantApplied: Applied{Mask: []string{"name", "age"}},
			check:       map[string][]any{"name": {"****", nil, "****"}, "age": {nil, nil, nil}},
			wantType:    map[string]arrow.DataType{"name": str, "age": i32},
		},
		{
			name:        "drop",
			drop:        []string{"ssn", "absent", "amount"},
			wantCols:    []string{"user_id", "name", "age", "email"},
			wantApplied: Applied{Drop: []string{"ssn", "amount"}},
		},
		{
			name:        "hash with key keeps large string",
			hash:        []string{"email", "name"},
			key:         key,
			wantCols:    []string{"user_id", "name", "age", "email", "ssn", "amount"},
			wantApplied: Applied{Hash: []string{"email", "name"}},
			check: map[string][]any{
				"email": {hmacHex(key, "a@x.io"), hmacHex(key, "b@y.io"), nil},
				"name":  {hmacHex(key, "alice"), nil, hmacHex(key, "bob")},
			},
			wantType: map[string]arrow.DataType{"email": arrow.BinaryTypes.LargeString, "name": str},
		},
		{
			name:        "hash without key is sha256",
			hash:        []string{"ssn"},
			wantCols:    []string{"user_id", "name", "age", "email", "ssn", "amount"},
			wantApplied: Applied{Hash: []string{"ssn"}},
			check:       map[string][]any{"ssn": {hmacHex(nil, "123"), hmacHex(nil, "456"), hmacHex(nil, "789")}},
		},
		{
			name:        "hash integer column over its text",
			hash:        []string{"user_id"},
			key:         key,
			wantCols:    []string{"user_id", "name", "age", "email", "ssn", "amount"},
			wantApplied: Applied{Hash: []string{"user_id"}},
			check:       map[string][]any{"user_id": {hmacHex(key, "1"), hmacHex(key, "2"), hmacHex(key, "3")}},
			wantType:    map[string]arrow.DataType{"user_id": str},
		},
		{
			name:        "strongest obligation wins",
			mask:        []string{"name", "ssn"},
			drop:        []string{"ssn"},
			hash:        []string{"name", "email"},
			key:         key,
			wantCols:    []string{"user_id", "name", "age", "email", "amount"},
			wantApplied: Applied{Mask: []string{"name"}, Drop: []string{"ssn"}, Hash: []string{"email"}},
			check:       map[string][]any{"name": {"****", nil, "****"}},
		},
		{
			name:     "only absent columns",
			mask:     []string{"x"},
			drop:     []string{"y"},
			hash:     []string{"z"},
			wantCols: []string{"user_id", "name", "age", "email", "ssn", "amount"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
			defer mem.AssertSize(t, 0)
			rec := obligationRecord(t, mem)
			defer rec.Release()
			out, applied, err := ApplyObligations(rec, tt.mask, tt.drop, tt.hash, tt.key, mem)
			if err != nil {
				t.Fatal(err)
			}
			defer out.Release()
			if out.NumRows() != rec.NumRows() {
				t.Errorf("rows = %d, want %d", out.NumRows(), rec.NumRows())
			}
			if got := fieldNames(out.Schema()); fmt.Sprint(got) != fmt.Sprint(tt.wantCols) {
				t.Fatalf("columns = %v, want %v", got, tt.wantCols)
			}
			if fmt.Sprint(applied) != fmt.Sprint(tt.wantApplied) {
				t.Errorf("applied = %+v, want %+v", applied, tt.wantApplied)
			}
			touched := map[string]bool{}
			for _, names := range [][]string{tt.mask, tt.hash} {
				for _, n := range names {
					touched[n] = true
				}
			}
			for i, f := range out.Schema().Fields() {
				want, ok := tt.check[f.Name]
				switch {
				case ok:
					checkColumn(t, out.Column(i), want)
				case !touched[f.Name]:
					orig := rec.Column(rec.Schema().FieldIndices(f.Name)[0])
					if out.Column(i) != orig {
						t.Errorf("untouched column %s is not the input array", f.Name)
					}
				}
				if dt, ok := tt.wantType[f.Name]; ok && !arrow.TypeEqual(f.Type, dt) {
					t.Errorf("column %s type = %s, want %s", f.Name, f.Type, dt)
				}
			}
		})
	}
}

// TestHashJoinable checks the property lineage and joins rely on: one key
// gives the same pseudonym in separate batches, another key does not.
func TestHashJoinable(t *testing.T) {
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer mem.AssertSize(t, 0)
	a := buildRecord(t, mem, column{"u", str, []any{"alice", "bob"}})
	defer a.Release()
	b := buildRecord(t, mem, column{"u", str, []any{"carol", "alice"}})
	defer b.Release()
	hashed := func(rec arrow.RecordBatch, key string) []string {
		out, _, err := ApplyObligations(rec, nil, nil, []string{"u"}, []byte(key), mem)
		if err != nil {
			t.Fatal(err)
		}
		defer out.Release()
		var vs []string
		for i := 0; i < int(out.NumRows()); i++ {
			vs = append(vs, out.Column(0).ValueStr(i))
		}
		return vs
	}
	ha, hb := hashed(a, "k1"), hashed(b, "k1")
	if ha[0] != hb[1] {
		t.Errorf("alice hashed to %s and %s under one key", ha[0], hb[1])
	}
	if ha[0] == ha[1] || len(ha[0]) != 32 {
		t.Errorf("pseudonyms %v: want distinct 32-char values", ha)
	}
	if hashed(a, "k2")[0] == ha[0] {
		t.Error("two keys gave the same pseudonym")
	}
}
