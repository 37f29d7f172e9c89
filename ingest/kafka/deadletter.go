package kafka

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/sluice-dev/sluice/ingest"
)

// Headers a DeadLetterWriter puts on every message.
const (
	HeaderReason          = "sluice-reason"
	HeaderSourceTopic     = "sluice-source-topic"
	HeaderSourcePartition = "sluice-source-partition"
	HeaderSourceOffset    = "sluice-source-offset"
)

// DeadLetterWriter writes dead letters to a Kafka topic: the original key
// and raw value, with the reason and the source position as headers, and
// the original timestamp. It is safe for concurrent use.
type DeadLetterWriter struct {
	w *kafka.Writer
}

// NewDeadLetterWriter returns a writer to topic, which must exist, over
// plaintext without authentication. The caller must Close it.
func NewDeadLetterWriter(brokers []string, topic string) *DeadLetterWriter {
	return newDeadLetterWriter(brokers, topic, nil)
}

// NewDeadLetterWriterWith is NewDeadLetterWriter connecting with sec (TLS,
// SASL). It fails when sec is invalid or its files or password cannot be
// read; see Transport.
func NewDeadLetterWriterWith(brokers []string, topic string, sec ingest.Security) (*DeadLetterWriter, error) {
	tr, err := Transport(sec)
	if err != nil {
		return nil, fmt.Errorf("kafka: dead-letter writer: %w", err)
	}
	return newDeadLetterWriter(brokers, topic, tr), nil
}

// newDeadLetterWriter uses kafka-go's default transport when tr is nil.
func newDeadLetterWriter(brokers []string, topic string, tr *kafka.Transport) *DeadLetterWriter {
	var rt kafka.RoundTripper
	if tr != nil {
		rt = tr
	}
	return &DeadLetterWriter{w: &kafka.Writer{
		Addr:         kafka.TCP(brokers...),
		Transport:    rt,
		Topic:        topic,
		Balancer:     &kafka.Hash{}, // same key, same partition
		RequiredAcks: kafka.RequireAll,
		// Write is synchronous and gets whole slices; do not wait for more.
		BatchTimeout: time.Millisecond,
		BatchSize:    1000, // kafka-go preallocates BatchSize messages per partition batch
		BatchBytes:   64 << 20,
	}}
}

// Write writes dls and returns once every one is acknowledged by all
// in-sync replicas, or with an error naming the first that failed. A
// retried Write may duplicate dead letters; the headers identify them.
func (w *DeadLetterWriter) Write(ctx context.Context, dls []ingest.DeadLetter) error {
	if len(dls) == 0 {
		return nil
	}
	msgs := make([]kafka.Message, len(dls))
	for i, d := range dls {
		msgs[i] = kafka.Message{
			Key:   d.Key,
			Value: d.Value,
			Time:  d.Time,
			Headers: []kafka.Header{
				{Key: HeaderReason, Value: []byte(d.Reason)},
				{Key: HeaderSourceTopic, Value: []byte(d.Topic)},
				{Key: HeaderSourcePartition, Value: strconv.AppendInt(nil, int64(d.Partition), 10)},
				{Key: HeaderSourceOffset, Value: strconv.AppendInt(nil, d.Offset, 10)},
			},
		}
	}
	if err := w.w.WriteMessages(ctx, msgs...); err != nil {
		err = explain(err)
		var werrs kafka.WriteErrors
		if errors.As(err, &werrs) {
			for i, e := range werrs {
				if e != nil {
					return fmt.Errorf("kafka: write dead letter %s/%d@%d to %s: %w (%d of %d failed)",
						dls[i].Topic, dls[i].Partition, dls[i].Offset, w.w.Topic, e, werrs.Count(), len(dls))
				}
			}
		}
		return fmt.Errorf("kafka: write dead letters to %s: %w", w.w.Topic, err)
	}
	return nil
}

// Close flushes and closes the writer.
func (w *DeadLetterWriter) Close() error { return w.w.Close() }

// CreateTopic creates topic with the given number of partitions and
// replication factor 1 (meant for the demo and tests), asking the cluster's
// controller. An existing topic is left as it is and is not an error.
func CreateTopic(ctx context.Context, brokers []string, topic string, partitions int) error {
	if len(brokers) == 0 {
		return fmt.Errorf("%w: no brokers", ErrConfig)
	}
	var d kafka.Dialer
	conn, err := d.DialContext(ctx, "tcp", brokers[0])
	if err != nil {
		return fmt.Errorf("kafka: create topic %q: %w", topic, err)
	}
	controller, err := conn.Controller()
	conn.Close()
	if err != nil {
		return fmt.Errorf("kafka: create topic %q: find controller: %w", topic, err)
	}
	addr := net.JoinHostPort(controller.Host, strconv.Itoa(controller.Port))
	cc, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return fmt.Errorf("kafka: create topic %q: dial controller %s: %w", topic, addr, err)
	}
	defer cc.Close()
	deadline, ok := ctx.Deadline()
	if !ok {
		deadline = time.Now().Add(30 * time.Second)
	}
	_ = cc.SetDeadline(deadline)
	err = cc.CreateTopics(kafka.TopicConfig{Topic: topic, NumPartitions: partitions, ReplicationFactor: 1})
	if err != nil {
		return fmt.Errorf("kafka: create topic %q: %w", topic, err)
	}
	return nil
}
