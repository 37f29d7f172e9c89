package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/sluice-dev/sluice/gpuexec"
	"github.com/sluice-dev/sluice/gpuexec/flight"
)

// executorProc is one `sluice executor serve` process.
type executorProc struct {
	cmd    *exec.Cmd
	addr   string
	stderr *strings.Builder
	mu     *sync.Mutex
	done   chan error
}

func (p *executorProc) log() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.stderr.String()
}

// buildSluice builds the binary once per test into a temp dir.
func buildSluice(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "sluice")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// startExecutor runs `sluice executor serve` with args on a free loopback
// port and waits for its "listening on" line.
func startExecutor(t *testing.T, bin string, args ...string) *executorProc {
	t.Helper()
	cmd := exec.Command(bin, append([]string{"executor", "serve", "--listen", "127.0.0.1:0"}, args...)...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	p := &executorProc{cmd: cmd, stderr: &strings.Builder{}, mu: &sync.Mutex{}, done: make(chan error, 1)}
	cmd.Stderr = writerFunc(func(b []byte) (int, error) {
		p.mu.Lock()
		defer p.mu.Unlock()
		return p.stderr.Write(b)
	})
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-p.done
	})
	lines := bufio.NewScanner(stdout)
	got := make(chan string, 1)
	go func() {
		for lines.Scan() {
			if a, ok := strings.CutPrefix(lines.Text(), "listening on "); ok {
				got <- a
			}
		}
		_, _ = io.Copy(io.Discard, stdout)
		p.done <- cmd.Wait()
	}()
	select {
	case p.addr = <-got:
	case <-time.After(30 * time.Second):
		t.Fatalf("executor did not start; stderr:\n%s", p.log())
	}
	return p
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(b []byte) (int, error) { return f(b) }

var (
	fra    = gpuexec.Location{Name: "fra", Kind: "onprem", Site: "fra-1", Jurisdiction: "DE"}
	eucent = gpuexec.Location{Name: "eu-central-1", Kind: "cloud", Provider: "aws", Region: "eu-central-1", Jurisdiction: "DE"}
)

func execRecord(t testing.TB, n int) arrow.RecordBatch {
	t.Helper()
	mem := memory.DefaultAllocator
	amount := array.NewFloat64Builder(mem)
	user := array.NewStringBuilder(mem)
	defer amount.Release()
	defer user.Release()
	for i := range n {
		if i%9 == 0 {
			amount.AppendNull()
		} else {
			amount.Append(float64(i%3000) - 5)
		}
		user.Append(fmt.Sprintf("user-%d", i%4099))
	}
	a, u := amount.NewArray(), user.NewArray()
	defer a.Release()
	defer u.Release()
	schema := arrow.NewSchema([]arrow.Field{
		{Name: "amount", Type: arrow.PrimitiveTypes.Float64, Nullable: true},
		{Name: "user", Type: arrow.BinaryTypes.String},
	}, nil)
	return array.NewRecordBatch(schema, []arrow.Array{a, u}, int64(n))
}

var execPlan = &gpuexec.Plan{
	Passthrough: []string{"user"},
	Steps: []gpuexec.Step{
		{Output: "amount_log", Input: "amount", Ops: []gpuexec.Op{{Kind: gpuexec.OpFillMissing}, {Kind: gpuexec.OpClip, Min: 0, Max: 2000}, {Kind: gpuexec.OpLog1p}}},
		{Output: "amount_bucket", Input: "amount", Ops: []gpuexec.Op{{Kind: gpuexec.OpBucketize, Boundaries: []float64{10, 100, 1000}}}},
		{Output: "user_bucket", Input: "user", Ops: []gpuexec.Op{{Kind: gpuexec.OpHashBucket, Buckets: 512}}},
	},
}

func decided(allowed ...string) context.Context {
	return gpuexec.WithDecision(context.Background(), gpuexec.RouteDecision{IDs: []string{"d-1"}, Allowed: allowed, Revision: "r1"})
}

// TestExecutorServe runs two `sluice executor serve` processes on
// loopback, one labelled on-prem and one cloud, and routes to them: the
// result equals the local CPU executor's, the router bursts to the cloud
// only under on-prem load, a batch in flight on a killed executor is
// retried on the other, a disallowed batch and a wrong token are refused,
// and SIGTERM stops a server cleanly.
func TestExecutorServe(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary and starts processes")
	}
	bin := buildSluice(t)
	tokenFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokenFile, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	dcProc := startExecutor(t, bin, "--id", "dc-fra", "--location-name", "fra", "--location-kind", "onprem",
		"--jurisdiction", "DE", "--site", "fra-1", "--cert", "iso27001", "--token-file", tokenFile)
	cloudProc := startExecutor(t, bin, "--id", "aws-de", "--location-kind", "cloud", "--provider", "aws",
		"--region", "eu-central-1", "--jurisdiction", "DE", "--token-file", tokenFile)

	newClient := func(id string, loc gpuexec.Location, addr, token string) *flight.Client {
		c, err := flight.NewClient(addr, flight.ClientOptions{ID: id, Location: loc, Token: token, Timeout: 30 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	dc := newClient("dc-fra", fra, dcProc.addr, "s3cret")
	cloud := newClient("aws-de", eucent, cloudProc.addr, "s3cret")
	for _, c := range []*flight.Client{dc, cloud} {
		if err := c.Healthy(context.Background()); err != nil {
			t.Fatalf("%s: Healthy: %v", c.ID(), err)
		}
	}

	small := execRecord(t, 10_000)
	defer small.Release()
	local := gpuexec.NewCPU("local", fra, gpuexec.CPUOptions{})
	want, err := local.Execute(context.Background(), execPlan, small)
	if err != nil {
		t.Fatal(err)
	}
	defer want.Release()

	t.Run("same result as local", func(t *testing.T) {
		for _, c := range []*flight.Client{dc, cloud} {
			got, err := c.Execute(decided("dc-fra", "aws-de"), execPlan, small)
			if err != nil {
				t.Fatalf("%s: %v", c.ID(), err)
			}
			if !array.RecordEqual(got, want) {
				t.Errorf("%s: result differs from the local CPU executor", c.ID())
			}
			got.Release()
		}
	})

	t.Run("refusals", func(t *testing.T) {
		_, err := dc.Execute(decided("aws-de"), execPlan, small)
		if !errors.Is(err, flight.ErrRefused) || !strings.Contains(err.Error(), `not executor "dc-fra"`) {
			t.Errorf("disallowed batch: %v, want ErrRefused", err)
		}
		// The log line crosses a pipe; give it a moment.
		for i := 0; i < 500 && !strings.Contains(dcProc.log(), "refused a batch"); i++ {
			time.Sleep(10 * time.Millisecond)
		}
		if !strings.Contains(dcProc.log(), "refused a batch") {
			t.Errorf("the server did not log the refusal:\n%s", dcProc.log())
		}
		intruder := newClient("dc-fra", fra, dcProc.addr, "guess")
		if _, err := intruder.Execute(decided("dc-fra"), execPlan, small); !errors.Is(err, flight.ErrUnauthenticated) {
			t.Errorf("wrong token: %v, want ErrUnauthenticated", err)
		}
	})

	router := gpuexec.NewRouter([]gpuexec.Executor{cloud, dc}, gpuexec.RouterOptions{
		// A slow model (1e5 rows/s) so that queued batches push the
		// on-prem wait far past the 2 s target.
		Costs:        map[string]gpuexec.Cost{"dc-fra": {RowsPerSecond: 1e5}, "aws-de": {RowsPerSecond: 1e5}},
		FailCooldown: time.Minute,
		Logger:       slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	allowed := []string{"dc-fra", "aws-de"}
	req := gpuexec.Request{DataJurisdiction: "DE", Allowed: allowed, Rows: 1000, Plan: execPlan}

	t.Run("choices under load", func(t *testing.T) {
		ch, err := router.Choose(context.Background(), req)
		if err != nil || ch.Chosen != "dc-fra" {
			t.Fatalf("idle: chose %s, %v; want the on-prem executor", ch.Chosen, err)
		}
		big := execRecord(t, 400_000)
		defer big.Release()
		var wg sync.WaitGroup
		for range 3 {
			ch, err := router.Choose(context.Background(), gpuexec.Request{DataJurisdiction: "DE", Allowed: allowed, Rows: 400_000, Plan: execPlan})
			if err != nil || ch.Chosen != "dc-fra" {
				t.Fatalf("filling on-prem: chose %s, %v (%s)", ch.Chosen, err, ch.Why)
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				out, err := ch.Executor.Execute(decided(allowed...), execPlan, big)
				if err != nil {
					t.Errorf("queued batch: %v", err)
					return
				}
				out.Release()
			}()
		}
		for router.QueueDepth("dc-fra") < 3 {
			time.Sleep(time.Millisecond)
		}
		ch, err = router.Choose(context.Background(), req)
		if err != nil || ch.Chosen != "aws-de" || !ch.Bursting {
			t.Errorf("on-prem with 3 batches queued: chose %s (bursting %v), %v; want aws-de\n%s", ch.Chosen, ch.Bursting, err, ch.Why)
		}
		wg.Wait()
		ch, err = router.Choose(context.Background(), req)
		if err != nil || ch.Chosen != "dc-fra" {
			t.Errorf("after the queue drained: chose %s, %v; want dc-fra", ch.Chosen, err)
		}
	})

	t.Run("failover when killed", func(t *testing.T) {
		big := execRecord(t, 1_000_000)
		defer big.Release()
		wantBig, err := local.Execute(context.Background(), execPlan, big)
		if err != nil {
			t.Fatal(err)
		}
		defer wantBig.Release()
		type result struct {
			out arrow.RecordBatch
			ch  gpuexec.Choice
			err error
		}
		res := make(chan result, 1)
		go func() {
			out, ch, err := router.Execute(decided(allowed...), gpuexec.Request{DataJurisdiction: "DE", Allowed: allowed, Plan: execPlan}, big)
			res <- result{out, ch, err}
		}()
		for router.QueueDepth("dc-fra") < 1 {
			time.Sleep(100 * time.Microsecond)
		}
		if err := dcProc.cmd.Process.Kill(); err != nil {
			t.Fatal(err)
		}
		r := <-res
		if r.err != nil {
			t.Fatalf("Execute with the on-prem executor killed: %v", r.err)
		}
		defer r.out.Release()
		if r.ch.Chosen != "aws-de" {
			t.Errorf("ran on %s, want aws-de", r.ch.Chosen)
		}
		if len(r.ch.Failovers) != 1 || !strings.HasPrefix(r.ch.Failovers[0], "dc-fra: ") {
			t.Errorf("Failovers = %v, want the killed dc-fra", r.ch.Failovers)
		}
		if !array.RecordEqual(r.out, wantBig) {
			t.Error("result after failover differs from the local CPU executor")
		}
		// The dead executor is out of later choices.
		ch, err := router.Choose(context.Background(), req)
		if err != nil || ch.Chosen != "aws-de" {
			t.Errorf("after the kill: chose %s, %v", ch.Chosen, err)
		}
		// With only the dead one allowed, the batch waits: ErrUnavailable.
		if _, err := router.Choose(context.Background(), gpuexec.Request{DataJurisdiction: "DE", Allowed: []string{"dc-fra"}}); !errors.Is(err, gpuexec.ErrUnavailable) {
			t.Errorf("only the killed executor allowed: %v, want ErrUnavailable", err)
		}
	})

	t.Run("SIGTERM stops cleanly", func(t *testing.T) {
		if err := cloudProc.cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		select {
		case err := <-cloudProc.done:
			cloudProc.done <- err // for the cleanup
			if err != nil {
				t.Errorf("exit after SIGTERM: %v\n%s", err, cloudProc.log())
			}
		case <-time.After(20 * time.Second):
			t.Fatal("still running 20s after SIGTERM")
		}
		if !strings.Contains(cloudProc.log(), `"msg":"stopped"`) {
			t.Errorf("no stop line in the log:\n%s", cloudProc.log())
		}
	})
}

func TestExecutorServeUsage(t *testing.T) {
	tests := []struct {
		name   string
		args   []string
		code   int
		stderr string
	}{
		{"no sub-command", []string{"executor"}, exitUsage, "sub-command"},
		{"help", []string{"executor", "serve", "-h"}, exitOK, "PermissionDenied"},
		{"no id", []string{"executor", "serve", "--location-kind", "onprem", "--jurisdiction", "DE"}, exitUsage, "--id"},
		{"bad kind", []string{"executor", "serve", "--id", "x", "--location-kind", "edge", "--jurisdiction", "DE"}, exitUsage, "onprem or cloud"},
		{"no jurisdiction", []string{"executor", "serve", "--id", "x", "--location-kind", "cloud"}, exitUsage, "--jurisdiction"},
		{"no token beyond loopback", []string{"executor", "serve", "--id", "x", "--location-kind", "cloud", "--jurisdiction", "US", "--listen", "0.0.0.0:0"}, exitUsage, "--token-file"},
		{"cert without key", []string{"executor", "serve", "--id", "x", "--location-kind", "cloud", "--jurisdiction", "US", "--tls-cert", "a.pem"}, exitUsage, "go together"},
		{"help explains error injection", []string{"executor", "serve", "-h"}, exitOK, "resilience tests"},
		{"error rate above 1", []string{"executor", "serve", "--id", "x", "--location-kind", "cloud", "--jurisdiction", "US", "--inject-errors", "1.5"}, exitUsage, "--inject-errors is 1.5; want a share from 0 to 1"},
		{"negative error rate", []string{"executor", "serve", "--id", "x", "--location-kind", "cloud", "--jurisdiction", "US", "--inject-errors", "-0.1"}, exitUsage, "want a share from 0 to 1"},
		{"error rate not a number", []string{"executor", "serve", "--id", "x", "--location-kind", "cloud", "--jurisdiction", "US", "--inject-errors", "lots"}, exitUsage, "inject-errors"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, _, stderr := sluice(t, tt.args...)
			if code != tt.code || !strings.Contains(stderr, tt.stderr) {
				t.Errorf("exit %d, stderr:\n%s\nwant exit %d mentioning %q", code, stderr, tt.code, tt.stderr)
			}
		})
	}
}
