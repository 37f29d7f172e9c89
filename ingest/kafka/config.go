package kafka

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/segmentio/kafka-go"

	"github.com/sluice-dev/sluice/ingest"
)

// ErrConfig is wrapped by every error about an invalid Config.
var ErrConfig = errors.New("kafka: invalid config")

// Start offsets for a partition the group has no committed offset for.
const (
	StartEarliest = "earliest"
	StartLatest   = "latest"
)

// Defaults of Config; Validate and NewSource apply them to zero fields.
//
// DefaultMaxRecords sizes the objects a batch becomes. Every batch costs
// a fixed amount on top of its rows (a Parquet object per location, the
// quarantine object, a lineage segment, each durable), so at 20000 the
// demo pipeline runs about a fifth faster than at 10000 for twice the
// rows per object and a p99 batch latency of 0.3–0.4 s at full load (peak
// RSS 240–280 MiB at 400–500k records/s; docs/BENCHMARKS.md). At low rates
// Linger cuts batches first, so latency stays bounded by it.
const (
	DefaultMaxRecords        = 20000
	DefaultMaxBytes          = 16 << 20
	DefaultMaxRecordBytes    = 1 << 20
	DefaultLinger            = 500 * time.Millisecond
	DefaultMaxInFlight       = 16
	DefaultSessionTimeout    = 10 * time.Second
	DefaultHeartbeatInterval = 3 * time.Second
	DefaultRebalanceTimeout  = 30 * time.Second
	DefaultJoinGroupBackoff  = 5 * time.Second
	// MinSessionTimeout is Kafka's default group.min.session.timeout.ms;
	// brokers (kfake included) reject shorter sessions.
	MinSessionTimeout = 6 * time.Second
	// maxFetchWait bounds one fetch: ReadBatch takes no context, so this is
	// also how long shutdown can wait for a reader.
	maxFetchWait = 500 * time.Millisecond
)

// Config configures a Source.
type Config struct {
	// Brokers are seed broker addresses (host:port). Required.
	Brokers []string `yaml:"brokers"`
	// Topic is the topic to consume. Required; it must exist.
	Topic string `yaml:"topic"`
	// Group is the consumer group id. Required.
	Group string `yaml:"group"`
	// StartOffset is where to begin on a partition without a committed
	// offset, and where to restart when the committed offset is no longer
	// in the log: "earliest" (default) or "latest".
	StartOffset string `yaml:"start_offset"`
	// StartTime, when set, overrides StartOffset for partitions without a
	// committed offset: they start at the first record whose timestamp is
	// at or after StartTime, or at the end of the log when there is none.
	// Default zero: unset.
	StartTime time.Time `yaml:"start_time"`
	// ResetToTime applies StartTime to every partition: before joining,
	// NewSource rewrites the group's committed offsets to StartTime, like
	// kafka-consumer-groups --reset-offsets --to-datetime, and fails if the
	// group has active members. It is a one-off replay switch: a source
	// started again with it set replays again. Default false; requires
	// StartTime.
	ResetToTime bool `yaml:"reset_to_time"`
	// MaxRecords caps the records (rows plus dead letters) of one batch.
	// Default 10000.
	MaxRecords int `yaml:"max_records"`
	// MaxBytes caps the raw key+value bytes of one batch; a batch ends at
	// the first record that reaches it. Default 16 MiB.
	MaxBytes int64 `yaml:"max_bytes"`
	// MaxRecordBytes caps the key+value bytes of one record. A larger
	// record is not decoded: it becomes a dead letter (whole, with an
	// ingest.SizeError as its reason), so one hostile record cannot make
	// the decoder or the stages after it hold a row of any size. The
	// dead-letter topic must accept records as large as the source topic
	// does. Default 1 MiB.
	MaxRecordBytes int64 `yaml:"max_record_bytes"`
	// Linger is how long a partly filled batch may wait for more records
	// before it is handed out. Default 500ms.
	Linger time.Duration `yaml:"linger"`
	// MaxInFlight is how many batches may be handed out and not yet acked
	// before Next blocks. Default 16.
	MaxInFlight int `yaml:"max_in_flight"`
	// SessionTimeout is the group session timeout. Default 10s, at least 6s.
	SessionTimeout time.Duration `yaml:"session_timeout"`
	// HeartbeatInterval is how often the member heartbeats; it also bounds
	// how fast a member notices a rebalance. Default 3s; must be below
	// SessionTimeout.
	HeartbeatInterval time.Duration `yaml:"heartbeat_interval"`
	// RebalanceTimeout is how long the coordinator waits for members to
	// rejoin during a rebalance. Default 30s.
	RebalanceTimeout time.Duration `yaml:"rebalance_timeout"`
	// JoinGroupBackoff is the wait before rejoining after a failed join.
	// Default 5s.
	JoinGroupBackoff time.Duration `yaml:"join_group_backoff"`
	// Fields is the schema records are decoded with. Required.
	Fields []ingest.Field `yaml:"-"`
	// Allocator allocates the batches' Arrow buffers. Default
	// memory.DefaultAllocator.
	Allocator memory.Allocator `yaml:"-"`
	// Logger receives the source's logs. Default slog.Default().
	Logger *slog.Logger `yaml:"-"`
	// Dialer opens every connection (group, partition readers), e.g. with
	// TLS or SASL. Default kafka.DefaultDialer.
	Dialer *kafka.Dialer `yaml:"-"`
}

// withDefaults returns c with every zero field set to its default.
func (c Config) withDefaults() Config {
	if c.StartOffset == "" {
		c.StartOffset = StartEarliest
	}
	if c.MaxRecords == 0 {
		c.MaxRecords = DefaultMaxRecords
	}
	if c.MaxBytes == 0 {
		c.MaxBytes = DefaultMaxBytes
	}
	if c.MaxRecordBytes == 0 {
		c.MaxRecordBytes = DefaultMaxRecordBytes
	}
	if c.Linger == 0 {
		c.Linger = DefaultLinger
	}
	if c.MaxInFlight == 0 {
		c.MaxInFlight = DefaultMaxInFlight
	}
	if c.SessionTimeout == 0 {
		c.SessionTimeout = DefaultSessionTimeout
	}
	if c.HeartbeatInterval == 0 {
		c.HeartbeatInterval = DefaultHeartbeatInterval
	}
	if c.RebalanceTimeout == 0 {
		c.RebalanceTimeout = DefaultRebalanceTimeout
	}
	if c.JoinGroupBackoff == 0 {
		c.JoinGroupBackoff = DefaultJoinGroupBackoff
	}
	if c.Allocator == nil {
		c.Allocator = memory.DefaultAllocator
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Dialer == nil {
		c.Dialer = kafka.DefaultDialer
	}
	return c
}

// Validate reports whether c, with defaults applied to its zero fields, is
// usable. It does not contact the brokers.
func (c Config) Validate() error {
	c = c.withDefaults()
	switch {
	case len(c.Brokers) == 0:
		return fmt.Errorf("%w: no brokers", ErrConfig)
	case c.Topic == "":
		return fmt.Errorf("%w: no topic", ErrConfig)
	case c.Group == "":
		return fmt.Errorf("%w: no group", ErrConfig)
	case c.StartOffset != StartEarliest && c.StartOffset != StartLatest:
		return fmt.Errorf("%w: start offset %q is neither %q nor %q", ErrConfig, c.StartOffset, StartEarliest, StartLatest)
	case c.ResetToTime && c.StartTime.IsZero():
		return fmt.Errorf("%w: reset to time needs a start time", ErrConfig)
	case c.MaxRecords < 0:
		return fmt.Errorf("%w: negative max records %d", ErrConfig, c.MaxRecords)
	case c.MaxBytes < 0:
		return fmt.Errorf("%w: negative max bytes %d", ErrConfig, c.MaxBytes)
	case c.MaxRecordBytes < 0:
		return fmt.Errorf("%w: negative max record bytes %d", ErrConfig, c.MaxRecordBytes)
	case c.Linger < 0:
		return fmt.Errorf("%w: negative linger %s", ErrConfig, c.Linger)
	case c.MaxInFlight < 0:
		return fmt.Errorf("%w: negative max in flight %d", ErrConfig, c.MaxInFlight)
	case c.SessionTimeout < MinSessionTimeout:
		return fmt.Errorf("%w: session timeout %s is below the minimum %s", ErrConfig, c.SessionTimeout, MinSessionTimeout)
	case c.HeartbeatInterval < 0 || c.HeartbeatInterval >= c.SessionTimeout:
		return fmt.Errorf("%w: heartbeat interval %s must be positive and below the session timeout %s", ErrConfig, c.HeartbeatInterval, c.SessionTimeout)
	case c.RebalanceTimeout < 0:
		return fmt.Errorf("%w: negative rebalance timeout %s", ErrConfig, c.RebalanceTimeout)
	case c.JoinGroupBackoff < 0:
		return fmt.Errorf("%w: negative join group backoff %s", ErrConfig, c.JoinGroupBackoff)
	case len(c.Fields) == 0:
		return fmt.Errorf("%w: no fields", ErrConfig)
	}
	d, err := ingest.NewDecoder(c.Fields, c.Allocator)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrConfig, err)
	}
	d.Release()
	return nil
}
