package lineage

import (
	"bytes"
	"encoding/json"
	"strconv"
)

// minSpliceRanges is the number of offset ranges from which appendEvent
// encodes them itself; below it, json.Marshal alone is as fast.
const minSpliceRanges = 16

var (
	offsetsFacetKey = []byte(`"sluice_kafkaOffsets":{`)
	nullRanges      = []byte(`"ranges":null`)
)

// appendEvent appends json.Marshal(ev)'s bytes to dst, faster. The offset
// ranges are most of an event's bytes (one output's rows are scattered
// over a batch), and encoding/json spends most of its time on them through
// reflection; a MarshalJSON method would not help, as encoding/json
// re-scans what such a method returns. So the event is marshalled with
// the ranges left out (`"ranges":null`) and the ranges are spliced in.
// The splice point cannot be mistaken: in the encoded event, a quote
// inside a string is always escaped, so the first `"sluice_kafkaOffsets":{`
// is the facet (only strings precede it) and the first `"ranges":null`
// after it is the facet's own field (its other fields are numbers and
// strings). TestMarshalEventMatchesEncodingJSON holds it to that.
func appendEvent(dst []byte, ev *Event) ([]byte, error) {
	k := ev.Run.Facets.KafkaOffsets
	if k == nil || len(k.Ranges) < minSpliceRanges {
		return appendMarshal(dst, ev)
	}
	cp, kc := *ev, *k
	kc.Ranges = nil
	cp.Run.Facets.KafkaOffsets = &kc
	b, err := json.Marshal(&cp)
	if err != nil {
		return dst, err
	}
	i := bytes.Index(b, offsetsFacetKey)
	if i < 0 {
		return appendMarshal(dst, ev)
	}
	j := bytes.Index(b[i:], nullRanges)
	if j < 0 {
		return appendMarshal(dst, ev)
	}
	at := i + j + len(`"ranges":`)
	dst = append(dst, b[:at]...)
	dst = appendRanges(dst, k.Ranges)
	return append(dst, b[at+len("null"):]...), nil
}

func appendMarshal(dst []byte, ev *Event) ([]byte, error) {
	b, err := json.Marshal(ev)
	if err != nil {
		return dst, err
	}
	return append(dst, b...), nil
}

// appendRanges appends ranges as JSON: [[a,b],...].
func appendRanges(b []byte, ranges [][2]int64) []byte {
	b = append(b, '[')
	for i, r := range ranges {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, '[')
		b = strconv.AppendInt(b, r[0], 10)
		b = append(b, ',')
		b = strconv.AppendInt(b, r[1], 10)
		b = append(b, ']')
	}
	return append(b, ']')
}
