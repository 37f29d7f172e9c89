package main

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"time"

	"github.com/sluice-dev/sluice/gpuexec"
	"github.com/sluice-dev/sluice/ingest/kafka"
	"github.com/sluice-dev/sluice/lineage"
	"github.com/sluice-dev/sluice/policy"
	"github.com/sluice-dev/sluice/policy/rego"
	"github.com/sluice-dev/sluice/storage"
	"github.com/sluice-dev/sluice/storage/backend"
	"github.com/sluice-dev/sluice/transform"
)

// lineagePrefix is where lineage lives inside the lineage store.
const lineagePrefix = "lineage"

// pipelineOptions are the parts of a pipeline that do not come from its
// spec: secrets, the policy, and tuning.
type pipelineOptions struct {
	policies      fs.FS
	signingKey    ed25519.PrivateKey
	hashKey       []byte
	workers       int
	shutdownGrace time.Duration
	logger        *slog.Logger
	// tune adjusts the Kafka source's configuration (tests, the demo).
	tune func(*kafka.Config)
}

// pipeline is one spec wired to real components.
type pipeline struct {
	spec         *transform.Spec
	runner       *transform.Runner
	source       *kafka.Source
	dlq          *kafka.DeadLetterWriter
	memo         *policy.Memo
	lineageStore storage.ObjectStore
	lineage      *lineage.Writer
	execs        []*gpuexec.CPU
}

// openPipeline builds every stage of spec. The caller must Close it.
func openPipeline(ctx context.Context, spec *transform.Spec, opts pipelineOptions) (p *pipeline, err error) {
	p = &pipeline{spec: spec}
	defer func() {
		if err != nil {
			p.Close()
		}
	}()
	logger := opts.logger
	if logger == nil {
		logger = slog.Default()
	}

	d, err := rego.New(ctx, rego.Config{FS: opts.policies})
	if err != nil {
		return p, fmt.Errorf("load policy: %w", err)
	}
	p.memo = policy.NewMemo(d)

	var execs []gpuexec.Executor
	for _, ex := range spec.Executors {
		if ex.Kind != "cpu" {
			return p, fmt.Errorf("executor %q: kind %q is not available in this build yet; use kind: cpu", ex.ID, ex.Kind)
		}
		c := gpuexec.NewCPU(ex.ID, ex.Location, gpuexec.CPUOptions{})
		p.execs = append(p.execs, c)
		execs = append(execs, c)
	}
	router := gpuexec.NewRouter(execs, gpuexec.RouterOptions{Logger: logger})

	sinks := map[string]storage.ObjectStore{}
	for _, s := range spec.Sinks {
		st, err := backend.Open(ctx, s.URL)
		if err != nil {
			return p, fmt.Errorf("sink %q: %w", s.Name, err)
		}
		sinks[s.Name] = st
	}
	if p.lineageStore, err = backend.Open(ctx, spec.Lineage.URL); err != nil {
		return p, fmt.Errorf("lineage store: %w", err)
	}
	if opts.signingKey == nil {
		return p, errors.New("no lineage signing key")
	}
	p.lineage, err = lineage.NewWriter(p.lineageStore, lineage.WriterConfig{
		Prefix: lineagePrefix, Pipeline: spec.Name, Key: opts.signingKey,
	})
	if err != nil {
		return p, err
	}
	if err := p.lineage.PublishKey(ctx); err != nil {
		return p, fmt.Errorf("publish lineage key: %w", err)
	}

	kcfg := kafka.Config{
		Brokers:     spec.Source.Brokers,
		Topic:       spec.Source.Topic,
		Group:       spec.Source.Group,
		StartOffset: spec.Source.StartOffset,
		MaxRecords:  spec.Batching.MaxRecords,
		MaxBytes:    spec.Batching.MaxBytes,
		Linger:      spec.Batching.Linger,
		Fields:      spec.IngestFields(),
		Logger:      logger,
	}
	if opts.tune != nil {
		opts.tune(&kcfg)
	}
	if p.source, err = kafka.NewSource(ctx, kcfg); err != nil {
		return p, err
	}
	p.dlq = kafka.NewDeadLetterWriter(spec.Source.Brokers, spec.Source.DeadLetterTopic)

	p.runner, err = transform.NewRunner(transform.RunnerConfig{
		Spec:          spec,
		Source:        p.source,
		Decider:       p.memo,
		Router:        router,
		Sinks:         sinks,
		DeadLetters:   p.dlq,
		Lineage:       p.lineage,
		HashKey:       opts.hashKey,
		Workers:       opts.workers,
		ShutdownGrace: opts.shutdownGrace,
		Logger:        logger,
	})
	return p, err
}

// Close stops fetching and releases the connections. Batches not acked by
// then are not committed.
func (p *pipeline) Close() {
	if p.source != nil {
		_ = p.source.Close()
	}
	if p.dlq != nil {
		_ = p.dlq.Close()
	}
	for _, c := range p.execs {
		_ = c.Close()
	}
}
