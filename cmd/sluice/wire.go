package main

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/apache/arrow-go/v18/arrow"

	"github.com/sluice-dev/sluice/gpuexec"
	"github.com/sluice-dev/sluice/gpuexec/cuda"
	"github.com/sluice-dev/sluice/gpuexec/flight"
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
	// policies are the shipped (embedded) policies, used when policyDir is
	// empty; they cannot be reloaded.
	policies fs.FS
	// policyDir is a policy folder watched for changes (hot reload).
	policyDir      string
	reloadInterval time.Duration
	signingKey     ed25519.PrivateKey
	hashKey        []byte
	workers        int
	shutdownGrace  time.Duration
	logger         *slog.Logger
	// tune adjusts the Kafka source's configuration (tests, the demo).
	tune func(*kafka.Config)
}

// pipeline is one spec wired to real components.
type pipeline struct {
	spec         *transform.Spec
	runner       *transform.Runner
	source       *kafka.Source
	dlq          *kafka.DeadLetterWriter
	decider      policy.Decider // Revision() names the live policy
	reloader     *rego.Reloader // nil for the embedded policies
	sinks        map[string]storage.ObjectStore
	lineageStore storage.ObjectStore
	lineage      *lineage.Writer
	execs        []gpuexec.Executor
	costs        map[string]gpuexec.Cost // by executor id, from the spec
	workers      int                     // the runner's, as given
	closers      []func() error
}

// openPipeline builds every stage of spec. The caller must Close it, and
// Run the reloader (if any) for policy changes to be picked up.
func openPipeline(ctx context.Context, spec *transform.Spec, opts pipelineOptions) (p *pipeline, err error) {
	p = &pipeline{spec: spec, sinks: map[string]storage.ObjectStore{}, workers: opts.workers}
	defer func() {
		if err != nil {
			p.Close()
		}
	}()
	logger := opts.logger
	if logger == nil {
		logger = slog.Default()
	}

	if opts.policyDir != "" {
		// A policy folder is watched: a change is compiled and its Rego
		// tests run before it goes live; each batch is decided under one
		// revision (the runner pins a snapshot).
		if p.reloader, err = rego.NewReloader(ctx, rego.ReloaderConfig{
			Dir: opts.policyDir, Interval: opts.reloadInterval, Logger: logger,
		}); err != nil {
			return p, fmt.Errorf("load policy: %w", err)
		}
		p.decider = p.reloader
	} else {
		d, err := rego.New(ctx, rego.Config{FS: opts.policies})
		if err != nil {
			return p, fmt.Errorf("load policy: %w", err)
		}
		p.decider = policy.NewMemo(d)
	}

	costs := map[string]gpuexec.Cost{}
	for _, ex := range spec.Executors {
		e, err := openExecutor(ex, logger)
		if err != nil {
			return p, err
		}
		p.execs = append(p.execs, e)
		if c, ok := e.(interface{ Close() error }); ok {
			p.closers = append(p.closers, c.Close)
		}
		costs[ex.ID] = ex.Cost
	}
	p.costs = costs
	router := gpuexec.NewRouter(p.execs, gpuexec.RouterOptions{Logger: logger, Costs: costs})

	for _, s := range spec.Sinks {
		st, err := backend.Open(ctx, s.URL)
		if err != nil {
			return p, fmt.Errorf("sink %q: %w", s.Name, err)
		}
		if s.KafkaTopic != "" {
			// Real-time features: the sink's rows also go to a Kafka topic
			// in its location, before the batch's lineage is recorded.
			brokers := s.KafkaBrokers
			if len(brokers) == 0 {
				brokers = spec.Source.Brokers
			}
			fw, err := kafka.NewFeatureWriter(kafka.FeatureWriterConfig{Brokers: brokers, Security: spec.Source.Security})
			if err != nil {
				return p, fmt.Errorf("sink %q: features topic: %w", s.Name, err)
			}
			p.closers = append(p.closers, fw.Close)
			st = transform.WithFeatures(st, fw)
		}
		p.sinks[s.Name] = st
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

	dialer, err := kafka.Dialer(spec.Source.Security)
	if err != nil {
		return p, err
	}
	kcfg := kafka.Config{
		Brokers:        spec.Source.Brokers,
		Topic:          spec.Source.Topic,
		Group:          spec.Source.Group,
		StartOffset:    spec.Source.StartOffset,
		MaxRecords:     spec.Batching.MaxRecords,
		MaxBytes:       spec.Batching.MaxBytes,
		MaxRecordBytes: spec.Batching.MaxRecordBytes,
		Linger:         spec.Batching.Linger,
		Fields:         spec.IngestFields(),
		Logger:         logger,
		Dialer:         dialer,
	}
	if opts.tune != nil {
		opts.tune(&kcfg)
	}
	if p.source, err = kafka.NewSource(ctx, kcfg); err != nil {
		return p, err
	}
	if p.dlq, err = kafka.NewDeadLetterWriterWith(spec.Source.Brokers, spec.Source.DeadLetterTopic, spec.Source.Security); err != nil {
		return p, err
	}

	p.runner, err = transform.NewRunner(transform.RunnerConfig{
		Spec:          spec,
		Source:        p.source,
		Decider:       p.decider,
		Router:        router,
		Sinks:         p.sinks,
		DeadLetters:   p.dlq,
		Lineage:       p.lineage,
		HashKey:       opts.hashKey,
		Workers:       opts.workers,
		ShutdownGrace: opts.shutdownGrace,
		Logger:        logger,
	})
	return p, err
}

// openExecutor builds the executor a spec entry describes. A CUDA executor
// whose driver or device is absent is kept as an unavailable one: the
// router never picks it, and data only it may take waits rather than going
// elsewhere.
func openExecutor(ex transform.Executor, logger *slog.Logger) (gpuexec.Executor, error) {
	switch ex.Kind {
	case "", "cpu":
		return gpuexec.NewCPU(ex.ID, ex.Location, gpuexec.CPUOptions{}), nil
	case "cuda":
		c, err := cuda.New(ex.ID, ex.Location, cuda.Options{Devices: ex.Devices, Logger: logger})
		if errors.Is(err, gpuexec.ErrUnavailable) {
			logger.Warn("CUDA executor unavailable; the router will not pick it", "executor", ex.ID, "err", err)
			return unavailable{id: ex.ID, kind: "cuda", loc: ex.Location, err: err}, nil
		}
		return c, err
	case "remote":
		var token string
		if ex.TokenFile != "" {
			b, err := os.ReadFile(ex.TokenFile)
			if err != nil {
				return nil, fmt.Errorf("executor %q: token: %w", ex.ID, err)
			}
			token = strings.TrimSpace(string(b))
		}
		return flight.NewClient(ex.Endpoint, flight.ClientOptions{ID: ex.ID, Location: ex.Location, Token: token, Timeout: ex.Timeout})
	}
	return nil, fmt.Errorf("executor %q: unknown kind %q", ex.ID, ex.Kind)
}

// unavailable stands in for an executor that could not start.
type unavailable struct {
	id, kind string
	loc      gpuexec.Location
	err      error
}

func (u unavailable) ID() string                    { return u.id }
func (u unavailable) Kind() string                  { return u.kind }
func (u unavailable) Location() gpuexec.Location    { return u.loc }
func (u unavailable) Healthy(context.Context) error { return u.err }
func (u unavailable) Execute(context.Context, *gpuexec.Plan, arrow.RecordBatch) (arrow.RecordBatch, error) {
	return nil, u.err
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
	for _, c := range p.closers {
		_ = c()
	}
}
