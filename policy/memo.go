package policy

import (
	"context"
	"encoding/binary"
	"slices"
	"sort"
	"strings"
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
	// The key is built on the stack and looked up without a copy: a hit
	// allocates only the copies of the decision's lists.
	var arr [512]byte
	kb := appendKey(arr[:0], in)
	rev := m.d.Revision()

	m.mu.RLock()
	dec, ok := m.cache[string(kb)]
	ok = ok && m.revision == rev
	m.mu.RUnlock()
	if ok {
		m.hits.Add(1)
		return clone(dec), nil
	}

	m.misses.Add(1)
	dec, err := m.d.Decide(ctx, canonical(in))
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
		m.cache[string(kb)] = clone(dec)
	}
	m.mu.Unlock()
	return dec, nil
}

// appendKey appends an unambiguous encoding of every field of in, sets in
// sorted order: each string is length-prefixed and each list is a count,
// or a nil marker, followed by its elements, so two inputs share a key
// exactly when their canonical JSON documents are equal.
func appendKey(b []byte, in Input) []byte {
	b = appendStr(b, in.Pipeline.Name)
	b = appendStr(b, in.Pipeline.Purpose)
	b = appendStr(b, in.Data.Jurisdiction)
	b = appendStr(b, in.Data.Region)
	b = appendSet(b, in.Data.Classes)
	cols := in.Data.Columns
	if cols == nil {
		b = append(b, 0)
	} else {
		b = append(b, 1)
		b = binary.AppendUvarint(b, uint64(len(cols)))
		var idx [64]int
		order := idx[:0]
		if len(cols) > len(idx) {
			order = make([]int, 0, len(cols))
		}
		for i := range cols {
			order = append(order, i)
		}
		// Stable, as canonical sorts: columns of equal names keep
		// their order.
		slices.SortStableFunc(order, func(i, j int) int { return strings.Compare(cols[i].Name, cols[j].Name) })
		for _, i := range order {
			b = appendStr(b, cols[i].Name)
			b = appendSet(b, cols[i].Classes)
		}
	}
	e := in.Executor
	for _, s := range [...]string{e.ID, e.Kind, e.Provider, e.Site, e.Region, e.Jurisdiction} {
		b = appendStr(b, s)
	}
	return appendSet(b, e.Certifications)
}

func appendStr(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// appendSet appends l in sorted order, copying it (on the stack when
// small) only when it is not sorted already.
func appendSet(b []byte, l []string) []byte {
	if l == nil {
		return append(b, 0)
	}
	if !slices.IsSorted(l) {
		var arr [16]string
		s := arr[:0]
		if len(l) > len(arr) {
			s = make([]string, 0, len(l))
		}
		s = append(s, l...)
		slices.Sort(s)
		l = s
	}
	b = append(b, 1)
	b = binary.AppendUvarint(b, uint64(len(l)))
	for _, s := range l {
		b = appendStr(b, s)
	}
	return b
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
