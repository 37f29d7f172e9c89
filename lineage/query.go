package lineage

import (
	"cmp"
	"context"
	"fmt"
	"maps"
	"slices"
)

// Queries read what is stored without checking signatures or links; run
// Verify to know the answers rest on an intact trail.

// Entry is an event and where it is stored.
type Entry struct {
	Pipeline string `json:"pipeline"`
	Chain    string `json:"chain"`
	Segment  string `json:"segment"`
	Event    Event  `json:"event"`
}

// Walk calls fn for every event under prefix, chain by chain (in key
// order) and in chain order within each. An unreadable segment stops the
// walk with an error wrapping ErrCorrupt; so does an error from fn.
func Walk(ctx context.Context, store Store, prefix string, fn func(Entry) error) error {
	l, err := list(ctx, store, prefix)
	if err != nil {
		return err
	}
	for _, c := range l.chains {
		for _, s := range c.segs {
			seg, err := readSegment(ctx, store, s.segment)
			if err != nil {
				return err
			}
			for _, ev := range seg.events {
				if err := fn(Entry{Pipeline: c.pipeline, Chain: c.chain, Segment: s.segment, Event: ev}); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// ReadAll returns every event under prefix in Walk's order.
func ReadAll(ctx context.Context, store Store, prefix string) ([]Event, error) {
	var out []Event
	err := Walk(ctx, store, prefix, func(e Entry) error {
		out = append(out, e.Event)
		return nil
	})
	return out, err
}

func readSegment(ctx context.Context, store Store, key string) (*segment, error) {
	data, found, err := readObject(ctx, store, key, maxSegmentBytes)
	if err != nil {
		return nil, err
	}
	if !found {
		return nil, fmt.Errorf("%w: segment %s listed but gone", ErrCorrupt, key)
	}
	seg, err := parseSegment(data)
	if err != nil {
		return nil, fmt.Errorf("segment %s: %w", key, err)
	}
	return seg, nil
}

// Trace returns the events whose sluice_kafkaOffsets ranges hold offset of
// topic/partition: the feature, dead-letter or quarantine event that
// accounts for that record (more than one when a replay recorded it again).
// It lists keys, then reads O(log n) segments of the matching chain by
// binary search on the chain's batches, which grow with the chain's seq.
// The chain named ChainFor(topic, partition) is searched first; other
// chains cost one read each to learn their partition.
func Trace(ctx context.Context, store Store, prefix, topic string, partition int, offset int64) ([]Event, error) {
	l, err := list(ctx, store, prefix)
	if err != nil {
		return nil, err
	}
	name := ChainFor(topic, partition)
	preferred := slices.SortedStableFunc(slices.Values(l.chains), func(a, b *chainKeys) int {
		return cmp.Compare(boolInt(a.chain != name), boolInt(b.chain != name))
	})
	var out []Event
	for i, c := range preferred {
		if c.chain != name && i > 0 && len(out) > 0 {
			break
		}
		evs, err := traceChain(ctx, store, c, topic, partition, offset)
		if err != nil {
			return nil, err
		}
		out = append(out, evs...)
	}
	return out, nil
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// traceChain binary-searches one chain. Writers only append batches that
// end after the chain's last offset, so Last grows with the segment index;
// a segment without a batch takes the batch of the next one that has.
func traceChain(ctx context.Context, store Store, c *chainKeys, topic string, partition int, offset int64) ([]Event, error) {
	n := len(c.segs)
	cache := map[int]*segment{}
	read := func(i int) (*segment, *batchRef, error) {
		seg := cache[i]
		if seg == nil {
			var err error
			seg, err = readSegment(ctx, store, c.segs[i].segment)
			if err != nil {
				return nil, nil, err
			}
			cache[i] = seg
		}
		b, err := segmentBatch(seg.events)
		if err != nil {
			return nil, nil, fmt.Errorf("%w: segment %s: %v", ErrCorrupt, c.segs[i].segment, err)
		}
		return seg, b, nil
	}
	// batchFrom returns the first segment at or after i that records a
	// batch (n when none does).
	batchFrom := func(i int) (int, *batchRef, error) {
		for ; i < n; i++ {
			_, b, err := read(i)
			if err != nil {
				return 0, nil, err
			}
			if b != nil {
				return i, b, nil
			}
		}
		return n, nil, nil
	}
	lo, hi := 0, n
	for lo < hi {
		mid := int(uint(lo+hi) >> 1)
		j, b, err := batchFrom(mid)
		if err != nil {
			return nil, err
		}
		if b == nil {
			hi = mid
			continue
		}
		if b.Topic != topic || b.Partition != partition {
			return nil, nil // another partition's chain
		}
		if b.Last >= offset {
			hi = mid
		} else {
			lo = j + 1
		}
	}
	var out []Event
	for i := lo; i < n; i++ {
		seg, b, err := read(i)
		if err != nil {
			return nil, err
		}
		if b == nil {
			continue
		}
		if b.Topic != topic || b.Partition != partition || b.First > offset {
			break
		}
		for _, ev := range seg.events {
			if k := ev.Run.Facets.KafkaOffsets; k != nil && Contains(k.Ranges, offset) {
				out = append(out, ev)
			}
		}
	}
	return out, nil
}

// ResidencyReport summarises where rows went and which rules decided.
type ResidencyReport struct {
	Events int `json:"events"`
	// Rows counts rows per (jurisdiction, executor, location, outcome).
	Rows []RowCount `json:"rows"`
	// Rules counts decisions per rule label.
	Rules []RuleCount `json:"rules"`
}

// RowCount is the number of rows of one jurisdiction that one executor in
// one location handled with one outcome. For an event with decisions, each
// row group counts its rows once however many executors were asked about
// it (see decisionGroups); Executor and Location come from the
// event's sluice_executor facet (empty when none, as for quarantine and
// dead letters). An event without decisions counts the offsets of its
// sluice_kafkaOffsets ranges under an empty jurisdiction. Offsets a replay
// recorded twice are counted twice.
type RowCount struct {
	Jurisdiction string `json:"jurisdiction"`
	Executor     string `json:"executor"`
	Location     string `json:"location"`
	Outcome      string `json:"outcome"`
	Rows         int64  `json:"rows"`
}

// RuleCount counts the decisions a rule label took part in. Decisions that
// name no rule count under "(none)".
type RuleCount struct {
	Rule      string `json:"rule"`
	Decisions int    `json:"decisions"`
	Allowed   int    `json:"allowed"`
	Denied    int    `json:"denied"`
}

// Report reads every event under prefix and tallies rows and rules.
func Report(ctx context.Context, store Store, prefix string) (ResidencyReport, error) {
	return ReportWindow(ctx, store, prefix, Window{})
}

// ReportWindow is Report over the events whose eventTime lies in w.
func ReportWindow(ctx context.Context, store Store, prefix string, w Window) (ResidencyReport, error) {
	var rep ResidencyReport
	type rowKey struct{ jur, exec, loc, outcome string }
	rows := map[rowKey]int64{}
	rules := map[string]*RuleCount{}
	err := Walk(ctx, store, prefix, func(e Entry) error {
		if in, _ := w.holds(e.Event.EventTime); !in {
			return nil
		}
		rep.Events++
		f := e.Event.Run.Facets
		k := rowKey{}
		if f.Outcome != nil {
			k.outcome = f.Outcome.Kind
		}
		if f.Executor != nil {
			k.exec, k.loc = f.Executor.ID, f.Executor.Location.Name
		}
		var decisions []Decision
		if f.ResidencyDecision != nil {
			decisions = f.ResidencyDecision.Decisions
		}
		if len(decisions) == 0 {
			if f.KafkaOffsets != nil {
				rows[k] += Count(f.KafkaOffsets.Ranges)
			}
			return nil
		}
		for _, d := range decisions {
			labels := d.Rules
			if len(labels) == 0 {
				labels = []string{"(none)"}
			}
			for _, r := range labels {
				rc := rules[r]
				if rc == nil {
					rc = &RuleCount{Rule: r}
					rules[r] = rc
				}
				rc.Decisions++
				if d.Allow {
					rc.Allowed++
				} else {
					rc.Denied++
				}
			}
		}
		for _, g := range decisionGroups(decisions) {
			gk := k
			gk.jur = g[0].Jurisdiction
			rows[gk] += g[0].Rows
		}
		return nil
	})
	if err != nil {
		return rep, err
	}
	for k, n := range rows {
		rep.Rows = append(rep.Rows, RowCount{Jurisdiction: k.jur, Executor: k.exec, Location: k.loc, Outcome: k.outcome, Rows: n})
	}
	slices.SortFunc(rep.Rows, func(a, b RowCount) int {
		return cmp.Or(cmp.Compare(a.Jurisdiction, b.Jurisdiction), cmp.Compare(a.Executor, b.Executor),
			cmp.Compare(a.Location, b.Location), cmp.Compare(a.Outcome, b.Outcome))
	})
	for _, r := range slices.Sorted(maps.Keys(rules)) {
		rep.Rules = append(rep.Rules, *rules[r])
	}
	if rep.Rows == nil {
		rep.Rows = []RowCount{}
	}
	if rep.Rules == nil {
		rep.Rules = []RuleCount{}
	}
	return rep, nil
}
