package main

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	kafkago "github.com/segmentio/kafka-go"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluice-dev/sluice/deploy/examples"
	"github.com/sluice-dev/sluice/ingest/kafka"
	"github.com/sluice-dev/sluice/lineage"
	"github.com/sluice-dev/sluice/policies"
	"github.com/sluice-dev/sluice/transform"
)

const demoHelp = `Runs the main job end to end with nothing installed: it starts a Kafka-protocol
broker on loopback (kfake, spoken to by the real kafka-go client over TCP),
creates the topic (4 partitions), produces a mixed stream of card
transactions (DE, FR, US, IN, BR; pii and financial columns) and clinical
events (phi) with about 0.5% malformed records, and runs the pipeline of
deploy/examples/demo.yaml with the shipped policies and two CPU executors:
on-prem Frankfurt (DE) and cloud us-east-1 (US). EU and PHI data stay on-prem,
US card data goes to the cloud with user ids pseudonymised, and IN and BR
data, which must stay in-country, is quarantined.

It stops when every record is committed, verifies the lineage, and prints a
summary and the commands to inspect the output, which stays in DIR. A
previous demo's output in DIR is removed first (the embedded broker starts
empty each run, so its lineage would not match); the keys in DIR/keys stay.

Examples:
  sluice demo --dir .demo
  sluice demo --events 20000 -o json
`

// demoOptions are the demo's knobs.
type demoOptions struct {
	dir        string
	events     int
	partitions int
	seed       uint64
	progress   io.Writer // nil: no progress line
	// progressLines prints a progress line every 2s instead of rewriting
	// one line in place (for logs and pipes, not terminals).
	progressLines bool
	logger        *slog.Logger
	// sinkURL and lineageURL, when set, replace the folders under dir
	// (tests point them at an S3 server).
	sinkURL    func(sink string) string
	lineageURL string
}

// demoSummary is what the demo prints; its JSON form is the -o json output.
type demoSummary struct {
	RecordsIn      int64            `json:"records_in"`
	FeatureRows    int64            `json:"feature_rows"`
	DeadLetters    int64            `json:"dead_letters"`
	Quarantined    int64            `json:"quarantined"`
	LineageEvents  int64            `json:"lineage_events"`
	Verified       bool             `json:"verified"`
	VerifyProblems []string         `json:"verify_problems,omitempty"`
	RowsByExecutor map[string]int64 `json:"rows_by_executor"`
	RowsByLocation map[string]int64 `json:"rows_by_location"`
	// QuarantineReasons counts quarantined rows per reason.
	QuarantineReasons map[string]int64 `json:"quarantine_reasons"`
	// FeaturesPublished counts the messages on each real-time features
	// topic.
	FeaturesPublished map[string]int64 `json:"features_published"`
	Produced          int              `json:"produced"`
	Malformed         int              `json:"malformed_produced"`
	Committed         int64            `json:"committed"`
	ElapsedSeconds    float64          `json:"elapsed_seconds"`
	RecordsPerSecond  float64          `json:"records_per_second"`
	Dir               string           `json:"dir"`
	Topic             string           `json:"topic"`
	Pipeline          string           `json:"pipeline"`
	PolicyRevision    string           `json:"policy_revision"`
}

func cmdDemo(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("demo", "demo [--dir DIR] [--events N] [-o json]", demoHelp, stderr)
	dir := fs.String("dir", "", "keep the object store (features, quarantine, lineage, keys) in `DIR`; default: a temporary folder, removed at exit")
	events := fs.Int("events", 200_000, "number of events to produce")
	seed := fs.Uint64("seed", 1, "random seed of the generated stream")
	quiet := fs.Bool("q", false, "no progress line")
	var out outputFlag
	out.register(fs)
	asJSON, err := parseOutput(fs, &out, args)
	if err != nil {
		return err
	}
	if *events < 1 {
		return fmt.Errorf("%w: --events must be at least 1", errUsage)
	}
	keep := *dir != ""
	if !keep {
		if *dir, err = os.MkdirTemp("", "sluice-demo-"); err != nil {
			return err
		}
		defer os.RemoveAll(*dir)
	}
	opts := demoOptions{dir: *dir, events: *events, partitions: 4, seed: *seed,
		logger: slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))}
	if !*quiet {
		opts.progress = stderr
		opts.progressLines = !isTerminal(stderr)
	}
	sum, err := runDemo(ctx, opts)
	if err != nil {
		return err
	}
	if asJSON {
		writeJSON(stdout, sum)
	} else {
		printDemoSummary(stdout, sum, keep)
	}
	if !sum.Verified || sum.RecordsIn != sum.FeatureRows+sum.DeadLetters+sum.Quarantined {
		return errFailed
	}
	return nil
}

// runDemo runs the whole demo and returns its summary.
func runDemo(ctx context.Context, o demoOptions) (*demoSummary, error) {
	start := time.Now()
	dir, err := filepath.Abs(o.dir)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	spec, err := demoSpec(dir)
	if err != nil {
		return nil, err
	}
	// The embedded broker starts empty on every run, its offsets at 0, so
	// a previous run's features and lineage in dir would make every batch
	// look recorded already. They go; the keys stay.
	var previous []string
	subs := []string{"lineage"}
	for _, sk := range spec.Sinks {
		subs = append(subs, sk.Name)
	}
	for _, sub := range subs {
		p := filepath.Join(dir, sub)
		if _, err := os.Stat(p); err == nil {
			previous = append(previous, p)
		}
	}
	if len(previous) > 0 {
		if o.progress != nil {
			fmt.Fprintf(o.progress, "removing the previous demo's output in %s (the embedded broker starts empty each run)\n", dir)
		}
		for _, p := range previous {
			if err := os.RemoveAll(p); err != nil {
				return nil, err
			}
		}
	}
	if o.sinkURL != nil {
		for i := range spec.Sinks {
			spec.Sinks[i].URL = o.sinkURL(spec.Sinks[i].Name)
		}
	}
	if o.lineageURL != "" {
		spec.Lineage.URL = o.lineageURL
	}

	cluster, err := kfake.NewCluster(kfake.NumBrokers(1),
		kfake.SeedTopics(int32(o.partitions), demoTopics(spec)...))
	if err != nil {
		return nil, fmt.Errorf("start embedded Kafka: %w", err)
	}
	defer cluster.Close()
	brokers := cluster.ListenAddrs()
	spec.Source.Brokers = brokers

	if o.progress != nil {
		fmt.Fprintf(o.progress, "producing %d events to %s on %s (%d partitions)...\n", o.events, spec.Source.Topic, brokers[0], o.partitions)
	}
	malformed, ends, err := produceDemo(ctx, brokers, spec.Source.Topic, o)
	if err != nil {
		return nil, err
	}

	signing, err := lineage.LoadOrCreateKey(filepath.Join(dir, "keys", "lineage.key"))
	if err != nil {
		return nil, err
	}
	hashKey, err := loadOrCreateSecret(filepath.Join(dir, "keys", "pseudonym.key"))
	if err != nil {
		return nil, err
	}
	p, err := openPipeline(ctx, spec, pipelineOptions{
		policies: policies.FS, signingKey: signing, hashKey: hashKey, logger: o.logger,
		tune: fastJoin,
	})
	if err != nil {
		return nil, err
	}
	defer p.Close()

	total := int64(o.events)
	var tick func(committed int64)
	if o.progress != nil {
		var last time.Time
		tick = func(committed int64) {
			if o.progressLines && time.Since(last) < 2*time.Second {
				return
			}
			last = time.Now()
			s := p.runner.Stats()
			el := time.Since(start).Seconds()
			line := fmt.Sprintf("committed %d/%d (%3.0f%%)  features %d  dead letters %d  quarantined %d  %.0f rec/s",
				committed, total, 100*float64(committed)/float64(total), s.FeatureRows, s.DeadLetters, s.Quarantined, float64(s.Records)/el)
			if o.progressLines {
				fmt.Fprintln(o.progress, line)
			} else {
				fmt.Fprintf(o.progress, "\r%s   ", line)
			}
		}
	}
	committed, err := drain(ctx, p.runner.Run, p.source, ends, tick)
	if o.progress != nil && !o.progressLines {
		fmt.Fprintln(o.progress)
	}
	if err != nil {
		return nil, err
	}
	elapsed := time.Since(start)
	s := p.runner.Stats()

	published := map[string]int64{}
	for _, t := range demoTopics(spec)[2:] {
		if published[t], err = topicSize(ctx, brokers[0], t, o.partitions); err != nil {
			return nil, err
		}
	}
	// As an auditor would with --spec: every offset the group committed
	// must be in the lineage (the commits first, then the trail).
	commits, err := specCommits(spec, false)(ctx)
	if err != nil {
		return nil, fmt.Errorf("verify lineage: %w", err)
	}
	rep, err := lineage.VerifyWith(ctx, p.lineageStore, lineagePrefix, lineage.VerifyOptions{Commits: commits})
	if err != nil {
		return nil, fmt.Errorf("verify lineage: %w", err)
	}
	return &demoSummary{
		RecordsIn: s.Records, FeatureRows: s.FeatureRows, DeadLetters: s.DeadLetters, Quarantined: s.Quarantined,
		LineageEvents: s.LineageEvents, Verified: rep.OK, VerifyProblems: rep.Problems,
		RowsByExecutor: s.RowsByExecutor, RowsByLocation: s.RowsByLocation, QuarantineReasons: s.QuarantineReasons,
		FeaturesPublished: published,
		Produced:          o.events, Malformed: malformed, Committed: committed,
		ElapsedSeconds: elapsed.Seconds(), RecordsPerSecond: float64(s.Records) / elapsed.Seconds(),
		Dir: dir, Topic: spec.Source.Topic, Pipeline: spec.Name, PolicyRevision: p.decider.Revision(),
	}, nil
}

// drain runs run until the source has committed every partition up to its
// end offset in ends, calling tick (if not nil) a few times a second with
// the committed count. It returns the committed count.
func drain(ctx context.Context, run func(context.Context) error, src *kafka.Source, ends map[int]int64, tick func(int64)) (int64, error) {
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	runErr := make(chan error, 1)
	go func() { runErr <- run(runCtx) }()
	// Polled every 10ms, so that a benchmark's clock stops within 10ms of
	// the last commit; tick is called every 100ms.
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	var polls int
	for {
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case err := <-runErr:
			if err == nil {
				err = errors.New("pipeline stopped early")
			}
			return 0, err
		case <-t.C:
		}
		st := src.Stats()
		var committed int64
		done := true
		for part, end := range ends {
			c := st.Committed[part]
			committed += min(c, end)
			if c < end {
				done = false
			}
		}
		if polls++; tick != nil && polls%10 == 0 {
			tick(committed)
		}
		if done {
			stop()
			return committed, <-runErr
		}
	}
}

// topicSize counts the messages of a topic (its partitions' end offsets).
func topicSize(ctx context.Context, broker, topic string, partitions int) (int64, error) {
	var n int64
	for part := range partitions {
		conn, err := kafkago.DialLeader(ctx, "tcp", broker, topic, part)
		if err != nil {
			return 0, err
		}
		end, err := conn.ReadLastOffset()
		conn.Close()
		if err != nil {
			return 0, err
		}
		n += end
	}
	return n, nil
}

// demoTopics lists the topics the demo's broker must have: the source,
// its dead letters, and every features topic.
func demoTopics(spec *transform.Spec) []string {
	ts := []string{spec.Source.Topic, spec.Source.DeadLetterTopic}
	for _, s := range spec.Sinks {
		if s.KafkaTopic != "" {
			ts = append(ts, s.KafkaTopic)
		}
	}
	return ts
}

// demoSpec loads the embedded demo spec and points its stores at dir.
func demoSpec(dir string) (*transform.Spec, error) {
	raw, err := examples.FS.ReadFile("demo.yaml")
	if err != nil {
		return nil, err
	}
	spec, err := transform.Parse("deploy/examples/demo.yaml", raw)
	if err != nil {
		return nil, err
	}
	for i := range spec.Sinks {
		spec.Sinks[i].URL = "file://" + filepath.Join(dir, spec.Sinks[i].Name)
	}
	spec.Lineage.URL = "file://" + dir
	return spec, nil
}

// produceDemo writes the generated stream and returns how many records
// were malformed and the end offset of every partition. The producer is
// franz-go's (the embedded broker's own client library): it is only the
// demo's load generator; sluice itself consumes with kafka-go.
func produceDemo(ctx context.Context, brokers []string, topic string, o demoOptions) (int, map[int]int64, error) {
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.DefaultProduceTopic(topic),
		kgo.RequiredAcks(kgo.AllISRAcks()), kgo.ProducerLinger(5*time.Millisecond),
		kgo.RecordPartitioner(kgo.StickyKeyPartitioner(nil)))
	if err != nil {
		return 0, nil, err
	}
	defer cl.Close()
	gen := newGenerator(o.seed, o.events)
	malformed := 0
	ends := map[int]int64{}
	var mu sync.Mutex
	var firstErr error
	var wg sync.WaitGroup
	for i := 0; i < o.events; i++ {
		ev := gen.next()
		if ev.malformed {
			malformed++
		}
		wg.Add(1)
		cl.Produce(ctx, &kgo.Record{Key: ev.key, Value: ev.value, Timestamp: ev.time}, func(r *kgo.Record, err error) {
			mu.Lock()
			if err != nil && firstErr == nil {
				firstErr = err
			}
			if err == nil && r.Offset+1 > ends[int(r.Partition)] {
				ends[int(r.Partition)] = r.Offset + 1
			}
			mu.Unlock()
			wg.Done()
		})
	}
	wg.Wait()
	if firstErr != nil {
		return 0, nil, fmt.Errorf("produce demo events: %w", firstErr)
	}
	return malformed, ends, nil
}

// loadOrCreateSecret reads a 32-byte key, creating it on first use, so
// pseudonyms stay the same across runs over the same folder.
func loadOrCreateSecret(path string) ([]byte, error) {
	if b, err := os.ReadFile(path); err == nil && len(b) == 32 {
		return b, nil
	}
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, err
	}
	return b, os.WriteFile(path, b, 0o600)
}

func printDemoSummary(w io.Writer, s *demoSummary, kept bool) {
	fmt.Fprintf(w, "\nsluice demo: pipeline %q on topic %q\n\n", s.Pipeline, s.Topic)
	fmt.Fprintf(w, "  records in        %9d   (%d produced, %d of them malformed)\n", s.RecordsIn, s.Produced, s.Malformed)
	fmt.Fprintf(w, "  feature rows      %9d\n", s.FeatureRows)
	for _, id := range slices.Sorted(maps.Keys(s.RowsByExecutor)) {
		fmt.Fprintf(w, "    executor %-22s %9d\n", id, s.RowsByExecutor[id])
	}
	for _, loc := range slices.Sorted(maps.Keys(s.RowsByLocation)) {
		fmt.Fprintf(w, "    location %-22s %9d\n", loc, s.RowsByLocation[loc])
	}
	for _, t := range slices.Sorted(maps.Keys(s.FeaturesPublished)) {
		fmt.Fprintf(w, "    published to %-18s %9d   (real-time features topic)\n", t, s.FeaturesPublished[t])
	}
	fmt.Fprintf(w, "  dead letters      %9d\n", s.DeadLetters)
	fmt.Fprintf(w, "  quarantined       %9d\n", s.Quarantined)
	reasons := slices.SortedFunc(maps.Keys(s.QuarantineReasons), func(a, b string) int {
		return int(s.QuarantineReasons[b] - s.QuarantineReasons[a])
	})
	for i, r := range reasons {
		if i == 3 {
			break
		}
		fmt.Fprintf(w, "    %7d  %s\n", s.QuarantineReasons[r], r)
	}
	balance := "balances"
	if s.RecordsIn != s.FeatureRows+s.DeadLetters+s.Quarantined {
		balance = "DOES NOT BALANCE"
	}
	fmt.Fprintf(w, "  records in = feature rows + dead letters + quarantined: %s\n", balance)
	verdict := "verified (signatures, hash chains, every offset accounted for, every commit recorded)"
	if !s.Verified {
		verdict = "FAILED: " + strings.Join(s.VerifyProblems, "; ")
	}
	fmt.Fprintf(w, "  lineage events    %9d   %s\n", s.LineageEvents, verdict)
	fmt.Fprintf(w, "  offsets committed %9d\n", s.Committed)
	fmt.Fprintf(w, "  elapsed           %8.1fs   %.0f records/s\n", s.ElapsedSeconds, s.RecordsPerSecond)
	fmt.Fprintf(w, "  policy revision   %s\n\n", s.PolicyRevision)
	if !kept {
		fmt.Fprintln(w, "The output was in a temporary folder; run 'sluice demo --dir DIR' to keep it.")
		return
	}
	store := "file://" + s.Dir
	fmt.Fprintf(w, "Inspect the output (kept in %s):\n", s.Dir)
	fmt.Fprintf(w, "  sluice lineage verify --store %s\n", store)
	fmt.Fprintf(w, "  sluice lineage report --store %s\n", store)
	fmt.Fprintf(w, "  sluice lineage trace  --store %s --topic %s --partition 0 --offset 42\n", store, s.Topic)
	fmt.Fprintf(w, "  find %s -name '*.parquet' | head\n", s.Dir)
	fmt.Fprintf(w, "  duckdb -c \"SELECT location, count(*) FROM read_parquet('%s/*/pipeline=*/**/*.parquet', hive_partitioning=true) GROUP BY 1\"\n", s.Dir)
}

// isTerminal reports whether w is a terminal (a character device).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}
