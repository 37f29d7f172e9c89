package main

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/sluice-dev/sluice/lineage"
	"github.com/sluice-dev/sluice/storage"
	"github.com/sluice-dev/sluice/storage/backend"
	"github.com/sluice-dev/sluice/storage/s3"
	"github.com/sluice-dev/sluice/storage/s3/s3test"
)

// TestDemoOnS3 runs the demo path against a real S3 server (the Versity S3
// Gateway on loopback): features and quarantine in one bucket, lineage in a
// bucket with Object Lock, every segment written under retention.
func TestDemoOnS3(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test against an S3 server")
	}
	endpoint, cfg := s3test.Start(t)
	t.Setenv("AWS_ACCESS_KEY_ID", cfg.AccessKey)
	t.Setenv("AWS_SECRET_ACCESS_KEY", cfg.SecretKey)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	lineageURL := "s3://" + s3test.LockedBucket + "/audit?endpoint=" + endpoint + "&retention_mode=GOVERNANCE&retention_days=1"
	sum, err := runDemo(ctx, demoOptions{
		dir: t.TempDir(), events: 4000, partitions: 4, seed: 3,
		sinkURL:    func(sink string) string { return "s3://" + s3test.Bucket + "/" + sink + "?endpoint=" + endpoint },
		lineageURL: lineageURL,
	})
	if err != nil {
		t.Fatal(err)
	}
	if sum.RecordsIn != 4000 || sum.FeatureRows+sum.DeadLetters+sum.Quarantined != 4000 || !sum.Verified {
		t.Fatalf("summary %+v", sum)
	}

	// The feature rows are in the bucket, as Parquet that reads back.
	features, err := backend.Open(ctx, "s3://"+s3test.Bucket+"?endpoint="+endpoint)
	if err != nil {
		t.Fatal(err)
	}
	var rows int64
	err = features.Iter(ctx, "", func(key string) error {
		if strings.Contains(key, "/quarantine/") || !strings.HasSuffix(key, ".parquet") {
			return nil
		}
		tbl, err := storage.ReadParquet(ctx, features, key, nil)
		if err != nil {
			return err
		}
		rows += tbl.NumRows()
		tbl.Release()
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if rows != sum.FeatureRows {
		t.Fatalf("bucket holds %d feature rows, summary says %d", rows, sum.FeatureRows)
	}

	// Every lineage segment carries Object Lock retention, and verify
	// passes when read back from the server.
	locked := cfg
	locked.Bucket = s3test.LockedBucket
	st, err := s3.New(ctx, locked)
	if err != nil {
		t.Fatal(err)
	}
	segments := 0
	err = st.Iter(ctx, "audit/lineage/", func(key string) error {
		if !strings.HasSuffix(key, ".ndjson") {
			return nil
		}
		segments++
		info, err := st.Client().StatObject(ctx, st.Bucket(), st.ObjectName(key), minio.StatObjectOptions{})
		if err != nil {
			return err
		}
		if mode := info.Metadata.Get("X-Amz-Object-Lock-Mode"); mode != "GOVERNANCE" {
			t.Errorf("%s: object lock mode %q, want GOVERNANCE", key, mode)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if segments == 0 {
		t.Fatal("no lineage segment in the locked bucket")
	}
	lst, err := backend.Open(ctx, lineageURL)
	if err != nil {
		t.Fatal(err)
	}
	rep, err := lineage.Verify(ctx, lst, lineagePrefix, nil)
	if err != nil || !rep.OK || rep.Segments != segments {
		t.Fatalf("verify on S3: %+v, %v (segments listed %d)", rep, err, segments)
	}
}
