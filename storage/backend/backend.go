// Package backend opens an ObjectStore from a store URL, the form the CLI
// and pipeline specs use:
//
//	file:///abs/path
//	s3://bucket/prefix?endpoint=host:port&region=R&secure=true&path_style=true&sse=sse-kms&kms_key=K&retention_mode=COMPLIANCE&retention_days=N
//
// For s3, endpoint is required; the other parameters are optional and map
// to the fields of s3.Config, whose comments give their defaults.
// Credentials come from the environment (AWS_ACCESS_KEY_ID,
// AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN, or MINIO_ROOT_USER and
// MINIO_ROOT_PASSWORD), never from the URL, so a URL can be logged.
package backend

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/sluice-dev/sluice/storage"
	"github.com/sluice-dev/sluice/storage/fs"
	"github.com/sluice-dev/sluice/storage/s3"
)

// ErrBadURL is returned (wrapped) for a store URL that cannot be opened:
// unknown scheme, relative path, missing or unknown parameter.
var ErrBadURL = errors.New("storage: bad store URL")

// Open returns the store that rawURL names. It creates a file store's
// folder; it does not contact an S3 server (the first request does).
func Open(ctx context.Context, rawURL string) (storage.ObjectStore, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, fmt.Errorf("%w %q: %w", ErrBadURL, rawURL, err)
	}
	switch u.Scheme {
	case "file":
		root, err := parseFile(u)
		if err != nil {
			return nil, fmt.Errorf("%w %q: %w", ErrBadURL, rawURL, err)
		}
		return fs.New(root)
	case "s3":
		cfg, err := parseS3(u)
		if err != nil {
			return nil, fmt.Errorf("%w %q: %w", ErrBadURL, rawURL, err)
		}
		return s3.New(ctx, cfg)
	case "":
		return nil, fmt.Errorf("%w %q: no scheme; want file:///abs/path or s3://bucket/prefix?endpoint=host:port", ErrBadURL, rawURL)
	default:
		return nil, fmt.Errorf("%w %q: unknown scheme %q; want file or s3", ErrBadURL, rawURL, u.Scheme)
	}
}

func parseFile(u *url.URL) (string, error) {
	if u.Opaque != "" {
		// file:rel/path, or file:./x
		return "", fmt.Errorf("relative path %q; want file:///abs/path", u.Opaque)
	}
	if u.Host != "" && u.Host != "localhost" {
		// file://data/x parses "data" as a host: almost always a
		// relative path meant, so say so.
		return "", fmt.Errorf("host %q in file URL (a relative path?); want file:///abs/path", u.Host)
	}
	if u.RawQuery != "" {
		return "", errors.New("file URL takes no parameters")
	}
	if u.Path == "" || !filepath.IsAbs(filepath.FromSlash(u.Path)) {
		return "", fmt.Errorf("path %q is not absolute; want file:///abs/path", u.Path)
	}
	return filepath.Clean(filepath.FromSlash(u.Path)), nil
}

// s3Params are the query parameters an s3 URL may carry.
var s3Params = []string{"endpoint", "region", "secure", "path_style", "sse", "kms_key", "retention_mode", "retention_days"}

func parseS3(u *url.URL) (s3.Config, error) {
	if u.User != nil {
		return s3.Config{}, errors.New("credentials in the URL; set them in the environment instead")
	}
	if u.Host == "" {
		return s3.Config{}, errors.New("no bucket; want s3://bucket/prefix?endpoint=host:port")
	}
	q := u.Query()
	for k, v := range q {
		if !slices.Contains(s3Params, k) {
			return s3.Config{}, fmt.Errorf("unknown parameter %q; known: %s", k, strings.Join(s3Params, ", "))
		}
		if len(v) > 1 {
			return s3.Config{}, fmt.Errorf("parameter %q given %d times", k, len(v))
		}
	}
	cfg := s3.Config{
		Bucket:        u.Host,
		Prefix:        strings.Trim(u.Path, "/"),
		Endpoint:      q.Get("endpoint"),
		Region:        q.Get("region"),
		SSE:           q.Get("sse"),
		KMSKeyID:      q.Get("kms_key"),
		RetentionMode: q.Get("retention_mode"),
	}
	var err error
	if cfg.Secure, err = boolParam(q, "secure"); err != nil {
		return s3.Config{}, err
	}
	if cfg.PathStyle, err = boolParam(q, "path_style"); err != nil {
		return s3.Config{}, err
	}
	if v := q.Get("retention_days"); v != "" {
		if cfg.RetentionDays, err = strconv.Atoi(v); err != nil {
			return s3.Config{}, fmt.Errorf("retention_days %q: not a whole number", v)
		}
	}
	if cfg.Endpoint == "" {
		return s3.Config{}, errors.New("no endpoint; add ?endpoint=host:port")
	}
	if err := cfg.Validate(); err != nil {
		return s3.Config{}, err
	}
	return cfg, nil
}

func boolParam(q url.Values, name string) (bool, error) {
	v := q.Get(name)
	if v == "" {
		return false, nil
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		return false, fmt.Errorf("%s=%q: want true or false", name, v)
	}
	return b, nil
}
