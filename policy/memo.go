package policy

import (
	"context"
	"encoding/json"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
)

// MemoCapacity bounds the decisions a Memo holds for one revision; when it
// is reached the memo starts over. Distinct attribute groups are few
// (jurisdiction × classes × purpose × executor), so this is a guard against
// a runaway key, not a cache policy.
const MemoCapacity = 1 << 16

// Memo is a Decider that evaluates each distinct Input once per policy
// revision and answers repeats from memory. Inputs are equal when their
// canonical JSON is (classes, certifications and columns sorted), so the
// order of sets does not matter. A remembered Decision keeps the
// DecisionID of the evaluation that produced it: that is the decision that
// applied. Errors are not remembered, so a failed evaluation is retried.
//
// Memo is safe for concurrent use. Two goroutines asking the same new
// question may both evaluate it; both answers are equivalent.
type Memo struct {
	d      Decider
	hits   atomic.Uint64
	misses atomic.Uint64

	mu       sync.RWMutex
	revision string
	cache    map[string]Decision
}

var _ Decider = (*Memo)(nil)

// NewMemo wraps d.
func NewMemo(d Decider) *Memo {
	return &Memo{d: d, cache: map[string]Decision{}}
}

// Revision is the wrapped Decider's revision.
func (m *Memo) Revision() string { return m.d.Revision() }

// Stats reports how many decisions were answered from memory (hits) and by
// the wrapped Decider (misses, failed evaluations included).
func (m *Memo) Stats() (hits, misses uint64) { return m.hits.Load(), m.misses.Load() }

// Decide answers from memory when the same Input was decided under the
// current revision, and asks the wrapped Decider otherwise. The returned
// Decision shares no memory with the remembered one.
func (m *Memo) Decide(ctx context.Context, in Input) (Decision, error) {
	in = canonical(in)
	b, err := json.Marshal(in)
	if err != nil {
		// Input holds only strings; this cannot happen, but never guess.
		m.misses.Add(1)
		return m.d.Decide(ctx, in)
	}
	key := string(b)
	rev := m.d.Revision()

	m.mu.RLock()
	dec, ok := m.cache[key]
	ok = ok && m.revision == rev
	m.mu.RUnlock()
	if ok {
		m.hits.Add(1)
		return clone(dec), nil
	}

	m.misses.Add(1)
	dec, err = m.d.Decide(ctx, in)
	if err != nil {
		return dec, err
	}
	m.mu.Lock()
	// Keep only decisions of the current revision: a reloaded policy
	// invalidates everything remembered before.
	if m.revision != rev || len(m.cache) >= MemoCapacity {
		m.revision = rev
		m.cache = map[string]Decision{}
	}
	// A decision made by another revision than the one looked up (the
	// policy was reloaded meanwhile) is returned but not remembered.
	if dec.Revision == "" || dec.Revision == rev {
		m.cache[key] = clone(dec)
	}
	m.mu.Unlock()
	return dec, nil
}

// canonical returns a copy of in with its sets sorted, leaving the caller's
// slices alone.
func canonical(in Input) Input {
	in.Data.Classes = sorted(in.Data.Classes)
	in.Executor.Certifications = sorted(in.Executor.Certifications)
	if in.Data.Columns != nil {
		cols := make([]Column, len(in.Data.Columns))
		for i, c := range in.Data.Columns {
			cols[i] = Column{Name: c.Name, Classes: sorted(c.Classes)}
		}
		sort.SliceStable(cols, func(i, j int) bool { return cols[i].Name < cols[j].Name })
		in.Data.Columns = cols
	}
	return in
}

func sorted(s []string) []string {
	if s == nil {
		return nil
	}
	s = slices.Clone(s)
	sort.Strings(s)
	return s
}

func clone(d Decision) Decision {
	d.Reasons = slices.Clone(d.Reasons)
	d.Rules = slices.Clone(d.Rules)
	d.Obligations = Obligations{
		Mask: slices.Clone(d.Obligations.Mask),
		Drop: slices.Clone(d.Obligations.Drop),
		Hash: slices.Clone(d.Obligations.Hash),
	}
	return d
}
