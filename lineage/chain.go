package lineage

import (
	"bytes"
	"cmp"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/sluice-dev/sluice/storage"
)

// ErrConflict is returned (wrapped) when another writer appended to a chain
// while this one was writing it: one chain has one writer at a time.
var ErrConflict = errors.New("lineage: chain written concurrently")

// WriterConfig configures a Writer.
type WriterConfig struct {
	// Prefix is the key prefix of all lineage objects. Default "lineage".
	Prefix string
	// Pipeline names the pipeline; it becomes the pipeline=NAME key
	// element. Required; letters, digits, '.', '_' and '-' only.
	Pipeline string
	// Key signs every segment. Required (see LoadOrCreateKey).
	Key ed25519.PrivateKey
	// OrphanGrace is how long a segment without signature at a chain's
	// tail is left alone before it is taken for a crash's leftover and
	// replaced. Only trails written before signatures moved into the
	// segment have such segments (their writer put the segment, then a
	// separate signature object, milliseconds apart); one may still be
	// between its two writes during an upgrade. Default 10s.
	OrphanGrace time.Duration
}

// Writer appends events to hash-chained, signed segments. It is safe for
// concurrent use: Appends to one chain are serialised, different chains
// proceed in parallel. Each chain must have one writing process at a time
// (the Kafka consumer that owns the partition). Should two write it at
// once anyway (a consumer that lost its partitions in a pause and still
// finishes a batch), neither can overwrite the other: a segment, its
// signature included, is put with one Store.Create, so of two appends
// from the same tail exactly one takes the key; the other re-reads the
// chain and goes after it (or finds its batch recorded already), failing
// with ErrConflict if that does not resolve it.
type Writer struct {
	store    Store
	prefix   string
	pipeline string
	key      ed25519.PrivateKey
	pub      ed25519.PublicKey
	grace    time.Duration // WriterConfig.OrphanGrace

	mu        sync.Mutex
	chains    map[string]*chainState
	published bool // PublishKey succeeded
}

// chainState is what a writer knows of one chain's tail.
type chainState struct {
	mu      sync.Mutex
	loaded  bool
	nextSeq uint64
	head    string    // hash of the chain's last event line
	batch   *batchRef // the chain's latest Kafka batch, nil when none
	last    SegmentInfo
	// orphan is a trailing segment without signature, which only earlier
	// trails have (a separate signature object that was not written, or
	// not yet). The next Append writes the same key and replaces it once it
	// has stayed unsigned for WriterConfig.OrphanGrace since orphanSince,
	// when this writer first saw it.
	orphan      string
	orphanKey   string // the orphan orphanSince is about; load keeps both
	orphanSince time.Time
}

// SegmentInfo describes a written segment.
type SegmentInfo struct {
	Key      string `json:"key"`
	Chain    string `json:"chain"`
	FirstSeq uint64 `json:"firstSeq"`
	LastSeq  uint64 `json:"lastSeq"`
	Events   int    `json:"events"`
	// Head is the hex SHA-256 of the segment's last event line: the value
	// the chain's next event carries as prev.
	Head  string `json:"head"`
	Bytes int64  `json:"bytes"`
	// Replayed is true when Append wrote nothing because the chain already
	// records the batch; the other fields then describe the chain's last
	// segment.
	Replayed bool `json:"replayed,omitempty"`
}

// NewWriter returns a writer to store.
func NewWriter(store Store, cfg WriterConfig) (*Writer, error) {
	if store == nil {
		return nil, errors.New("lineage: nil store")
	}
	if !validName(cfg.Pipeline) {
		return nil, fmt.Errorf("lineage: pipeline name %q: want letters, digits, '.', '_' or '-'", cfg.Pipeline)
	}
	if len(cfg.Key) != ed25519.PrivateKeySize {
		return nil, fmt.Errorf("%w: WriterConfig.Key is required", ErrKey)
	}
	prefix, _ := normPrefix(cfg.Prefix)
	if prefix == "" {
		prefix = defaultRoot
	}
	grace := cfg.OrphanGrace
	if grace <= 0 {
		grace = 10 * time.Second
	}
	return &Writer{
		store:    store,
		prefix:   prefix,
		pipeline: cfg.Pipeline,
		grace:    grace,
		key:      cfg.Key,
		pub:      cfg.Key.Public().(ed25519.PublicKey),
		chains:   map[string]*chainState{},
	}, nil
}

// PublicKey returns the key that verifies this writer's segments.
func (w *Writer) PublicKey() ed25519.PublicKey { return w.pub }

// PublishKey writes the public key to PREFIX/pipeline=NAME/_keys/ed25519.pub
// so Verify can find it. It is idempotent; it fails with ErrKey when a
// different key is already published, because the chain's existing
// segments would no longer verify. The first Append of a Writer calls it
// when it has not succeeded yet; call it at start to fail early.
func (w *Writer) PublishKey(ctx context.Context) error {
	pemBytes, err := MarshalPublicKey(w.pub)
	if err != nil {
		return err
	}
	key := pipelineDir(w.prefix, w.pipeline) + "/" + pubKeyFile
	old, found, err := readObject(ctx, w.store, key, 64<<10)
	if err != nil {
		return err
	}
	if found {
		pub, err := ParsePublicKey(old)
		if err != nil {
			return fmt.Errorf("lineage: published key %s: %w", key, err)
		}
		if !pub.Equal(w.pub) {
			return fmt.Errorf("%w: %s holds a different public key; use the signing key of this pipeline", ErrKey, key)
		}
		w.mu.Lock()
		w.published = true
		w.mu.Unlock()
		return nil
	}
	if err := w.store.Put(ctx, key, bytes.NewReader(pemBytes), int64(len(pemBytes))); err != nil {
		return fmt.Errorf("lineage: publish key: %w", err)
	}
	w.mu.Lock()
	w.published = true
	w.mu.Unlock()
	return nil
}

func (w *Writer) state(chain string) *chainState {
	w.mu.Lock()
	defer w.mu.Unlock()
	st := w.chains[chain]
	if st == nil {
		st = &chainState{}
		w.chains[chain] = st
	}
	return st
}

// Append writes events as one segment of chain and returns when it is
// durable: the event lines and, as the last line, their signature, in one
// Store.Create (never over another writer's segment). It sets
// each event's sluice_chain facet (seq, prev) and fills missing
// _producer/_schemaURL (Event.Stamp). The events of one call are one Kafka
// batch: all that carry sluice_kafkaOffsets name the same topic, partition
// and First..Last, and their ranges cover First..Last exactly once;
// otherwise Append fails with ErrInvalidEvent and writes nothing.
//
// On first use of a chain the writer reads the chain's last segment from
// the store and continues after it, so a restarted process extends the
// chain instead of forking it. A trailing segment without signature (in
// an earlier trail: a crash between its two writes) is overwritten by the
// next Append, after WriterConfig.OrphanGrace.
//
// Replays: when the chain already records offsets up to L and the batch
// ends at or before L (First..Last ⊆ what an earlier Append made durable),
// Append writes nothing and returns the chain's last segment with Replayed
// set. A batch that starts at or before L but ends after it (a replay cut
// into different batches) is written whole, so every offset of its output
// has lineage; Verify counts such overlaps as replays, not problems.
func (w *Writer) Append(ctx context.Context, chain string, events []*Event) (SegmentInfo, error) {
	if err := ctx.Err(); err != nil {
		return SegmentInfo{}, err
	}
	if !validName(chain) {
		return SegmentInfo{}, fmt.Errorf("lineage: chain name %q: want letters, digits, '.', '_' or '-'", chain)
	}
	if len(events) == 0 {
		return SegmentInfo{}, fmt.Errorf("%w: no events to append to chain %s", ErrInvalidEvent, chain)
	}
	vals := make([]Event, len(events))
	for i, ev := range events {
		if ev == nil {
			return SegmentInfo{}, fmt.Errorf("%w: event #%d is nil", ErrInvalidEvent, i)
		}
		ev.Stamp()
		if err := ev.Validate(); err != nil {
			return SegmentInfo{}, fmt.Errorf("chain %s: event #%d: %w", chain, i, err)
		}
		vals[i] = *ev
	}
	b, err := segmentBatch(vals)
	if err != nil {
		return SegmentInfo{}, fmt.Errorf("%w: chain %s: %v", ErrInvalidEvent, chain, err)
	}

	w.mu.Lock()
	published := w.published
	w.mu.Unlock()
	if !published {
		if err := w.PublishKey(ctx); err != nil {
			return SegmentInfo{}, err
		}
	}

	st := w.state(chain)
	st.mu.Lock()
	defer st.mu.Unlock()
	dir := chainDir(w.prefix, w.pipeline, chain)
	if !st.loaded {
		if err := w.load(ctx, chain, st); err != nil {
			return SegmentInfo{}, err
		}
	}
	var key, head string
	var data []byte
	for conflicts := 0; ; conflicts++ {
		if b != nil && st.batch != nil {
			if b.Topic != st.batch.Topic || b.Partition != st.batch.Partition {
				return SegmentInfo{}, fmt.Errorf("%w: chain %s records %s/%d, batch is %s", ErrInvalidEvent, chain, st.batch.Topic, st.batch.Partition, b)
			}
			if b.Last <= st.batch.Last {
				info := st.last
				info.Replayed = true
				return info, nil
			}
		}
		key = segmentKey(dir, st.nextSeq)
		var err error
		if data, head, err = encodeSegment(events, st.nextSeq, st.head); err != nil {
			return SegmentInfo{}, fmt.Errorf("%w: chain %s: %v", ErrInvalidEvent, chain, err)
		}
		data = appendSignature(data, w.key)
		if key == st.orphan {
			// An earlier trail's segment without signature (its writer put
			// the segment and the signature separately): most likely that
			// writer is between its two writes, not crashed. It is left
			// alone for the grace period (the caller retries), and even
			// then replaced only if it is still unsigned now.
			if conflicts > 0 || time.Since(st.orphanSince) < w.grace {
				st.loaded = false
				return SegmentInfo{}, fmt.Errorf("%w: chain %s: segment %s has no signature yet; it is left to its writer for %s before it is taken for a crash's leftover", ErrConflict, chain, key, w.grace)
			}
			_, signed, rerr := readObject(ctx, w.store, key+sigExt, 1<<10)
			if rerr != nil {
				st.loaded = false
				return SegmentInfo{}, rerr
			}
			if signed {
				if err := w.load(ctx, chain, st); err != nil {
					return SegmentInfo{}, err
				}
				continue
			}
			// A crash's leftover at the tail (a segment without signature,
			// its batch never acked): this append replaces it.
			err = w.store.Put(ctx, key, bytes.NewReader(data), int64(len(data)))
		} else {
			err = w.store.Create(ctx, key, bytes.NewReader(data), int64(len(data)))
			if errors.Is(err, storage.ErrExists) && conflicts < maxConflicts {
				// Another writer extended the chain since this one read its
				// tail: the partition moved to another consumer and back, or
				// one that lost it is still finishing a batch. Read the tail
				// again; the batch is then a replay or goes after it.
				if err := w.load(ctx, chain, st); err != nil {
					st.loaded = false
					return SegmentInfo{}, err
				}
				continue
			}
		}
		if errors.Is(err, storage.ErrExists) {
			st.loaded = false
			return SegmentInfo{}, fmt.Errorf("%w: chain %s: other writers took %d keys in a row, the last %s: %w", ErrConflict, chain, conflicts+1, key, err)
		}
		if err != nil {
			st.loaded = false
			return SegmentInfo{}, fmt.Errorf("lineage: put segment %s: %w", key, err)
		}
		break
	}
	info := SegmentInfo{
		Key:      key,
		Chain:    chain,
		FirstSeq: st.nextSeq,
		LastSeq:  st.nextSeq + uint64(len(events)) - 1,
		Events:   len(events),
		Head:     head,
		Bytes:    int64(len(data)),
	}
	st.nextSeq += uint64(len(events))
	st.head = head
	st.last = info
	st.orphan = ""
	if b != nil {
		st.batch = b
	}
	return info, nil
}

// maxConflicts bounds how often one Append re-reads a chain that other
// writers keep extending before it gives up with ErrConflict.
const maxConflicts = 8

// encodeSegment links events into the chain at seq after head (setting
// their sluice_chain facets) and encodes them, one line each. It returns
// the segment's event lines (appendSignature adds the last) and the new
// head.
func encodeSegment(events []*Event, seq uint64, head string) ([]byte, string, error) {
	data := make([]byte, 0, segmentSizeHint(events))
	for i, ev := range events {
		ev.Run.Facets.Chain = &ChainFacet{
			BaseFacet: BaseFacet{Producer: ev.Producer, SchemaURL: ChainFacetURL},
			Seq:       seq + uint64(i),
			Prev:      head,
		}
		start := len(data)
		var err error
		if data, err = appendEvent(data, ev); err != nil {
			return nil, "", fmt.Errorf("event #%d: %v", i, err)
		}
		head = hashLine(data[start:])
		data = append(data, '\n')
	}
	if len(data) > maxSegmentBytes-1024 { // room for the signature line (about 150 bytes)
		return nil, "", fmt.Errorf("segment of %d bytes exceeds %d; append fewer events", len(data), maxSegmentBytes)
	}
	return data, head, nil
}

// segmentSizeHint guesses the encoded size of events and the signature
// line, so that the segment buffer is allocated once: the ranges take
// about 16 bytes each, the rest of an event a few KiB.
func segmentSizeHint(events []*Event) int {
	n := 256
	for _, ev := range events {
		n += 4 << 10
		if k := ev.Run.Facets.KafkaOffsets; k != nil {
			n += 16 * len(k.Ranges)
		}
	}
	return n
}

// LastOffset returns the last Kafka offset chain records; ok is false when
// the chain records no batch yet. A runner may skip a batch that ends at or
// before it (Append would treat it as a replay anyway).
func (w *Writer) LastOffset(ctx context.Context, chain string) (offset int64, ok bool, err error) {
	if !validName(chain) {
		return 0, false, fmt.Errorf("lineage: chain name %q: want letters, digits, '.', '_' or '-'", chain)
	}
	st := w.state(chain)
	st.mu.Lock()
	defer st.mu.Unlock()
	if !st.loaded {
		if err := w.load(ctx, chain, st); err != nil {
			return 0, false, err
		}
	}
	if st.batch == nil {
		return 0, false, nil
	}
	return st.batch.Last, true, nil
}

// Reload forgets what the writer knows of chain's tail and reads it again
// from the store, so that LastOffset sees appends by other writers (the
// partition was processed by another consumer in between). It waits for
// an Append of the chain in flight.
func (w *Writer) Reload(ctx context.Context, chain string) error {
	if !validName(chain) {
		return fmt.Errorf("lineage: chain name %q: want letters, digits, '.', '_' or '-'", chain)
	}
	st := w.state(chain)
	st.mu.Lock()
	defer st.mu.Unlock()
	return w.load(ctx, chain, st)
}

// load reads the chain's tail from the store into st.
func (w *Writer) load(ctx context.Context, chain string, st *chainState) error {
	dir := chainDir(w.prefix, w.pipeline, chain)
	var segs []keyInfo
	sigs := map[string]bool{} // segments with a separate signature object (earlier trails)
	err := w.store.Iter(ctx, dir+"/", func(key string) error {
		ki, ok := parseKey(key)
		if !ok || ki.dir != dir {
			return nil
		}
		switch ki.kind {
		case kindSegment:
			segs = append(segs, keyInfo{seq: ki.seq, segment: key})
		case kindSig:
			sigs[ki.segment] = true
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("lineage: list chain %s: %w", chain, err)
	}
	slices.SortFunc(segs, func(a, b keyInfo) int { return cmp.Compare(a.seq, b.seq) })

	st.loaded, st.nextSeq, st.head, st.batch, st.last, st.orphan = false, 0, "", nil, SegmentInfo{}, ""
	tail := true // segs[j] is the chain's last segment that is not an orphan
	for j := len(segs) - 1; j >= 0; j-- {
		key := segs[j].segment
		seg, signed, err := w.readSigned(ctx, key, sigs[key])
		if err != nil {
			return fmt.Errorf("chain %s: %w", chain, err)
		}
		if !signed {
			if j < len(segs)-1 {
				return fmt.Errorf("%w: chain %s: segment %s has no signature and is not the chain's last", ErrCorrupt, chain, key)
			}
			st.orphan = key
			if st.orphanKey != key {
				st.orphanKey, st.orphanSince = key, time.Now()
			}
			continue
		}
		b, err := segmentBatch(seg.events)
		if err != nil {
			return fmt.Errorf("%w: chain %s: segment %s: %v", ErrCorrupt, chain, key, err)
		}
		if tail {
			tail = false
			first, last := seg.events[0].Run.Facets.Chain, seg.events[len(seg.events)-1].Run.Facets.Chain
			if first == nil || last == nil {
				return fmt.Errorf("%w: chain %s: segment %s: event without sluice_chain", ErrCorrupt, chain, key)
			}
			n := seg.lines[len(seg.lines)-1]
			st.nextSeq = last.Seq + 1
			st.head = hashLine(n)
			st.last = SegmentInfo{
				Key: key, Chain: chain, FirstSeq: first.Seq, LastSeq: last.Seq,
				Events: len(seg.events), Head: st.head, Bytes: segBytes(seg),
			}
		}
		if b != nil {
			st.batch = b
			break
		}
	}
	st.loaded = true
	return nil
}

// readSigned reads a segment and checks its signature with the writer's
// key: a writer never extends a chain it cannot vouch for. The signature
// is the segment's last line or, in earlier trails, a separate object
// (sigObject says it exists). signed is false for a segment with neither;
// a signature that does not verify is an error.
func (w *Writer) readSigned(ctx context.Context, key string, sigObject bool) (seg *segment, signed bool, err error) {
	data, found, err := readObject(ctx, w.store, key, maxSegmentBytes)
	if err != nil {
		return nil, false, err
	}
	if !found {
		return nil, false, fmt.Errorf("%w: segment %s vanished while reading", ErrConflict, key)
	}
	seg, err = parseSegment(data)
	if err != nil {
		return nil, false, fmt.Errorf("segment %s: %w", key, err)
	}
	bad := fmt.Errorf("%w: segment %s: signature does not verify with this writer's key (segment altered, or the signing key changed)", ErrCorrupt, key)
	if seg.sig != nil {
		if !seg.verifyEmbedded(w.pub) {
			return nil, false, bad
		}
		return seg, true, nil
	}
	if !sigObject {
		return seg, false, nil
	}
	sig, found, err := readObject(ctx, w.store, key+sigExt, 1<<10)
	if err != nil {
		return nil, false, err
	}
	if !found {
		return seg, false, nil // removed since the listing: the orphan check reads it again
	}
	if !verifySig(w.pub, data, sig) {
		return nil, false, bad
	}
	return seg, true, nil
}

// verifySig checks an earlier trail's separate signature object (base64,
// a newline) against its segment's bytes: the signature of their SHA-256
// digest or, in the first format, of the bytes themselves. The two cannot
// be confused: a segment is never 32 bytes long, so no signature of a
// digest is one of a segment, and the other way round.
func verifySig(pub ed25519.PublicKey, data, sig []byte) bool {
	raw, err := base64.StdEncoding.DecodeString(string(bytes.TrimSpace(sig)))
	if err != nil || len(raw) != ed25519.SignatureSize {
		return false
	}
	d := sha256.Sum256(data)
	return ed25519.Verify(pub, d[:], raw) || (len(data) != sha256.Size && ed25519.Verify(pub, data, raw))
}

func segBytes(s *segment) int64 { return int64(s.size) }
