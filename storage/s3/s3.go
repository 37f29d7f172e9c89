package s3

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
	"github.com/minio/minio-go/v7/pkg/encrypt"

	"github.com/sluice-dev/sluice/storage"
)

// partSize is the multipart part size, and the most a Put of unknown size
// buffers before it switches to a multipart upload.
const partSize = 16 << 20

// Store is an ObjectStore in an S3 bucket. Safe for concurrent use.
type Store struct {
	client *minio.Client
	cfg    Config
	prefix string // cfg.Prefix trimmed, with a trailing "/" unless empty
	sse    encrypt.ServerSide
	// now is the clock retention dates are computed from.
	now func() time.Time
	// bucketSeen is set once the bucket is known to exist.
	bucketSeen atomic.Bool
	// noConditional is set once the server answered a conditional PUT with
	// 501 Not Implemented: Create then checks and puts (see Create).
	noConditional atomic.Bool
}

// ErrNoBucket is returned (wrapped) when the configured bucket does not
// exist. It does not match storage.ErrNotExist: a missing bucket is a
// setup error, not a missing object.
var ErrNoBucket = errors.New("s3: bucket does not exist")

var (
	_ storage.ObjectStore = (*Store)(nil)
	_ storage.Retainer    = (*Store)(nil)
	_ storage.Versioned   = (*Store)(nil)
)

// New validates cfg and returns a store. It does not contact the server;
// the first request does, so a wrong endpoint or credentials show up there.
func New(ctx context.Context, cfg Config) (*Store, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	access, secret, token := cfg.credentials(os.Getenv)
	opts := &minio.Options{
		Creds:  credentials.NewStaticV4(access, secret, token),
		Secure: cfg.Secure,
		Region: cfg.Region,
	}
	if access == "" {
		opts.Creds = credentials.New(&credentials.Static{Value: credentials.Value{SignerType: credentials.SignatureAnonymous}})
	}
	if cfg.PathStyle {
		opts.BucketLookup = minio.BucketLookupPath
	}
	client, err := minio.New(cfg.Endpoint, opts)
	if err != nil {
		return nil, fmt.Errorf("s3: client for %s: %w", cfg.Endpoint, err)
	}
	s := &Store{client: client, cfg: cfg, now: time.Now}
	if p := strings.Trim(cfg.Prefix, "/"); p != "" {
		s.prefix = p + "/"
	}
	switch cfg.SSE {
	case SSES3:
		s.sse = encrypt.NewSSE()
	case SSEKMS:
		if s.sse, err = encrypt.NewSSEKMS(cfg.KMSKeyID, nil); err != nil {
			return nil, fmt.Errorf("s3: sse-kms: %w", err)
		}
	}
	return s, nil
}

// Client is the underlying minio client, for what the ObjectStore
// interface does not cover (tests read retention headers with it).
func (s *Store) Client() *minio.Client { return s.client }

// Bucket is the bucket the store writes to.
func (s *Store) Bucket() string { return s.cfg.Bucket }

// ObjectName is the name of key in the bucket: the prefix and the key.
func (s *Store) ObjectName(key string) string { return s.prefix + key }

func (s *Store) object(key string) (string, error) {
	if err := storage.CheckKey(key); err != nil {
		return "", err
	}
	return s.prefix + key, nil
}

// EnsureBucket creates the bucket if it does not exist, with Object Lock
// enabled when objectLock is set (it cannot be turned on later on most
// servers). An existing bucket is left as it is.
func (s *Store) EnsureBucket(ctx context.Context, objectLock bool) error {
	ok, err := s.client.BucketExists(ctx, s.cfg.Bucket)
	if err != nil {
		return fmt.Errorf("s3: bucket %s: %w", s.cfg.Bucket, err)
	}
	if ok {
		return nil
	}
	err = s.client.MakeBucket(ctx, s.cfg.Bucket, minio.MakeBucketOptions{Region: s.cfg.Region, ObjectLocking: objectLock})
	if err != nil {
		code := minio.ToErrorResponse(err).Code
		if code == "BucketAlreadyOwnedByYou" {
			return nil // created concurrently
		}
		return fmt.Errorf("s3: create bucket %s: %w", s.cfg.Bucket, err)
	}
	return nil
}

// Get opens the object at key. The request is sent before Get returns, so
// a missing key is reported here rather than on the first Read.
func (s *Store) Get(ctx context.Context, key string) (io.ReadCloser, error) {
	name, err := s.object(key)
	if err != nil {
		return nil, err
	}
	obj, err := s.client.GetObject(ctx, s.cfg.Bucket, name, minio.GetObjectOptions{})
	if err != nil {
		return nil, s.wrap("get", key, err)
	}
	if _, err := obj.Stat(); err != nil {
		obj.Close()
		return nil, s.checkBucket(ctx, s.wrap("get", key, err))
	}
	return obj, nil
}

// Stat returns the size of the object at key.
func (s *Store) Stat(ctx context.Context, key string) (storage.Attrs, error) {
	name, err := s.object(key)
	if err != nil {
		return storage.Attrs{}, err
	}
	info, err := s.client.StatObject(ctx, s.cfg.Bucket, name, minio.StatObjectOptions{})
	if err != nil {
		return storage.Attrs{}, s.checkBucket(ctx, s.wrap("stat", key, err))
	}
	return storage.Attrs{Size: info.Size}, nil
}

// Iter lists keys that start with prefix (a plain string prefix) in the
// lexical order S3 lists them.
func (s *Store) Iter(ctx context.Context, prefix string, fn func(key string) error) error {
	return s.list(ctx, "list", prefix, false, func(info minio.ObjectInfo) error {
		return fn(strings.TrimPrefix(info.Key, s.prefix))
	})
}

// DeleteMarkers lists the versions under prefix and calls fn with each key
// whose latest version is a delete marker.
func (s *Store) DeleteMarkers(ctx context.Context, prefix string, fn func(key string) error) error {
	return s.list(ctx, "list versions of", prefix, true, func(info minio.ObjectInfo) error {
		if !info.IsDeleteMarker || !info.IsLatest {
			return nil
		}
		return fn(strings.TrimPrefix(info.Key, s.prefix))
	})
}

// list calls fn for every object (with versions: every version and delete
// marker) under prefix, until fn fails or the listing ends.
func (s *Store) list(ctx context.Context, op, prefix string, versions bool, fn func(minio.ObjectInfo) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel() // stops the listing goroutine when fn ends the walk
	for info := range s.client.ListObjects(ctx, s.cfg.Bucket, minio.ListObjectsOptions{
		Prefix:       s.prefix + prefix,
		Recursive:    true,
		WithVersions: versions,
	}) {
		if info.Err != nil {
			if err := ctx.Err(); err != nil {
				return err
			}
			return s.wrap(op, prefix, info.Err)
		}
		if err := fn(info); err != nil {
			return err
		}
	}
	return ctx.Err()
}

// Put writes r to key. S3 makes a Put atomic; it is durable when the
// server acknowledges it. With size >= 0, r is streamed (as a multipart
// upload above 16 MiB). With size -1, up to 16 MiB is buffered and sent in
// one request; a longer r continues as a multipart upload of 16 MiB parts.
// With RetentionMode set, the object is locked until RetentionDays after
// now.
func (s *Store) Put(ctx context.Context, key string, r io.Reader, size int64) error {
	return s.put(ctx, "put", key, r, size, false)
}

// Create is Put with If-None-Match: *, a conditional PUT the server
// refuses (412 Precondition Failed, returned as storage.ErrExists) when
// the key already has an object (AWS S3, MinIO and the Versity gateway
// support it). The object goes up in one request, read into memory first.
// A server that answers 501 Not Implemented gets a HEAD and a plain PUT
// instead from then on: that still refuses an existing key, but two
// Creates at the same moment may both succeed.
func (s *Store) Create(ctx context.Context, key string, r io.Reader, size int64) error {
	body, ok := r.(io.ReadSeeker) // read again if the conditional PUT is refused
	if !ok || size < 0 {
		data, err := io.ReadAll(r)
		if err != nil {
			return fmt.Errorf("s3: create %s: %w", key, err)
		}
		if size >= 0 && int64(len(data)) != size {
			return fmt.Errorf("s3: create %s: read %d bytes, size says %d", key, len(data), size)
		}
		body, size = bytes.NewReader(data), int64(len(data))
	}
	if !s.noConditional.Load() {
		err := s.put(ctx, "create", key, body, size, true)
		var resp minio.ErrorResponse
		if !errors.As(err, &resp) || (resp.StatusCode != http.StatusNotImplemented && resp.Code != "NotImplemented") {
			return err
		}
		s.noConditional.Store(true)
		if _, err := body.Seek(0, io.SeekStart); err != nil {
			return fmt.Errorf("s3: create %s: %w", key, err)
		}
	}
	switch _, err := s.Stat(ctx, key); {
	case err == nil:
		return fmt.Errorf("s3: create %s/%s: %w", s.cfg.Bucket, s.prefix+key, storage.ErrExists)
	case !errors.Is(err, storage.ErrNotExist):
		return err
	}
	return s.put(ctx, "create", key, body, size, false)
}

func (s *Store) put(ctx context.Context, op, key string, r io.Reader, size int64, exclusive bool) error {
	name, err := s.object(key)
	if err != nil {
		return err
	}
	opts := minio.PutObjectOptions{
		ContentType:          "application/octet-stream",
		ServerSideEncryption: s.sse,
		PartSize:             partSize,
	}
	if strings.HasSuffix(key, ".parquet") {
		opts.ContentType = "application/vnd.apache.parquet"
	}
	if s.cfg.RetentionMode != "" {
		opts.Mode = minio.RetentionMode(s.cfg.RetentionMode)
		opts.RetainUntilDate = s.now().UTC().AddDate(0, 0, s.cfg.RetentionDays)
	}
	if exclusive {
		opts.SetMatchETagExcept("*")
		opts.DisableMultipart = true
	}
	if size < 0 {
		buf := make([]byte, partSize)
		n, err := io.ReadFull(r, buf)
		switch {
		case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF):
			r, size = bytes.NewReader(buf[:n]), int64(n)
		case err != nil:
			return fmt.Errorf("s3: %s %s: %w", op, key, err)
		default:
			r = io.MultiReader(bytes.NewReader(buf), r)
		}
	}
	if _, err := s.client.PutObject(ctx, s.cfg.Bucket, name, r, size, opts); err != nil {
		// 412: the key has an object. 409 ConditionalRequestConflict (AWS):
		// another conditional write of the key is in progress, and one of
		// the two wins; the caller treats both alike and reads the key.
		if resp := minio.ToErrorResponse(err); exclusive && (resp.StatusCode == http.StatusPreconditionFailed || resp.Code == "ConditionalRequestConflict") {
			return fmt.Errorf("s3: %s %s/%s: %w (%s)", op, s.cfg.Bucket, s.prefix+key, storage.ErrExists, resp.Code)
		}
		return s.wrap(op, key, err)
	}
	return nil
}

// Delete removes the object at key. Deleting a missing key is not an
// error. In a versioned (Object Lock) bucket it adds a delete marker: the
// key no longer reads, while locked versions are kept.
func (s *Store) Delete(ctx context.Context, key string) error {
	name, err := s.object(key)
	if err != nil {
		return err
	}
	if err := s.client.RemoveObject(ctx, s.cfg.Bucket, name, minio.RemoveObjectOptions{}); err != nil {
		return s.wrap("delete", key, err)
	}
	return nil
}

// checkBucket turns an ErrNotExist into ErrNoBucket when the bucket is
// missing. A HEAD answer has no body to tell a missing key from a missing
// bucket, so the bucket is asked for, until it has been seen once.
func (s *Store) checkBucket(ctx context.Context, err error) error {
	if !errors.Is(err, storage.ErrNotExist) || s.bucketSeen.Load() {
		return err
	}
	ok, berr := s.client.BucketExists(ctx, s.cfg.Bucket)
	switch {
	case berr != nil:
		// Unsure whether the object or the bucket is missing: say neither.
		return fmt.Errorf("s3: bucket %s: %w", s.cfg.Bucket, berr)
	case !ok:
		return fmt.Errorf("s3: bucket %s: %w", s.cfg.Bucket, ErrNoBucket)
	}
	s.bucketSeen.Store(true)
	return err
}

// wrap maps a missing object to storage.ErrNotExist and names the
// operation. A missing bucket is not ErrNotExist: it is a setup error.
func (s *Store) wrap(op, key string, err error) error {
	var resp minio.ErrorResponse
	if errors.As(err, &resp) {
		switch {
		case resp.Code == "NoSuchBucket":
			return fmt.Errorf("s3: %s %s/%s: %w (%w)", op, s.cfg.Bucket, s.prefix+key, ErrNoBucket, err)
		case resp.Code == "NoSuchKey" || resp.StatusCode == http.StatusNotFound:
			return fmt.Errorf("s3: %s %s/%s: %w", op, s.cfg.Bucket, s.prefix+key, storage.ErrNotExist)
		}
	}
	return fmt.Errorf("s3: %s %s/%s: %w", op, s.cfg.Bucket, s.prefix+key, err)
}

// ObjectLock reports whether the bucket has Object Lock enabled. A bucket
// without an Object Lock configuration answers false, not an error.
func (s *Store) ObjectLock(ctx context.Context) (bool, error) {
	enabled, _, _, _, err := s.client.GetObjectLockConfig(ctx, s.cfg.Bucket)
	if err != nil {
		if minio.ToErrorResponse(err).Code == "ObjectLockConfigurationNotFoundError" {
			return false, nil
		}
		return false, s.wrap("object lock configuration of", "", err)
	}
	return enabled == "Enabled", nil
}

// Retention returns the Object Lock mode and retain-until date of the
// current version of the object at key, read from the headers of one HEAD
// request; mode is "" when the version has no retention.
func (s *Store) Retention(ctx context.Context, key string) (string, time.Time, error) {
	name, err := s.object(key)
	if err != nil {
		return "", time.Time{}, err
	}
	info, err := s.client.StatObject(ctx, s.cfg.Bucket, name, minio.StatObjectOptions{})
	if err != nil {
		return "", time.Time{}, s.checkBucket(ctx, s.wrap("stat", key, err))
	}
	mode := info.Metadata.Get("X-Amz-Object-Lock-Mode")
	if mode == "" {
		return "", time.Time{}, nil
	}
	raw := info.Metadata.Get("X-Amz-Object-Lock-Retain-Until-Date")
	until, err := time.Parse(time.RFC3339, raw)
	if err != nil {
		return mode, time.Time{}, fmt.Errorf("s3: retention of %s/%s: retain-until date %q: %w", s.cfg.Bucket, name, raw, err)
	}
	return mode, until, nil
}
