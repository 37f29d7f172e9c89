package storage

import (
	"context"
	"errors"
	"io"
	"time"
)

// ErrNotExist is returned (wrapped) when a key has no object.
var ErrNotExist = errors.New("storage: object does not exist")

// ErrExists is returned (wrapped) by Create when the key already has an
// object.
var ErrExists = errors.New("storage: object already exists")

// BucketReader is the read half of an object store. Safe for concurrent use.
type BucketReader interface {
	// Get opens the object at key. The caller closes the reader. A missing
	// key returns an error that matches ErrNotExist.
	Get(ctx context.Context, key string) (io.ReadCloser, error)
	// Stat returns the object's size. A missing key matches ErrNotExist.
	Stat(ctx context.Context, key string) (Attrs, error)
	// Iter calls fn for every key under prefix, in lexical order. Returning
	// an error from fn stops the walk and is returned.
	Iter(ctx context.Context, prefix string, fn func(key string) error) error
}

// Attrs are an object's attributes.
type Attrs struct {
	Size int64
}

// ObjectStore is an object store that can be written.
//
// Put is atomic (a reader sees the whole old object or the whole new one,
// never a part) and idempotent: writing the same bytes to the same key
// twice leaves one object. When Put returns nil the object is durable.
// size is the exact length of r, or -1 when unknown.
//
// Create is Put that never replaces: when the key already has an object it
// writes nothing and returns an error matching ErrExists, and of several
// Creates of one key at the same time exactly one succeeds (S3: a
// conditional PUT with If-None-Match: *; a folder: a hard link, which the
// kernel refuses over an existing name). Lineage uses it so that two
// writers can never both extend a chain from the same tail.
type ObjectStore interface {
	BucketReader
	Put(ctx context.Context, key string, r io.Reader, size int64) error
	Create(ctx context.Context, key string, r io.Reader, size int64) error
	Delete(ctx context.Context, key string) error
}

// Retainer is implemented by stores that can keep objects under a
// write-once retention lock (S3 Object Lock, storage/s3). Consumers find it
// by type assertion; a store without it (a folder) has no retention to
// check. Safe for concurrent use.
type Retainer interface {
	// ObjectLock reports whether the store's bucket has Object Lock
	// enabled, that is whether its objects can carry retention at all.
	ObjectLock(ctx context.Context) (bool, error)
	// Retention returns the Object Lock mode of the object's current
	// version ("GOVERNANCE" or "COMPLIANCE"; "" when it has none) and the
	// time it is retained until (zero when it has none). A missing key
	// matches ErrNotExist.
	Retention(ctx context.Context, key string) (mode string, until time.Time, err error)
}

// Versioned is implemented by stores that keep the earlier versions of
// objects (a versioned S3 bucket, as Object Lock requires): a Delete there
// leaves a delete marker, not a hole. Auditors use it to tell a deleted
// object from one that never was. Safe for concurrent use.
type Versioned interface {
	// DeleteMarkers calls fn with every key under prefix whose current
	// version is a delete marker: deleted, with its earlier versions still
	// in the bucket's version history. A bucket without versioning has
	// none.
	DeleteMarkers(ctx context.Context, prefix string, fn func(key string) error) error
}
