package kafka

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/segmentio/kafka-go"
)

// resetGroup rewrites the group's committed offsets of every partition of
// the topic to the first offset at or after cfg.StartTime. The commit is a
// "simple" one (generation -1, no member), which brokers accept only while
// the group has no active member, so a reset never races a running replica.
func resetGroup(ctx context.Context, cfg Config) error {
	at := cfg.StartTime.Format(time.RFC3339Nano)
	fail := func(err error) error {
		return fmt.Errorf("kafka: reset group %q on %q to %s: %w", cfg.Group, cfg.Topic, at, err)
	}
	parts, err := lookupPartitions(ctx, cfg.Dialer, cfg.Brokers, cfg.Topic)
	if err != nil {
		return fail(err)
	}
	offsets := make([]kafka.OffsetCommit, 0, len(parts))
	for _, p := range parts {
		off, err := partitionOffsetAt(ctx, cfg, p.ID, cfg.StartTime)
		if err != nil {
			return fail(fmt.Errorf("partition %d: %w", p.ID, err))
		}
		offsets = append(offsets, kafka.OffsetCommit{Partition: p.ID, Offset: off})
	}
	cl := &kafka.Client{Addr: kafka.TCP(cfg.Brokers...), Transport: transportOf(cfg.Dialer), Timeout: dialTimeout}
	res, err := cl.OffsetCommit(ctx, &kafka.OffsetCommitRequest{
		GroupID:      cfg.Group,
		GenerationID: -1,
		Topics:       map[string][]kafka.OffsetCommit{cfg.Topic: offsets},
	})
	if err != nil {
		return fail(err)
	}
	for _, p := range res.Topics[cfg.Topic] {
		switch {
		case p.Error == nil:
		case errors.Is(p.Error, kafka.UnknownMemberId), errors.Is(p.Error, kafka.IllegalGeneration),
			errors.Is(p.Error, kafka.RebalanceInProgress):
			return fail(fmt.Errorf("the group has active members; stop every replica before a reset (%w)", p.Error))
		default:
			return fail(fmt.Errorf("partition %d: %w", p.Partition, p.Error))
		}
	}
	cfg.Logger.Info("kafka: group offsets reset", "topic", cfg.Topic, "group", cfg.Group, "time", at, "offsets", offsets)
	return nil
}

func lookupPartitions(ctx context.Context, d *kafka.Dialer, brokers []string, topic string) ([]kafka.Partition, error) {
	var errs []error
	for _, b := range brokers {
		parts, err := d.LookupPartitions(ctx, "tcp", b, topic)
		if err == nil {
			return parts, nil
		}
		errs = append(errs, fmt.Errorf("broker %s: %w", b, err))
	}
	return nil, errors.Join(errs...)
}

func partitionOffsetAt(ctx context.Context, cfg Config, partition int, t time.Time) (int64, error) {
	var errs []error
	for _, b := range cfg.Brokers {
		conn, err := cfg.Dialer.DialLeader(ctx, "tcp", b, cfg.Topic, partition)
		if err != nil {
			errs = append(errs, fmt.Errorf("broker %s: %w", b, err))
			continue
		}
		_ = conn.SetDeadline(time.Now().Add(dialTimeout))
		off, err := offsetAt(conn, t)
		conn.Close()
		return off, err
	}
	return 0, errors.Join(errs...)
}
