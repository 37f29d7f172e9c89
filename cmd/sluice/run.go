package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	"github.com/sluice-dev/sluice/ingest/kafka"
	"github.com/sluice-dev/sluice/lineage"
	"github.com/sluice-dev/sluice/transform"
)

func cmdRun(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("run", "run -f SPEC --signing-key FILE --hash-key-file FILE [flags]",
		`Runs a pipeline until interrupted (SIGINT or SIGTERM): consumes the spec's
topic as a member of its consumer group, decides, routes, executes, writes
Parquet and lineage, and commits each batch's offsets once all of it is
durable. Start more replicas with the same spec to share the partitions.

Secrets: --signing-key is the ed25519 lineage signing key (PEM PKCS#8; the
spec's lineage.signing_key when not given; created if missing) and
--hash-key-file holds the key that pseudonymises hashed columns (at least 16
bytes; keep it stable, or pseudonyms change). S3 credentials come from
AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY.

Example:
  sluice run -f pipeline.yaml --hash-key-file /etc/sluice/hash.key
`, stderr)
	file := fs.String("f", "", "pipeline spec `file`")
	signing := fs.String("signing-key", "", "lineage signing key `file` (default: the spec's lineage.signing_key)")
	hashFile := fs.String("hash-key-file", "", "pseudonymisation key `file` (required)")
	policyDir := fs.String("policies", "", "policy `dir`ectory (default: the shipped policies)")
	workers := fs.Int("workers", 4, "partitions processed at once")
	every := fs.Duration("progress", 10*time.Second, "log progress this often (0: never)")
	session := fs.Duration("session-timeout", 10*time.Second, "Kafka consumer-group session timeout: how long the group waits for a silent member before giving its partitions to others (at least 6s)")
	grace := fs.Duration("shutdown-grace", 10*time.Second, "on SIGTERM, how long batches in progress may take to finish before they are abandoned (not committed)")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *file == "" {
		return fmt.Errorf("%w: run needs -f SPEC", errUsage)
	}
	spec, err := transform.Load(*file)
	if err != nil {
		return err
	}
	keyPath := *signing
	if keyPath == "" {
		keyPath = spec.Lineage.SigningKey
	}
	if keyPath == "" {
		return fmt.Errorf("%w: no lineage signing key: set lineage.signing_key in the spec or pass --signing-key", errUsage)
	}
	key, err := lineage.LoadOrCreateKey(keyPath)
	if err != nil {
		return err
	}
	if *hashFile == "" {
		return fmt.Errorf("%w: run needs --hash-key-file (the pseudonymisation key)", errUsage)
	}
	hashKey, err := os.ReadFile(*hashFile)
	if err != nil {
		return err
	}
	if len(hashKey) < 16 {
		return fmt.Errorf("%w: %s holds %d bytes; a pseudonymisation key needs at least 16", errUsage, *hashFile, len(hashKey))
	}
	logger := slog.New(slog.NewJSONHandler(stderr, nil))
	p, err := openPipeline(ctx, spec, pipelineOptions{
		policies: policySource(*policyDir), signingKey: key, hashKey: hashKey, workers: *workers, logger: logger, shutdownGrace: *grace,
		tune: func(c *kafka.Config) {
			c.SessionTimeout = *session
			if c.HeartbeatInterval = *session / 5; c.HeartbeatInterval < time.Second {
				c.HeartbeatInterval = time.Second
			}
			c.JoinGroupBackoff = time.Second
		},
	})
	if err != nil {
		return err
	}
	defer p.Close()
	logger.Info("running", "pipeline", spec.Name, "topic", spec.Source.Topic, "group", spec.Source.Group,
		"policy_revision", p.memo.Revision())
	if *every > 0 {
		go func() {
			t := time.NewTicker(*every)
			defer t.Stop()
			for {
				select {
				case <-ctx.Done():
					return
				case <-t.C:
					s := p.runner.Stats()
					logger.Info("progress", "records", s.Records, "feature_rows", s.FeatureRows,
						"dead_letters", s.DeadLetters, "quarantined", s.Quarantined, "lag", p.source.Lag(), "stalls", s.Stalls)
				}
			}
		}()
	}
	err = p.runner.Run(ctx)
	s := p.runner.Stats()
	logger.Info("stopped", "records", s.Records, "feature_rows", s.FeatureRows, "dead_letters", s.DeadLetters,
		"quarantined", s.Quarantined)
	return err
}
