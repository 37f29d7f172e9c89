// Package transform owns the pipeline spec (load, validate), the feature
// plan compiled from it, and the Runner that wires the stages: ingest,
// policy, routing, execution, storage, lineage and the offset commit.
package transform
