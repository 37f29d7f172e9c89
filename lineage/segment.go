package lineage

import (
	"bytes"
	"cmp"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
)

// ErrCorrupt is returned (wrapped) when stored lineage cannot be read as
// sluice wrote it: an unparsable or unsigned segment, a signature that does
// not verify, a broken link.
var ErrCorrupt = errors.New("lineage: corrupt segment")

// segment is a parsed segment: the stored event lines (without newline),
// the events decoded from them and, when the segment ends in a signature
// line, that signature and the bytes it covers.
type segment struct {
	lines  [][]byte
	events []Event
	// sig is the segment's signature line; nil when it has none (an
	// earlier trail's segment, signed by a separate SEQ.ndjson.sig object).
	sig *embeddedSig
	// signed is the part of the object the signature covers: every event
	// line, with its newline.
	signed []byte
	size   int // of the whole object
}

// embeddedSig is a parsed signature line.
type embeddedSig struct {
	raw         []byte // the ed25519 signature
	signedBytes int64  // how many bytes it says it covers
}

// verify reports whether sig is pub's signature of events, the lines
// before it.
func (sig *embeddedSig) verify(pub ed25519.PublicKey, events []byte) bool {
	d := sha256.Sum256(events)
	return sig.signedBytes == int64(len(events)) && ed25519.Verify(pub, d[:], sig.raw)
}

// sigLinePrefix starts a segment's signature line, and no event line.
var sigLinePrefix = []byte(`{"sluice_signature":`)

// SigAlgorithm names how a segment is signed, in its signature line.
const SigAlgorithm = "ed25519(sha256)"

// signatureLine is a segment's last line: the ed25519 signature of the
// SHA-256 digest of the segment's first SignedBytes bytes (every line
// before this one).
type signatureLine struct {
	Sig struct {
		Algorithm   string `json:"algorithm"`
		SignedBytes int64  `json:"signedBytes"`
		Signature   string `json:"signature"`
	} `json:"sluice_signature"`
}

// ReadSegment parses the bytes of a segment object: one JSON event per line,
// each line ending in a newline, then the signature line (absent in
// earlier trails), which is not an event and is not returned. It does not check
// signatures or links; Verify does. Errors wrap ErrCorrupt.
func ReadSegment(data []byte) ([]Event, error) {
	s, err := parseSegment(data)
	if err != nil {
		return nil, err
	}
	return s.events, nil
}

func parseSegment(data []byte) (*segment, error) {
	signed, sig, err := splitSignature(data)
	if err != nil {
		return nil, err
	}
	return parseEvents(data, signed, sig)
}

// parseEvents parses the event lines of the segment object data:
// signed and sig as splitSignature returned them.
func parseEvents(data, signed []byte, sig *embeddedSig) (*segment, error) {
	s := &segment{sig: sig, signed: signed, size: len(data)}
	for i, line := range bytes.Split(signed[:len(signed)-1], []byte{'\n'}) {
		if len(line) == 0 {
			return nil, fmt.Errorf("%w: line %d is empty", ErrCorrupt, i+1)
		}
		if bytes.HasPrefix(line, sigLinePrefix) {
			return nil, fmt.Errorf("%w: line %d is a signature but not the last line", ErrCorrupt, i+1)
		}
		var ev Event
		if err := json.Unmarshal(line, &ev); err != nil {
			return nil, fmt.Errorf("%w: line %d: %v", ErrCorrupt, i+1, err)
		}
		s.lines = append(s.lines, line)
		s.events = append(s.events, ev)
	}
	return s, nil
}

// splitSignature splits a segment object into its event lines (with
// their newlines) and its signature line; sig is nil when the last line
// is not one (an earlier trail's segment). A signature that claims to
// cover other bytes than the lines before it is returned, not refused:
// it does not verify, which says more than "unreadable".
func splitSignature(data []byte) (events []byte, sig *embeddedSig, err error) {
	if len(data) == 0 {
		return nil, nil, fmt.Errorf("%w: empty", ErrCorrupt)
	}
	if data[len(data)-1] != '\n' {
		return nil, nil, fmt.Errorf("%w: last line is not terminated (truncated?)", ErrCorrupt)
	}
	start := bytes.LastIndexByte(data[:len(data)-1], '\n') + 1
	last := data[start : len(data)-1]
	if !bytes.HasPrefix(last, sigLinePrefix) {
		return data, nil, nil
	}
	line := func() int { return bytes.Count(data[:start], []byte{'\n'}) + 1 } // for messages
	var sl signatureLine
	if err := json.Unmarshal(last, &sl); err != nil {
		return nil, nil, fmt.Errorf("%w: line %d (the signature): %v", ErrCorrupt, line(), err)
	}
	raw, err := base64.StdEncoding.DecodeString(sl.Sig.Signature)
	switch {
	case sl.Sig.Algorithm != SigAlgorithm:
		return nil, nil, fmt.Errorf("%w: line %d: signature algorithm %q, want %q", ErrCorrupt, line(), sl.Sig.Algorithm, SigAlgorithm)
	case err != nil || len(raw) != ed25519.SignatureSize:
		return nil, nil, fmt.Errorf("%w: line %d: signature is not a base64 ed25519 signature", ErrCorrupt, line())
	case start == 0:
		return nil, nil, fmt.Errorf("%w: a signature without events", ErrCorrupt)
	}
	return data[:start], &embeddedSig{raw: raw, signedBytes: sl.Sig.SignedBytes}, nil
}

// appendSignature appends the signature line of events (a segment's event
// lines) to it.
func appendSignature(events []byte, key ed25519.PrivateKey) []byte {
	d := sha256.Sum256(events)
	var sl signatureLine
	sl.Sig.Algorithm = SigAlgorithm
	sl.Sig.SignedBytes = int64(len(events))
	sl.Sig.Signature = base64.StdEncoding.EncodeToString(ed25519.Sign(key, d[:]))
	line, _ := json.Marshal(&sl) // strings and a number: cannot fail
	return append(append(events, line...), '\n')
}

// verifyEmbedded checks a segment's signature line with pub.
func (s *segment) verifyEmbedded(pub ed25519.PublicKey) bool {
	return s.sig != nil && s.sig.verify(pub, s.signed)
}

// hashLine is the chain hash of a stored event line.
func hashLine(line []byte) string {
	h := sha256.Sum256(line)
	return hex.EncodeToString(h[:])
}

// batchRef is one Kafka batch: topic, partition, offsets First..Last.
type batchRef struct {
	Topic     string
	Partition int
	First     int64
	Last      int64
}

func (b batchRef) String() string {
	return fmt.Sprintf("%s/%d@%d..%d", b.Topic, b.Partition, b.First, b.Last)
}

// eventLabel names an event in messages: its chain seq when it has one,
// else its index in the segment.
func eventLabel(ev *Event, i int) string {
	if c := ev.Run.Facets.Chain; c != nil {
		return fmt.Sprintf("seq=%d", c.Seq)
	}
	return fmt.Sprintf("event #%d", i)
}

// segmentBatch returns the batch the events record (nil when none carries
// sluice_kafkaOffsets) after checking that they agree on it and that their
// ranges cover First..Last exactly once: every offset is a feature row, a
// dead letter or a quarantined row, and none is counted twice.
func segmentBatch(events []Event) (*batchRef, error) {
	var b *batchRef
	n := 0
	for i := range events {
		k := events[i].Run.Facets.KafkaOffsets
		if k == nil {
			continue
		}
		this := batchRef{k.Topic, k.Partition, k.First, k.Last}
		if b == nil {
			if this.Topic == "" || this.First < 0 || this.Last < this.First {
				return nil, fmt.Errorf("%s: bad kafka batch %s", eventLabel(&events[i], i), this)
			}
			b = &this
		} else if *b != this {
			return nil, fmt.Errorf("%s: batch %s differs from %s in the same segment", eventLabel(&events[i], i), this, b)
		}
		for _, r := range k.Ranges {
			if r[0] > r[1] || r[0] < b.First || r[1] > b.Last {
				return nil, fmt.Errorf("%s: range [%d,%d] outside batch %s", eventLabel(&events[i], i), r[0], r[1], b)
			}
		}
		n += len(k.Ranges)
	}
	if b == nil {
		return nil, nil
	}
	// A batch spans at most a few million offsets: one bit each says which
	// are taken, in time linear in the offsets. A larger span (a hand-made
	// event; Last may be MaxInt64) is checked by sorting the ranges.
	if b.Last-b.First < maxBitmapSpan {
		return b, coverBitmap(events, b)
	}
	return b, coverSorted(events, b, n)
}

// maxBitmapSpan bounds the offsets coverBitmap takes (128 KiB of bits).
const maxBitmapSpan = 1 << 20

func coverBitmap(events []Event, b *batchRef) error {
	span := b.Last - b.First + 1
	taken := make([]uint64, (span+63)/64)
	for i := range events {
		k := events[i].Run.Facets.KafkaOffsets
		if k == nil {
			continue
		}
		for _, r := range k.Ranges {
			for o := r[0] - b.First; o <= r[1]-b.First; o++ {
				w, bit := o/64, uint64(1)<<(o%64)
				if taken[w]&bit != 0 {
					return fmt.Errorf("%s: offset %d is accounted for twice in batch %s", eventLabel(&events[i], i), o+b.First, b)
				}
				taken[w] |= bit
			}
		}
	}
	for o := int64(0); o < span; o++ {
		if taken[o/64] == ^uint64(0) && o%64 == 0 && o+64 <= span {
			o += 63
			continue
		}
		if taken[o/64]&(uint64(1)<<(o%64)) == 0 {
			end := o
			for end+1 < span && taken[(end+1)/64]&(uint64(1)<<((end+1)%64)) == 0 {
				end++
			}
			return fmt.Errorf("batch %s: offsets %d..%d are not accounted for by any event", b, o+b.First, end+b.First)
		}
	}
	return nil
}

func coverSorted(events []Event, b *batchRef, n int) error {
	// owned is a range and the index of the event that claims it; labels
	// are made only for an error message (a segment holds thousands).
	type owned struct {
		r  [2]int64
		ev int
	}
	ranges := make([]owned, 0, n)
	for i := range events {
		if k := events[i].Run.Facets.KafkaOffsets; k != nil {
			for _, r := range k.Ranges {
				ranges = append(ranges, owned{r, i})
			}
		}
	}
	slices.SortFunc(ranges, func(x, y owned) int { return cmp.Compare(x.r[0], y.r[0]) })
	next := b.First // the first offset not yet accounted for
	done := false   // next passed Last (Last may be MaxInt64)
	for _, o := range ranges {
		switch {
		case done || o.r[0] < next:
			return fmt.Errorf("%s: offset %d is accounted for twice in batch %s", eventLabel(&events[o.ev], o.ev), o.r[0], b)
		case o.r[0] > next:
			return fmt.Errorf("batch %s: offsets %d..%d are not accounted for by any event", b, next, o.r[0]-1)
		}
		if o.r[1] == math.MaxInt64 {
			done = true
		} else {
			next = o.r[1] + 1
		}
	}
	if !done && next <= b.Last {
		return fmt.Errorf("batch %s: offsets %d..%d are not accounted for by any event", b, next, b.Last)
	}
	return nil
}
