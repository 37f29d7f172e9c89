package kafka

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/sluice-dev/sluice/ingest"
	"github.com/sluice-dev/sluice/transform"
)

// FeatureWriter publishes feature rows to features topics
// (transform.FeaturePublisher): each message keyed by the entity key, so a
// key always lands on the same partition, and acknowledged by all in-sync
// replicas before PublishFeatures returns. It is safe for concurrent use.
type FeatureWriter struct {
	w *kafka.Writer
}

var _ transform.FeaturePublisher = (*FeatureWriter)(nil)

// FeatureWriterConfig configures a FeatureWriter.
type FeatureWriterConfig struct {
	Brokers  []string
	Security ingest.Security
	// Linger is how long the writer waits to fill a produce request;
	// default 1ms (PublishFeatures hands over whole batches).
	Linger time.Duration
}

// NewFeatureWriter returns a writer to cfg.Brokers. The topics must exist.
// The caller must Close it.
func NewFeatureWriter(cfg FeatureWriterConfig) (*FeatureWriter, error) {
	if len(cfg.Brokers) == 0 {
		return nil, fmt.Errorf("%w: feature writer: no brokers", ErrConfig)
	}
	var rt kafka.RoundTripper
	if cfg.Security != (ingest.Security{}) {
		tr, err := Transport(cfg.Security)
		if err != nil {
			return nil, fmt.Errorf("kafka: feature writer: %w", err)
		}
		rt = tr
	}
	linger := cfg.Linger
	if linger <= 0 {
		linger = time.Millisecond
	}
	return &FeatureWriter{w: &kafka.Writer{
		Addr:         kafka.TCP(cfg.Brokers...),
		Transport:    rt,
		Balancer:     &kafka.Hash{},
		RequiredAcks: kafka.RequireAll,
		BatchTimeout: linger,
		BatchSize:    1000, // kafka-go preallocates BatchSize messages per partition batch
		BatchBytes:   64 << 20,
	}}, nil
}

// PublishFeatures writes msgs to topic and returns once the broker
// acknowledged every one, or with the first failure. A retried call may
// publish rows twice; the key and the lineage run id header identify the
// duplicates.
func (w *FeatureWriter) PublishFeatures(ctx context.Context, topic string, msgs []transform.FeatureMessage) error {
	if len(msgs) == 0 {
		return nil
	}
	out := make([]kafka.Message, len(msgs))
	for i, m := range msgs {
		hs := make([]kafka.Header, len(m.Headers))
		for j, h := range m.Headers {
			hs[j] = kafka.Header{Key: h.Key, Value: h.Value}
		}
		out[i] = kafka.Message{Topic: topic, Key: m.Key, Value: m.Value, Headers: hs}
	}
	if err := w.w.WriteMessages(ctx, out...); err != nil {
		err = explain(err)
		var werrs kafka.WriteErrors
		if errors.As(err, &werrs) {
			for _, e := range werrs {
				if e != nil {
					return fmt.Errorf("kafka: publish features to %s: %w (%d of %d failed)", topic, e, werrs.Count(), len(msgs))
				}
			}
		}
		return fmt.Errorf("kafka: publish features to %s: %w", topic, err)
	}
	return nil
}

// Close flushes and closes the writer.
func (w *FeatureWriter) Close() error { return w.w.Close() }
