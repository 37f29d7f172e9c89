package transform

import (
	"runtime"
	"testing"
	"time"

	"github.com/sluice-dev/sluice/ingest"
)

// TestFinishedTicketsAreCollected: a partition's tickets form a chain
// through prev, and the Run keeps the latest one; once a ticket is
// finished nothing may keep its predecessors alive, or a long-running
// process grows by a ticket per batch forever.
func TestFinishedTicketsAreCollected(t *testing.T) {
	collected := make(chan struct{})
	var prev *ticket
	for i := range 1000 {
		b := &ingest.Batch{First: int64(i) * 10, Last: int64(i)*10 + 9}
		tk := newTicket(prev, b)
		if i == 1 { // the first ticket stays referenced as every ticket's first
			runtime.SetFinalizer(tk, func(*ticket) { close(collected) })
		}
		if prev != nil {
			if err := tk.waitTurn(t.Context()); err != nil {
				t.Fatal(err)
			}
		}
		tk.finish(true)
		prev = tk
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		runtime.GC()
		select {
		case <-collected:
			runtime.KeepAlive(prev)
			return
		case <-time.After(10 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatal("a finished ticket is still reachable from the partition's latest ticket")
		}
	}
}

// TestTicketOrderAfterFinish: dropping the link does not change what a
// successor sees of its predecessor.
func TestTicketOrderAfterFinish(t *testing.T) {
	a := newTicket(nil, &ingest.Batch{First: 0, Last: 9})
	b := newTicket(a, &ingest.Batch{First: 10, Last: 19})
	c := newTicket(b, &ingest.Batch{First: 20, Last: 29})
	a.finish(true)
	b.finish(false)
	if err := c.waitTurn(t.Context()); err != errPredecessor {
		t.Fatalf("waitTurn after a failed predecessor: %v, want errPredecessor", err)
	}
	if c.first != a || c.hi != 19 {
		t.Fatalf("c.first = %p (want %p), c.hi = %d (want 19)", c.first, a, c.hi)
	}
}
