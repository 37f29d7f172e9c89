// Package storagetest is the acceptance suite every storage.ObjectStore
// backend passes, so that code tested against a folder behaves the same
// against S3.
//
// The semantics it pins down, beyond the interface comments:
//   - Iter's prefix is a plain string prefix, not a folder: "a/b" matches
//     "a/b/c" and "a/bc". Pass "a/b/" for the folder.
//   - Iter lists in lexical byte order, across folder boundaries ("a-b"
//     before "a/b", since '-' < '/').
//   - Delete of a missing key returns nil.
//   - Put with size >= 0 stores exactly size bytes; with -1 it reads r to
//     its end.
//   - Invalid keys (storage.CheckKey) are refused with storage.ErrInvalidKey.
//   - Create over an existing object returns storage.ErrExists and leaves
//     it as it was; of racing Creates of one key exactly one succeeds.
package storagetest

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/sluice-dev/sluice/storage"
)

// Run runs the suite against store. The store must be empty, and is left
// with the objects the suite wrote under "storagetest/".
func Run(t *testing.T, store storage.ObjectStore) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)

	t.Run("RoundTrip", func(t *testing.T) {
		data := []byte("hello, features")
		mustPut(ctx, t, store, "storagetest/rt/a.bin", data)
		if got := mustGet(ctx, t, store, "storagetest/rt/a.bin"); !bytes.Equal(got, data) {
			t.Fatalf("Get = %q, want %q", got, data)
		}
		attrs, err := store.Stat(ctx, "storagetest/rt/a.bin")
		if err != nil {
			t.Fatalf("Stat: %v", err)
		}
		if attrs.Size != int64(len(data)) {
			t.Errorf("Stat size = %d, want %d", attrs.Size, len(data))
		}
	})

	t.Run("EmptyObject", func(t *testing.T) {
		mustPut(ctx, t, store, "storagetest/empty", nil)
		if got := mustGet(ctx, t, store, "storagetest/empty"); len(got) != 0 {
			t.Fatalf("Get = %q, want empty", got)
		}
		attrs, err := store.Stat(ctx, "storagetest/empty")
		if err != nil || attrs.Size != 0 {
			t.Fatalf("Stat = %+v, %v; want size 0", attrs, err)
		}
	})

	t.Run("Overwrite", func(t *testing.T) {
		key := "storagetest/ow/x"
		mustPut(ctx, t, store, key, []byte("first version, longer"))
		mustPut(ctx, t, store, key, []byte("second"))
		if got := mustGet(ctx, t, store, key); string(got) != "second" {
			t.Fatalf("after overwrite Get = %q, want %q", got, "second")
		}
		// Replaying the same bytes (what a crash-restart does) leaves one
		// object with those bytes.
		mustPut(ctx, t, store, key, []byte("second"))
		if got := mustGet(ctx, t, store, key); string(got) != "second" {
			t.Fatalf("after replay Get = %q, want %q", got, "second")
		}
		if keys := list(ctx, t, store, "storagetest/ow/"); !slices.Equal(keys, []string{key}) {
			t.Fatalf("Iter = %q, want one key %q", keys, key)
		}
	})

	t.Run("Missing", func(t *testing.T) {
		key := "storagetest/missing/nothing-here"
		if rc, err := store.Get(ctx, key); !errors.Is(err, storage.ErrNotExist) {
			if err == nil {
				rc.Close()
			}
			t.Errorf("Get missing: err = %v, want ErrNotExist", err)
		}
		if _, err := store.Stat(ctx, key); !errors.Is(err, storage.ErrNotExist) {
			t.Errorf("Stat missing: err = %v, want ErrNotExist", err)
		}
		// A key whose "folder" is an object, and a "folder" itself.
		mustPut(ctx, t, store, "storagetest/missing/dir/obj", []byte("x"))
		for _, k := range []string{"storagetest/missing/dir", "storagetest/missing/dir/obj/below"} {
			if _, err := store.Stat(ctx, k); !errors.Is(err, storage.ErrNotExist) {
				t.Errorf("Stat %q: err = %v, want ErrNotExist", k, err)
			}
		}
		if err := store.Delete(ctx, key); err != nil {
			t.Errorf("Delete missing: %v, want nil", err)
		}
	})

	t.Run("IterOrderAndPrefix", func(t *testing.T) {
		keys := []string{
			"storagetest/it/a/b",
			"storagetest/it/a/bc/d",
			"storagetest/it/a/b0",
			"storagetest/it/a-b",
			"storagetest/it/a/c/d/e",
			"storagetest/it/A",
			"storagetest/it/z",
		}
		for _, k := range keys {
			mustPut(ctx, t, store, k, []byte(k))
		}
		sorted := slices.Sorted(slices.Values(keys))
		for _, tc := range []struct {
			name, prefix string
			want         []string
		}{
			{"all", "storagetest/it/", sorted},
			{"string prefix", "storagetest/it/a/b", []string{"storagetest/it/a/b", "storagetest/it/a/b0", "storagetest/it/a/bc/d"}},
			{"folder", "storagetest/it/a/", []string{"storagetest/it/a/b", "storagetest/it/a/b0", "storagetest/it/a/bc/d", "storagetest/it/a/c/d/e"}},
			{"partial segment", "storagetest/it/a", []string{"storagetest/it/a-b", "storagetest/it/a/b", "storagetest/it/a/b0", "storagetest/it/a/bc/d", "storagetest/it/a/c/d/e"}},
			{"exact key", "storagetest/it/z", []string{"storagetest/it/z"}},
			{"no match", "storagetest/it/q", nil},
			{"no such folder", "storagetest/nope/", nil},
		} {
			t.Run(tc.name, func(t *testing.T) {
				if got := list(ctx, t, store, tc.prefix); !slices.Equal(got, tc.want) {
					t.Errorf("Iter(%q) =\n%q\nwant\n%q", tc.prefix, got, tc.want)
				}
			})
		}
		t.Run("empty prefix lists everything", func(t *testing.T) {
			got := list(ctx, t, store, "")
			if !slices.IsSorted(got) {
				t.Errorf("Iter(\"\") not sorted: %q", got)
			}
			for _, k := range keys {
				if !slices.Contains(got, k) {
					t.Errorf("Iter(\"\") misses %q", k)
				}
			}
		})
		t.Run("fn error stops the walk", func(t *testing.T) {
			stop := errors.New("stop")
			var seen []string
			err := store.Iter(ctx, "storagetest/it/", func(k string) error {
				seen = append(seen, k)
				if len(seen) == 2 {
					return stop
				}
				return nil
			})
			if !errors.Is(err, stop) {
				t.Errorf("Iter err = %v, want the error fn returned", err)
			}
			if len(seen) != 2 {
				t.Errorf("fn called %d times after returning an error at 2", len(seen))
			}
		})
	})

	t.Run("Delete", func(t *testing.T) {
		key := "storagetest/del/a/b"
		mustPut(ctx, t, store, key, []byte("x"))
		mustPut(ctx, t, store, "storagetest/del/keep", []byte("y"))
		if err := store.Delete(ctx, key); err != nil {
			t.Fatalf("Delete: %v", err)
		}
		if _, err := store.Stat(ctx, key); !errors.Is(err, storage.ErrNotExist) {
			t.Errorf("Stat after Delete: err = %v, want ErrNotExist", err)
		}
		if got := list(ctx, t, store, "storagetest/del/"); !slices.Equal(got, []string{"storagetest/del/keep"}) {
			t.Errorf("Iter after Delete = %q, want only the other key", got)
		}
		// The emptied "folder" can hold an object again.
		mustPut(ctx, t, store, key, []byte("again"))
		if got := mustGet(ctx, t, store, key); string(got) != "again" {
			t.Errorf("Get after re-Put = %q", got)
		}
	})

	t.Run("UnknownSize", func(t *testing.T) {
		for _, n := range []int{0, 1000, 17 << 20} {
			t.Run(fmt.Sprint(n), func(t *testing.T) {
				data := randomBytes(t, n)
				key := fmt.Sprintf("storagetest/unknown/%d", n)
				// onlyReader hides Len/Seek so the backend cannot learn the size.
				if err := store.Put(ctx, key, onlyReader{bytes.NewReader(data)}, -1); err != nil {
					t.Fatalf("Put size -1: %v", err)
				}
				if got := mustGet(ctx, t, store, key); !bytes.Equal(got, data) {
					t.Fatalf("Get after Put(-1) returned %d bytes, want %d equal bytes", len(got), len(data))
				}
				if attrs, err := store.Stat(ctx, key); err != nil || attrs.Size != int64(n) {
					t.Fatalf("Stat = %+v, %v; want size %d", attrs, err, n)
				}
			})
		}
	})

	t.Run("Large", func(t *testing.T) {
		data := randomBytes(t, 5<<20+123)
		key := "storagetest/large/blob"
		if err := store.Put(ctx, key, onlyReader{bytes.NewReader(data)}, int64(len(data))); err != nil {
			t.Fatalf("Put: %v", err)
		}
		if got := mustGet(ctx, t, store, key); !bytes.Equal(got, data) {
			t.Fatalf("Get returned %d bytes, want %d equal bytes", len(got), len(data))
		}
	})

	t.Run("ConcurrentPuts", func(t *testing.T) {
		const n = 16
		var wg sync.WaitGroup
		errs := make([]error, n)
		for i := range n {
			wg.Go(func() {
				key := fmt.Sprintf("storagetest/conc/%02d/obj", i)
				errs[i] = store.Put(ctx, key, bytes.NewReader([]byte(key)), int64(len(key)))
			})
		}
		wg.Wait()
		if err := errors.Join(errs...); err != nil {
			t.Fatalf("concurrent Put: %v", err)
		}
		got := list(ctx, t, store, "storagetest/conc/")
		if len(got) != n {
			t.Fatalf("Iter found %d keys, want %d: %q", len(got), n, got)
		}
		for _, k := range got {
			if b := mustGet(ctx, t, store, k); string(b) != k {
				t.Errorf("Get %q = %q", k, b)
			}
		}
	})

	t.Run("ConcurrentSameKey", func(t *testing.T) {
		// Atomic Put: racing writers leave one whole version, never a mix.
		key := "storagetest/race/obj"
		versions := [][]byte{bytes.Repeat([]byte("a"), 256<<10), bytes.Repeat([]byte("b"), 256<<10)}
		var wg sync.WaitGroup
		errs := make([]error, 8)
		for i := range errs {
			wg.Go(func() {
				v := versions[i%2]
				errs[i] = store.Put(ctx, key, bytes.NewReader(v), int64(len(v)))
			})
		}
		wg.Wait()
		if err := errors.Join(errs...); err != nil {
			t.Fatalf("concurrent Put: %v", err)
		}
		got := mustGet(ctx, t, store, key)
		if !bytes.Equal(got, versions[0]) && !bytes.Equal(got, versions[1]) {
			t.Fatalf("object is neither version (%d bytes)", len(got))
		}
	})

	t.Run("Create", func(t *testing.T) {
		key := "storagetest/create/obj"
		first := []byte("first")
		if err := store.Create(ctx, key, bytes.NewReader(first), int64(len(first))); err != nil {
			t.Fatalf("Create of a new key: %v", err)
		}
		second := []byte("second")
		err := store.Create(ctx, key, bytes.NewReader(second), int64(len(second)))
		if !errors.Is(err, storage.ErrExists) {
			t.Fatalf("Create over an existing object: %v, want ErrExists", err)
		}
		if got := mustGet(ctx, t, store, key); !bytes.Equal(got, first) {
			t.Fatalf("after a refused Create the object is %q, want %q", got, first)
		}
		if err := store.Create(ctx, "storagetest/create/unsized", bytes.NewReader(second), -1); err != nil {
			t.Fatalf("Create with size -1: %v", err)
		}
		if got := mustGet(ctx, t, store, "storagetest/create/unsized"); !bytes.Equal(got, second) {
			t.Fatalf("Create with size -1 stored %q", got)
		}
		if names := list(ctx, t, store, "storagetest/create/"); len(names) != 2 {
			t.Errorf("Iter after Creates: %q; want the two objects and nothing else", names)
		}
	})

	t.Run("ConcurrentCreates", func(t *testing.T) {
		// Of racing Creates of one key exactly one wins, and the object is
		// the winner's, whole.
		key := "storagetest/createrace/obj"
		const n = 8
		var wg sync.WaitGroup
		errs := make([]error, n)
		for i := range n {
			wg.Go(func() {
				v := bytes.Repeat([]byte{byte('a' + i)}, 64<<10)
				errs[i] = store.Create(ctx, key, bytes.NewReader(v), int64(len(v)))
			})
		}
		wg.Wait()
		winner := -1
		for i, err := range errs {
			switch {
			case err == nil && winner >= 0:
				t.Fatalf("Creates %d and %d both succeeded", winner, i)
			case err == nil:
				winner = i
			case !errors.Is(err, storage.ErrExists):
				t.Fatalf("Create %d: %v, want nil or ErrExists", i, err)
			}
		}
		if winner < 0 {
			t.Fatal("no Create succeeded")
		}
		if got := mustGet(ctx, t, store, key); !bytes.Equal(got, bytes.Repeat([]byte{byte('a' + winner)}, 64<<10)) {
			t.Fatalf("object is not the winner's (%d bytes)", len(got))
		}
	})

	t.Run("ShortReader", func(t *testing.T) {
		// A reader that holds less than size must not leave an object.
		key := "storagetest/short/obj"
		err := store.Put(ctx, key, onlyReader{bytes.NewReader([]byte("abc"))}, 10)
		if err == nil {
			t.Fatal("Put with size larger than the data: want an error")
		}
		if _, err := store.Stat(ctx, key); !errors.Is(err, storage.ErrNotExist) {
			t.Errorf("Stat after failed Put: err = %v, want ErrNotExist", err)
		}
	})

	t.Run("FailingReader", func(t *testing.T) {
		key := "storagetest/failing/obj"
		mustPut(ctx, t, store, key, []byte("old"))
		boom := errors.New("boom")
		r := io.MultiReader(bytes.NewReader([]byte("new but partial")), errReader{boom})
		if err := store.Put(ctx, key, r, -1); err == nil {
			t.Fatal("Put from a failing reader: want an error")
		}
		if got := mustGet(ctx, t, store, key); string(got) != "old" {
			t.Fatalf("after failed Put Get = %q, want the old object", got)
		}
	})

	t.Run("InvalidKeys", func(t *testing.T) {
		for _, k := range []string{"", "/abs", "a//b", "a/../b", "../escape", "a/./b", "trailing/", "."} {
			t.Run(fmt.Sprintf("%q", k), func(t *testing.T) {
				err := store.Put(ctx, k, bytes.NewReader([]byte("x")), 1)
				if !errors.Is(err, storage.ErrInvalidKey) {
					t.Errorf("Put(%q): err = %v, want ErrInvalidKey", k, err)
				}
				if _, err := store.Get(ctx, k); !errors.Is(err, storage.ErrInvalidKey) {
					t.Errorf("Get(%q): err = %v, want ErrInvalidKey", k, err)
				}
			})
		}
	})

	t.Run("Canceled", func(t *testing.T) {
		cctx, ccancel := context.WithCancel(ctx)
		ccancel()
		key := "storagetest/canceled/obj"
		if err := store.Put(cctx, key, bytes.NewReader([]byte("x")), 1); !errors.Is(err, context.Canceled) {
			t.Errorf("Put with canceled context: err = %v, want context.Canceled", err)
		}
		if _, err := store.Stat(ctx, key); !errors.Is(err, storage.ErrNotExist) {
			t.Errorf("object written despite canceled context: Stat err = %v", err)
		}
		mustPut(ctx, t, store, key, []byte("x"))
		if rc, err := store.Get(cctx, key); !errors.Is(err, context.Canceled) {
			if err == nil {
				rc.Close()
			}
			t.Errorf("Get with canceled context: err = %v, want context.Canceled", err)
		}
		if err := store.Iter(cctx, "storagetest/", func(string) error { return nil }); !errors.Is(err, context.Canceled) {
			t.Errorf("Iter with canceled context: err = %v, want context.Canceled", err)
		}
		// Canceled while the body is being read.
		pr, pw := io.Pipe()
		c2, cancel2 := context.WithCancel(ctx)
		go func() {
			pw.Write(make([]byte, 1<<10))
			cancel2()
			time.Sleep(200 * time.Millisecond)
			pw.Write(make([]byte, 1<<10))
			pw.Close()
		}()
		key2 := "storagetest/canceled/mid"
		if err := store.Put(c2, key2, pr, 2<<10); err == nil {
			t.Errorf("Put canceled mid-body: want an error")
		}
		pr.Close()
		if _, err := store.Stat(ctx, key2); !errors.Is(err, storage.ErrNotExist) {
			t.Errorf("object written despite cancel mid-body: Stat err = %v", err)
		}
	})

	t.Run("Prefixed", func(t *testing.T) {
		// storage.WithPrefix confines a store to a prefix; keys read back
		// without it.
		p := storage.WithPrefix(store, "storagetest/pfx/")
		mustPut(ctx, t, p, "x/y", []byte("1"))
		mustPut(ctx, t, store, "storagetest/pfx-sibling", []byte("2"))
		if got := mustGet(ctx, t, store, "storagetest/pfx/x/y"); string(got) != "1" {
			t.Errorf("underlying Get = %q", got)
		}
		if got := list(ctx, t, p, ""); !slices.Equal(got, []string{"x/y"}) {
			t.Errorf("prefixed Iter = %q, want [x/y]", got)
		}
		if err := p.Put(ctx, "../escape", bytes.NewReader(nil), 0); !errors.Is(err, storage.ErrInvalidKey) {
			t.Errorf("prefixed Put(../escape): err = %v, want ErrInvalidKey", err)
		}
	})
}

func mustPut(ctx context.Context, t *testing.T, s storage.ObjectStore, key string, data []byte) {
	t.Helper()
	if err := s.Put(ctx, key, bytes.NewReader(data), int64(len(data))); err != nil {
		t.Fatalf("Put %q: %v", key, err)
	}
}

func mustGet(ctx context.Context, t *testing.T, s storage.BucketReader, key string) []byte {
	t.Helper()
	rc, err := s.Get(ctx, key)
	if err != nil {
		t.Fatalf("Get %q: %v", key, err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatalf("read %q: %v", key, err)
	}
	return b
}

func list(ctx context.Context, t *testing.T, s storage.BucketReader, prefix string) []string {
	t.Helper()
	var keys []string
	if err := s.Iter(ctx, prefix, func(k string) error {
		keys = append(keys, k)
		return nil
	}); err != nil {
		t.Fatalf("Iter %q: %v", prefix, err)
	}
	return keys
}

func randomBytes(t *testing.T, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

type onlyReader struct{ r io.Reader }

func (o onlyReader) Read(p []byte) (int, error) { return o.r.Read(p) }

type errReader struct{ err error }

func (e errReader) Read([]byte) (int, error) { return 0, e.err }
