package gpuexec

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/memory"
)

// fakeExec is an executor whose health the test sets.
type fakeExec struct {
	id      string
	loc     Location
	healthy error
	hang    bool // Healthy blocks until ctx ends
}

func (f *fakeExec) ID() string         { return f.id }
func (f *fakeExec) Kind() string       { return "cpu" }
func (f *fakeExec) Location() Location { return f.loc }
func (f *fakeExec) Healthy(ctx context.Context) error {
	if f.hang {
		<-ctx.Done()
		return ctx.Err()
	}
	return f.healthy
}
func (f *fakeExec) Execute(context.Context, *Plan, arrow.RecordBatch) (arrow.RecordBatch, error) {
	return nil, errors.New("not used")
}

func TestRouterPick(t *testing.T) {
	down := errors.New("device lost")
	exec := func(id, kind, jur string) *fakeExec {
		return &fakeExec{id: id, loc: Location{Name: id, Kind: kind, Jurisdiction: jur}}
	}
	tests := []struct {
		name    string
		execs   []*fakeExec
		data    string
		allowed []string
		down    []string // ids whose Healthy fails
		want    string   // picked id; "" when an error is expected
		wantErr error
	}{
		{
			name:    "same jurisdiction onprem first",
			execs:   []*fakeExec{exec("aws-us", "cloud", "US"), exec("aws-de", "cloud", "DE"), exec("dc-us", "onprem", "US"), exec("dc-de", "onprem", "DE")},
			data:    "DE",
			allowed: []string{"aws-us", "aws-de", "dc-us", "dc-de"},
			want:    "dc-de",
		},
		{
			name:    "jurisdiction outranks onprem",
			execs:   []*fakeExec{exec("dc-us", "onprem", "US"), exec("aws-de", "cloud", "DE")},
			data:    "DE",
			allowed: []string{"dc-us", "aws-de"},
			want:    "aws-de",
		},
		{
			name:    "jurisdiction compared case-insensitively",
			execs:   []*fakeExec{exec("dc-us", "onprem", "US"), exec("aws-de", "cloud", "DE")},
			data:    "de",
			allowed: []string{"dc-us", "aws-de"},
			want:    "aws-de",
		},
		{
			name:    "onprem before cloud abroad",
			execs:   []*fakeExec{exec("aws-us", "cloud", "US"), exec("dc-us", "onprem", "US")},
			data:    "DE",
			allowed: []string{"aws-us", "dc-us"},
			want:    "dc-us",
		},
		{
			name:    "ties keep the given order",
			execs:   []*fakeExec{exec("dc-fra-2", "onprem", "DE"), exec("dc-fra-1", "onprem", "DE")},
			data:    "DE",
			allowed: []string{"dc-fra-1", "dc-fra-2"},
			want:    "dc-fra-2",
		},
		{
			name:    "unhealthy best falls back",
			execs:   []*fakeExec{exec("dc-de", "onprem", "DE"), exec("aws-de", "cloud", "DE")},
			data:    "DE",
			allowed: []string{"dc-de", "aws-de"},
			down:    []string{"dc-de"},
			want:    "aws-de",
		},
		{
			name:    "never a disallowed executor",
			execs:   []*fakeExec{exec("dc-de", "onprem", "DE"), exec("aws-us", "cloud", "US")},
			data:    "DE",
			allowed: []string{"aws-us"},
			want:    "aws-us",
		},
		{
			name:    "only allowed one unhealthy",
			execs:   []*fakeExec{exec("dc-de", "onprem", "DE"), exec("aws-us", "cloud", "US")},
			data:    "DE",
			allowed: []string{"dc-de"},
			down:    []string{"dc-de"},
			wantErr: ErrUnavailable,
		},
		{
			name:    "allowed id unknown",
			execs:   []*fakeExec{exec("dc-de", "onprem", "DE")},
			data:    "DE",
			allowed: []string{"gcp-eu"},
			wantErr: ErrUnavailable,
		},
		{
			name:    "none allowed",
			execs:   []*fakeExec{exec("dc-de", "onprem", "DE")},
			data:    "DE",
			allowed: nil,
			wantErr: ErrNoneAllowed,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var execs []Executor
			for _, e := range tt.execs {
				if slices.Contains(tt.down, e.id) {
					e.healthy = down
				}
				execs = append(execs, e)
			}
			r := NewRouter(execs, RouterOptions{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
			got, err := r.Pick(context.Background(), tt.data, tt.allowed)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) || got != nil {
					t.Fatalf("Pick = %v, %v; want nil, %v", got, err, tt.wantErr)
				}
				if tt.wantErr == ErrNoneAllowed && errors.Is(err, ErrUnavailable) {
					t.Error("an empty allow list must not look retryable")
				}
				return
			}
			if err != nil {
				t.Fatalf("Pick: %v", err)
			}
			if got.ID() != tt.want {
				t.Errorf("picked %s, want %s", got.ID(), tt.want)
			}
		})
	}
}

func TestRouterHealthTimeout(t *testing.T) {
	hung := &fakeExec{id: "remote-de", loc: Location{Kind: "onprem", Jurisdiction: "DE"}, hang: true}
	spare := &fakeExec{id: "aws-de", loc: Location{Kind: "cloud", Jurisdiction: "DE"}}
	r := NewRouter([]Executor{hung, spare}, RouterOptions{HealthTimeout: 20 * time.Millisecond})
	start := time.Now()
	got, err := r.Pick(context.Background(), "DE", []string{"remote-de", "aws-de"})
	if err != nil || got.ID() != "aws-de" {
		t.Fatalf("Pick = %v, %v; want aws-de", got, err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("Pick took %s with a hung executor", d)
	}

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := r.Pick(ctx, "DE", []string{"aws-de"}); !errors.Is(err, context.Canceled) {
		t.Errorf("Pick with cancelled ctx = %v, want context.Canceled", err)
	}
}

func TestRouterLookup(t *testing.T) {
	a := &fakeExec{id: "a"}
	b := &fakeExec{id: "b"}
	dup := &fakeExec{id: "a", loc: Location{Name: "dup"}}
	r := NewRouter([]Executor{a, nil, b, dup}, RouterOptions{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	execs := r.Executors()
	if len(execs) != 2 || execs[0] != a || execs[1] != b {
		t.Fatalf("Executors = %v, want [a b]", execs)
	}
	execs[0] = nil // a copy: the router is unaffected
	if got, ok := r.Get("a"); !ok || got != a {
		t.Errorf("Get(a) = %v, %v; want the first executor called a", got, ok)
	}
	if _, ok := r.Get("zzz"); ok {
		t.Error("Get(zzz) found something")
	}
	if r.Executors()[0] != a {
		t.Error("Executors returned the router's own slice")
	}
}

// TestRouterWithCPU routes to a real CPU executor and back off it once it
// is closed.
func TestRouterWithCPU(t *testing.T) {
	cpu := NewCPU("cpu-fra", Location{Kind: "onprem", Jurisdiction: "DE"}, CPUOptions{Workers: 1})
	r := NewRouter([]Executor{cpu}, RouterOptions{})
	if got, err := r.Pick(context.Background(), "DE", []string{"cpu-fra"}); err != nil || got.ID() != "cpu-fra" || got.(interface{ Unwrap() Executor }).Unwrap() != Executor(cpu) {
		t.Fatalf("Pick = %v, %v", got, err)
	}
	cpu.Close()
	if _, err := r.Pick(context.Background(), "DE", []string{"cpu-fra"}); !errors.Is(err, ErrUnavailable) {
		t.Errorf("Pick after Close = %v, want ErrUnavailable", err)
	}
}

// quiet is a logger for tests that expect warnings.
func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// setLoad puts n batches in flight on id with workMs of estimated work
// left, as n tracked Execute calls would.
func setLoad(r *Router, id string, n int, workMs float64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	e := r.byID[id]
	e.inflight = n
	e.busyStart = r.now()
	e.busyWorkMs = workMs
}

func fixedClock(r *Router) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	r.now = func() time.Time { return t0 }
}

// clipPlan is the reference plan RowsPerSecond is stated for.
var clipPlan = &Plan{Steps: []Step{{Output: "y", Input: "x", Ops: []Op{{Kind: OpClip, Min: 0, Max: 1}}}}}

func TestRouterEstimate(t *testing.T) {
	cloud := &fakeExec{id: "aws", loc: Location{Kind: "cloud", Jurisdiction: "DE"}}
	r := NewRouter([]Executor{cloud}, RouterOptions{Costs: map[string]Cost{
		"aws": {PricePerHour: 3.6, RowsPerSecond: 1e6, LinkMBps: 1, OverheadMs: 2},
	}})
	ch, err := r.Choose(context.Background(), Request{DataJurisdiction: "DE", Allowed: []string{"aws"}, Rows: 1000, Bytes: 1e6, Plan: clipPlan})
	if err != nil {
		t.Fatal(err)
	}
	c := ch.Candidates[0]
	// compute 1000 rows / 1e6 rows/s = 1 ms; transfer (1e6 + 1000*8) B / 1 MB/s
	// = 1008 ms; overhead 2 ms. Price: $3.6/h = $0.001/s over 3 ms of work.
	if want := 1011.0; math.Abs(c.EstimatedMs-want) > 1e-9 {
		t.Errorf("EstimatedMs = %v, want %v", c.EstimatedMs, want)
	}
	if want := 3e-6; math.Abs(c.CostUSD-want) > 1e-15 {
		t.Errorf("CostUSD = %v, want %v", c.CostUSD, want)
	}
	// A plan twice the reference's work takes twice the compute.
	double := &Plan{Steps: []Step{clipPlan.Steps[0], clipPlan.Steps[0]}}
	if d, _ := r.Predict("aws", double, nil); d != 2*time.Millisecond {
		t.Errorf("Predict(no rows) = %s, want the 2 ms overhead", d)
	}
	got, _ := r.CostOf("aws")
	if got.Slots != 1 || got.PricePerHour != 3.6 {
		t.Errorf("CostOf = %+v", got)
	}
}

func TestRouterChoose(t *testing.T) {
	// dc-de is on-prem, aws-de and aws-us cloud; a batch takes ~1 s on
	// each (1e6 rows at 1e6 rows/s), and the latency target is 1.5 s, so
	// one batch ahead in a queue makes an executor miss it.
	mk := func() []Executor {
		return []Executor{
			&fakeExec{id: "dc-de", loc: Location{Name: "fra", Kind: "onprem", Jurisdiction: "DE"}},
			&fakeExec{id: "dc-de-2", loc: Location{Name: "fra", Kind: "onprem", Jurisdiction: "DE"}},
			&fakeExec{id: "aws-de", loc: Location{Name: "eu-central-1", Kind: "cloud", Jurisdiction: "DE"}},
			&fakeExec{id: "aws-us", loc: Location{Name: "us-east-1", Kind: "cloud", Jurisdiction: "US"}},
		}
	}
	costs := map[string]Cost{}
	for _, id := range []string{"dc-de", "dc-de-2", "aws-de", "aws-us"} {
		costs[id] = Cost{RowsPerSecond: 1e6}
	}
	type load struct {
		n      int
		workMs float64
	}
	tests := []struct {
		name         string
		allowed      []string
		loads        map[string]load
		down         []string
		target       time.Duration
		want         string
		wantBursting bool
		wantReason   map[string]string // substring of a candidate's reason
	}{
		{
			name:       "idle on-prem first",
			allowed:    []string{"aws-de", "dc-de"},
			want:       "dc-de",
			wantReason: map[string]string{"aws-de": "on-prem not saturated"},
		},
		{
			name:         "burst to cloud when on-prem queue exceeds threshold",
			allowed:      []string{"aws-de", "dc-de"},
			loads:        map[string]load{"dc-de": {3, 3000}},
			want:         "aws-de",
			wantBursting: true,
			wantReason:   map[string]string{"dc-de": "misses the 1.5s latency target"},
		},
		{
			name:       "at the threshold on-prem still queues",
			allowed:    []string{"aws-de", "dc-de"},
			loads:      map[string]load{"dc-de": {2, 2000}},
			want:       "dc-de",
			wantReason: map[string]string{"aws-de": "least queue 2, burst above 2"},
		},
		{
			name:         "bursting, the cheapest within target still wins",
			allowed:      []string{"aws-de", "dc-de"},
			loads:        map[string]load{"dc-de": {3, 100}},
			want:         "dc-de",
			wantBursting: true,
			wantReason:   map[string]string{"aws-de": "costs"},
		},
		{
			name:    "burst needs every on-prem executor saturated",
			allowed: []string{"aws-de", "dc-de", "dc-de-2"},
			loads:   map[string]load{"dc-de": {5, 5000}},
			want:    "dc-de-2",
		},
		{
			name:    "less loaded on-prem is cheaper",
			allowed: []string{"dc-de", "dc-de-2"},
			loads:   map[string]load{"dc-de": {1, 400}},
			target:  10 * time.Second,
			want:    "dc-de-2",
		},
		{
			name:    "never a disallowed one, however loaded",
			allowed: []string{"dc-de"},
			loads:   map[string]load{"dc-de": {50, 50000}},
			want:    "dc-de",
		},
		{
			name:       "data stays home while home can take it",
			allowed:    []string{"aws-us", "dc-de"},
			loads:      map[string]load{"dc-de": {9, 9000}},
			want:       "dc-de",
			wantReason: map[string]string{"aws-us": "jurisdiction US"},
		},
		{
			name:    "on-prem down, cloud takes it",
			allowed: []string{"aws-de", "dc-de"},
			down:    []string{"dc-de"},
			want:    "aws-de",
		},
		{
			name:       "none meets the target: fastest",
			allowed:    []string{"dc-de", "dc-de-2"},
			loads:      map[string]load{"dc-de": {1, 4000}, "dc-de-2": {1, 500}},
			target:     time.Millisecond,
			want:       "dc-de-2",
			wantReason: map[string]string{"dc-de-2": "chosen: fastest", "dc-de": "slower"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			execs := mk()
			for _, e := range execs {
				if slices.Contains(tt.down, e.ID()) {
					e.(*fakeExec).healthy = errors.New("device lost")
				}
			}
			target := tt.target
			if target == 0 {
				target = 1500 * time.Millisecond
			}
			r := NewRouter(execs, RouterOptions{Costs: costs, LatencyTarget: target, Logger: quiet()})
			fixedClock(r)
			for id, l := range tt.loads {
				setLoad(r, id, l.n, l.workMs)
			}
			ch, err := r.Choose(context.Background(), Request{DataJurisdiction: "DE", Allowed: tt.allowed, Rows: 1e6, Plan: clipPlan})
			if err != nil {
				t.Fatalf("Choose: %v", err)
			}
			if ch.Chosen != tt.want || ch.Executor.ID() != tt.want {
				t.Errorf("chose %s, want %s; why: %s; candidates: %+v", ch.Chosen, tt.want, ch.Why, ch.Candidates)
			}
			if ch.Bursting != tt.wantBursting {
				t.Errorf("Bursting = %v, want %v", ch.Bursting, tt.wantBursting)
			}
			if len(ch.Candidates) != len(tt.allowed) {
				t.Errorf("%d candidates, want one per allowed executor (%d)", len(ch.Candidates), len(tt.allowed))
			}
			for _, c := range ch.Candidates {
				if !slices.Contains(tt.allowed, c.ID) {
					t.Errorf("candidate %s is not allowed", c.ID)
				}
				if c.Reason == "" {
					t.Errorf("candidate %s has no reason", c.ID)
				}
				if want, ok := tt.wantReason[c.ID]; ok && !strings.Contains(c.Reason, want) {
					t.Errorf("%s: reason %q does not mention %q", c.ID, c.Reason, want)
				}
			}
		})
	}
}

// TestRouterHysteresis walks the on-prem queue up and down across the
// burst threshold: the burst starts above BurstAbove and ends only at
// BurstBelow, so depths in between keep the current state.
func TestRouterHysteresis(t *testing.T) {
	dc := &fakeExec{id: "dc", loc: Location{Kind: "onprem", Jurisdiction: "DE"}}
	cloud := &fakeExec{id: "cloud", loc: Location{Kind: "cloud", Jurisdiction: "DE"}}
	r := NewRouter([]Executor{dc, cloud}, RouterOptions{
		Costs:         map[string]Cost{"dc": {RowsPerSecond: 1e6}, "cloud": {RowsPerSecond: 1e6}},
		LatencyTarget: 500 * time.Millisecond, BurstAbove: 3, BurstBelow: 1,
	})
	fixedClock(r)
	steps := []struct {
		depth int
		want  string
	}{
		{0, "dc"}, {2, "dc"}, {3, "dc"}, // at the threshold: not yet
		{4, "cloud"},               // above: burst
		{3, "cloud"}, {2, "cloud"}, // between: keep bursting
		{1, "dc"},            // at BurstBelow: burst ends
		{2, "dc"}, {3, "dc"}, // between again: no flap back
		{4, "cloud"},
	}
	for i, s := range steps {
		setLoad(r, "dc", s.depth, 1000*float64(s.depth))
		ch, err := r.Choose(context.Background(), Request{DataJurisdiction: "DE", Allowed: []string{"dc", "cloud"}, Rows: 1000, Plan: clipPlan})
		if err != nil {
			t.Fatal(err)
		}
		if ch.Chosen != s.want {
			t.Errorf("step %d (on-prem depth %d): chose %s, want %s (%s)", i, s.depth, ch.Chosen, s.want, ch.Why)
		}
	}
}

// gatedExec blocks in Execute until its gate is closed, and fails with
// err when set.
type gatedExec struct {
	fakeExec
	gate  chan struct{}
	err   error
	calls atomic.Int32
}

func (g *gatedExec) Execute(ctx context.Context, _ *Plan, rec arrow.RecordBatch) (arrow.RecordBatch, error) {
	g.calls.Add(1)
	if g.gate != nil {
		<-g.gate
	}
	if g.err != nil {
		return nil, g.err
	}
	rec.Retain()
	return rec, nil
}

// TestRouterTracksQueue runs real (blocked) Execute calls through the
// chosen executors and checks that the queue they build moves the router
// to the cloud, and that it comes back once they finish.
func TestRouterTracksQueue(t *testing.T) {
	gate := make(chan struct{})
	dc := &gatedExec{fakeExec: fakeExec{id: "dc", loc: Location{Kind: "onprem", Jurisdiction: "DE"}}, gate: gate}
	cloud := &gatedExec{fakeExec: fakeExec{id: "cloud", loc: Location{Kind: "cloud", Jurisdiction: "DE"}}}
	r := NewRouter([]Executor{dc, cloud}, RouterOptions{
		Costs:         map[string]Cost{"dc": {RowsPerSecond: 1e3}, "cloud": {RowsPerSecond: 1e3}},
		LatencyTarget: 1500 * time.Millisecond,
	})
	req := Request{DataJurisdiction: "DE", Allowed: []string{"dc", "cloud"}, Rows: 1000, Plan: clipPlan}
	rec := buildRecord(t, memory.DefaultAllocator, column{"x", arrow.PrimitiveTypes.Float64, make([]any, 1000)})
	defer rec.Release()
	var wg sync.WaitGroup
	for i := range 3 {
		ch, err := r.Choose(context.Background(), req)
		if err != nil || ch.Chosen != "dc" {
			t.Fatalf("batch %d: chose %s, %v; want dc while it is not saturated", i, ch.Chosen, err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if out, err := ch.Executor.Execute(context.Background(), clipPlan, rec); err == nil {
				out.Release()
			}
		}()
	}
	waitFor(t, func() bool { return r.QueueDepth("dc") == 3 })
	ch, err := r.Choose(context.Background(), req)
	if err != nil || ch.Chosen != "cloud" || !ch.Bursting {
		t.Fatalf("with 3 batches queued on dc: chose %s (bursting %v), %v; want cloud", ch.Chosen, ch.Bursting, err)
	}
	close(gate)
	wg.Wait()
	if d := r.QueueDepth("dc"); d != 0 {
		t.Fatalf("queue depth after the batches finished = %d", d)
	}
	if ch, _ := r.Choose(context.Background(), req); ch.Chosen != "dc" {
		t.Errorf("after the queue drained: chose %s, want dc", ch.Chosen)
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached in 5s")
		}
		time.Sleep(time.Millisecond)
	}
}

func TestRouterFailover(t *testing.T) {
	rec := buildRecord(t, memory.DefaultAllocator, column{"x", arrow.PrimitiveTypes.Float64, []any{1.0}})
	defer rec.Release()
	lost := fmt.Errorf("connection refused: %w", ErrUnavailable)
	dc := &gatedExec{fakeExec: fakeExec{id: "dc", loc: Location{Kind: "onprem", Jurisdiction: "DE"}}, err: lost}
	dc2 := &gatedExec{fakeExec: fakeExec{id: "dc2", loc: Location{Kind: "onprem", Jurisdiction: "DE"}}}
	cloud := &gatedExec{fakeExec: fakeExec{id: "cloud", loc: Location{Kind: "cloud", Jurisdiction: "US"}}}
	r := NewRouter([]Executor{dc, dc2, cloud}, RouterOptions{Logger: quiet(), FailCooldown: time.Hour})
	ctx := context.Background()

	out, ch, err := r.Execute(ctx, Request{DataJurisdiction: "DE", Allowed: []string{"dc", "dc2"}, Plan: clipPlan}, rec)
	if err != nil {
		t.Fatalf("Execute: %v", err)
	}
	out.Release()
	if ch.Chosen != "dc2" || len(ch.Failovers) != 1 || !strings.HasPrefix(ch.Failovers[0], "dc: ") {
		t.Errorf("chose %s after failovers %v; want dc2 after dc", ch.Chosen, ch.Failovers)
	}
	// The failed executor sits out its cooldown without being called.
	ch, err = r.Choose(ctx, Request{DataJurisdiction: "DE", Allowed: []string{"dc", "dc2"}})
	if err != nil || ch.Chosen != "dc2" {
		t.Fatalf("Choose after failure = %s, %v", ch.Chosen, err)
	}
	if c := ch.Candidates[0]; c.Healthy || !strings.Contains(c.Reason, "connection refused") {
		t.Errorf("failed executor reported as %+v", c)
	}
	calls := dc.calls.Load()

	// Only the failed one allowed: the batch waits (ErrUnavailable), and
	// is never sent to the cloud executor it was not allowed on.
	_, _, err = r.Execute(ctx, Request{DataJurisdiction: "DE", Allowed: []string{"dc"}, Plan: clipPlan}, rec)
	if !errors.Is(err, ErrUnavailable) {
		t.Errorf("Execute with only the failed executor allowed = %v, want ErrUnavailable", err)
	}
	if dc.calls.Load() != calls || cloud.calls.Load() != 0 {
		t.Errorf("calls: dc %d (was %d), cloud %d", dc.calls.Load(), calls, cloud.calls.Load())
	}

	// A permanent error is not retried elsewhere.
	dc2.err = fmt.Errorf("bad plan: %w", ErrInvalidPlan)
	_, _, err = r.Execute(ctx, Request{DataJurisdiction: "DE", Allowed: []string{"dc2", "cloud"}, Plan: clipPlan}, rec)
	if !errors.Is(err, ErrInvalidPlan) || cloud.calls.Load() != 0 {
		t.Errorf("permanent error: %v, cloud calls %d; want ErrInvalidPlan and no retry", err, cloud.calls.Load())
	}
}
