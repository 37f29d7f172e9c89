// Package s3 is a storage.ObjectStore on any S3-compatible service (AWS S3,
// MinIO, Versity S3 Gateway, Ceph RGW), built on minio-go.
//
// A Store writes under one bucket and an optional key prefix. It can encrypt
// objects at rest (SSE-S3, SSE-KMS) and write them with S3 Object Lock
// retention, which the lineage trail uses to make its segments immutable for
// a set time. Package s3test starts a real S3 server for tests.
package s3
