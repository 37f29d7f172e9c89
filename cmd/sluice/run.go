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
	"github.com/sluice-dev/sluice/storage"
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

Policy: without --policies the shipped policies are used. With --policies DIR
the folder is watched: a change is compiled and its Rego tests run before it
goes live (a broken revision is rejected and the old one stays), and each
batch is decided under one revision from start to end.

Operations: --http ADDR serves /metrics, /healthz, /readyz, the lineage API
and the auditor's page (see 'sluice serve -h'); beyond loopback it needs
--token-file. --replay-from re-reads the topic from a time (RFC 3339) by
moving the group's committed offsets first; stop the other replicas before.

Example:
  sluice run -f pipeline.yaml --hash-key-file /etc/sluice/hash.key --http :8080 --token-file /etc/sluice/admin.tokens
`, stderr)
	file := fs.String("f", "", "pipeline spec `file`")
	signing := fs.String("signing-key", "", "lineage signing key `file` (default: the spec's lineage.signing_key)")
	hashFile := fs.String("hash-key-file", "", "pseudonymisation key `file` (required)")
	policyDir := fs.String("policies", "", "policy `dir`ectory, watched for changes (default: the shipped policies, fixed)")
	reload := fs.Duration("policy-reload", 5*time.Second, "how often --policies is checked for changes")
	workers := fs.Int("workers", 4, "batches processed at once")
	httpAddr := fs.String("http", "", "serve metrics, health, the lineage API and the page on `ADDR` (e.g. 127.0.0.1:8080)")
	tokenFile := fs.String("token-file", "", "admin bearer tokens for --http, one per line")
	auditorFile := fs.String("auditor-token-file", "", "auditor bearer tokens for --http (lineage API and page only)")
	replayFrom := fs.String("replay-from", "", "re-read the topic from this `time` (RFC 3339) before running")
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
	var from time.Time
	if *replayFrom != "" {
		if from, err = time.Parse(time.RFC3339, *replayFrom); err != nil {
			return fmt.Errorf("%w: --replay-from: %v", errUsage, err)
		}
	}
	if *httpAddr != "" && *tokenFile == "" && !loopback(*httpAddr) {
		return fmt.Errorf("%w: --http %s is reachable beyond this machine; give --token-file", errUsage, *httpAddr)
	}
	logger := slog.New(slog.NewJSONHandler(stderr, nil))
	p, err := openPipeline(ctx, spec, pipelineOptions{
		policies: policySource(""), policyDir: *policyDir, reloadInterval: *reload,
		signingKey: key, hashKey: hashKey, workers: *workers, logger: logger, shutdownGrace: *grace,
		tune: func(c *kafka.Config) {
			if !from.IsZero() {
				c.StartTime, c.ResetToTime = from, true
			}
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
	if p.reloader != nil {
		go func() { _ = p.reloader.Run(ctx) }()
	}
	waitHTTP := func() error { return nil }
	if *httpAddr != "" {
		admins, auditors, err := readTokenFiles(*tokenFile, *auditorFile)
		if err != nil {
			return err
		}
		var sink storage.ObjectStore
		for _, st := range p.sinks {
			sink = st
			break
		}
		h := newHTTPServer(httpOptions{
			Store:  p.lineageStore,
			Prefix: lineagePrefix,
			Metrics: &metricsSource{Runner: p.runner.Stats, Source: p.source.Stats, Executors: p.execs,
				PolicyRevision: p.decider.Revision},
			Ready: []readinessCheck{readyBrokers(spec.Source.Brokers), readyStoreWritable("sink", sink, "_sluice/readyz"),
				readyPolicy(p.decider.Revision), readyExecutors(p.execs)},
			AdminTokens: admins, AuditorTokens: auditors, Logger: logger,
			Commits: specCommits(spec, true),
		})
		addr, wait, err := startHTTP(ctx, *httpAddr, h, logger)
		if err != nil {
			return err
		}
		logger.Info("serving HTTP", "addr", addr.String())
		waitHTTP = wait
	}
	logger.Info("running", "pipeline", spec.Name, "topic", spec.Source.Topic, "group", spec.Source.Group,
		"policy_revision", p.decider.Revision())
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
	if herr := waitHTTP(); err == nil {
		err = herr
	}
	return err
}

// readTokenFiles reads the admin and auditor token files (either may be
// empty).
func readTokenFiles(admin, auditor string) (admins, auditors []string, err error) {
	if admins, err = readTokens(admin); err != nil {
		return nil, nil, err
	}
	if auditors, err = readTokens(auditor); err != nil {
		return nil, nil, err
	}
	return admins, auditors, nil
}
