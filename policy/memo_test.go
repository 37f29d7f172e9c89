package policy_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/sluice-dev/sluice/policy"
)

// fake allows everything except jurisdiction "XX", counts its evaluations,
// and gives every evaluation a fresh decision id.
type fake struct {
	calls    atomic.Int64
	mu       sync.Mutex
	revision string
	fail     error
}

func (f *fake) Revision() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.revision
}

func (f *fake) setRevision(r string) {
	f.mu.Lock()
	f.revision = r
	f.mu.Unlock()
}

func (f *fake) Decide(_ context.Context, in policy.Input) (policy.Decision, error) {
	n := f.calls.Add(1)
	d := policy.Decision{DecisionID: fmt.Sprintf("d%d", n), Revision: f.Revision()}
	if f.fail != nil {
		return d, f.fail
	}
	d.Allow = in.Data.Jurisdiction != "XX"
	d.Reasons = []string{in.Data.Jurisdiction + " on " + in.Executor.ID}
	d.Obligations.Hash = []string{"user_id"}
	return d, nil
}

func input(j string, classes ...string) policy.Input {
	return policy.Input{
		Pipeline: policy.Pipeline{Name: "p", Purpose: "ml-training"},
		Data: policy.Data{Jurisdiction: j, Classes: classes, Columns: []policy.Column{
			{Name: "user_id", Classes: []string{"pii"}},
			{Name: "amount", Classes: []string{"financial"}},
		}},
		Executor: policy.Executor{ID: "e1", Kind: "onprem", Jurisdiction: "DE", Certifications: []string{"soc2", "hipaa"}},
	}
}

func TestMemo(t *testing.T) {
	ctx := context.Background()
	reordered := input("DE", "pii", "financial")
	reordered.Data.Columns = []policy.Column{reordered.Data.Columns[1], reordered.Data.Columns[0]}
	reordered.Executor.Certifications = []string{"hipaa", "soc2"}
	otherExec := input("DE", "financial", "pii")
	otherExec.Executor.ID = "e2"
	shifted1, shifted2 := input("DE"), input("DE")
	shifted1.Pipeline = policy.Pipeline{Name: "ab", Purpose: "c"}
	shifted2.Pipeline = policy.Pipeline{Name: "a", Purpose: "bc"}
	emptyClasses := input("DE")
	emptyClasses.Data.Classes = []string{}
	otherCerts := input("DE", "pii")
	otherCerts.Executor.Certifications = []string{"soc2"}
	colClasses := input("DE", "pii")
	colClasses.Data.Columns[0].Classes = []string{"pii", "phi"}
	colClassesReordered := input("DE", "pii")
	colClassesReordered.Data.Columns = []policy.Column{colClassesReordered.Data.Columns[1], {Name: "user_id", Classes: []string{"phi", "pii"}}}

	tests := []struct {
		name       string
		first      policy.Input
		second     policy.Input
		wantCached bool
	}{
		{"same input", input("DE", "financial", "pii"), input("DE", "financial", "pii"), true},
		{"sets in another order", input("DE", "financial", "pii"), reordered, true},
		{"other jurisdiction", input("DE", "financial", "pii"), input("FR", "financial", "pii"), false},
		{"other classes", input("DE", "financial", "pii"), input("DE", "financial"), false},
		{"other executor", input("DE", "financial", "pii"), otherExec, false},
		{"text moved between fields", shifted1, shifted2, false},
		{"no classes vs empty classes", input("DE"), emptyClasses, false},
		{"other certifications", input("DE", "pii"), otherCerts, false},
		{"column classes in another order", colClasses, colClassesReordered, true},
		{"other column classes", input("DE", "pii"), colClasses, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := &fake{revision: "r1"}
			m := policy.NewMemo(f)
			d1, err := m.Decide(ctx, tt.first)
			if err != nil {
				t.Fatal(err)
			}
			d2, err := m.Decide(ctx, tt.second)
			if err != nil {
				t.Fatal(err)
			}
			hits, misses := m.Stats()
			if tt.wantCached {
				if f.calls.Load() != 1 || hits != 1 || misses != 1 {
					t.Fatalf("evaluations=%d hits=%d misses=%d, want 1/1/1", f.calls.Load(), hits, misses)
				}
				if d2.DecisionID != d1.DecisionID {
					t.Errorf("cached decision id %q, want the original %q", d2.DecisionID, d1.DecisionID)
				}
			} else if f.calls.Load() != 2 || hits != 0 || misses != 2 {
				t.Fatalf("evaluations=%d hits=%d misses=%d, want 2/0/2", f.calls.Load(), hits, misses)
			}
		})
	}
}

func TestMemoDoesNotTouchCallerSlices(t *testing.T) {
	f := &fake{revision: "r1"}
	m := policy.NewMemo(f)
	in := input("DE", "pii", "financial")
	if _, err := m.Decide(context.Background(), in); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(in.Data.Classes, []string{"pii", "financial"}) {
		t.Errorf("caller's classes reordered to %v", in.Data.Classes)
	}
}

func TestMemoReturnsCopies(t *testing.T) {
	f := &fake{revision: "r1"}
	m := policy.NewMemo(f)
	in := input("DE", "pii")
	d1, _ := m.Decide(context.Background(), in)
	d1.Reasons[0] = "tampered"
	d1.Obligations.Hash[0] = "tampered"
	d2, _ := m.Decide(context.Background(), in)
	d2.Reasons[0] = "tampered again"
	d3, _ := m.Decide(context.Background(), in)
	if d3.Reasons[0] != "DE on e1" || d3.Obligations.Hash[0] != "user_id" {
		t.Errorf("remembered decision was changed through a returned one: %+v", d3)
	}
}

func TestMemoNewRevisionReevaluates(t *testing.T) {
	f := &fake{revision: "r1"}
	m := policy.NewMemo(f)
	in := input("DE", "pii")
	ctx := context.Background()
	d1, _ := m.Decide(ctx, in)
	f.setRevision("r2")
	d2, _ := m.Decide(ctx, in)
	d3, _ := m.Decide(ctx, in)
	if f.calls.Load() != 2 {
		t.Fatalf("evaluations = %d, want 2 (one per revision)", f.calls.Load())
	}
	if d1.Revision != "r1" || d2.Revision != "r2" || d3.DecisionID != d2.DecisionID {
		t.Errorf("got revisions %q, %q and ids %q, %q", d1.Revision, d2.Revision, d2.DecisionID, d3.DecisionID)
	}
	if m.Revision() != "r2" {
		t.Errorf("Revision() = %q, want r2", m.Revision())
	}
}

func TestMemoDoesNotRememberErrors(t *testing.T) {
	boom := errors.New("boom")
	f := &fake{revision: "r1", fail: boom}
	m := policy.NewMemo(f)
	ctx := context.Background()
	in := input("DE", "pii")
	d, err := m.Decide(ctx, in)
	if !errors.Is(err, boom) || d.Allow {
		t.Fatalf("got %+v, %v; want a denied decision and the error", d, err)
	}
	f.fail = nil
	d, err = m.Decide(ctx, in)
	if err != nil || !d.Allow {
		t.Fatalf("after recovery got %+v, %v; want allowed", d, err)
	}
	if hits, misses := m.Stats(); hits != 0 || misses != 2 {
		t.Errorf("hits=%d misses=%d, want 0/2", hits, misses)
	}
}

func TestMemoConcurrent(t *testing.T) {
	f := &fake{revision: "r1"}
	m := policy.NewMemo(f)
	ctx := context.Background()
	js := []string{"DE", "FR", "US", "XX"}
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 200 {
				j := js[(g+i)%len(js)]
				d, err := m.Decide(ctx, input(j, "pii"))
				if err != nil {
					t.Error(err)
					return
				}
				if d.Allow != (j != "XX") {
					t.Errorf("%s: allow = %v", j, d.Allow)
					return
				}
			}
		})
	}
	wg.Wait()
	hits, misses := m.Stats()
	if hits+misses != 8*200 {
		t.Errorf("hits+misses = %d, want %d", hits+misses, 8*200)
	}
	// Without single-flight a few racing misses are possible, but far fewer
	// than the 1600 calls.
	if misses > 8*uint64(len(js)) {
		t.Errorf("misses = %d, want at most %d", misses, 8*len(js))
	}
}

func TestRegion(t *testing.T) {
	tests := map[string]string{
		"DE": "eu", "fr": "eu", " NO ": "eu", "IS": "eu",
		"US": "na", "CA": "na", "MX": "na",
		"JP": "apac", "IN": "apac", "AU": "apac",
		"BR": "latam", "AR": "latam",
		"GB": "other", "CH": "other", "ZA": "other", "": "other", "XX": "other",
	}
	for j, want := range tests {
		t.Run(j, func(t *testing.T) {
			if got := policy.Region(j); got != want {
				t.Errorf("Region(%q) = %q, want %q", j, got, want)
			}
		})
	}
}
