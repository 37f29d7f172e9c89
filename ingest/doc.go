// Package ingest turns a stream of raw records into Arrow record batches
// that carry their Kafka offsets and an ack.
//
// It owns the Source and Batch contract, the schema-driven JSON to Arrow
// decoder, and dead letters (records that could not be decoded or were
// larger than the per-record limit, kept with their raw bytes, reason and
// offset). The Kafka client lives in ingest/kafka so that this package does
// not depend on it.
package ingest
