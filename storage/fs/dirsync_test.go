package fs

import (
	"errors"
	"sync"
	"testing"
	"time"
)

// TestDirSyncsGroupCommit: many Puts finishing their renames into one
// folder at once share folder fsyncs, and each still returns only after an
// fsync that started after it asked (so its rename is covered).
func TestDirSyncsGroupCommit(t *testing.T) {
	type span struct{ start, end time.Time }
	var mu sync.Mutex
	var fsyncs []span
	g := dirSyncs{fsync: func(string) error {
		s := span{start: time.Now()}
		time.Sleep(2 * time.Millisecond)
		s.end = time.Now()
		mu.Lock()
		fsyncs = append(fsyncs, s)
		mu.Unlock()
		return nil
	}}
	const callers = 64
	calls := make([]span, callers)
	var wg sync.WaitGroup
	for i := range callers {
		wg.Go(func() {
			calls[i].start = time.Now()
			if err := g.sync("/d"); err != nil {
				t.Error(err)
			}
			calls[i].end = time.Now()
		})
	}
	wg.Wait()
	if len(fsyncs) >= callers {
		t.Errorf("%d fsyncs for %d callers: nothing was shared", len(fsyncs), callers)
	}
	for i, c := range calls {
		covered := false
		for _, f := range fsyncs {
			if !f.start.Before(c.start) && !f.end.After(c.end) {
				covered = true
			}
		}
		if !covered {
			t.Fatalf("caller %d returned without an fsync that started after it asked", i)
		}
	}
	if len(g.dirs) != 0 {
		t.Errorf("%d folders still tracked after every caller returned", len(g.dirs))
	}
}

// TestDirSyncsError: a failed folder fsync fails the Puts it was for, and
// the next Put gets a fresh fsync.
func TestDirSyncsError(t *testing.T) {
	fail := errors.New("EIO")
	n := 0
	g := dirSyncs{fsync: func(string) error {
		n++
		if n == 1 {
			return fail
		}
		return nil
	}}
	if err := g.sync("/d"); !errors.Is(err, fail) {
		t.Fatalf("first sync: %v, want the fsync's error", err)
	}
	if err := g.sync("/d"); err != nil || n != 2 {
		t.Fatalf("second sync: %v after %d fsyncs; want a new, successful one", err, n)
	}
}
