package kafka

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/segmentio/kafka-go"

	"github.com/sluice-dev/sluice/ingest"
)

// ErrNoCommits means a group has committed no offset on a topic: a group
// that never ran, or a wrong group name.
var ErrNoCommits = errors.New("the group has committed no offsets on the topic (is the group name right?)")

// Committed returns, for each partition of topic that group has committed
// an offset on, the committed offset: the next offset the group will read.
// Partitions without a commit are absent; none at all is ErrNoCommits. It
// only reads (it joins no group and commits nothing), so it is safe while
// replicas run: it serves an auditor's check of the lineage against the
// commits (`sluice lineage verify --spec`).
func Committed(ctx context.Context, brokers []string, sec ingest.Security, group, topic string) (map[int]int64, error) {
	fail := func(err error) error {
		return fmt.Errorf("kafka: committed offsets of group %q on %q: %w", group, topic, err)
	}
	tr, err := Transport(sec)
	if err != nil {
		return nil, fail(err)
	}
	cl := &kafka.Client{Addr: kafka.TCP(brokers...), Transport: tr, Timeout: dialTimeout}
	md, err := cl.Metadata(ctx, &kafka.MetadataRequest{Topics: []string{topic}})
	if err != nil {
		return nil, fail(err)
	}
	var parts []int
	for _, t := range md.Topics {
		if t.Name != topic {
			continue
		}
		if t.Error != nil {
			return nil, fail(t.Error)
		}
		for _, p := range t.Partitions {
			parts = append(parts, p.ID)
		}
	}
	if len(parts) == 0 {
		return nil, fail(fmt.Errorf("the topic has no partitions (does it exist?)"))
	}
	slices.Sort(parts)
	res, err := cl.OffsetFetch(ctx, &kafka.OffsetFetchRequest{GroupID: group, Topics: map[string][]int{topic: parts}})
	if err != nil {
		return nil, fail(err)
	}
	if res.Error != nil {
		if errors.Is(res.Error, kafka.GroupIdNotFound) {
			return nil, fail(ErrNoCommits)
		}
		return nil, fail(res.Error)
	}
	out := map[int]int64{}
	for _, p := range res.Topics[topic] {
		if p.Error != nil {
			return nil, fail(fmt.Errorf("partition %d: %w", p.Partition, p.Error))
		}
		if p.CommittedOffset >= 0 {
			out[p.Partition] = p.CommittedOffset
		}
	}
	if len(out) == 0 {
		return nil, fail(ErrNoCommits)
	}
	return out, nil
}
