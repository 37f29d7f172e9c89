package lineage

import (
	"cmp"
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"maps"
	"math"
	"slices"
)

// VerifyReport is the outcome of Verify.
type VerifyReport struct {
	Chains   int `json:"chains"`
	Segments int `json:"segments"`
	Events   int `json:"events"`
	// Replays counts segments that re-record offsets an earlier segment of
	// the chain already holds (a replay after a crash cut into different
	// batches); they are not problems.
	Replays int  `json:"replays"`
	OK      bool `json:"ok"`
	// Problems name the chain ("pipeline/chain"), the segment key and the
	// event seq of each finding.
	Problems []string `json:"problems,omitempty"`
}

// chainKeys lists one chain's objects.
type chainKeys struct {
	dir, pipeline, chain string
	segs                 []keyInfo // sorted by seq
	sigs                 map[string]bool
}

func (c *chainKeys) label() string { return c.pipeline + "/" + c.chain }

// pipelineDir returns the pipeline folder of a chain folder.
func (c *chainKeys) pipelineDir() string {
	return c.dir[:len(c.dir)-len("/chain=")-len(c.chain)]
}

// listing is every lineage object under a prefix.
type listing struct {
	chains []*chainKeys // sorted by folder
	pubs   map[string]string
	// strays are signatures whose segment does not exist.
	strays []keyInfo
}

func list(ctx context.Context, store Store, prefix string) (*listing, error) {
	_, iterPrefix := normPrefix(prefix)
	byDir := map[string]*chainKeys{}
	var sigs []keyInfo
	l := &listing{pubs: map[string]string{}}
	err := store.Iter(ctx, iterPrefix, func(key string) error {
		ki, ok := parseKey(key)
		if !ok {
			return nil
		}
		if ki.kind == kindPub {
			l.pubs[ki.dir] = key
			return nil
		}
		c := byDir[ki.dir]
		if c == nil {
			c = &chainKeys{dir: ki.dir, pipeline: ki.pipeline, chain: ki.chain, sigs: map[string]bool{}}
			byDir[ki.dir] = c
		}
		if ki.kind == kindSig {
			c.sigs[ki.segment] = true
			sigs = append(sigs, ki)
			return nil
		}
		ki.segment = key
		c.segs = append(c.segs, ki)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("lineage: list %s: %w", prefix, err)
	}
	for _, dir := range slices.Sorted(maps.Keys(byDir)) {
		c := byDir[dir]
		slices.SortFunc(c.segs, func(a, b keyInfo) int { return cmp.Compare(a.seq, b.seq) })
		if len(c.segs) > 0 {
			l.chains = append(l.chains, c)
		}
	}
	segs := map[string]bool{}
	for _, c := range l.chains {
		for _, s := range c.segs {
			segs[s.segment] = true
		}
	}
	for _, s := range sigs {
		if !segs[s.segment] {
			l.strays = append(l.strays, s)
		}
	}
	return l, nil
}

// Verify checks the lineage under prefix (a Writer's Prefix, or a
// pipeline folder below it): every segment's signature, every event's seq
// and prev hash within its chain across segments, that each segment's
// events account for their Kafka batch exactly once, and that a chain's
// batches leave no offset unrecorded. pub nil means each pipeline's
// published key (PREFIX/pipeline=NAME/_keys/ed25519.pub); pass the key from
// a trusted place instead to rule out a rewritten store.
//
// Findings go to VerifyReport.Problems with OK false; the error is only for
// failures to list or read the store.
func Verify(ctx context.Context, store Store, prefix string, pub ed25519.PublicKey) (VerifyReport, error) {
	var rep VerifyReport
	l, err := list(ctx, store, prefix)
	if err != nil {
		return rep, err
	}
	problem := func(format string, args ...any) {
		rep.Problems = append(rep.Problems, fmt.Sprintf(format, args...))
	}
	if len(l.chains) == 0 {
		problem("no lineage segments under %q", prefix)
	}
	keys := map[string]ed25519.PublicKey{} // pipeline folder -> key
	for _, c := range l.chains {
		pd := c.pipelineDir()
		if _, done := keys[pd]; done {
			continue
		}
		if pub != nil {
			keys[pd] = pub
			continue
		}
		keys[pd] = nil
		key := pd + "/" + pubKeyFile
		data, found, err := readObject(ctx, store, key, 64<<10)
		if err != nil && !errors.Is(err, ErrCorrupt) {
			return rep, err
		}
		if !found {
			problem("pipeline %s: no published key at %s: signatures not checked", c.pipeline, key)
			continue
		}
		k, perr := ParsePublicKey(data)
		if err != nil || perr != nil {
			problem("pipeline %s: published key %s is unreadable: signatures not checked", c.pipeline, key)
			continue
		}
		keys[pd] = k
	}
	for _, s := range l.strays {
		problem("chain %s/%s: segment %s: seq %d: signature without segment (segment removed?)", s.pipeline, s.chain, s.segment, s.seq)
	}
	for _, c := range l.chains {
		if err := verifyChain(ctx, store, c, keys[c.pipelineDir()], &rep, problem); err != nil {
			return rep, err
		}
	}
	rep.Chains = len(l.chains)
	rep.OK = len(rep.Problems) == 0
	return rep, nil
}

func verifyChain(ctx context.Context, store Store, c *chainKeys, pub ed25519.PublicKey, rep *VerifyReport, problem func(string, ...any)) error {
	var (
		expectSeq uint64
		prevHash  string
		lost      bool // the previous segment was unreadable: no link to check
		started   bool // an earlier segment of the chain was read
		prevBatch *batchRef
		batchKey  string // the segment that recorded prevBatch
	)
	for _, s := range c.segs {
		if err := ctx.Err(); err != nil {
			return err
		}
		key := s.segment
		at := func(seq uint64) string { return fmt.Sprintf("chain %s: segment %s: seq %d", c.label(), key, seq) }
		rep.Segments++
		data, found, err := readObject(ctx, store, key, maxSegmentBytes)
		switch {
		case errors.Is(err, ErrCorrupt):
			problem("%s: %v", at(s.seq), err)
			lost = true
			continue
		case err != nil:
			return err
		case !found:
			problem("%s: listed but gone", at(s.seq))
			lost = true
			continue
		}
		if !c.sigs[key] {
			problem("%s: missing signature %s%s", at(s.seq), key, sigExt)
		} else if pub != nil {
			sig, found, err := readObject(ctx, store, key+sigExt, 1<<10)
			if err != nil && !errors.Is(err, ErrCorrupt) {
				return err
			}
			if !found || err != nil || !verifySig(pub, data, sig) {
				problem("%s: signature does not verify (segment altered or signed by another key)", at(s.seq))
			}
		}
		seg, err := parseSegment(data)
		if err != nil {
			problem("%s: unreadable: %v", at(s.seq), err)
			lost = true
			continue
		}
		rep.Events += len(seg.events)
		wasStarted := started
		started = true
		for i := range seg.events {
			ch := seg.events[i].Run.Facets.Chain
			if ch == nil {
				problem("%s: event #%d has no sluice_chain facet", at(s.seq), i)
				lost = true
				continue
			}
			if i == 0 && ch.Seq != s.seq {
				problem("%s: key names seq %d but the first event has seq %d (segment moved or reordered)", at(ch.Seq), s.seq, ch.Seq)
			}
			if !lost {
				if ch.Seq != expectSeq {
					what := "events missing"
					if ch.Seq < expectSeq {
						what = "events duplicated or reordered"
					}
					if !wasStarted && i == 0 {
						what = "the chain's first events are missing"
					}
					problem("%s: expected seq %d (%s)", at(ch.Seq), expectSeq, what)
				}
				if ch.Prev != prevHash {
					problem("%s: prev hash does not match the preceding event (an event before it was altered, removed or reordered)", at(ch.Seq))
				}
			}
			lost = false
			expectSeq = ch.Seq + 1
			prevHash = hashLine(seg.lines[i])
		}
		b, err := segmentBatch(seg.events)
		if err != nil {
			problem("chain %s: segment %s: %v", c.label(), key, err)
			continue
		}
		if b == nil {
			continue
		}
		if prevBatch != nil {
			first := seqOf(seg)
			switch {
			case b.Topic != prevBatch.Topic || b.Partition != prevBatch.Partition:
				problem("%s: batch %s is not from %s/%d like the chain's earlier batches", at(first), b, prevBatch.Topic, prevBatch.Partition)
			case prevBatch.Last < math.MaxInt64 && b.First > prevBatch.Last+1:
				problem("%s: offsets %d..%d have no lineage (gap after segment %s)", at(first), prevBatch.Last+1, b.First-1, batchKey)
			case b.Last <= prevBatch.Last:
				problem("%s: batch %s adds nothing after %d (recorded twice)", at(first), b, prevBatch.Last)
			case b.First <= prevBatch.Last:
				rep.Replays++
			}
		}
		if prevBatch == nil || b.Last > prevBatch.Last {
			prevBatch, batchKey = b, key
		}
	}
	return nil
}

func seqOf(s *segment) uint64 {
	if c := s.events[0].Run.Facets.Chain; c != nil {
		return c.Seq
	}
	return 0
}
