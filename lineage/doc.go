// Package lineage records where every Kafka record went as tamper-evident
// OpenLineage events, and reads them back for auditors.
//
// It owns the event model (an OpenLineage 2-0-2 RunEvent with the standard
// schema, dataSource, columnLineage and outputStatistics facets plus the
// sluice_* facets: kafkaOffsets, residencyDecision, executor, object,
// outcome, chain), the Writer that appends events to hash-chained segments
// signed with ed25519, Verify, and the queries Trace, Walk/ReadAll and
// Report.
//
// Layout, under a prefix (default "lineage"):
//
//	PREFIX/pipeline=NAME/chain=CHAIN/SEQ.ndjson      one event per line, then the signature line
//	PREFIX/pipeline=NAME/_keys/ed25519.pub           PEM public key (Writer.PublishKey)
//
// The signature line, {"sluice_signature":{"algorithm":"ed25519(sha256)",
// "signedBytes":N,"signature":BASE64}}, is the ed25519 signature of the
// SHA-256 digest of the N bytes before it (every event line). Earlier
// trails kept it in a separate SEQ.ndjson.sig object (base64); they are
// still read, verified and extended. SEQ is the seq of the segment's first event, 20 digits. A chain is one
// Kafka topic partition (ChainFor: "events-3"); each Append writes one
// segment holding the events of one Kafka batch. Every event carries
// sluice_chain{seq, prev}, prev being the SHA-256 of the previous event's
// stored line, so removing, altering or reordering an event or a segment
// breaks either a signature or a link, and Verify reports it.
//
// The runner builds events with NewEvent and the setters (or literals),
// then calls Writer.Append once per batch before it acks the batch: Append
// returns when the signed segment is durable. See Append for what a
// replay after a crash does.
//
// The package depends only on the standard library and package storage's
// errors and optional interfaces (Retainer, Versioned); Store is the
// subset of storage.ObjectStore it uses. docs/lineage.md describes the
// format for auditors.
package lineage
