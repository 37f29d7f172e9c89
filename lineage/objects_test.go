package lineage

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/sluice-dev/sluice/storage"
)

// objectFixture is a lineage store whose events name objects that really
// exist, in one feature store per namespace.
type objectFixture struct {
	lineage *memStore
	stores  map[string]*memStore // namespace -> objects
}

// countLines is the Rows function of the fixture: every object holds one
// line per row.
func countLines(key string, data []byte) (int64, bool, error) {
	return int64(bytes.Count(data, []byte{'\n'})), true, nil
}

func newObjectFixture(t *testing.T, batches int) *objectFixture {
	t.Helper()
	f := &objectFixture{lineage: newMemStore(), stores: map[string]*memStore{}}
	w := newTestWriter(t, f.lineage)
	for i := range batches {
		first := int64(100 + 10*i)
		evs := batchEvents("events", 3, first, first+9)
		for _, ev := range evs {
			for j := range ev.Outputs {
				o := &ev.Outputs[j]
				obj := o.OutputFacets.Object
				var data []byte
				for r := range obj.Rows {
					data = fmt.Appendf(data, "row %d of %s\n", r, obj.Key)
				}
				sum := sha256.Sum256(data)
				obj.SHA256, obj.Bytes = hex.EncodeToString(sum[:]), int64(len(data))
				st := f.stores[o.Namespace]
				if st == nil {
					st = newMemStore()
					f.stores[o.Namespace] = st
				}
				st.set(obj.Key, data)
			}
		}
		if _, err := w.Append(context.Background(), "events-3", evs); err != nil {
			t.Fatal(err)
		}
	}
	return f
}

func (f *objectFixture) opts() VerifyOptions {
	return VerifyOptions{
		Objects: func(ctx context.Context, ns string) (ObjectReader, error) {
			st, ok := f.stores[ns]
			if !ok {
				return nil, fmt.Errorf("no store for %s", ns)
			}
			return st, nil
		},
		Rows: countLines,
	}
}

// objectOf returns the namespace and key of the object the event at seq
// names.
func (f *objectFixture) objectOf(t *testing.T, seq int) (string, string) {
	t.Helper()
	evs, err := ReadAll(context.Background(), f.lineage, "lineage")
	if err != nil {
		t.Fatal(err)
	}
	o := evs[seq].Outputs[0]
	return o.Namespace, o.OutputFacets.Object.Key
}

func TestVerifyObjects(t *testing.T) {
	ctx := context.Background()
	cases := []struct {
		name   string
		tamper func(t *testing.T, f *objectFixture, opts *VerifyOptions)
		// want are substrings of the first problem.
		want []string
	}{
		{
			name: "feature object altered",
			tamper: func(t *testing.T, f *objectFixture, _ *VerifyOptions) {
				ns, key := f.objectOf(t, 3)
				d := f.stores[ns].get(key)
				d[0] ^= 1
				f.stores[ns].set(key, d)
			},
			want: []string{"chain card-fraud/events-3", "segment " + segKey(3), "seq 3", "object s3://features/features/pipeline=card-fraud/", "altered or replaced"},
		},
		{
			name: "quarantine object deleted",
			tamper: func(t *testing.T, f *objectFixture, _ *VerifyOptions) {
				ns, key := f.objectOf(t, 8)
				f.stores[ns].del(key)
			},
			want: []string{"segment " + segKey(6), "seq 8", "object s3://quarantine-us/quarantine/", "does not exist"},
		},
		{
			name: "row count differs",
			tamper: func(t *testing.T, f *objectFixture, opts *VerifyOptions) {
				// The bytes match their hash, but the object holds one
				// row fewer than recorded (as a writer that recorded the
				// wrong count would leave it).
				ns, key := f.objectOf(t, 6)
				opts.Rows = func(k string, data []byte) (int64, bool, error) {
					n, ok, err := countLines(k, data)
					if k == key && f.stores[ns] != nil {
						n--
					}
					return n, ok, err
				}
			},
			want: []string{"segment " + segKey(6), "seq 6", "holds 7 rows, lineage records 8"},
		},
		{
			name: "store cannot be opened",
			tamper: func(t *testing.T, f *objectFixture, _ *VerifyOptions) {
				delete(f.stores, "s3://quarantine-us")
			},
			want: []string{"seq 2", "cannot open the store \"s3://quarantine-us\"", "no store for s3://quarantine-us"},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := newObjectFixture(t, 4)
			opts := f.opts()
			rep, err := VerifyWith(ctx, f.lineage, "lineage", opts)
			if err != nil || !rep.OK || rep.Objects != 12 {
				t.Fatalf("intact: %+v, %v; want OK with 12 objects checked", rep, err)
			}
			tc.tamper(t, f, &opts)
			rep, err = VerifyWith(ctx, f.lineage, "lineage", opts)
			if err != nil {
				t.Fatal(err)
			}
			if rep.OK || len(rep.Problems) == 0 {
				t.Fatal("verify passed a store whose objects were tampered with")
			}
			if !containsAll(rep.Problems[0], tc.want) {
				t.Errorf("first problem %q does not mention all of %q; all:\n%s", rep.Problems[0], tc.want, strings.Join(rep.Problems, "\n"))
			}
			if tc.name == "store cannot be opened" && len(rep.Problems) != 1 {
				t.Errorf("an unopenable store is reported once, not per object:\n%s", strings.Join(rep.Problems, "\n"))
			}
		})
	}
	t.Run("without Objects no object is read", func(t *testing.T) {
		f := newObjectFixture(t, 2)
		for _, st := range f.stores {
			for _, k := range st.keys("") {
				st.del(k)
			}
		}
		rep, err := Verify(ctx, f.lineage, "lineage", nil)
		if err != nil || !rep.OK || rep.Objects != 0 {
			t.Fatalf("Verify = %+v, %v", rep, err)
		}
	})
}

func TestVerifyFirstBrokenLinkFirst(t *testing.T) {
	ctx := context.Background()
	f := newObjectFixture(t, 4)
	// Break the trail late (seq 9) and an object early (seq 3).
	f.lineage.set(segKey(9), withoutSignature(f.lineage.get(segKey(9))))
	ns, key := f.objectOf(t, 3)
	f.stores[ns].set(key, []byte("other\n"))
	rep, err := VerifyWith(ctx, f.lineage, "lineage", f.opts())
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Findings) < 2 {
		t.Fatalf("findings %v, want the object and the signature", rep.Problems)
	}
	if p := rep.Findings[0]; p.Seq != 3 || p.Segment != segKey(3) || !strings.HasSuffix(p.Object, key) {
		t.Errorf("first finding %+v, want the object at seq 3", p)
	}
	last := rep.Findings[len(rep.Findings)-1]
	if last.Seq != 9 || !strings.Contains(last.Message, "missing signature") {
		t.Errorf("last finding %+v, want the missing signature at seq 9", last)
	}
	for i, p := range rep.Findings {
		if rep.Problems[i] != p.String() {
			t.Errorf("Problems[%d] = %q, Findings[%d] = %q", i, rep.Problems[i], i, p)
		}
	}
}

// retainingStore is a memStore with Object Lock as storage/s3 reports it.
type retainingStore struct {
	*memStore
	lock    bool
	lockErr error
	modes   map[string]string // key -> mode; missing: "" (no retention)
}

func (r *retainingStore) ObjectLock(context.Context) (bool, error) { return r.lock, r.lockErr }

func (r *retainingStore) Retention(_ context.Context, key string) (string, time.Time, error) {
	if r.get(key) == nil {
		return "", time.Time{}, fmt.Errorf("%s: %w", key, storage.ErrNotExist)
	}
	m := r.modes[key]
	if m == "" {
		return "", time.Time{}, nil
	}
	return m, testTime.AddDate(0, 0, 30), nil
}

func TestVerifyRetention(t *testing.T) {
	ctx := context.Background()
	base := newMemStore()
	appendBatches(t, newTestWriter(t, base), "events-3", "events", 3, 100, 10, 4)
	all := map[string]string{}
	for _, k := range base.keys(".ndjson") {
		all[k] = "COMPLIANCE"
	}
	// An earlier trail: segment 3's signature is a separate object.
	earlier := base.clone()
	earlier.toLegacy(segKey(3), func(seg []byte) []byte { return legacySig(testKey(1), seg) })
	without := func(keys ...string) map[string]string {
		m := map[string]string{}
		for k, v := range all {
			m[k] = v
		}
		for _, k := range keys {
			delete(m, k)
		}
		return m
	}
	for _, tc := range []struct {
		name      string
		store     Store
		retention string
		want      []string // substrings of the first problem; nil for OK
	}{
		{"folder", base, RetentionUnsupported, nil},
		{"bucket without object lock", &retainingStore{memStore: base, modes: map[string]string{}}, RetentionNoLock, nil},
		{"every segment locked", &retainingStore{memStore: base, lock: true, modes: all}, RetentionChecked, nil},
		{"a segment not locked", &retainingStore{memStore: base, lock: true, modes: without(segKey(6))}, RetentionChecked,
			[]string{"chain card-fraud/events-3", "segment " + segKey(6), "seq 6", "no Object Lock retention"}},
		{"an earlier trail's signature object not locked", &retainingStore{memStore: earlier, lock: true, modes: all}, RetentionChecked,
			[]string{"segment " + segKey(3), segKey(3) + ".sig has no Object Lock retention"}},
		{"lock configuration unreadable", &retainingStore{memStore: base, lockErr: errors.New("access denied")}, "",
			[]string{"cannot tell whether the lineage bucket has Object Lock", "access denied"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rep, err := Verify(ctx, tc.store, "lineage", nil)
			if err != nil {
				t.Fatal(err)
			}
			if rep.Retention != tc.retention {
				t.Errorf("Retention = %q, want %q", rep.Retention, tc.retention)
			}
			if tc.want == nil {
				if !rep.OK {
					t.Fatalf("problems: %v", rep.Problems)
				}
				return
			}
			if rep.OK || !containsAll(rep.Problems[0], tc.want) {
				t.Fatalf("first problem of %v does not mention all of %q", rep.Problems, tc.want)
			}
		})
	}
}

func TestObjectURL(t *testing.T) {
	for _, tc := range [][3]string{
		{"file:///data/fra", "pipeline=p/x.parquet", "file:///data/fra/pipeline=p/x.parquet"},
		{"s3://bkt/pre?endpoint=127.0.0.1:9000", "a/b.parquet", "s3://bkt/pre/a/b.parquet?endpoint=127.0.0.1:9000"},
		{"s3://bkt", "a.parquet", "s3://bkt/a.parquet"},
		{"features", "a.parquet", "features/a.parquet"},
	} {
		if got := ObjectURL(tc[0], tc[1]); got != tc[2] {
			t.Errorf("ObjectURL(%q, %q) = %q, want %q", tc[0], tc[1], got, tc[2])
		}
	}
}

// TestVerifyProgress: a long verify reports each stage up to its total.
func TestVerifyProgress(t *testing.T) {
	f := newObjectFixture(t, 4)
	opts := f.opts()
	last := map[string]VerifyProgress{}
	opts.Progress = func(p VerifyProgress) {
		if prev, ok := last[p.Stage]; ok && p.Done < prev.Done {
			t.Errorf("%s progress went back from %d to %d", p.Stage, prev.Done, p.Done)
		}
		last[p.Stage] = p
	}
	rep, err := VerifyWith(context.Background(), f.lineage, "lineage", opts)
	if err != nil || !rep.OK {
		t.Fatalf("verify: %+v %v", rep, err)
	}
	if s := last["segments"]; s.Done != rep.Segments || s.Total != rep.Segments {
		t.Errorf("last segments progress %+v, want %d of %d", s, rep.Segments, rep.Segments)
	}
	if o := last["objects"]; o.Done != o.Total || o.Total == 0 || o.Events != rep.Events {
		t.Errorf("last objects progress %+v, want every object and the %d events", o, rep.Events)
	}
}
