// Package storage writes features and lineage to object storage.
//
// It owns the ObjectStore abstraction (the read half split out as
// BucketReader), the deterministic key layout, and the Parquet sink. The
// backends live beside it: storage/fs for a local folder and storage/s3 for
// any S3-compatible service (minio-go). storagetest holds the acceptance
// suite every backend passes.
package storage
