package kafka

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluice-dev/sluice/ingest"
)

func TestCreateTopic(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	brokers := c.ListenAddrs()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for i := 0; i < 2; i++ { // the second call finds the topic and succeeds
		if err := CreateTopic(ctx, brokers, "created", 3); err != nil {
			t.Fatalf("CreateTopic #%d: %v", i+1, err)
		}
	}
	parts, err := kafka.DefaultDialer.LookupPartitions(ctx, "tcp", brokers[0], "created")
	if err != nil {
		t.Fatal(err)
	}
	if len(parts) != 3 {
		t.Errorf("topic has %d partitions, want 3", len(parts))
	}
	if err := CreateTopic(ctx, nil, "x", 1); !errors.Is(err, ErrConfig) {
		t.Errorf("no brokers: err = %v", err)
	}
}

func TestDeadLetterWriter(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(2, "dlq"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	brokers := c.ListenAddrs()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	ts := time.UnixMilli(1709294400123).UTC()
	dls := []ingest.DeadLetter{
		{Topic: "events", Partition: 3, Offset: 41, Key: []byte("user-1"), Value: []byte(`{"amount":"abc"}`), Time: ts,
			Reason: `field "amount": want float64, got string "abc"`},
		{Topic: "events", Partition: 0, Offset: 7, Value: []byte(`not json`), Time: ts,
			Reason: `malformed JSON at byte 0: record is not a JSON object`},
	}
	w := NewDeadLetterWriter(brokers, "dlq")
	if err := w.Write(ctx, dls); err != nil {
		t.Fatal(err)
	}
	if err := w.Write(ctx, nil); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}

	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumeTopics("dlq"),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	got := map[string]*kgo.Record{} // by source offset
	for len(got) < len(dls) {
		fs := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			t.Fatalf("read back %d of %d dead letters", len(got), len(dls))
		}
		fs.EachRecord(func(r *kgo.Record) {
			for _, h := range r.Headers {
				if h.Key == HeaderSourceOffset {
					got[string(h.Value)] = r
				}
			}
		})
	}
	for _, d := range dls {
		r := got[strconv.FormatInt(d.Offset, 10)]
		if r == nil {
			t.Fatalf("dead letter at offset %d not written", d.Offset)
		}
		h := map[string]string{}
		for _, x := range r.Headers {
			h[x.Key] = string(x.Value)
		}
		want := map[string]string{
			HeaderReason:          d.Reason,
			HeaderSourceTopic:     d.Topic,
			HeaderSourcePartition: fmt.Sprint(d.Partition),
			HeaderSourceOffset:    fmt.Sprint(d.Offset),
		}
		for k, v := range want {
			if h[k] != v {
				t.Errorf("offset %d header %s = %q, want %q", d.Offset, k, h[k], v)
			}
		}
		if string(r.Key) != string(d.Key) || string(r.Value) != string(d.Value) {
			t.Errorf("offset %d: key %q value %q, want %q %q", d.Offset, r.Key, r.Value, d.Key, d.Value)
		}
		if !r.Timestamp.Equal(ts) {
			t.Errorf("offset %d: timestamp %v, want %v", d.Offset, r.Timestamp, ts)
		}
	}
}
