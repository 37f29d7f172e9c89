package s3

import (
	"errors"
	"fmt"
	"strings"
)

// Server-side encryption modes for Config.SSE.
const (
	SSENone = ""
	SSES3   = "sse-s3"
	SSEKMS  = "sse-kms"
)

// Object Lock retention modes for Config.RetentionMode.
const (
	RetentionNone       = ""
	RetentionGovernance = "GOVERNANCE"
	RetentionCompliance = "COMPLIANCE"
)

// Config says where a Store writes and how. Options name their default.
type Config struct {
	// Endpoint is the server as host:port, without a scheme, e.g.
	// "s3.eu-central-1.amazonaws.com" or "127.0.0.1:9000". Required.
	Endpoint string `yaml:"endpoint"`
	// Bucket holds the objects. Required; it must exist (see EnsureBucket).
	Bucket string `yaml:"bucket"`
	// Prefix is put before every key, joined with "/". Default: none.
	Prefix string `yaml:"prefix"`
	// Region signs requests. Default: asked of the server once, per bucket.
	Region string `yaml:"region"`

	// AccessKey, SecretKey and SessionToken are the credentials. Default
	// (all empty): AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and
	// AWS_SESSION_TOKEN from the environment, else MINIO_ROOT_USER and
	// MINIO_ROOT_PASSWORD, else anonymous requests. They are not written
	// out with the rest of the config.
	AccessKey    string `yaml:"-"`
	SecretKey    string `yaml:"-"`
	SessionToken string `yaml:"-"`

	// Secure uses TLS (https). Default: false, which suits a server on
	// loopback or inside a cluster; set it for anything that crosses a
	// network you do not control. SSE-KMS needs it on AWS.
	Secure bool `yaml:"secure"`
	// PathStyle addresses the bucket in the path (host/bucket/key) instead
	// of the host name (bucket.host/key). Default: false, which lets the
	// client choose: path style for IP addresses and most non-AWS hosts,
	// virtual host style for AWS.
	PathStyle bool `yaml:"path_style"`

	// SSE asks the server to encrypt each object at rest: "" (default:
	// whatever the bucket's default encryption says), "sse-s3" (keys held
	// by the server) or "sse-kms" (a KMS key, KMSKeyID).
	SSE string `yaml:"sse"`
	// KMSKeyID is the KMS key (id or ARN) for SSE "sse-kms". Required with
	// it, refused without it.
	KMSKeyID string `yaml:"kms_key_id"`

	// RetentionMode writes each object with S3 Object Lock retention:
	// "" (default: none), "GOVERNANCE" (users with a special permission may
	// shorten it or delete) or "COMPLIANCE" (nobody can until it expires).
	// The bucket must have Object Lock enabled, which also makes it
	// versioned: an overwrite then adds a version and a delete adds a
	// delete marker, while the locked versions stay.
	RetentionMode string `yaml:"retention_mode"`
	// RetentionDays is how long an object is retained after its Put.
	// Required (> 0) with RetentionMode, refused without it.
	RetentionDays int `yaml:"retention_days"`
}

// Validate reports missing and contradictory options. It does not read
// the environment or contact the server.
func (c Config) Validate() error {
	var errs []error
	if c.Endpoint == "" {
		errs = append(errs, errors.New("endpoint is required"))
	} else if strings.Contains(c.Endpoint, "://") || strings.Contains(c.Endpoint, "/") {
		errs = append(errs, fmt.Errorf("endpoint %q: want host:port without scheme or path (use Secure for https)", c.Endpoint))
	}
	if c.Bucket == "" {
		errs = append(errs, errors.New("bucket is required"))
	}
	if (c.AccessKey == "") != (c.SecretKey == "") {
		errs = append(errs, errors.New("access key and secret key must be set together"))
	}
	if c.SessionToken != "" && c.AccessKey == "" {
		errs = append(errs, errors.New("session token set without access key"))
	}
	switch c.SSE {
	case SSENone, SSES3:
		if c.KMSKeyID != "" {
			errs = append(errs, fmt.Errorf("kms key id set but sse is %q, not %q", c.SSE, SSEKMS))
		}
	case SSEKMS:
		if c.KMSKeyID == "" {
			errs = append(errs, fmt.Errorf("sse %q needs a kms key id", SSEKMS))
		}
	default:
		errs = append(errs, fmt.Errorf("sse %q: want %q, %q or empty", c.SSE, SSES3, SSEKMS))
	}
	switch c.RetentionMode {
	case RetentionNone:
		if c.RetentionDays != 0 {
			errs = append(errs, fmt.Errorf("retention days %d set without a retention mode", c.RetentionDays))
		}
	case RetentionGovernance, RetentionCompliance:
		if c.RetentionDays <= 0 {
			errs = append(errs, fmt.Errorf("retention mode %s needs retention days > 0", c.RetentionMode))
		}
	default:
		errs = append(errs, fmt.Errorf("retention mode %q: want %s, %s or empty", c.RetentionMode, RetentionGovernance, RetentionCompliance))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("s3: config: %w", err)
	}
	return nil
}

// credentials resolves the default credentials from getenv.
func (c Config) credentials(getenv func(string) string) (access, secret, token string) {
	if c.AccessKey != "" {
		return c.AccessKey, c.SecretKey, c.SessionToken
	}
	if a, s := getenv("AWS_ACCESS_KEY_ID"), getenv("AWS_SECRET_ACCESS_KEY"); a != "" && s != "" {
		return a, s, getenv("AWS_SESSION_TOKEN")
	}
	if a, s := getenv("MINIO_ROOT_USER"), getenv("MINIO_ROOT_PASSWORD"); a != "" && s != "" {
		return a, s, ""
	}
	return "", "", ""
}
