package lineage

import (
	"bytes"
	"cmp"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"maps"
	"math"
	"slices"
	"strings"
	"sync"

	"github.com/sluice-dev/sluice/storage"
)

// VerifyReport is the outcome of Verify.
type VerifyReport struct {
	Chains   int `json:"chains"`
	Segments int `json:"segments"`
	Events   int `json:"events"`
	// Replays counts segments that re-record offsets an earlier segment of
	// the chain already holds (a replay after a crash cut into different
	// batches); they are not problems.
	Replays int `json:"replays"`
	// Objects counts the distinct feature and quarantine objects checked
	// against their sluice_object facet (VerifyOptions.Objects); 0 when
	// objects were not checked.
	Objects int `json:"objects"`
	// Retention is "checked" when every segment's Object Lock retention
	// was read, "no object lock" when the lineage bucket has none, and
	// "unsupported" for a store without retention (a folder).
	Retention string `json:"retention"`
	OK        bool   `json:"ok"`
	// Problems are Findings as text, in the same order: the first broken
	// link first.
	Problems []string `json:"problems,omitempty"`
	// Findings are the problems found, ordered by where they are: problems
	// of no chain first, then by chain and seq, so Findings[0] is the
	// first broken link.
	Findings []Problem `json:"findings,omitempty"`
	// Partitions are the Kafka offsets each chain's batches cover, by
	// chain; a chain whose segments could not be read may be missing.
	Partitions []Coverage `json:"partitions,omitempty"`
	// Commits is "checked" when the offsets a consumer group committed
	// were compared with Partitions (VerifyOptions.Commits), "not checked"
	// otherwise.
	Commits string `json:"commits"`
}

// Coverage is the range of offsets of one topic partition that a chain's
// batches record.
type Coverage struct {
	Chain     string `json:"chain"` // pipeline/chain
	Topic     string `json:"topic"`
	Partition int    `json:"partition"`
	First     int64  `json:"first"`
	Last      int64  `json:"last"`
}

// Commits are the offsets a pipeline's consumer group has committed on
// its topic. The pipeline commits an offset only once the batch's output
// and lineage are durable, so every committed offset must be in its
// partition's chain: a commit beyond the chain's last offset means
// records whose lineage is gone (a chain deleted or cut short, which a
// folder or an unversioned bucket cannot show otherwise) or were skipped
// (the group's offsets moved past them by hand).
type Commits struct {
	Pipeline string
	Topic    string
	Group    string
	// Next maps a partition to the offset the group will read next: it
	// has committed every offset before it. Partitions without a commit
	// are absent.
	Next map[int]int64
}

// Problem is one finding of Verify and where it is.
type Problem struct {
	// Chain is "pipeline/chain"; empty for a problem of no chain (a
	// missing public key, an empty store).
	Chain string `json:"chain,omitempty"`
	// Segment is the segment key.
	Segment string `json:"segment,omitempty"`
	// Seq is the chain seq of the event, or of the segment's first event.
	Seq uint64 `json:"seq"`
	// Object is NAMESPACE/KEY of a feature or quarantine object.
	Object  string `json:"object,omitempty"`
	Message string `json:"message"`
}

// String names chain, segment, seq and object before the message.
func (p Problem) String() string {
	var b strings.Builder
	if p.Chain != "" {
		fmt.Fprintf(&b, "chain %s: ", p.Chain)
	}
	if p.Segment != "" {
		fmt.Fprintf(&b, "segment %s: seq %d: ", p.Segment, p.Seq)
	}
	if p.Object != "" {
		fmt.Fprintf(&b, "object %s: ", p.Object)
	}
	b.WriteString(p.Message)
	return b.String()
}

// Retention values of VerifyReport.
const (
	RetentionChecked     = "checked"
	RetentionNoLock      = "no object lock"
	RetentionUnsupported = "unsupported"
)

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

// VerifyOptions say what Verify checks beyond the trail itself.
type VerifyOptions struct {
	// Key verifies the signatures. Default (nil): each pipeline's
	// published key (PREFIX/pipeline=NAME/_keys/ed25519.pub); pass the key
	// from a trusted place instead to rule out a rewritten store.
	Key ed25519.PublicKey
	// Objects opens the store holding the objects of an output dataset's
	// namespace (the sink URL the runner records, e.g. "file:///data/fra"
	// or "s3://bucket/prefix?endpoint=..."). With it Verify reads every
	// object a sluice_object facet names and checks that it exists with
	// the recorded sha256 and size. Default (nil): objects are not read.
	Objects func(ctx context.Context, namespace string) (ObjectReader, error)
	// Rows counts an object's rows from its key and bytes
	// (storage.CountRows); ok false means it cannot tell for that format.
	// With it Verify also checks each object's row count. Default (nil):
	// rows are not checked.
	Rows func(key string, data []byte) (rows int64, ok bool, err error)
	// Parallel is how many objects, or segment retentions, are read at
	// once. Default 8.
	Parallel int
	// Progress, if set, is called as each segment and each object is
	// checked, from one goroutine at a time, so that a long verify can say
	// how far it is. Default (nil): no calls.
	Progress func(VerifyProgress)
	// Commits, if set, are checked against the chains: every committed
	// offset must be recorded. Default (nil): commits are not checked.
	Commits *Commits
}

// VerifyProgress says how far a verify is.
type VerifyProgress struct {
	// Stage is "segments" (signatures, chains, offsets) or "objects"
	// (each referenced object's bytes).
	Stage string
	// Done of Total segments or objects of the stage are checked or
	// being checked.
	Done, Total int
	// Events read so far.
	Events int
}

// ObjectReader is what Verify needs of a feature store;
// storage.ObjectStore satisfies it.
type ObjectReader interface {
	// Get opens the object at key; the caller closes it. A missing key
	// returns an error matching storage.ErrNotExist.
	Get(ctx context.Context, key string) (io.ReadCloser, error)
}

// maxObjectRowsBytes bounds the object bytes Verify holds in memory to
// count rows; a larger object is hashed as a stream and its rows are not
// counted.
const maxObjectRowsBytes = 1 << 30

// Verify checks the lineage under prefix with the published keys (pub
// nil) or pub, as VerifyWith with VerifyOptions{Key: pub}: the trail and
// segment retention, not the objects.
func Verify(ctx context.Context, store Store, prefix string, pub ed25519.PublicKey) (VerifyReport, error) {
	return VerifyWith(ctx, store, prefix, VerifyOptions{Key: pub})
}

// VerifyWith checks the lineage under prefix (a Writer's Prefix, or a
// pipeline folder below it):
//
//   - every segment's signature;
//   - every event's seq and prev hash within its chain, across segments;
//   - that each segment's events account for their Kafka batch exactly
//     once, and that a chain's batches leave no offset unrecorded;
//   - where store is a storage.Retainer whose bucket has Object Lock, that
//     every segment (and an earlier trail's signature object) carries
//     retention;
//   - where store is storage.Versioned, that no segment was deleted (a
//     delete marker hides it), which the listing alone cannot tell when
//     a chain lost every segment;
//   - with opts.Objects, that every object a sluice_object facet names
//     exists with the recorded sha256 and size, and with opts.Rows, the
//     recorded row count.
//
// Findings go to VerifyReport.Findings (and Problems) with OK false, the
// first broken link first; the error is only for failures to list or read
// the lineage store.
func VerifyWith(ctx context.Context, store Store, prefix string, opts VerifyOptions) (VerifyReport, error) {
	v := &verifier{ctx: ctx, store: store, opts: opts}
	if v.opts.Parallel <= 0 {
		v.opts.Parallel = 8
	}
	rep := &v.rep
	l, err := list(ctx, store, prefix)
	if err != nil {
		return *rep, err
	}
	if len(l.chains) == 0 {
		v.problem(Problem{Message: fmt.Sprintf("no lineage segments under %q", prefix)})
	}
	keys := map[string]ed25519.PublicKey{} // pipeline folder -> key
	for _, c := range l.chains {
		pd := c.pipelineDir()
		if _, done := keys[pd]; done {
			continue
		}
		if opts.Key != nil {
			keys[pd] = opts.Key
			continue
		}
		keys[pd] = nil
		key := pd + "/" + pubKeyFile
		data, found, err := readObject(ctx, store, key, 64<<10)
		if err != nil && !errors.Is(err, ErrCorrupt) {
			return *rep, err
		}
		if !found {
			v.problem(Problem{Message: fmt.Sprintf("pipeline %s: no published key at %s: signatures not checked", c.pipeline, key)})
			continue
		}
		k, perr := ParsePublicKey(data)
		if err != nil || perr != nil {
			v.problem(Problem{Message: fmt.Sprintf("pipeline %s: published key %s is unreadable: signatures not checked", c.pipeline, key)})
			continue
		}
		keys[pd] = k
	}
	for _, s := range l.strays {
		v.problem(Problem{Chain: s.pipeline + "/" + s.chain, Segment: s.segment, Seq: s.seq,
			Message: "signature without segment (segment removed?)"})
	}
	if err := v.deleted(prefix); err != nil {
		return *rep, err
	}
	for _, c := range l.chains {
		v.segTotal += len(c.segs)
	}
	for _, c := range l.chains {
		if err := v.chain(c, keys[c.pipelineDir()]); err != nil {
			return *rep, err
		}
	}
	rep.Chains = len(l.chains)
	rep.Commits = "not checked"
	if opts.Commits != nil {
		v.commits(*opts.Commits)
		rep.Commits = "checked"
	}
	if err := v.retention(l); err != nil {
		return *rep, err
	}
	if opts.Objects != nil {
		if err := v.objects(); err != nil {
			return *rep, err
		}
	}
	slices.SortStableFunc(v.findings, func(a, b Problem) int {
		return cmp.Or(cmp.Compare(a.Chain, b.Chain), cmp.Compare(a.Seq, b.Seq))
	})
	rep.Findings = v.findings
	for _, p := range v.findings {
		rep.Problems = append(rep.Problems, p.String())
	}
	rep.OK = len(rep.Findings) == 0
	return *rep, nil
}

// verifier holds the state of one VerifyWith.
type verifier struct {
	ctx      context.Context
	store    Store
	opts     VerifyOptions
	rep      VerifyReport
	findings []Problem
	refs     []objectRef
	segTotal int               // segments listed, for Progress
	ends     map[string]uint64 // chain label -> the seq its next event would have
}

// progress reports to opts.Progress, if set.
func (v *verifier) progress(stage string, done, total int) {
	if v.opts.Progress != nil {
		v.opts.Progress(VerifyProgress{Stage: stage, Done: done, Total: total, Events: v.rep.Events})
	}
}

// objectRef is one sluice_object facet and where the trail holds it.
type objectRef struct {
	at        Problem // chain, segment, seq of the event
	namespace string
	obj       ObjectFacet
}

func (v *verifier) problem(p Problem) { v.findings = append(v.findings, p) }

func (v *verifier) chain(c *chainKeys, pub ed25519.PublicKey) error {
	firstOff := int64(-1) // the lowest offset of the chain's batches
	var (
		expectSeq uint64
		prevHash  string
		lost      bool // the previous segment was unreadable: no link to check
		started   bool // an earlier segment of the chain was read
		prevBatch *batchRef
		batchKey  string // the segment that recorded prevBatch
	)
	for _, s := range c.segs {
		if err := v.ctx.Err(); err != nil {
			return err
		}
		key := s.segment
		at := func(seq uint64, format string, args ...any) {
			v.problem(Problem{Chain: c.label(), Segment: key, Seq: seq, Message: fmt.Sprintf(format, args...)})
		}
		v.rep.Segments++
		v.progress("segments", v.rep.Segments, v.segTotal)
		data, found, err := readObject(v.ctx, v.store, key, maxSegmentBytes)
		switch {
		case errors.Is(err, ErrCorrupt):
			at(s.seq, "%v", err)
			lost = true
			continue
		case err != nil:
			return err
		case !found:
			at(s.seq, "listed but gone")
			lost = true
			continue
		}
		// The signature is the segment's last line or, in earlier trails, a
		// separate SEQ.ndjson.sig object.
		signed, sig, err := splitSignature(data)
		switch {
		case err != nil:
			at(s.seq, "unreadable: %v", err)
			lost = true
			continue
		case sig != nil:
			if pub != nil && !sig.verify(pub, signed) {
				at(s.seq, "signature does not verify (segment altered or signed by another key)")
			}
		case !c.sigs[key]:
			at(s.seq, "missing signature (no signature line, and no %s%s of an earlier trail)", key, sigExt)
		case pub != nil:
			sig, found, err := readObject(v.ctx, v.store, key+sigExt, 1<<10)
			if err != nil && !errors.Is(err, ErrCorrupt) {
				return err
			}
			if !found || err != nil || !verifySig(pub, data, sig) {
				at(s.seq, "signature does not verify (segment altered or signed by another key)")
			}
		}
		seg, err := parseEvents(data, signed, sig)
		if err != nil {
			at(s.seq, "unreadable: %v", err)
			lost = true
			continue
		}
		v.rep.Events += len(seg.events)
		wasStarted := started
		started = true
		for i := range seg.events {
			ev := &seg.events[i]
			ch := ev.Run.Facets.Chain
			if ch == nil {
				at(s.seq, "event #%d has no sluice_chain facet", i)
				lost = true
				continue
			}
			if i == 0 && ch.Seq != s.seq {
				at(ch.Seq, "key names seq %d but the first event has seq %d (segment moved or reordered)", s.seq, ch.Seq)
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
					at(ch.Seq, "expected seq %d (%s)", expectSeq, what)
				}
				if ch.Prev != prevHash {
					at(ch.Seq, "prev hash does not match the preceding event (an event before it was altered, removed or reordered)")
				}
			}
			lost = false
			expectSeq = ch.Seq + 1
			prevHash = hashLine(seg.lines[i])
			if v.opts.Objects != nil {
				for _, o := range ev.Outputs {
					if obj := o.OutputFacets.Object; obj != nil {
						v.refs = append(v.refs, objectRef{
							at:        Problem{Chain: c.label(), Segment: key, Seq: ch.Seq},
							namespace: o.Namespace, obj: *obj,
						})
					}
				}
			}
		}
		b, err := segmentBatch(seg.events)
		if err != nil {
			at(seqOf(seg), "%v", err)
			continue
		}
		if b == nil {
			continue
		}
		if prevBatch != nil {
			first := seqOf(seg)
			switch {
			case b.Topic != prevBatch.Topic || b.Partition != prevBatch.Partition:
				at(first, "batch %s is not from %s/%d like the chain's earlier batches", b, prevBatch.Topic, prevBatch.Partition)
			case prevBatch.Last < math.MaxInt64 && b.First > prevBatch.Last+1:
				at(first, "offsets %d..%d have no lineage (gap after segment %s)", prevBatch.Last+1, b.First-1, batchKey)
			case b.Last <= prevBatch.Last:
				at(first, "batch %s adds nothing after %d (recorded twice)", b, prevBatch.Last)
			case b.First <= prevBatch.Last:
				v.rep.Replays++
			}
		}
		if prevBatch == nil || b.Last > prevBatch.Last {
			prevBatch, batchKey = b, key
		}
		if firstOff < 0 || b.First < firstOff {
			firstOff = b.First
		}
	}
	if v.ends == nil {
		v.ends = map[string]uint64{}
	}
	v.ends[c.label()] = expectSeq
	if prevBatch != nil {
		v.rep.Partitions = append(v.rep.Partitions, Coverage{Chain: c.label(), Topic: prevBatch.Topic,
			Partition: prevBatch.Partition, First: firstOff, Last: prevBatch.Last})
	}
	return nil
}

// commits reports every committed offset that no chain records.
func (v *verifier) commits(cm Commits) {
	last := map[int]int64{}
	for _, c := range v.rep.Partitions {
		if c.Topic == cm.Topic && strings.HasPrefix(c.Chain, cm.Pipeline+"/") {
			last[c.Partition] = max(c.Last, last[c.Partition])
		}
	}
	parts := slices.Sorted(maps.Keys(cm.Next))
	for _, p := range parts {
		next := cm.Next[p]
		if next <= 0 {
			continue
		}
		chain := fmt.Sprintf("%s/%s-%d", cm.Pipeline, cm.Topic, p)
		l, ok := last[p]
		switch {
		case !ok:
			v.problem(Problem{Chain: chain, Message: fmt.Sprintf(
				"group %s committed %s/%d through offset %d, but no chain records the partition: "+
					"those records were committed without lineage (the chain deleted, or the group's offsets moved past them: "+
					"sluice run --replay-from a later time, or by hand)",
				cm.Group, cm.Topic, p, next-1)})
		case next-1 > l:
			// Where the missing events would be: after the chain's last.
			v.problem(Problem{Chain: chain, Seq: v.ends[chain], Message: fmt.Sprintf(
				"group %s committed %s/%d through offset %d, but the chain records it only through %d: "+
					"offsets %d..%d were committed without lineage (the chain's last segments deleted, or the group's offsets moved past them: "+
					"sluice run --replay-from a later time, or by hand)",
				cm.Group, cm.Topic, p, next-1, l, l+1, next-1)})
		}
	}
}

// deleted reports the lineage objects deleted from a versioned bucket:
// a chain that lost every segment leaves no other trace in the listing.
func (v *verifier) deleted(prefix string) error {
	vs, ok := v.store.(storage.Versioned)
	if !ok {
		return nil
	}
	_, iterPrefix := normPrefix(prefix)
	err := vs.DeleteMarkers(v.ctx, iterPrefix, func(key string) error {
		ki, ok := parseKey(key)
		switch {
		case !ok:
			return nil
		case ki.kind == kindPub:
			v.problem(Problem{Message: fmt.Sprintf("published key %s was deleted (a delete marker hides it)", key)})
			return nil
		}
		what := "signature object"
		if ki.kind == kindSegment {
			what, ki.segment = "segment", key
		}
		v.problem(Problem{Chain: ki.pipeline + "/" + ki.chain, Segment: ki.segment, Seq: ki.seq,
			Message: fmt.Sprintf("%s %s was deleted: a delete marker hides it; its earlier versions are in the bucket's version history", what, key)})
		return nil
	})
	if err != nil {
		return fmt.Errorf("lineage: list deleted objects under %s: %w", prefix, err)
	}
	return nil
}

// retention checks that every segment and signature is under Object Lock
// retention, where the store can say and its bucket has Object Lock.
func (v *verifier) retention(l *listing) error {
	r, ok := v.store.(storage.Retainer)
	if !ok {
		v.rep.Retention = RetentionUnsupported
		return nil
	}
	on, err := r.ObjectLock(v.ctx)
	if err != nil {
		v.problem(Problem{Message: fmt.Sprintf("cannot tell whether the lineage bucket has Object Lock (%v): segment retention not checked", err)})
		return nil
	}
	if !on {
		v.rep.Retention = RetentionNoLock
		return nil
	}
	type job struct {
		at  Problem
		key string
	}
	var jobs []job
	for _, c := range l.chains {
		for _, s := range c.segs {
			at := Problem{Chain: c.label(), Segment: s.segment, Seq: s.seq}
			jobs = append(jobs, job{at, s.segment})
			if c.sigs[s.segment] {
				jobs = append(jobs, job{at, s.segment + sigExt})
			}
		}
	}
	found := make([]string, len(jobs)) // a problem message per job, "" when fine
	err = parallel(v.ctx, len(jobs), v.opts.Parallel, func(i int) error {
		mode, _, err := r.Retention(v.ctx, jobs[i].key)
		switch {
		case errors.Is(err, storage.ErrNotExist):
			found[i] = fmt.Sprintf("%s vanished while its retention was read", jobs[i].key)
		case err != nil:
			return fmt.Errorf("lineage: retention of %s: %w", jobs[i].key, err)
		case mode == "":
			found[i] = fmt.Sprintf("%s has no Object Lock retention although the bucket has Object Lock: it can be deleted or overwritten", jobs[i].key)
		}
		return nil
	})
	if err != nil {
		return err
	}
	for i, msg := range found {
		if msg != "" {
			p := jobs[i].at
			p.Message = msg
			v.problem(p)
		}
	}
	v.rep.Retention = RetentionChecked
	return nil
}

// objectState is what Verify found of one object.
type objectState struct {
	openErr error // its store could not be opened
	missing bool
	sha256  string
	bytes   int64
	rows    int64
	rowsOK  bool  // rows were counted
	rowsErr error // the bytes are not in the format the key names
}

// objects reads each distinct object the trail names once, in parallel,
// and compares it with every facet that names it.
func (v *verifier) objects() error {
	type id struct{ namespace, key string }
	var ids []id
	index := map[id]int{}
	for _, r := range v.refs {
		k := id{r.namespace, r.obj.Key}
		if _, ok := index[k]; !ok {
			index[k] = len(ids)
			ids = append(ids, k)
		}
	}
	var (
		mu     sync.Mutex
		stores = map[string]*storeOnce{}
	)
	storeFor := func(ns string) *storeOnce {
		mu.Lock()
		defer mu.Unlock()
		s := stores[ns]
		if s == nil {
			s = &storeOnce{}
			stores[ns] = s
		}
		return s
	}
	states := make([]objectState, len(ids))
	var checked int // objects read, under mu
	err := parallel(v.ctx, len(ids), v.opts.Parallel, func(i int) error {
		defer func() {
			mu.Lock()
			checked++
			v.progress("objects", checked, len(ids))
			mu.Unlock()
		}()
		so := storeFor(ids[i].namespace)
		so.once.Do(func() { so.r, so.err = v.opts.Objects(v.ctx, ids[i].namespace) })
		if so.err != nil {
			states[i].openErr = so.err
			return nil
		}
		st, err := readObjectState(v.ctx, so.r, ids[i].key, v.opts.Rows)
		if err != nil {
			return err
		}
		states[i] = st
		return nil
	})
	if err != nil {
		return err
	}
	reported := map[string]bool{} // namespaces whose open failure is reported
	for _, r := range v.refs {
		i := index[id{r.namespace, r.obj.Key}]
		st := states[i]
		p := r.at
		p.Object = ObjectURL(r.namespace, r.obj.Key)
		say := func(format string, args ...any) {
			q := p
			q.Message = fmt.Sprintf(format, args...)
			v.problem(q)
		}
		switch {
		case st.openErr != nil:
			if !reported[r.namespace] {
				reported[r.namespace] = true
				say("cannot open the store %q to check the objects it holds: %v", r.namespace, st.openErr)
			}
			continue
		case st.missing:
			say("does not exist (deleted or moved)")
			continue
		}
		if st.sha256 != r.obj.SHA256 || st.bytes != r.obj.Bytes {
			say("sha256 %s (%d bytes), lineage records sha256 %s (%d bytes): object altered or replaced", st.sha256, st.bytes, r.obj.SHA256, r.obj.Bytes)
		}
		switch {
		case st.rowsErr != nil:
			say("rows cannot be counted: %v", st.rowsErr)
		case st.rowsOK && st.rows != r.obj.Rows:
			say("holds %d rows, lineage records %d", st.rows, r.obj.Rows)
		}
	}
	for _, st := range states {
		if st.openErr == nil {
			v.rep.Objects++
		}
	}
	return nil
}

type storeOnce struct {
	once sync.Once
	r    ObjectReader
	err  error
}

// readObjectState hashes an object and, with rows set, counts its rows.
func readObjectState(ctx context.Context, r ObjectReader, key string, rows func(string, []byte) (int64, bool, error)) (objectState, error) {
	rc, err := r.Get(ctx, key)
	if errors.Is(err, storage.ErrNotExist) {
		return objectState{missing: true}, nil
	}
	if err != nil {
		return objectState{}, fmt.Errorf("lineage: get object %s: %w", key, err)
	}
	defer rc.Close()
	h := sha256.New()
	var buf *bytes.Buffer
	var w io.Writer = h
	if rows != nil {
		buf = &bytes.Buffer{}
		w = io.MultiWriter(h, &cappedBuffer{buf: buf, limit: maxObjectRowsBytes})
	}
	n, err := io.Copy(w, rc)
	if err != nil {
		return objectState{}, fmt.Errorf("lineage: read object %s: %w", key, err)
	}
	st := objectState{sha256: hex.EncodeToString(h.Sum(nil)), bytes: n}
	if rows != nil && n <= maxObjectRowsBytes {
		st.rows, st.rowsOK, st.rowsErr = rows(key, buf.Bytes())
	}
	return st, nil
}

// cappedBuffer keeps the first limit bytes written to it and drops the
// rest, reporting success so a hash beside it sees every byte.
type cappedBuffer struct {
	buf   *bytes.Buffer
	limit int
}

func (c *cappedBuffer) Write(p []byte) (int, error) {
	if room := c.limit - c.buf.Len(); room > 0 {
		c.buf.Write(p[:min(room, len(p))])
	}
	return len(p), nil
}

// parallel calls fn(i) for i in [0, n) on up to workers goroutines and
// returns the first error.
func parallel(ctx context.Context, n, workers int, fn func(i int) error) error {
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		first error
		next  int
	)
	take := func() (int, bool) {
		mu.Lock()
		defer mu.Unlock()
		if first != nil || next >= n || ctx.Err() != nil {
			return 0, false
		}
		next++
		return next - 1, true
	}
	for range min(workers, n) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i, ok := take()
				if !ok {
					return
				}
				if err := fn(i); err != nil {
					mu.Lock()
					if first == nil {
						first = err
					}
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	if first != nil {
		return first
	}
	return ctx.Err()
}

func seqOf(s *segment) uint64 {
	if c := s.events[0].Run.Facets.Chain; c != nil {
		return c.Seq
	}
	return 0
}
