package transform

import (
	"time"

	"github.com/sluice-dev/sluice/gpuexec"
	"github.com/sluice-dev/sluice/ingest"
)

// Spec is a pipeline specification, loaded from YAML by Load and checked by
// Validate. Field comments name the defaults that Load fills in.
type Spec struct {
	// Name identifies the pipeline in object keys, lineage and metrics.
	Name string `yaml:"name"`
	// Purpose is what the data is processed for ("fraud-detection"); the
	// policy checks it against the purposes allowed per data class.
	Purpose string `yaml:"purpose"`
	Source  Source `yaml:"source"`
	// Schema lists the fields decoded from each record, in column order.
	Schema []Field `yaml:"schema"`
	// Entity names the entity key field(s) (kept in the output).
	Entity []string `yaml:"entity"`
	// EventTime names the timestamp field that carries event time (kept in
	// the output).
	EventTime string    `yaml:"event_time"`
	Residency Residency `yaml:"residency"`
	Batching  Batching  `yaml:"batching"`
	Features  []Feature `yaml:"features"`
	// Executors is the pool the pipeline may route to.
	Executors []Executor `yaml:"executors"`
	// Sinks are the places features are written, one per location.
	Sinks      []Sink     `yaml:"sinks"`
	Quarantine Quarantine `yaml:"quarantine"`
	Lineage    Lineage    `yaml:"lineage"`

	// File is the path the spec was loaded from ("" for embedded specs).
	File string `yaml:"-"`
}

// Source is the Kafka topic the pipeline consumes.
type Source struct {
	Brokers []string `yaml:"brokers"`
	Topic   string   `yaml:"topic"`
	// Group is the consumer group; default "sluice-" + Spec.Name.
	Group string `yaml:"group"`
	// Format is the record encoding; only "json" (the default) for now.
	Format string `yaml:"format"`
	// StartOffset is where a new group starts: "earliest" (default) or
	// "latest".
	StartOffset string `yaml:"start_offset"`
	// DeadLetterTopic receives records that cannot be decoded; default
	// Topic + ".dlq".
	DeadLetterTopic string `yaml:"dead_letter_topic"`
	// Security is how to connect to the brokers (TLS, SASL); default
	// plaintext without authentication. See ingest.Security.
	Security ingest.Security `yaml:"security"`
}

// Field is one schema field.
type Field struct {
	Name string `yaml:"name"`
	// Path is a dotted path into nested JSON objects; default Name.
	Path string `yaml:"path"`
	// Type is bool, int32, int64, float32, float64, string or timestamp.
	Type string `yaml:"type"`
	// Nullable fields may be missing or null (default false).
	Nullable bool `yaml:"nullable"`
	// Classes are classification tags such as pii, phi, financial. A row
	// carries the classes of its non-null tagged fields.
	Classes []string `yaml:"classes"`
}

// Residency names the fields that carry residency attributes.
type Residency struct {
	// Jurisdiction is the field holding an ISO 3166-1 alpha-2 country code.
	Jurisdiction string `yaml:"jurisdiction"`
}

// Batching bounds a batch; whichever limit is reached first cuts it.
type Batching struct {
	// MaxRecords defaults to 20000 (ingest/kafka.DefaultMaxRecords says
	// why).
	MaxRecords int `yaml:"max_records"`
	// MaxBytes defaults to 16 MiB.
	MaxBytes int64 `yaml:"max_bytes"`
	// MaxRecordBytes caps one record's key+value bytes; a larger record
	// is not decoded but sent whole to the dead-letter topic, which must
	// accept records that large. Defaults to 1 MiB.
	MaxRecordBytes int64 `yaml:"max_record_bytes"`
	// Linger defaults to 500ms.
	Linger time.Duration `yaml:"linger"`
}

// Feature derives one output column from one input field.
type Feature struct {
	Name  string `yaml:"name"`
	Input string `yaml:"input"`
	// Ops are applied in order. In YAML an op is a bare name ("log1p") or a
	// mapping with key "op" and its parameters ({op: clip, min: 0, max: 1}).
	Ops []gpuexec.Op `yaml:"-"`
}

// Executor is one member of the executor pool.
type Executor struct {
	ID string `yaml:"id"`
	// Kind is "cpu" (default), "cuda" or "remote".
	Kind     string           `yaml:"kind"`
	Location gpuexec.Location `yaml:"location"`
	// Sink names the sink (in this executor's location) its output goes to.
	Sink string `yaml:"sink"`
	// Endpoint is the address (host:port) of a remote executor's Arrow
	// Flight server (`sluice executor serve`).
	Endpoint string `yaml:"endpoint"`
	// TokenFile holds the bearer token of a remote executor; default none
	// (only acceptable on loopback).
	TokenFile string `yaml:"token_file"`
	// Timeout bounds one batch on a remote executor; past it the executor
	// counts as unavailable and the batch is routed again. Default 5m.
	Timeout time.Duration `yaml:"timeout"`
	// Devices are the CUDA device ordinals a cuda executor uses; default
	// all.
	Devices []int `yaml:"devices"`
	// Cost feeds the router's cost model; every field has a default
	// (docs/executors.md).
	Cost gpuexec.Cost `yaml:"cost"`
}

// Sink is where features are written.
type Sink struct {
	Name string `yaml:"name"`
	// URL is a store URL: file:///abs/path or
	// s3://bucket/prefix?endpoint=host:port.
	URL string `yaml:"url"`
	// Compression is the Parquet codec of feature objects: zstd (the
	// default), snappy, lz4 or none (storage.Codecs).
	Compression string `yaml:"compression"`
	// KafkaTopic, when set, is the real-time features topic of this
	// sink's location: every feature row written here is also published
	// there, keyed by the entity key (docs/features.md).
	KafkaTopic string `yaml:"kafka_topic"`
	// KafkaFormat is the message encoding: "json" (default when KafkaTopic
	// is set) or "arrow" (an Arrow IPC stream of one row).
	KafkaFormat string `yaml:"kafka_format"`
	// KafkaBrokers are the brokers of the features topic; default the
	// source's brokers.
	KafkaBrokers []string `yaml:"kafka_brokers"`
}

// Quarantine says where rows that no executor may take are kept.
type Quarantine struct {
	// Sink names the sink that holds quarantined rows. It must be in a
	// location that may hold every kind of data the source carries
	// (typically the same site as the Kafka cluster).
	Sink string `yaml:"sink"`
	// Compression is the Parquet codec of quarantine objects, whatever the
	// sink's own; default "snappy". Quarantine objects are written on the
	// hot path with every input column and read rarely (to inspect and
	// release rows), so they are encoded for speed: on the demo's, snappy
	// takes a quarter less time than zstd for half again the bytes
	// (docs/BENCHMARKS.md).
	Compression string `yaml:"compression"`
}

// DefaultQuarantineCompression is Quarantine.Compression's default.
const DefaultQuarantineCompression = "snappy"

// Lineage says where lineage events go and how they are signed.
type Lineage struct {
	// URL is a store URL for lineage segments.
	URL string `yaml:"url"`
	// SigningKey is the path of a PEM PKCS#8 ed25519 private key.
	SigningKey string `yaml:"signing_key"`
}
