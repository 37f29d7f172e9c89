package kafka

import (
	"context"
	"errors"
	"maps"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/sluice-dev/sluice/ingest"
)

// TestCommitted reads back what a group committed, partition by
// partition, from a real Kafka-protocol broker; a partition the group
// never committed is absent.
func TestCommitted(t *testing.T) {
	brokers := cluster(t, 3)
	produceN(t, brokers, 0, 0, 10)
	produceN(t, brokers, 2, 0, 10)
	cl := &kafka.Client{Addr: kafka.TCP(brokers...), Timeout: 5 * time.Second}
	res, err := cl.OffsetCommit(context.Background(), &kafka.OffsetCommitRequest{
		GroupID: "g-audit", GenerationID: -1,
		Topics: map[string][]kafka.OffsetCommit{testTopic: {{Partition: 0, Offset: 7}, {Partition: 2, Offset: 10}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range res.Topics[testTopic] {
		if p.Error != nil {
			t.Fatal(p.Error)
		}
	}
	got, err := Committed(context.Background(), brokers, ingest.Security{}, "g-audit", testTopic)
	if err != nil {
		t.Fatal(err)
	}
	if want := map[int]int64{0: 7, 2: 10}; !maps.Equal(got, want) {
		t.Fatalf("Committed = %v, want %v", got, want)
	}
	// A group that never committed (or a misspelt one) is an error: an
	// auditor comparing commits with lineage must not compare nothing.
	if _, err := Committed(context.Background(), brokers, ingest.Security{}, "g-never", testTopic); !errors.Is(err, ErrNoCommits) {
		t.Fatalf("Committed of a group that never committed: %v, want ErrNoCommits", err)
	}
	if _, err := Committed(context.Background(), brokers, ingest.Security{}, "g-audit", "no-such-topic"); err == nil ||
		!strings.Contains(err.Error(), `"no-such-topic"`) {
		t.Fatalf("unknown topic: %v", err)
	}
}
