package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"maps"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	kafkago "github.com/segmentio/kafka-go"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluice-dev/sluice/deploy/examples"
	"github.com/sluice-dev/sluice/ingest/kafka"
	"github.com/sluice-dev/sluice/lineage"
	"github.com/sluice-dev/sluice/policies"
	"github.com/sluice-dev/sluice/policy"
	"github.com/sluice-dev/sluice/storage"
	"github.com/sluice-dev/sluice/storage/backend"
	"github.com/sluice-dev/sluice/transform"
)

// The fault-injection suite runs `sluice run` as child processes against
// kfake and a real S3 server (versitygw) on loopback, breaks things while
// they work, and then checks, from Kafka, the object store and the lineage
// alone, that every record is accounted for exactly once. `make test` runs
// it with a small budget; `make test-faults` with a larger one.
var (
	faultRecords = flag.Int("faults.records", 20_000, "records per fault scenario")
	faultKills   = flag.Int("faults.kills", 2, "SIGKILLs in the kill scenario")
	faultSeed    = flag.Uint64("faults.seed", 1, "seed of the fault timings")
)

func TestFaults(t *testing.T) {
	if testing.Short() {
		t.Skip("fault injection runs child processes; -short skips it")
	}
	if versitygwBinary() == "" {
		msg := "versitygw not found (make tools installs it)"
		if os.Getenv("CI") != "" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	bin := sluiceBinary(t)
	rng := rand.New(rand.NewPCG(*faultSeed, 7))
	scenarios := []struct {
		name string
		run  func(t *testing.T, e *faultEnv) int // returns faults injected
	}{
		{"sigkill-restart", func(t *testing.T, e *faultEnv) int {
			p := e.start(t, "a")
			for range *faultKills {
				// Kill a pipeline that is consuming, at a random point.
				e.waitProgress(t, p, 300)
				time.Sleep(time.Duration(rng.IntN(150)) * time.Millisecond)
				p.kill()
				p = e.start(t, "a")
			}
			e.waitDrained(t, p)
			p.stop(t)
			return *faultKills
		}},
		{"s3-outage", func(t *testing.T, e *faultEnv) int {
			p := e.start(t, "a")
			time.Sleep(time.Duration(400+rng.IntN(400)) * time.Millisecond)
			e.gw.Stop()
			time.Sleep(2 * time.Second)
			gw, err := e.gw.Restart()
			if err != nil {
				t.Fatal(err)
			}
			e.gw = gw
			e.waitDrained(t, p)
			p.stop(t)
			return 1
		}},
		{"rebalance", func(t *testing.T, e *faultEnv) int {
			a := e.start(t, "a")
			time.Sleep(time.Duration(300+rng.IntN(500)) * time.Millisecond)
			b := e.start(t, "b")
			e.waitDrained(t, a, b)
			a.stop(t)
			b.stop(t)
			return 1
		}},
		{"rebalance-kill", func(t *testing.T, e *faultEnv) int {
			// A second replica takes half the partitions, records some
			// batches and is killed before committing them all: after its
			// session times out its partitions come back to the first,
			// which must skip what the dead one recorded.
			a := e.start(t, "a")
			e.waitProgress(t, a, 300)
			b := e.start(t, "b")
			// Kill b only once it holds partitions: kfake starts a
			// member's session timer when its JoinGroup reply is
			// delivered, so a member killed while waiting in JoinGroup
			// stays in the group forever and its partitions never come
			// back (a real broker times it out; seen once in CI).
			b.waitLog(t, "kafka: generation started")
			e.waitProgress(t, b, 300)
			time.Sleep(time.Duration(rng.IntN(200)) * time.Millisecond)
			b.kill()
			e.waitDrained(t, a)
			a.stop(t)
			// Whether b died between a lineage append and its commit (a
			// window of milliseconds) is luck; when it did, a's log says
			// it skipped those records. The runner's unit tests cover that
			// path on purpose.
			t.Logf("a skipped records b had recorded: %v", strings.Contains(a.output(), "skipped records the lineage already holds"))
			return 1
		}},
		{"policy-reload", func(t *testing.T, e *faultEnv) int {
			// The shipped policies in a watched folder; mid-stream a broken
			// revision arrives (rejected), then a valid one (goes live).
			dir := filepath.Join(e.dir, "policies")
			if err := os.CopyFS(dir, policies.FS); err != nil {
				t.Fatal(err)
			}
			p := e.start(t, "a", "--policies", dir, "--policy-reload", "100ms")
			e.waitProgress(t, p, 300)
			broken := filepath.Join(dir, "broken.rego")
			if err := os.WriteFile(broken, []byte("package sluice\n\ndeny contains msg if {\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			p.waitLog(t, "policy revision rejected")
			if err := os.Remove(broken); err != nil {
				t.Fatal(err)
			}
			gdpr := filepath.Join(dir, "gdpr.rego")
			b, err := os.ReadFile(gdpr)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(gdpr, append(b, "\n# reviewed 2026-11-27\n"...), 0o644); err != nil {
				t.Fatal(err)
			}
			p.waitLog(t, "policy revision live")
			e.waitDrained(t, p)
			p.stop(t)
			if revs := e.revisions(t); len(revs) < 2 {
				t.Errorf("lineage names policy revisions %v; want the old and the reloaded one", revs)
			}
			return 2
		}},
		{"executor-kill", func(t *testing.T, e *faultEnv) int {
			// Both executors run as `sluice executor serve` processes; the
			// on-prem one (the only one EU and PHI data may use) is killed
			// mid-stream and comes back two seconds later.
			fra := e.remoteExecutors(t, "")
			p := e.start(t, "a")
			e.waitProgress(t, p, 300)
			fra.kill()
			time.Sleep(2 * time.Second)
			e.startExecutor(t, fra.addr, fra.args...)
			e.waitDrained(t, p)
			p.stop(t)
			if out := p.output(); !strings.Contains(out, "routing the batch again") && !strings.Contains(out, "stalled") {
				t.Errorf("the pipeline never noticed the executor was gone; the scenario tested nothing:\n%s", tail(out, 2000))
			}
			return 1
		}},
		{"executor-hang", func(t *testing.T, e *faultEnv) int {
			// The on-prem executor freezes (SIGSTOP) for three seconds: its
			// calls time out after 1s, it counts as unavailable, and EU and
			// PHI rows wait for it rather than going anywhere else.
			fra := e.remoteExecutors(t, "1s")
			p := e.start(t, "a")
			e.waitProgress(t, p, 300)
			_ = fra.cmd.Process.Signal(syscall.SIGSTOP)
			time.Sleep(3 * time.Second)
			_ = fra.cmd.Process.Signal(syscall.SIGCONT)
			e.waitDrained(t, p)
			p.stop(t)
			if out := p.output(); !strings.Contains(out, "routing the batch again") && !strings.Contains(out, "stalled") {
				t.Errorf("the pipeline never noticed the executor hung; the scenario tested nothing:\n%s", tail(out, 2000))
			}
			return 1
		}},
		{"executor-errors", func(t *testing.T, e *faultEnv) int {
			// The on-prem executor stays up and healthy but fails 30% of
			// its batches on purpose (--inject-errors): each failed batch
			// is routed again, and EU and PHI rows retry on it rather than
			// going anywhere else.
			fra := e.remoteExecutors(t, "", "--inject-errors", "0.3", "--inject-seed", strconv.FormatUint(*faultSeed, 10))
			p := e.start(t, "a")
			e.waitDrained(t, p)
			p.stop(t)
			out := p.output()
			if !strings.Contains(out, "routing the batch again") || !strings.Contains(out, "injected on purpose") {
				t.Errorf("the pipeline never saw an injected error; the scenario tested nothing:\n%s", tail(out, 2000))
			}
			injected := strings.Count(fra.output(), "failing a batch on purpose")
			if injected == 0 {
				t.Errorf("the executor logged no injected error:\n%s", tail(fra.output(), 2000))
			}
			return injected
		}},
		{"sigterm-restart", func(t *testing.T, e *faultEnv) int {
			p := e.start(t, "a")
			time.Sleep(time.Duration(300+rng.IntN(700)) * time.Millisecond)
			start := time.Now()
			p.stop(t)
			if el := time.Since(start); el > 15*time.Second {
				t.Errorf("SIGTERM took %v; the shutdown grace is 10s", el)
			}
			p = e.start(t, "a")
			e.waitDrained(t, p)
			p.stop(t)
			return 1
		}},
	}
	var table []string
	for _, sc := range scenarios {
		t.Run(sc.name, func(t *testing.T) {
			e := newFaultEnv(t, bin, *faultRecords)
			faults := sc.run(t, e)
			r := e.check(t)
			table = append(table, fmt.Sprintf("%-16s %8d %7d %5d %10d %9d %8d %s",
				sc.name, e.records, faults, r.lost, r.duplicated, r.misrouted, r.orphans, r.verify))
			if r.lost+r.duplicated+r.misrouted != 0 || r.verify != "ok" {
				t.Errorf("lost %d, duplicated %d, misrouted %d, verify %s", r.lost, r.duplicated, r.misrouted, r.verify)
			}
		})
	}
	report := fmt.Sprintf("%-16s %8s %7s %5s %10s %9s %8s %s\n%s\n", "scenario", "records", "faults", "lost",
		"duplicated", "misrouted", "orphans", "verify", strings.Join(table, "\n"))
	t.Log("\n" + report)
	fmt.Print(report)
}

var (
	buildOnce sync.Once
	builtBin  string
	buildErr  error
)

// sluiceBinary builds the binary under test once per test process.
func sluiceBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "sluice-bin-")
		if err != nil {
			buildErr = err
			return
		}
		builtBin = filepath.Join(dir, "sluice")
		out, err := exec.Command("go", "build", "-o", builtBin, ".").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return builtBin
}

// faultEnv is one scenario's world: a broker with the records loaded, an
// S3 gateway, a spec pointing at both, and the keys.
type faultEnv struct {
	bin, dir, spec, signing, hashKey string
	brokers                          []string
	gw                               *gateway
	bucketURL                        string
	ends                             map[int]int64
	records, malformed               int
	produced                         chan error // gets the producer's result
}

// produce writes the records at a steady pace over about d, so faults hit
// a stream in motion rather than a drained topic.
func (e *faultEnv) produce(records int, d time.Duration) error {
	cl, err := kgo.NewClient(kgo.SeedBrokers(e.brokers...), kgo.DefaultProduceTopic("events"),
		kgo.RequiredAcks(kgo.AllISRAcks()), kgo.RecordPartitioner(kgo.StickyKeyPartitioner(nil)))
	if err != nil {
		return err
	}
	defer cl.Close()
	gen := newGenerator(5, records)
	const chunk = 250
	pause := d / time.Duration(max(records/chunk, 1))
	ends := map[int]int64{}
	malformed := 0
	for sent := 0; sent < records; {
		var rs []*kgo.Record
		for ; len(rs) < chunk && sent < records; sent++ {
			ev := gen.next()
			if ev.malformed {
				malformed++
			}
			rs = append(rs, &kgo.Record{Key: ev.key, Value: ev.value, Timestamp: ev.time})
		}
		res := cl.ProduceSync(context.Background(), rs...)
		if err := res.FirstErr(); err != nil {
			return err
		}
		for _, r := range res {
			ends[int(r.Record.Partition)] = max(ends[int(r.Record.Partition)], r.Record.Offset+1)
		}
		time.Sleep(pause)
	}
	e.ends, e.malformed = ends, malformed
	return nil
}

func newFaultEnv(t *testing.T, bin string, records int) *faultEnv {
	t.Helper()
	ctx := context.Background()
	e := &faultEnv{bin: bin, dir: t.TempDir(), records: records}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("ends %v, malformed %d", e.ends, e.malformed)
		}
	})
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(4, "events", "events.dlq", "features.fra"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cluster.Close)
	e.brokers = cluster.ListenAddrs()
	if e.gw, err = startGateway(filepath.Join(e.dir, "s3")); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.gw.Stop() })
	if e.bucketURL, err = e.gw.URL(ctx, "faults"); err != nil {
		t.Fatal(err)
	}
	// The checks read the bucket as an auditor would, with its credentials.
	t.Setenv("AWS_ACCESS_KEY_ID", e.gw.access)
	t.Setenv("AWS_SECRET_ACCESS_KEY", e.gw.secret)
	e.produced = make(chan error, 1)
	go func() { e.produced <- e.produce(records, 4*time.Second) }()
	raw, err := examples.FS.ReadFile("demo.yaml")
	if err != nil {
		t.Fatal(err)
	}
	spec := strings.NewReplacer(
		"brokers: [localhost:9092]", "brokers: ["+e.brokers[0]+"]",
		"file:///tmp/sluice-demo/features-fra", withPath(e.bucketURL, "fra"),
		"file:///tmp/sluice-demo/features-us", withPath(e.bucketURL, "us"),
		"file:///tmp/sluice-demo/lineage", e.bucketURL,
	).Replace(string(raw))
	if !strings.Contains(spec, e.brokers[0]) || strings.Contains(spec, "file:///tmp/sluice-demo") {
		t.Fatalf("demo.yaml changed shape; the fault suite cannot point it at its servers:\n%s", spec)
	}
	e.spec = filepath.Join(e.dir, "pipeline.yaml")
	e.signing = filepath.Join(e.dir, "keys", "lineage.key")
	e.hashKey = filepath.Join(e.dir, "keys", "hash.key")
	if err := os.WriteFile(e.spec, []byte(spec), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := loadOrCreateSecret(e.hashKey); err != nil {
		t.Fatal(err)
	}
	return e
}

type proc struct {
	cmd  *exec.Cmd
	done chan error
	log  *syncWriter
}

func (p *proc) output() string { return p.log.String() }

// waitLog waits until the process has logged s.
func (p *proc) waitLog(t *testing.T, s string) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); !strings.Contains(p.output(), s); {
		if time.Now().After(deadline) {
			t.Fatalf("no %q in the log within 30s:\n%s", s, tail(p.output(), 3000))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// start runs `sluice run` as a child process, with extra flags.
func (e *faultEnv) start(t *testing.T, name string, flags ...string) *proc {
	t.Helper()
	cmd := exec.Command(e.bin, append([]string{"run", "-f", e.spec, "--signing-key", e.signing, "--hash-key-file", e.hashKey,
		"--progress", "0", "--session-timeout", "6s"}, flags...)...)
	cmd.Env = append(os.Environ(), "AWS_ACCESS_KEY_ID="+e.gw.access, "AWS_SECRET_ACCESS_KEY="+e.gw.secret)
	p := &proc{cmd: cmd, done: make(chan error, 1), log: &syncWriter{w: &bytes.Buffer{}}}
	cmd.Stdout, cmd.Stderr = p.log, p.log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.done <- cmd.Wait() }()
	// Faults are injected into a running pipeline, not a starting binary:
	// wait for its "running" line.
	for deadline := time.Now().Add(30 * time.Second); !strings.Contains(p.output(), `"msg":"running"`); {
		select {
		case err := <-p.done:
			t.Fatalf("sluice run exited at start: %v\n%s", err, p.output())
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("sluice run not running after 30s:\n%s", p.output())
		}
	}
	t.Cleanup(func() {
		p.kill()
		if t.Failed() {
			t.Logf("log of %s:\n%s", name, tail(p.output(), 3000))
		}
	})
	return p
}

func (p *proc) kill() {
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	select {
	case <-p.done:
		p.done <- nil // later kills and stops return at once
	case <-time.After(10 * time.Second):
	}
}

// stop sends SIGTERM and waits for a clean exit.
func (p *proc) stop(t *testing.T) {
	t.Helper()
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-p.done:
		p.done <- err
		if err != nil {
			t.Errorf("sluice run exited with %v after SIGTERM; log:\n%s", err, tail(p.output(), 2000))
		}
	case <-time.After(30 * time.Second):
		t.Errorf("sluice run did not stop within 30s of SIGTERM")
		p.kill()
	}
}

type syncWriter struct {
	mu sync.Mutex
	w  *bytes.Buffer
}

func (s *syncWriter) Write(b []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(b)
}

func (s *syncWriter) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.String()
}

func tail(s string, n int) string {
	if len(s) > n {
		return "…" + s[len(s)-n:]
	}
	return s
}

// execProc is a `sluice executor serve` process.
type execProc struct {
	*proc
	addr string
	args []string
}

// startExecutor runs an executor on addr ("" for a free port) and waits
// until it listens.
func (e *faultEnv) startExecutor(t *testing.T, addr string, args ...string) *execProc {
	t.Helper()
	if addr == "" {
		var err error
		if addr, err = freeAddr(); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.Command(e.bin, append([]string{"executor", "serve", "--listen", addr}, args...)...)
	p := &proc{cmd: cmd, done: make(chan error, 1), log: &syncWriter{w: &bytes.Buffer{}}}
	cmd.Stdout, cmd.Stderr = p.log, p.log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.done <- cmd.Wait() }()
	t.Cleanup(p.kill)
	p.waitLog(t, "listening on")
	return &execProc{proc: p, addr: addr, args: args}
}

// remoteExecutors starts the demo's two executors as `sluice executor
// serve` processes, the on-prem one with fraFlags added, points the spec at
// them (with a per-batch timeout when timeout is not ""), and returns the
// on-prem one.
func (e *faultEnv) remoteExecutors(t *testing.T, timeout string, fraFlags ...string) *execProc {
	t.Helper()
	fra := e.startExecutor(t, "", append([]string{"--id", "onprem-fra", "--location-name", "fra", "--location-kind", "onprem",
		"--site", "fra1", "--region", "eu-central", "--jurisdiction", "DE", "--cert", "hipaa", "--cert", "iso27001", "--cert", "soc2"},
		fraFlags...)...)
	aws := e.startExecutor(t, "", "--id", "aws-us-east-1", "--location-name", "us-east-1", "--location-kind", "cloud",
		"--provider", "aws", "--region", "us-east-1", "--jurisdiction", "US", "--cert", "soc2")
	e.useRemoteExecutors(t, fra.addr, aws.addr, timeout)
	return fra
}

// useRemoteExecutors points the spec's two executors at Flight servers,
// with a per-batch timeout when timeout is not "".
func (e *faultEnv) useRemoteExecutors(t *testing.T, fra, aws, timeout string) {
	t.Helper()
	b, err := os.ReadFile(e.spec)
	if err != nil {
		t.Fatal(err)
	}
	extra := ""
	if timeout != "" {
		extra = "\n    timeout: " + timeout
	}
	s := strings.Replace(string(b), "kind: cpu", "kind: remote\n    endpoint: "+fra+extra, 1)
	s = strings.Replace(s, "kind: cpu", "kind: remote\n    endpoint: "+aws+extra, 1)
	if strings.Count(s, "kind: remote") != 2 {
		t.Fatalf("demo.yaml changed shape; cannot make its executors remote:\n%s", s)
	}
	if err := os.WriteFile(e.spec, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
}

// revisions lists the policy revisions the lineage's decisions name.
func (e *faultEnv) revisions(t *testing.T) []string {
	t.Helper()
	st, err := backend.Open(context.Background(), e.bucketURL)
	if err != nil {
		t.Fatal(err)
	}
	evs, err := lineage.ReadAll(context.Background(), st, lineagePrefix)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, ev := range evs {
		if f := ev.Run.Facets.ResidencyDecision; f != nil {
			for _, d := range f.Decisions {
				seen[d.Revision] = true
			}
		}
	}
	return slices.Sorted(maps.Keys(seen))
}

// committed sums the group's committed offsets.
func (e *faultEnv) committed() int64 {
	cl := &kafkago.Client{Addr: kafkago.TCP(e.brokers...)}
	res, err := cl.OffsetFetch(context.Background(), &kafkago.OffsetFetchRequest{
		GroupID: "sluice-demo", Topics: map[string][]int{"events": {0, 1, 2, 3}}})
	if err != nil || res.Error != nil {
		return 0
	}
	var n int64
	for _, p := range res.Topics["events"] {
		n += max(p.CommittedOffset, 0)
	}
	return n
}

// waitProgress waits until p has committed at least n more records (or
// the stream is done), so a fault hits a pipeline at work.
func (e *faultEnv) waitProgress(t *testing.T, p *proc, n int64) {
	t.Helper()
	from := e.committed()
	for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); {
		select {
		case err := <-p.done:
			t.Fatalf("sluice run exited: %v\n%s", err, tail(p.output(), 3000))
		case <-time.After(20 * time.Millisecond):
		}
		if c := e.committed(); c >= from+n || c >= int64(e.records) {
			return
		}
	}
	t.Fatal("no progress within a minute")
}

// waitDrained waits until the group has committed every partition to its
// end, failing if a process exits first.
func (e *faultEnv) waitDrained(t *testing.T, ps ...*proc) {
	t.Helper()
	if err := <-e.produced; err != nil {
		t.Fatalf("produce: %v", err)
	}
	e.produced <- nil
	cl := &kafkago.Client{Addr: kafkago.TCP(e.brokers...)}
	parts := []int{0, 1, 2, 3}
	deadline := time.Now().Add(3 * time.Minute)
	for time.Now().Before(deadline) {
		for _, p := range ps {
			select {
			case err := <-p.done:
				t.Fatalf("sluice run exited early: %v\n%s", err, tail(p.output(), 3000))
			default:
			}
		}
		res, err := cl.OffsetFetch(context.Background(), &kafkago.OffsetFetchRequest{
			GroupID: "sluice-demo", Topics: map[string][]int{"events": parts}})
		if err == nil && res.Error == nil {
			done := true
			for _, p := range res.Topics["events"] {
				if p.CommittedOffset < e.ends[p.Partition] {
					done = false
				}
			}
			if done && len(res.Topics["events"]) == len(parts) {
				return
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatal("the group did not commit every record within 3 minutes")
}

type faultResult struct {
	lost, duplicated, misrouted, orphans int
	verify                               string
}

// check accounts for every produced record from Kafka (the dead-letter
// topic), the object store (feature and quarantine objects) and the
// lineage, without asking the pipeline anything.
func (e *faultEnv) check(t *testing.T) faultResult {
	t.Helper()
	ctx := context.Background()
	var r faultResult
	type pos struct {
		p   int
		off int64
	}
	seen := map[pos]int{}
	st, err := backend.Open(ctx, e.bucketURL)
	if err != nil {
		t.Fatal(err)
	}

	// Objects lineage references.
	events, err := lineage.ReadAll(ctx, st, lineagePrefix)
	if err != nil {
		t.Fatal(err)
	}
	referenced := map[string]bool{}
	for _, ev := range events {
		for _, o := range ev.Outputs {
			if o.OutputFacets.Object != nil {
				referenced[o.OutputFacets.Object.Key] = true
			}
		}
	}

	err = st.Iter(ctx, "", func(key string) error {
		if !strings.HasSuffix(key, ".parquet") {
			return nil
		}
		sink, rel, _ := strings.Cut(key, "/")
		if !referenced[rel] {
			r.orphans++
			return nil
		}
		_, part, _, _, ok := storage.ParseObjectKey(key)
		if !ok {
			return fmt.Errorf("unexpected object key %s", key)
		}
		tbl, err := storage.ReadParquet(ctx, st, key, nil)
		if err != nil {
			return err
		}
		defer tbl.Release()
		offs := int64sOf(t, tbl, transform.OffsetColumn)
		countries := stringsOf(t, tbl, "country")
		phi := validOf(tbl, "patient_id")
		loc := locationOf(key)
		quarantined := strings.HasPrefix(rel, "quarantine/")
		for i, off := range offs {
			seen[pos{part, off}]++
			if quarantined {
				continue
			}
			c := countries[i]
			switch {
			case c == "IN" || c == "BR": // must stay in-country: allowed nowhere here
				r.misrouted++
			case (policy.Region(c) == policy.RegionEU || phi[i]) && loc != "fra":
				r.misrouted++
			case map[string]string{"fra": "fra", "us": "us-east-1"}[sink] != loc:
				r.misrouted++ // written to the bucket of another location
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}

	// Dead letters, from the dead-letter topic; a write retried after a
	// crash may repeat a dead letter, which is the same record, not a copy
	// of its data in storage, so it counts once.
	dlq := map[pos]bool{}
	for part := range 4 {
		conn, err := kafkago.DialLeader(ctx, "tcp", e.brokers[0], "events.dlq", part)
		if err != nil {
			t.Fatal(err)
		}
		end, _ := conn.ReadLastOffset()
		_, _ = conn.Seek(0, kafkago.SeekAbsolute)
		for read := int64(0); read < end; {
			batch := conn.ReadBatch(1, 16<<20)
			for {
				m, err := batch.ReadMessage()
				if err != nil {
					break
				}
				read = m.Offset + 1
				var src pos
				for _, h := range m.Headers {
					switch h.Key {
					case kafka.HeaderSourcePartition:
						src.p, _ = strconv.Atoi(string(h.Value))
					case kafka.HeaderSourceOffset:
						src.off, _ = strconv.ParseInt(string(h.Value), 10, 64)
					}
				}
				dlq[src] = true
			}
			batch.Close()
		}
		conn.Close()
	}
	for k := range dlq {
		seen[k]++
	}
	if len(dlq) != e.malformed {
		t.Errorf("dead-letter topic holds %d distinct records, %d malformed were produced", len(dlq), e.malformed)
	}

	for part, end := range e.ends {
		for off := int64(0); off < end; off++ {
			switch n := seen[pos{part, off}]; {
			case n == 0:
				r.lost++
			case n > 1:
				r.duplicated += n - 1
			}
		}
	}

	// With the spec, verify also checks every offset the group committed
	// against the chains.
	out, err := exec.Command(e.bin, "lineage", "verify", "--store", e.bucketURL, "--spec", e.spec).CombinedOutput()
	r.verify = "ok"
	if err != nil {
		r.verify = "FAILED"
		t.Logf("lineage verify: %v\n%s", err, out)
	}
	return r
}

func int64sOf(t *testing.T, tbl arrow.Table, name string) []int64 {
	var out []int64
	for _, c := range column(t, tbl, name).Chunks() {
		out = append(out, c.(*array.Int64).Int64Values()...)
	}
	return out
}

// validOf reports, per row, whether column name is non-null (all false
// when the column is absent).
func validOf(tbl arrow.Table, name string) []bool {
	out := make([]bool, 0, tbl.NumRows())
	idx := tbl.Schema().FieldIndices(name)
	if len(idx) == 0 {
		return make([]bool, tbl.NumRows())
	}
	for _, c := range tbl.Column(idx[0]).Data().Chunks() {
		for i := 0; i < c.Len(); i++ {
			out = append(out, c.IsValid(i))
		}
	}
	return out
}
