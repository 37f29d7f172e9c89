package transform

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/ipc"

	"github.com/sluice-dev/sluice/ingest"
	"github.com/sluice-dev/sluice/lineage"
	"github.com/sluice-dev/sluice/storage"
)

// Formats of the real-time features topic (Sink.KafkaFormat).
const (
	FeatureFormatJSON  = "json"
	FeatureFormatArrow = "arrow"
)

// Headers of every features-topic message. A consumer that sees a row
// twice (the batch was replayed after a crash between the publish and the
// offset commit) recognises the duplicate by key and HeaderLineageRunID (or
// by the source position headers).
const (
	HeaderLineageRunID    = "sluice-lineage-run-id"
	HeaderDecisionID      = "sluice-decision-id"
	HeaderObject          = "sluice-object"
	HeaderFormat          = "sluice-format"
	HeaderSourceTopic     = "sluice-source-topic"
	HeaderSourcePartition = "sluice-source-partition"
	HeaderSourceOffset    = "sluice-source-offset"
)

// FeatureHeader is one message header.
type FeatureHeader struct {
	Key   string
	Value []byte
}

// FeatureMessage is one feature row as a features-topic message.
type FeatureMessage struct {
	Key     []byte
	Value   []byte
	Headers []FeatureHeader
}

// Header returns the value of header k ("" when absent).
func (m FeatureMessage) Header(k string) string {
	for _, h := range m.Headers {
		if h.Key == k {
			return string(h.Value)
		}
	}
	return ""
}

// FeaturePublisher publishes messages to a features topic and returns nil
// only once the broker acknowledged every one (ingest/kafka.FeatureWriter).
type FeaturePublisher interface {
	PublishFeatures(ctx context.Context, topic string, msgs []FeatureMessage) error
}

// featureStore is a sink store that also publishes to the sink's features
// topic.
type featureStore struct {
	storage.ObjectStore
	pub FeaturePublisher
}

func (f featureStore) PublishFeatures(ctx context.Context, topic string, msgs []FeatureMessage) error {
	return f.pub.PublishFeatures(ctx, topic, msgs)
}

// Unwrap returns the store WithFeatures wrapped.
func (f featureStore) Unwrap() storage.ObjectStore { return f.ObjectStore }

// WithFeatures returns store with the ability to publish to a features
// topic: give it as RunnerConfig.Sinks[name] for a sink with kafka_topic
// set, and the runner publishes every feature row it writes to that sink
// (after the Parquet object is durable, before the lineage append, so the
// batch is committed only after the broker acknowledged the rows).
// Optional interfaces of store (storage.Retainer) are not carried over;
// use Unwrap.
func WithFeatures(store storage.ObjectStore, pub FeaturePublisher) storage.ObjectStore {
	return featureStore{ObjectStore: store, pub: pub}
}

// publishFeatures publishes the rows of o, the ones its Parquet object
// holds, to the features topic of o's sink, if it has one. It is called
// after the object is written and ev (the object's lineage event) is
// built, and before the lineage append: an event in the chain makes a
// replay skip the batch, so it must not exist before the broker has the
// rows.
func (r *Runner) publishFeatures(ctx context.Context, b *ingest.Batch, o *output, ev *lineage.Event) error {
	sink, _ := r.cfg.Spec.Sink(o.sink)
	pub, ok := r.cfg.Sinks[o.sink].(FeaturePublisher)
	if sink.KafkaTopic == "" {
		return nil
	}
	if !ok {
		return fmt.Errorf("%w: sink %s has kafka_topic %s but its store cannot publish (transform.WithFeatures)", errPermanent, o.sink, sink.KafkaTopic)
	}
	decision := map[int64]string{}
	for _, p := range o.execs {
		for _, g := range p.groups {
			d, ok := g.decisionFor(p.exec.ID())
			if !ok {
				continue
			}
			for _, row := range g.rows {
				decision[b.Offsets[row]] = d.DecisionID
			}
		}
	}
	src := FeatureSource{Topic: b.Topic, Partition: b.Partition, RunID: ev.Run.RunID, Object: o.object.Key, DecisionIDs: decision}
	var msgs []FeatureMessage
	for _, p := range o.execs {
		m, err := EncodeFeatures(p.rec, r.cfg.Spec.Entity, sink.KafkaFormat, src)
		if err != nil {
			return fmt.Errorf("%w: %v", errPermanent, err)
		}
		msgs = append(msgs, m...)
	}
	return r.retry(ctx, "publish features to "+sink.KafkaTopic, func() error {
		return pub.PublishFeatures(ctx, sink.KafkaTopic, msgs)
	})
}

// FeatureSource is what EncodeFeatures puts in the headers.
type FeatureSource struct {
	Topic     string
	Partition int
	RunID     string
	Object    string
	// DecisionIDs maps a row's source offset to the decision that allowed
	// it where it was processed.
	DecisionIDs map[int64]string
}

// EncodeFeatures makes one message per row of rec: keyed by the entity
// columns (their values joined by "|", a null as the empty string), the
// value a JSON object of every column or an Arrow IPC stream of the row
// (format "json", the default, or "arrow"), with the headers above.
func EncodeFeatures(rec arrow.RecordBatch, entity []string, format string, src FeatureSource) ([]FeatureMessage, error) {
	if format == "" {
		format = FeatureFormatJSON
	}
	n := int(rec.NumRows())
	var keys []arrow.Array
	for _, e := range entity {
		if idx := rec.Schema().FieldIndices(e); len(idx) > 0 {
			keys = append(keys, rec.Column(idx[0]))
		}
	}
	var offs *array.Int64
	if idx := rec.Schema().FieldIndices(OffsetColumn); len(idx) > 0 {
		offs, _ = rec.Column(idx[0]).(*array.Int64)
	}
	msgs := make([]FeatureMessage, n)
	parts := make([]string, len(keys))
	enc := newRowEncoder(rec)
	for i := 0; i < n; i++ {
		for k, c := range keys {
			parts[k] = ""
			if !c.IsNull(i) {
				parts[k] = c.ValueStr(i)
			}
		}
		var value []byte
		var err error
		switch format {
		case FeatureFormatJSON:
			value, err = enc.row(i)
		case FeatureFormatArrow:
			value, err = rowIPC(rec, i)
		default:
			err = fmt.Errorf("features: unknown format %q", format)
		}
		if err != nil {
			return nil, err
		}
		m := FeatureMessage{Key: []byte(strings.Join(parts, "|")), Value: value, Headers: []FeatureHeader{
			{HeaderLineageRunID, []byte(src.RunID)},
			{HeaderObject, []byte(src.Object)},
			{HeaderFormat, []byte(format)},
			{HeaderSourceTopic, []byte(src.Topic)},
			{HeaderSourcePartition, strconv.AppendInt(nil, int64(src.Partition), 10)},
		}}
		if offs != nil {
			off := offs.Value(i)
			m.Headers = append(m.Headers, FeatureHeader{HeaderSourceOffset, strconv.AppendInt(nil, off, 10)},
				FeatureHeader{HeaderDecisionID, []byte(src.DecisionIDs[off])})
		}
		msgs[i] = m
	}
	return msgs, nil
}

// rowEncoder encodes rows of one record batch as JSON objects in column
// order (non-finite floats become null). Field names are encoded once and
// values appended with strconv: encoding/json's reflection cost a quarter
// of the pipeline's CPU here.
type rowEncoder struct {
	names [][]byte // `"name":`
	cols  []arrow.Array
	buf   []byte
}

func newRowEncoder(rec arrow.RecordBatch) *rowEncoder {
	e := &rowEncoder{cols: rec.Columns()}
	for _, f := range rec.Schema().Fields() {
		name, _ := json.Marshal(f.Name)
		e.names = append(e.names, append(name, ':'))
	}
	return e
}

// row returns row i as a new byte slice.
func (e *rowEncoder) row(i int) ([]byte, error) {
	b := append(e.buf[:0], '{')
	for c, col := range e.cols {
		if c > 0 {
			b = append(b, ',')
		}
		b = append(b, e.names[c]...)
		if col.IsNull(i) {
			b = append(b, "null"...)
			continue
		}
		switch a := col.(type) {
		case *array.Float64:
			b = appendFloat(b, a.Value(i), 64)
		case *array.Float32:
			b = appendFloat(b, float64(a.Value(i)), 32)
		case *array.Int64:
			b = strconv.AppendInt(b, a.Value(i), 10)
		case *array.Int32:
			b = strconv.AppendInt(b, int64(a.Value(i)), 10)
		case *array.Boolean:
			b = strconv.AppendBool(b, a.Value(i))
		case *array.String:
			b = appendJSONString(b, a.Value(i))
		case *array.Timestamp:
			t := a.Value(i).ToTime(a.DataType().(*arrow.TimestampType).Unit).UTC()
			b = append(b, '"')
			b = t.AppendFormat(b, "2006-01-02T15:04:05.999999999Z07:00")
			b = append(b, '"')
		default:
			v, err := json.Marshal(col.GetOneForMarshal(i))
			if err != nil {
				return nil, fmt.Errorf("features: column %s: %w", strings.TrimSuffix(string(e.names[c]), ":"), err)
			}
			b = append(b, v...)
		}
	}
	b = append(b, '}')
	e.buf = b
	return bytes.Clone(b), nil
}

func appendFloat(b []byte, x float64, bits int) []byte {
	if math.IsNaN(x) || math.IsInf(x, 0) {
		return append(b, "null"...)
	}
	return strconv.AppendFloat(b, x, 'g', -1, bits)
}

// appendJSONString appends s as a JSON string. The decoder only admits
// valid UTF-8, so only quotes, backslashes and control bytes need escapes.
func appendJSONString(b []byte, s string) []byte {
	b = append(b, '"')
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '"' || c == '\\':
			b = append(b, '\\', c)
		case c < 0x20:
			b = append(b, `\u00`...)
			b = append(b, "0123456789abcdef"[c>>4], "0123456789abcdef"[c&0xf])
		default:
			b = append(b, c)
		}
	}
	return append(b, '"')
}

// rowIPC encodes row i as an Arrow IPC stream of one record batch.
func rowIPC(rec arrow.RecordBatch, i int) ([]byte, error) {
	row := rec.NewSlice(int64(i), int64(i+1))
	defer row.Release()
	var buf bytes.Buffer
	w := ipc.NewWriter(&buf, ipc.WithSchema(rec.Schema()))
	if err := w.Write(row); err != nil {
		return nil, fmt.Errorf("features: arrow ipc: %w", err)
	}
	if err := w.Close(); err != nil {
		return nil, fmt.Errorf("features: arrow ipc: %w", err)
	}
	return buf.Bytes(), nil
}
