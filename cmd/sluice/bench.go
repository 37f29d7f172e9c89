package main

import (
	"bufio"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/sluice-dev/sluice/gpuexec"
	"github.com/sluice-dev/sluice/ingest/kafka"
	"github.com/sluice-dev/sluice/lineage"
	"github.com/sluice-dev/sluice/policies"
	"github.com/sluice-dev/sluice/policy"
	"github.com/sluice-dev/sluice/storage/s3"
	"github.com/sluice-dev/sluice/transform"
)

const benchHelp = `Measures the whole pipeline end to end on this machine: N demo records
(about 200 bytes, 11 fields) are loaded into an embedded broker before the
clock starts, then consumed through every stage (decode, OPA decisions,
routing, pseudonymisation, CPU features, Parquet, signed lineage, commits)
into a folder store, and, in the same run, through a minimal pipeline
without policy and lineage (everything allowed on one executor, lineage
discarded), so the figures are ratios. The two run in turns (--repeat
pairs, default 5) so that a slow spell of a shared machine hits both;
single pairs swing by ±15% on one, so the ratio is the median of the
pairs' ratios, and the table shows that pair.
Both use sluice's default batching (--batch 20000 records; the demo's spec
says 5000) and 4 workers (--workers). Each run also reports its CPU time
per record, which a neighbour's load moves less than records/s. With --s3
the full pipeline also writes to an S3 gateway on loopback (versitygw on
PATH or in GOPATH/bin). With --features both also publish the Frankfurt
rows to the demo's real-time features topic.

With --against nolineage the comparison is the full pipeline with its
lineage discarded instead (events built, not encoded, signed or written):
the last line then reads
  lineage: on R records/s, off B records/s, ratio R/B, cost C%

Before the runs it times the creation of 200 empty files and warns when
that is slow (on ext4 without a journal, for minutes after a mass
deletion): the full pipeline creates four files per batch to the
baseline's one, so such a run understates it.

The broker and every measured run are separate processes, so peak RSS is the
pipeline's own. Batch latency is poll to ack (the commit follows within the
commit interval). Stage shares are of the runner's batch time; ingest
(fetch, decode) runs beside it in the source.

The last line reads:
  e2e: R records/s, baseline B records/s, ratio R/B, peak RSS M MiB
With -o json the output is one JSON document instead: the median pair as
runs, every run in order as all_runs, the ratios of every pair, and that
last line as summary.

Example:
  sluice bench --records 2000000
`

// benchResult is one measured run.
type benchResult struct {
	Mode          string  `json:"mode"`
	Store         string  `json:"store"`
	Records       int64   `json:"records"`
	Seconds       float64 `json:"seconds"`
	RecordsPerSec float64 `json:"records_per_s"`
	P50Ms         float64 `json:"p50_batch_ms"`
	P99Ms         float64 `json:"p99_batch_ms"`
	PeakRSSMiB    float64 `json:"peak_rss_mib"`
	// CPUMicros is the run's user+system CPU time per record: steadier
	// than records/s on a shared machine, where a neighbour's load moves
	// wall time more than CPU time.
	CPUMicros   float64            `json:"cpu_us_per_record"`
	StageShare  map[string]float64 `json:"stage_share"`
	FeatureRows int64              `json:"feature_rows"`
	RowsByExec  map[string]int64   `json:"rows_by_executor"`
	Quarantined int64              `json:"quarantined"`
	DeadLetters int64              `json:"dead_letters"`
}

// brokerInfo is what the broker child prints once the records are loaded.
type brokerInfo struct {
	Brokers []string      `json:"brokers"`
	Ends    map[int]int64 `json:"ends"`
}

func cmdBench(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("bench", "bench [--records N] [--s3] [-o json]", benchHelp, stderr)
	records := fs.Int("records", 2_000_000, "records to load and consume")
	useS3 := fs.Bool("s3", false, "also run the full pipeline against an S3 gateway on loopback")
	batch := fs.Int("batch", kafka.DefaultMaxRecords, "records per batch (batching.max_records) of both pipelines")
	workers := fs.Int("workers", 4, "batches processed at once by each pipeline (sluice run --workers)")
	against := fs.String("against", "baseline", "what the full pipeline is compared with: `baseline` (no policy, no lineage) or nolineage (the full pipeline with lineage discarded)")
	repeat := fs.Int("repeat", 5, "baseline and full runs, in turns; the ratio is the median of the pairs")
	features := fs.Bool("features", false, "keep the demo's real-time features topic (off: Parquet only, the headline figure)")
	role := fs.String("role", "", "internal: broker or run (the child processes)")
	mode := fs.String("mode", "full", "internal: full, baseline or nolineage")
	brokers := fs.String("brokers", "", "internal: broker address")
	ends := fs.String("ends", "", "internal: partition end offsets as JSON")
	dir := fs.String("dir", "", "internal: output folder")
	store := fs.String("store", "", "internal: store URL of the run")
	var out outputFlag
	out.register(fs)
	if err := parse(fs, args); err != nil {
		return err
	}
	switch *role {
	case "broker":
		return benchBroker(ctx, *records, stdout)
	case "run":
		var e map[int]int64
		if err := json.Unmarshal([]byte(*ends), &e); err != nil {
			return fmt.Errorf("%w: --ends: %v", errUsage, err)
		}
		res, err := benchRun(ctx, *mode, strings.Split(*brokers, ","), e, *dir, *store, *features, *batch, *workers)
		if err != nil {
			return err
		}
		writeJSON(stdout, res)
		return nil
	case "":
	default:
		return fmt.Errorf("%w: --role %q", errUsage, *role)
	}
	asJSON, err := out.json()
	if err != nil {
		return err
	}
	if *records < 1 {
		return fmt.Errorf("%w: --records must be at least 1", errUsage)
	}
	if *repeat < 1 || *batch < 1 || *workers < 1 {
		return fmt.Errorf("%w: --repeat, --batch and --workers must be at least 1", errUsage)
	}
	if *against != "baseline" && *against != "nolineage" {
		return fmt.Errorf("%w: --against %q: want baseline or nolineage", errUsage, *against)
	}
	return benchOrchestrate(ctx, *records, *repeat, *batch, *workers, *against, *useS3, *features, asJSON, stdout, stderr)
}

func benchOrchestrate(ctx context.Context, records, repeat, batch, workers int, against string, useS3, features, asJSON bool, stdout, stderr io.Writer) error {
	self, err := os.Executable()
	if err != nil {
		return err
	}
	tmp, err := os.MkdirTemp("", "sluice-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	if per, err := createCost(filepath.Join(tmp, "probe"), 200); err == nil && per > slowCreate {
		fmt.Fprintf(stderr, "warning: creating a file takes %s of CPU in %s right now (under %s on a quiet disk): "+
			"the full pipeline creates four files per batch to the baseline's one, so this run will understate it. "+
			"On ext4 this follows a mass deletion (a bench or test cleanup) within the last minutes; wait and run again.\n",
			per.Round(time.Microsecond), os.TempDir(), slowCreate)
	}

	fmt.Fprintf(stderr, "loading %d records into the embedded broker...\n", records)
	broker := exec.CommandContext(ctx, self, "bench", "--role", "broker", "--records", strconv.Itoa(records))
	broker.Stderr = stderr
	in, err := broker.StdinPipe()
	if err != nil {
		return err
	}
	outPipe, err := broker.StdoutPipe()
	if err != nil {
		return err
	}
	if err := broker.Start(); err != nil {
		return err
	}
	defer func() { in.Close(); _ = broker.Wait() }()
	line, err := bufio.NewReader(outPipe).ReadString('\n')
	if err != nil {
		return fmt.Errorf("broker: %w", err)
	}
	var info brokerInfo
	if err := json.Unmarshal([]byte(line), &info); err != nil {
		return fmt.Errorf("broker said %q: %w", line, err)
	}
	endsJSON, _ := json.Marshal(info.Ends)

	// The baseline and the full pipeline run in turns, repeat times, so
	// that a slow spell of this shared machine hits both: the ratio is the
	// median of the pairs' ratios, and the table shows that pair.
	type plan struct{ mode, store string }
	var plans []plan
	for i := range repeat {
		// Which of a pair runs second alternates: the second run of a pair
		// finds the first one's files on the disk.
		if i%2 == 0 {
			plans = append(plans, plan{against, "folder"}, plan{"full", "folder"})
		} else {
			plans = append(plans, plan{"full", "folder"}, plan{against, "folder"})
		}
	}
	if useS3 {
		plans = append(plans, plan{"full", "s3"})
	}
	var gw *gateway
	runs := map[plan][]benchResult{}
	for i, p := range plans {
		dir := filepath.Join(tmp, fmt.Sprint(i))
		storeURL := ""
		if p.store == "s3" {
			if gw == nil {
				if gw, err = startGateway(filepath.Join(tmp, "s3")); err != nil {
					return err
				}
				defer gw.Stop()
			}
			if storeURL, err = gw.URL(ctx, fmt.Sprintf("bench-%d", i)); err != nil {
				return err
			}
		}
		// Each run starts with the previous one's writes on the disk, not
		// in the page cache waiting to be written back during this one.
		syscall.Sync()
		fmt.Fprintf(stderr, "run %d/%d: %s pipeline, %s store...\n", i+1, len(plans), p.mode, p.store)
		cmd := exec.CommandContext(ctx, self, "bench", "--role", "run", "--mode", p.mode,
			"--brokers", strings.Join(info.Brokers, ","), "--ends", string(endsJSON), "--dir", dir, "--store", storeURL,
			"--features="+strconv.FormatBool(features), "--batch", strconv.Itoa(batch), "--workers", strconv.Itoa(workers))
		cmd.Stderr = stderr
		if gw != nil {
			cmd.Env = append(os.Environ(), "AWS_ACCESS_KEY_ID="+gw.access, "AWS_SECRET_ACCESS_KEY="+gw.secret)
		}
		b, err := cmd.Output()
		if err != nil {
			return fmt.Errorf("%s run: %w", p.mode, err)
		}
		var r benchResult
		if err := json.Unmarshal(b, &r); err != nil {
			return fmt.Errorf("%s run printed %q: %w", p.mode, b, err)
		}
		runs[p] = append(runs[p], r)
	}
	bases, fulls := runs[plan{against, "folder"}], runs[plan{"full", "folder"}]
	ratios, cpuRatios := make([]float64, len(bases)), make([]float64, len(bases))
	for i := range bases {
		ratios[i] = fulls[i].RecordsPerSec / bases[i].RecordsPerSec
		cpuRatios[i] = fulls[i].CPUMicros / bases[i].CPUMicros
	}
	// The pair whose ratio is the median (the lower middle one of an even
	// count) is the one shown, so that its R/B is the ratio printed.
	m := medianIndex(ratios)
	ratio, cpuRatio := ratios[m], cpuRatios[medianIndex(cpuRatios)]
	results := []benchResult{bases[m], fulls[m]}
	if useS3 {
		results = append(results, runs[plan{"full", "s3"}]...)
	}
	base, full := results[0], results[1]
	peak := 0.0
	var all []benchResult
	for _, p := range plans {
		rs := runs[p]
		r := rs[0]
		runs[p] = rs[1:]
		all = append(all, r)
		peak = max(peak, r.PeakRSSMiB)
	}
	summary := fmt.Sprintf("e2e: %.0f records/s, baseline %.0f records/s, ratio %.2f, peak RSS %.0f MiB",
		full.RecordsPerSec, base.RecordsPerSec, ratio, peak)
	if against == "nolineage" {
		summary = fmt.Sprintf("lineage: on %.0f records/s, off %.0f records/s, ratio %.3f, cost %.1f%%",
			full.RecordsPerSec, base.RecordsPerSec, ratio, 100*(1-ratio))
	}
	if asJSON {
		// Scripts get one JSON document: the median pair (and the S3 run)
		// as runs, every run in the order it ran as all_runs, and the
		// text output's last line as summary.
		writeJSON(stdout, map[string]any{"runs": results, "all_runs": all, "ratio": ratio, "pair_ratios": ratios,
			"cpu_ratio": cpuRatio, "cpu_pair_ratios": cpuRatios, "peak_rss_mib": peak, "summary": summary})
		return nil
	}
	fmt.Fprintf(stdout, "%-9s %-7s %10s %12s %9s %9s %10s %8s  %s\n", "pipeline", "store", "records", "records/s", "p50 ms", "p99 ms", "peak RSS", "CPU µs/r", "time per stage")
	for _, r := range results {
		fmt.Fprintf(stdout, "%-9s %-7s %10d %12.0f %9.1f %9.1f %7.0f MiB %8.2f  %s\n", r.Mode, r.Store, r.Records,
			r.RecordsPerSec, r.P50Ms, r.P99Ms, r.PeakRSSMiB, r.CPUMicros, shares(r.StageShare))
	}
	if len(ratios) > 1 {
		var rs []string
		for _, x := range ratios {
			rs = append(rs, fmt.Sprintf("%.2f", x))
		}
		fmt.Fprintf(stdout, "full/%s per pair: %s (median %.2f)\n", against, strings.Join(rs, " "), ratio)
	}
	fmt.Fprintf(stdout, "CPU per record, full/%s: %.3f (median of the pairs)\n", against, cpuRatio)
	fmt.Fprintln(stdout, summary)
	return nil
}

// slowCreate is the CPU time per file creation above which the bench
// warns: 11–20 µs is usual here on a quiet disk, 250–410 µs on ext4
// without a journal soon after thousands of files were deleted (the inode
// allocator then steps over each recently freed inode).
const slowCreate = 60 * time.Microsecond

// createCost creates n empty files in a new folder dir (left for the
// caller's cleanup) and returns the CPU time one creation took on average.
func createCost(dir string, n int) (time.Duration, error) {
	if err := os.Mkdir(dir, 0o755); err != nil {
		return 0, err
	}
	c0 := cpuTime()
	for i := range n {
		f, err := os.OpenFile(filepath.Join(dir, strconv.Itoa(i)), os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
		if err != nil {
			return 0, err
		}
		f.Close()
	}
	return (cpuTime() - c0) / time.Duration(n), nil
}

// medianIndex is the index of the median of xs (the lower middle one of
// an even count).
func medianIndex(xs []float64) int {
	idx := make([]int, len(xs))
	for i := range idx {
		idx[i] = i
	}
	slices.SortStableFunc(idx, func(a, b int) int { return cmp.Compare(xs[a], xs[b]) })
	return idx[(len(idx)-1)/2]
}

func shares(m map[string]float64) string {
	keys := slices.Sorted(func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	})
	var parts []string
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s %.0f%%", k, 100*m[k]))
	}
	return strings.Join(parts, ", ")
}

// benchBroker loads the records, prints the broker's address and end
// offsets, and serves until its standard input closes.
func benchBroker(ctx context.Context, records int, stdout io.Writer) error {
	spec, err := demoSpec(os.TempDir())
	if err != nil {
		return err
	}
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(4, demoTopics(spec)...))
	if err != nil {
		return err
	}
	defer cluster.Close()
	_, ends, err := produceDemo(ctx, cluster.ListenAddrs(), spec.Source.Topic, demoOptions{events: records, partitions: 4, seed: 1})
	if err != nil {
		return err
	}
	b, _ := json.Marshal(brokerInfo{Brokers: cluster.ListenAddrs(), Ends: ends})
	fmt.Fprintf(stdout, "%s\n", b)
	_, _ = io.Copy(io.Discard, os.Stdin) // until the parent closes it
	return nil
}

// benchRun consumes the whole topic once and reports.
func benchRun(ctx context.Context, mode string, brokers []string, ends map[int]int64, dir, storeURL string, features bool, batch, workers int) (*benchResult, error) {
	spec, err := demoSpec(dir)
	if err != nil {
		return nil, err
	}
	if !features {
		parquetOnly(spec)
	}
	spec.Batching.MaxRecords = batch
	spec.Source.Brokers = brokers
	spec.Source.Group = "bench-" + mode + "-" + filepath.Base(dir)
	if storeURL != "" {
		for i := range spec.Sinks {
			spec.Sinks[i].URL = withPath(storeURL, spec.Sinks[i].Name)
		}
		spec.Lineage.URL = storeURL
	}
	quiet := slog.New(slog.DiscardHandler)
	key, err := lineage.LoadOrCreateKey(filepath.Join(dir, "keys", "lineage.key"))
	if err != nil {
		return nil, err
	}
	p, err := openPipeline(ctx, spec, pipelineOptions{
		policies: policies.FS, signingKey: key, hashKey: make([]byte, 32), logger: quiet, tune: fastJoin, workers: workers,
	})
	if err != nil {
		return nil, err
	}
	defer p.Close()
	runner := p.runner
	if mode == "baseline" {
		// Minimal pipeline: same source, features and Parquet sink; every
		// row allowed on the first executor; lineage discarded.
		ex := gpuexec.NewCPU(spec.Executors[0].ID, spec.Executors[0].Location, gpuexec.CPUOptions{})
		defer ex.Close()
		sinks := p.sinks // the same stores (and features topics) as the full run
		only := *spec
		only.Executors = spec.Executors[:1]
		runner, err = transform.NewRunner(transform.RunnerConfig{
			Spec: &only, Source: p.source, Decider: allowAll{},
			Router: gpuexec.NewRouter([]gpuexec.Executor{ex}, gpuexec.RouterOptions{Logger: quiet}),
			Sinks:  sinks, DeadLetters: p.dlq, Lineage: discardLineage{}, Logger: quiet, Workers: p.workers,
		})
		if err != nil {
			return nil, err
		}
	}
	if mode == "nolineage" {
		// The full pipeline with its lineage discarded: what lineage costs.
		if runner, err = rebuildRunner(p, discardLineage{}, quiet); err != nil {
			return nil, err
		}
	}
	if path := os.Getenv("SLUICE_BENCH_CPUPROFILE"); path != "" {
		// For whoever tunes the pipeline: a CPU profile of this run alone.
		f, err := os.Create(path + "." + mode)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return nil, err
		}
		defer pprof.StopCPUProfile()
	}
	start, cpu0 := time.Now(), cpuTime()
	n, err := drain(ctx, runner.Run, p.source, ends, nil)
	if err != nil {
		return nil, err
	}
	el, cpu := time.Since(start), cpuTime()-cpu0
	s := runner.Stats()
	res := &benchResult{
		Mode: mode, Store: "folder", Records: n, Seconds: el.Seconds(), RecordsPerSec: float64(n) / el.Seconds(),
		PeakRSSMiB: peakRSSMiB(), StageShare: map[string]float64{}, CPUMicros: float64(cpu.Microseconds()) / float64(max(n, 1)),
		FeatureRows: s.FeatureRows, RowsByExec: s.RowsByExecutor, Quarantined: s.Quarantined, DeadLetters: s.DeadLetters,
	}
	if storeURL != "" {
		res.Store = "s3"
	}
	res.P50Ms, res.P99Ms = percentileMs(s.Recent, 0.50), percentileMs(s.Recent, 0.99)
	var total time.Duration
	for _, d := range s.StageTime {
		total += d
	}
	for k, d := range s.StageTime {
		if total > 0 {
			res.StageShare[k] = float64(d) / float64(total)
		}
	}
	return res, nil
}

// parquetOnly drops the spec's real-time features topics.
func parquetOnly(spec *transform.Spec) {
	for i := range spec.Sinks {
		spec.Sinks[i].KafkaTopic = ""
	}
}

// withPath appends a path element to a store URL, before its query.
func withPath(url, elem string) string {
	base, query, _ := strings.Cut(url, "?")
	base = strings.TrimSuffix(base, "/") + "/" + elem
	if query != "" {
		base += "?" + query
	}
	return base
}

func percentileMs(ds []time.Duration, q float64) float64 {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	i := int(q * float64(len(s)-1))
	return float64(s[i]) / float64(time.Millisecond)
}

// cpuTime is the user and system CPU time this process has used.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// peakRSSMiB reads the process's peak resident set (VmHWM) from /proc.
func peakRSSMiB() float64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, _ := strconv.ParseFloat(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 64)
			return kb / 1024
		}
	}
	return 0
}

// rebuildRunner makes a runner like p.runner, with lw as its lineage
// writer, over the pipeline's own executors and sink stores.
func rebuildRunner(p *pipeline, lw transform.LineageWriter, logger *slog.Logger) (*transform.Runner, error) {
	return transform.NewRunner(transform.RunnerConfig{
		Spec: p.spec, Source: p.source, Decider: p.decider,
		Router: gpuexec.NewRouter(p.execs, gpuexec.RouterOptions{Logger: logger, Costs: p.costs}),
		Sinks:  p.sinks, DeadLetters: p.dlq, Lineage: lw,
		HashKey: make([]byte, 32), Logger: logger, Workers: p.workers,
	})
}

// allowAll is the baseline's policy: everything allowed, no obligations.
type allowAll struct{}

func (allowAll) Decide(context.Context, policy.Input) (policy.Decision, error) {
	return policy.Decision{Allow: true, DecisionID: "baseline", Revision: "none"}, nil
}
func (allowAll) Revision() string { return "none" }

// discardLineage is the baseline's lineage: nothing is recorded.
type discardLineage struct{}

func (discardLineage) Append(context.Context, string, []*lineage.Event) (lineage.SegmentInfo, error) {
	return lineage.SegmentInfo{}, nil
}

// fastJoin tunes a Source for one member on loopback.
func fastJoin(c *kafka.Config) {
	c.JoinGroupBackoff = 500 * time.Millisecond
	c.HeartbeatInterval = time.Second
	c.SessionTimeout = 6 * time.Second
}

// gateway is a Versity S3 Gateway process on loopback.
type gateway struct {
	cmd            *exec.Cmd
	addr, dir      string
	access, secret string
}

func versitygwBinary() string {
	if p, err := exec.LookPath("versitygw"); err == nil {
		return p
	}
	if out, err := exec.Command("go", "env", "GOPATH").Output(); err == nil {
		p := filepath.Join(strings.TrimSpace(string(out)), "bin", "versitygw")
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	return ""
}

// startGateway starts versitygw on a free loopback port with its data
// under dir; URL creates buckets.
func startGateway(dir string) (*gateway, error) {
	addr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	return startGatewayAt(dir, addr)
}

// Restart starts the gateway again on the same address and data (after
// Stop), as an operator bringing the store back would.
func (g *gateway) Restart() (*gateway, error) { return startGatewayAt(g.dir, g.addr) }

func startGatewayAt(dir, addr string) (*gateway, error) {
	bin := versitygwBinary()
	if bin == "" {
		return nil, errors.New("versitygw not found; install it with: go install github.com/versity/versitygw/cmd/versitygw@v1.8.0")
	}
	data, versions := filepath.Join(dir, "data"), filepath.Join(dir, "versions")
	for _, d := range []string{data, versions} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, err
		}
	}
	g := &gateway{addr: addr, dir: dir, access: "sluicebench", secret: "sluicebenchsecret"}
	g.cmd = exec.Command(bin, "--access", g.access, "--secret", g.secret, "--port", addr, "--quiet",
		"posix", "--versioning-dir", versions, data)
	if err := g.cmd.Start(); err != nil {
		return nil, err
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		if c, err := dialTCP(addr); err == nil {
			c.Close()
			return g, nil
		}
		if time.Now().After(deadline) {
			g.Stop()
			return nil, fmt.Errorf("versitygw did not start on %s", addr)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// URL creates bucket and returns its store URL.
func (g *gateway) URL(ctx context.Context, bucket string) (string, error) {
	st, err := s3.New(ctx, s3.Config{Endpoint: g.addr, Bucket: bucket, Region: "us-east-1",
		AccessKey: g.access, SecretKey: g.secret, PathStyle: true})
	if err != nil {
		return "", err
	}
	if err := st.EnsureBucket(ctx, false); err != nil {
		return "", err
	}
	return "s3://" + bucket + "?endpoint=" + g.addr, nil
}

func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

func dialTCP(addr string) (net.Conn, error) { return net.DialTimeout("tcp", addr, time.Second) }

func (g *gateway) Stop() {
	if g.cmd.Process != nil {
		_ = g.cmd.Process.Signal(os.Interrupt)
		done := make(chan struct{})
		go func() { _ = g.cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			_ = g.cmd.Process.Kill()
			<-done
		}
	}
}
