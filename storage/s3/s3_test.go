package s3_test

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/sluice-dev/sluice/storage"
	"github.com/sluice-dev/sluice/storage/s3"
	"github.com/sluice-dev/sluice/storage/s3/s3test"
	"github.com/sluice-dev/sluice/storage/storagetest"
)

func TestAcceptance(t *testing.T) {
	_, cfg := s3test.Start(t)
	t.Run("bucket root", func(t *testing.T) {
		store, err := s3.New(t.Context(), cfg)
		if err != nil {
			t.Fatal(err)
		}
		storagetest.Run(t, store)
	})
	t.Run("prefix", func(t *testing.T) {
		c := cfg
		c.Prefix = "/tenant-a/"
		store, err := s3.New(t.Context(), c)
		if err != nil {
			t.Fatal(err)
		}
		storagetest.Run(t, store)
		// Everything the prefixed store wrote lies under the prefix.
		c.Prefix = ""
		root, err := s3.New(t.Context(), c)
		if err != nil {
			t.Fatal(err)
		}
		var outside []string
		if err := root.Iter(t.Context(), "", func(k string) error {
			if !strings.HasPrefix(k, "tenant-a/") && !strings.HasPrefix(k, "storagetest/") {
				outside = append(outside, k)
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		if len(outside) > 0 {
			t.Errorf("keys outside both prefixes: %q", outside)
		}
	})
}

func TestSSEAgainstServer(t *testing.T) {
	_, cfg := s3test.Start(t)
	cfg.SSE = s3.SSES3
	store, err := s3.New(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	// versitygw does not encrypt at rest; what matters here is that the
	// header is accepted and the object reads back.
	err = store.Put(t.Context(), "sse/obj", strings.NewReader("secret"), 6)
	if err != nil {
		t.Skipf("server refuses SSE-S3 (%v)", err)
	}
	rc, err := store.Get(t.Context(), "sse/obj")
	if err != nil {
		t.Fatal(err)
	}
	rc.Close()
}

func TestRetention(t *testing.T) {
	_, cfg := s3test.Start(t)
	ctx := t.Context()
	for _, mode := range []string{s3.RetentionGovernance, s3.RetentionCompliance} {
		t.Run(mode, func(t *testing.T) {
			c := cfg
			c.Bucket = s3test.LockedBucket
			c.Prefix = strings.ToLower(mode)
			c.RetentionMode = mode
			c.RetentionDays = 3
			store, err := s3.New(ctx, c)
			if err != nil {
				t.Fatal(err)
			}
			before := time.Now().UTC()
			first := []byte("segment-1")
			if err := store.Put(ctx, "lineage/seg-1", bytes.NewReader(first), int64(len(first))); err != nil {
				t.Fatalf("Put with retention: %v", err)
			}
			client := store.Client()
			info, err := client.StatObject(ctx, store.Bucket(), store.ObjectName("lineage/seg-1"), minio.StatObjectOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if got := info.Metadata.Get("X-Amz-Object-Lock-Mode"); got != mode {
				t.Errorf("object lock mode = %q, want %q", got, mode)
			}
			until, err := time.Parse(time.RFC3339, info.Metadata.Get("X-Amz-Object-Lock-Retain-Until-Date"))
			if err != nil {
				t.Fatalf("retain-until date: %v (headers %v)", err, info.Metadata)
			}
			if want := before.AddDate(0, 0, 3); until.Before(want.Add(-time.Minute)) || until.After(want.Add(time.Hour)) {
				t.Errorf("retain until %v, want about %v", until, want)
			}
			versionID := info.VersionID
			if versionID == "" {
				t.Fatal("locked object has no version id")
			}

			// Deleting the locked version itself is refused.
			err = client.RemoveObject(ctx, store.Bucket(), store.ObjectName("lineage/seg-1"), minio.RemoveObjectOptions{VersionID: versionID})
			if err == nil {
				t.Fatal("deleting a locked version succeeded")
			}
			if code := minio.ToErrorResponse(err).Code; code != "AccessDenied" {
				t.Errorf("delete of a locked version refused with %q (%v), want AccessDenied", code, err)
			}
			if mode == s3.RetentionCompliance {
				// Not even with the governance bypass.
				err = client.RemoveObject(ctx, store.Bucket(), store.ObjectName("lineage/seg-1"), minio.RemoveObjectOptions{VersionID: versionID, GovernanceBypass: true})
				if err == nil {
					t.Fatal("deleting a COMPLIANCE-locked version with governance bypass succeeded")
				}
			}

			// Overwrite and Delete through the store work as in any
			// versioned bucket: a new version and a delete marker. The
			// locked version stays readable by its id.
			second := []byte("segment-1, rewritten")
			if err := store.Put(ctx, "lineage/seg-1", bytes.NewReader(second), int64(len(second))); err != nil {
				t.Fatalf("overwrite in a locked bucket: %v", err)
			}
			if err := store.Delete(ctx, "lineage/seg-1"); err != nil {
				t.Fatalf("Delete in a locked bucket: %v", err)
			}
			if _, err := store.Stat(ctx, "lineage/seg-1"); !errors.Is(err, storage.ErrNotExist) {
				t.Errorf("Stat after Delete: err = %v, want ErrNotExist", err)
			}
			obj, err := client.GetObject(ctx, store.Bucket(), store.ObjectName("lineage/seg-1"), minio.GetObjectOptions{VersionID: versionID})
			if err != nil {
				t.Fatal(err)
			}
			defer obj.Close()
			var buf bytes.Buffer
			if _, err := buf.ReadFrom(obj); err != nil {
				t.Fatalf("read locked version after delete: %v", err)
			}
			if !bytes.Equal(buf.Bytes(), first) {
				t.Errorf("locked version = %q, want %q", buf.Bytes(), first)
			}

			if mode == s3.RetentionGovernance {
				// GOVERNANCE yields to a user allowed to bypass it (the
				// root user is); that is the difference from COMPLIANCE.
				err = client.RemoveObject(ctx, store.Bucket(), store.ObjectName("lineage/seg-1"), minio.RemoveObjectOptions{VersionID: versionID, GovernanceBypass: true})
				if err != nil {
					t.Errorf("governance bypass delete by root: %v", err)
				}
			}
		})
	}
}

func TestGetMissingBucketIsNotErrNotExist(t *testing.T) {
	_, cfg := s3test.Start(t)
	cfg.Bucket = "no-such-bucket"
	store, err := s3.New(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	_, err = store.Stat(t.Context(), "k")
	if !errors.Is(err, s3.ErrNoBucket) || errors.Is(err, storage.ErrNotExist) {
		t.Fatalf("Stat in a missing bucket: err = %v, want ErrNoBucket, not ErrNotExist", err)
	}
	rc, err := store.Get(t.Context(), "k")
	if err == nil {
		rc.Close()
	}
	if !errors.Is(err, s3.ErrNoBucket) || errors.Is(err, storage.ErrNotExist) {
		t.Fatalf("Get in a missing bucket: err = %v, want ErrNoBucket, not ErrNotExist", err)
	}
}

func TestBadCredentials(t *testing.T) {
	_, cfg := s3test.Start(t)
	cfg.SecretKey = "wrong"
	store, err := s3.New(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	err = store.Put(t.Context(), "k", strings.NewReader("x"), 1)
	if err == nil {
		t.Fatal("Put with a wrong secret succeeded")
	}
	if errors.Is(err, storage.ErrNotExist) {
		t.Fatalf("wrong secret reported as ErrNotExist: %v", err)
	}
}

func TestConfigValidate(t *testing.T) {
	ok := s3.Config{Endpoint: "127.0.0.1:9000", Bucket: "b"}
	for _, tc := range []struct {
		name    string
		mutate  func(*s3.Config)
		wantErr string // substring; "" for valid
	}{
		{"minimal", func(*s3.Config) {}, ""},
		{"full", func(c *s3.Config) {
			c.AccessKey, c.SecretKey, c.SessionToken = "a", "s", "t"
			c.SSE, c.KMSKeyID = s3.SSEKMS, "key-1"
			c.RetentionMode, c.RetentionDays = s3.RetentionCompliance, 30
		}, ""},
		{"no endpoint", func(c *s3.Config) { c.Endpoint = "" }, "endpoint is required"},
		{"endpoint with scheme", func(c *s3.Config) { c.Endpoint = "https://s3.example.com" }, "without scheme"},
		{"no bucket", func(c *s3.Config) { c.Bucket = "" }, "bucket is required"},
		{"access without secret", func(c *s3.Config) { c.AccessKey = "a" }, "together"},
		{"token without keys", func(c *s3.Config) { c.SessionToken = "t" }, "session token"},
		{"kms without key", func(c *s3.Config) { c.SSE = s3.SSEKMS }, "needs a kms key id"},
		{"key without kms", func(c *s3.Config) { c.SSE, c.KMSKeyID = s3.SSES3, "k" }, "kms key id set"},
		{"unknown sse", func(c *s3.Config) { c.SSE = "aes" }, `sse "aes"`},
		{"days without mode", func(c *s3.Config) { c.RetentionDays = 7 }, "without a retention mode"},
		{"mode without days", func(c *s3.Config) { c.RetentionMode = s3.RetentionGovernance }, "needs retention days"},
		{"lowercase mode", func(c *s3.Config) { c.RetentionMode, c.RetentionDays = "compliance", 1 }, "retention mode"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := ok
			tc.mutate(&c)
			err := c.Validate()
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				if _, err := s3.New(t.Context(), c); err != nil {
					t.Fatalf("New: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("Validate err = %v, want it to mention %q", err, tc.wantErr)
			}
			if _, err := s3.New(t.Context(), c); err == nil {
				t.Fatal("New accepted a config Validate refuses")
			}
		})
	}
}

func TestValidateReportsAllProblems(t *testing.T) {
	err := s3.Config{RetentionDays: 1}.Validate()
	for _, want := range []string{"endpoint", "bucket", "retention"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Validate err = %v, want it to mention %q", err, want)
		}
	}
}

func TestRetainer(t *testing.T) {
	_, cfg := s3test.Start(t)
	ctx := t.Context()
	plain, err := s3.New(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if on, err := plain.ObjectLock(ctx); err != nil || on {
		t.Errorf("ObjectLock of a plain bucket = %v, %v; want false", on, err)
	}
	if err := plain.Put(ctx, "k", strings.NewReader("x"), 1); err != nil {
		t.Fatal(err)
	}
	if mode, until, err := plain.Retention(ctx, "k"); err != nil || mode != "" || !until.IsZero() {
		t.Errorf("Retention of an unlocked object = %q, %v, %v; want none", mode, until, err)
	}

	c := cfg
	c.Bucket = s3test.LockedBucket
	c.Prefix = "retainer"
	unlocked, err := s3.New(ctx, c)
	if err != nil {
		t.Fatal(err)
	}
	if on, err := unlocked.ObjectLock(ctx); err != nil || !on {
		t.Errorf("ObjectLock of the locked bucket = %v, %v; want true", on, err)
	}
	// A bucket with Object Lock does not lock what is written without
	// retention: that is what verify must notice.
	if err := unlocked.Put(ctx, "bare", strings.NewReader("x"), 1); err != nil {
		t.Fatal(err)
	}
	if mode, _, err := unlocked.Retention(ctx, "bare"); err != nil || mode != "" {
		t.Errorf("Retention of an object written without retention = %q, %v; want none", mode, err)
	}
	c.RetentionMode, c.RetentionDays = s3.RetentionGovernance, 2
	locked, err := s3.New(ctx, c)
	if err != nil {
		t.Fatal(err)
	}
	before := time.Now()
	if err := locked.Put(ctx, "held", strings.NewReader("x"), 1); err != nil {
		t.Fatal(err)
	}
	mode, until, err := locked.Retention(ctx, "held")
	if err != nil || mode != s3.RetentionGovernance {
		t.Fatalf("Retention = %q, %v; want GOVERNANCE", mode, err)
	}
	if want := before.AddDate(0, 0, 2); until.Before(want.Add(-time.Minute)) || until.After(want.Add(time.Hour)) {
		t.Errorf("retained until %v, want about %v", until, want)
	}
	if _, _, err := locked.Retention(ctx, "missing"); !errors.Is(err, storage.ErrNotExist) {
		t.Errorf("Retention of a missing key: err = %v, want ErrNotExist", err)
	}
}
