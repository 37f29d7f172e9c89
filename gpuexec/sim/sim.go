// Package sim is a discrete-event simulation of a day of batches through
// the real router (gpuexec.Router) and the real policy decisions
// (policy.Decider) with simulated time and simulated executors: owned GPU
// sites with a fixed number of GPUs and cloud regions whose instances start
// on demand. It reports utilization, queue depth, latency, cost, policy
// violations and rows that could not be placed, for sluice's router and for
// two baselines (all-cloud, on-prem only). `sluice simulate` drives it.
package sim

import (
	"container/heap"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"math/rand/v2"
	"slices"
	"sort"
	"time"

	"github.com/apache/arrow-go/v18/arrow"

	"github.com/sluice-dev/sluice/gpuexec"
	"github.com/sluice-dev/sluice/policy"
)

// Strategy is how batches are placed.
type Strategy string

const (
	// Sluice is the real router over every allowed executor: on-prem
	// first, bursting to the cloud under its thresholds.
	Sluice Strategy = "sluice"
	// AllCloud sends every batch to the cheapest cloud region its
	// decisions allow. Batches no cloud region may take (PHI) run on the
	// allowed on-prem executors, placed by the router, and are charged
	// for their busy GPU time only (not the sites' whole amortized cost),
	// which flatters this baseline.
	AllCloud Strategy = "all-cloud"
	// OnPremOnly is the real router restricted to on-prem executors: no
	// burst. Batches no on-prem executor may take are not placed.
	OnPremOnly Strategy = "onprem-only"
)

// Config describes one simulation. Zero fields take the defaults named.
type Config struct {
	// Profile is the arrival rate. Default: BurstyWeekday().
	Profile Profile
	// Mix is the share of each kind of data. Default: DefaultMix().
	Mix []Stream
	// Pool is the executors. Default: DefaultPool().
	Pool Pool
	// Span is the simulated time. Default: 24h.
	Span time.Duration
	// Step is the arrival grid: each step draws a Poisson number of
	// batches at the profile's rate, spread uniformly over the step.
	// Default: 1s.
	Step time.Duration
	// BatchRows is the rows per batch. Default: 2,000,000.
	BatchRows int
	// RowBytes is the size of a row in bytes. Default: 200.
	RowBytes int
	// Seed makes a run reproducible. Default: 1.
	Seed uint64
	// Decider is the policy. Required (the shipped policies, memoized).
	Decider policy.Decider
	// Purpose is the pipeline's declared purpose. Default: "ml-training".
	Purpose string
	// Router configures the router (its Costs and Clock are set by the
	// simulation from the pool and simulated time).
	Router gpuexec.RouterOptions
	// Buckets is the number of time buckets of the series. Default: 288
	// (5 minutes in a day).
	Buckets int

	// pick, when set, replaces the strategy's choice (tests inject a
	// wrong choice to see it counted as a violation).
	pick func(allowed, all []string) string
}

// DefaultBatchRows and the other defaults of Config.
const (
	DefaultBatchRows = 2_000_000
	DefaultRowBytes  = 200
	DefaultPurpose   = "ml-training"
)

func (c *Config) defaults() error {
	if c.Profile == nil {
		c.Profile = BurstyWeekday()
	}
	if c.Mix == nil {
		c.Mix = DefaultMix()
	}
	if len(c.Pool.OnPrem)+len(c.Pool.Cloud) == 0 {
		c.Pool = DefaultPool()
	}
	if err := c.Pool.check(); err != nil {
		return err
	}
	if c.Span <= 0 {
		c.Span = 24 * time.Hour
	}
	if c.Step <= 0 {
		c.Step = time.Second
	}
	if c.BatchRows <= 0 {
		c.BatchRows = DefaultBatchRows
	}
	if c.RowBytes <= 0 {
		c.RowBytes = DefaultRowBytes
	}
	if c.Seed == 0 {
		c.Seed = 1
	}
	if c.Purpose == "" {
		c.Purpose = DefaultPurpose
	}
	if c.Buckets <= 0 {
		c.Buckets = 288
	}
	if c.Decider == nil {
		return errors.New("sim: no policy decider")
	}
	var w float64
	for _, s := range c.Mix {
		if s.Weight < 0 || (s.Class != "card" && s.Class != "clinical") {
			return fmt.Errorf("sim: mix: stream %s/%s: class must be card or clinical and weight >= 0", s.Jurisdiction, s.Class)
		}
		w += s.Weight
	}
	if w <= 0 {
		return errors.New("sim: mix: weights sum to 0")
	}
	return nil
}

// Latency is a latency distribution, arrival to completion, in ms.
type Latency struct {
	Batches int64   `json:"batches"`
	P50Ms   float64 `json:"p50_ms"`
	P99Ms   float64 `json:"p99_ms"`
	MaxMs   float64 `json:"max_ms"`
}

// Sample is one time bucket of an executor's series.
type Sample struct {
	// Util is busy GPU time over the bucket's capacity (owned GPUs
	// on-prem, running instances in the cloud; 0 when none ran).
	Util float64 `json:"util"`
	// GPUs is the mean number of GPUs running (on-prem: all of them).
	GPUs float64 `json:"gpus"`
	// Busy is the mean number of GPUs busy.
	Busy float64 `json:"busy"`
	// MaxQueue is the most batches waiting for a GPU in the bucket.
	MaxQueue int `json:"max_queue"`
}

// ExecStats is one executor's share of a run.
type ExecStats struct {
	ID   string `json:"id"`
	Kind string `json:"kind"`
	// GPUs is the site's GPUs or the region's maximum.
	GPUs     int     `json:"gpus"`
	Batches  int64   `json:"batches"`
	Rows     int64   `json:"rows"`
	BusyH    float64 `json:"busy_gpu_hours"`
	PaidH    float64 `json:"paid_gpu_hours"`
	Util     float64 `json:"util"`
	CostUSD  float64 `json:"cost_usd"`
	EgressGB float64 `json:"egress_gb"`
	MaxQueue int     `json:"max_queue"`
	// Series has Config.Buckets samples over the span.
	Series []Sample `json:"series"`
}

// Result is one strategy's run.
type Result struct {
	Strategy Strategy `json:"strategy"`
	Batches  int64    `json:"batches"`
	Rows     int64    `json:"rows"`
	// Violations counts batches placed on an executor their decisions do
	// not allow.
	Violations int64 `json:"violations"`
	// NotPlaced counts rows no executor took: the policy allows none of
	// the strategy's executors (quarantined).
	NotPlacedRows    int64            `json:"not_placed_rows"`
	NotPlacedBatches int64            `json:"not_placed_batches"`
	NotPlacedBy      map[string]int64 `json:"not_placed_by_stream"`
	// Unfinished counts batches still queued or running at the end.
	Unfinished int64   `json:"unfinished"`
	CostUSD    float64 `json:"cost_usd"`
	OnPremUSD  float64 `json:"onprem_usd"`
	CloudUSD   float64 `json:"cloud_usd"`
	EgressUSD  float64 `json:"egress_usd"`
	// OnPremUtil is busy over owned GPU time, all sites together.
	OnPremUtil float64 `json:"onprem_util"`
	// CloudShare is the share of placed rows that ran in the cloud.
	CloudShare float64            `json:"cloud_share"`
	Latency    Latency            `json:"latency"`
	ByClass    map[string]Latency `json:"latency_by_class"`
	Executors  []ExecStats        `json:"executors"`
	// Decisions counts policy evaluations asked of the Decider.
	Decisions int64 `json:"decisions"`
	// BucketSeconds is the length of one series sample.
	BucketSeconds float64 `json:"bucket_seconds"`
	// ArrivalRows is the rows that arrived per bucket.
	ArrivalRows []int64 `json:"arrival_rows"`
}

// plan is the router's reference plan (one step, one clip op), so the
// router's model sees each GPU's RowsPerSecond exactly as the pool gives it.
var plan = &gpuexec.Plan{Steps: []gpuexec.Step{{Output: "f", Input: "x", Ops: []gpuexec.Op{{Kind: gpuexec.OpClip}}}}}

// simExec is a simulated executor; it satisfies gpuexec.Executor for the
// router (Execute is never called: the simulation holds the router's
// queue with Router.Hold).
type simExec struct {
	id     string
	loc    gpuexec.Location
	onprem bool
	gpus   int // owned GPUs, or the cloud maximum
	rps    float64
	price  float64
	cost   gpuexec.Cost
	// Cloud.
	scaleUp, idleTimeout time.Duration
	egress               float64

	queue   []*batch
	busy    int
	running int // cloud: instances started (booting or up)
	booting int
	idle    []*instance // cloud: instances up and idle, LIFO

	lastT          time.Duration
	busyInt, gpInt float64 // integrals in GPU-seconds
	stats          ExecStats
}

type instance struct {
	started   time.Duration
	idleSince time.Duration
	gen       int
}

func (e *simExec) ID() string                    { return e.id }
func (e *simExec) Kind() string                  { return "remote" }
func (e *simExec) Location() gpuexec.Location    { return e.loc }
func (e *simExec) Healthy(context.Context) error { return nil }
func (e *simExec) Execute(context.Context, *gpuexec.Plan, arrow.RecordBatch) (arrow.RecordBatch, error) {
	return nil, errors.New("sim: a simulated executor runs no data")
}

type batch struct {
	arrive  time.Duration
	stream  int
	exec    *simExec
	inst    *instance
	release func()
}

type evKind int

const (
	evArrive evKind = iota
	evDone
	evReady
	evIdle
)

type event struct {
	t    time.Duration
	seq  int
	kind evKind
	b    *batch
	e    *simExec
	inst *instance
	gen  int
}

type events []*event

func (h events) Len() int { return len(h) }
func (h events) Less(i, j int) bool {
	if h[i].t != h[j].t {
		return h[i].t < h[j].t
	}
	return h[i].seq < h[j].seq
}
func (h events) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *events) Push(x any)   { *h = append(*h, x.(*event)) }
func (h *events) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

// run is one simulation's state.
type run struct {
	cfg     Config
	strat   Strategy
	ctx     context.Context
	router  *gpuexec.Router
	execs   []*simExec
	byID    map[string]*simExec
	now     time.Duration
	ev      events
	seq     int
	rng     *rand.Rand
	bucket  time.Duration
	inputs  []policy.Input
	lat     map[string][]float64
	res     *Result
	allIDs  []string
	onIDs   []string
	pending int64
}

var epoch = time.Date(2026, 3, 2, 0, 0, 0, 0, time.UTC) // a Monday

// Run simulates cfg under strat.
func Run(ctx context.Context, cfg Config, strat Strategy) (*Result, error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	r := &run{cfg: cfg, strat: strat, ctx: ctx, byID: map[string]*simExec{},
		rng:    rand.New(rand.NewPCG(cfg.Seed, 0x5111ce)),
		bucket: cfg.Span / time.Duration(cfg.Buckets),
		lat:    map[string][]float64{},
		res: &Result{Strategy: strat, NotPlacedBy: map[string]int64{}, ByClass: map[string]Latency{},
			ArrivalRows: make([]int64, cfg.Buckets)},
	}
	r.res.BucketSeconds = r.bucket.Seconds()
	costs := map[string]gpuexec.Cost{}
	var execs []gpuexec.Executor
	for _, s := range cfg.Pool.OnPrem {
		e := &simExec{id: s.ID, onprem: true, gpus: s.GPUs, rps: s.RowsPerSecond, price: s.PricePerHour,
			loc: gpuexec.Location{Name: s.Name, Kind: "onprem", Site: s.Site, Jurisdiction: s.Jurisdiction, Certifications: s.Certifications}}
		r.add(e)
		execs = append(execs, e)
		r.onIDs = append(r.onIDs, e.id)
	}
	for _, c := range cfg.Pool.Cloud {
		e := &simExec{id: c.ID, gpus: c.MaxGPUs, rps: c.RowsPerSecond, price: c.PricePerHour,
			scaleUp: time.Duration(c.ScaleUp), idleTimeout: time.Duration(c.IdleTimeout), egress: c.EgressPerGB,
			loc: gpuexec.Location{Name: c.Region, Kind: "cloud", Provider: c.Provider, Region: c.Region, Jurisdiction: c.Jurisdiction, Certifications: c.Certifications}}
		r.add(e)
		execs = append(execs, e)
	}
	for _, e := range r.execs {
		e.cost = gpuexec.Cost{PricePerHour: e.price, RowsPerSecond: e.rps, Slots: e.gpus}
		costs[e.id] = e.cost
	}
	opts := cfg.Router
	opts.Costs = costs
	opts.Clock = func() time.Time { return epoch.Add(r.now) }
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	r.router = gpuexec.NewRouter(execs, opts)
	for _, e := range r.execs {
		c, _ := r.router.CostOf(e.id)
		e.cost = c
	}

	for _, s := range cfg.Mix {
		r.inputs = append(r.inputs, inputFor(cfg.Purpose, s))
	}
	r.arrivals()
	for r.ev.Len() > 0 {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		ev := heap.Pop(&r.ev).(*event)
		if ev.t > cfg.Span {
			break
		}
		r.now = ev.t
		switch ev.kind {
		case evArrive:
			if err := r.arrive(ev.b); err != nil {
				return nil, err
			}
		case evDone:
			r.done(ev.b)
		case evReady:
			e := ev.e
			r.integrate(e)
			e.booting--
			r.free(e, ev.inst)
		case evIdle:
			e := ev.e
			if ev.inst.gen == ev.gen && slices.Contains(e.idle, ev.inst) {
				r.integrate(e)
				e.idle = slices.DeleteFunc(e.idle, func(x *instance) bool { return x == ev.inst })
				e.running--
				e.stats.PaidH += (r.now - ev.inst.started).Hours()
			}
		}
	}
	r.now = cfg.Span
	r.finish()
	return r.res, nil
}

func (r *run) add(e *simExec) {
	r.execs = append(r.execs, e)
	r.byID[e.id] = e
	r.allIDs = append(r.allIDs, e.id)
	e.stats = ExecStats{ID: e.id, Kind: e.loc.Kind, GPUs: e.gpus, Series: make([]Sample, r.cfg.Buckets)}
}

func (r *run) push(ev *event) {
	r.seq++
	ev.seq = r.seq
	heap.Push(&r.ev, ev)
}

// inputFor is the policy input of one stream, as transform builds it per
// row group (without the executor).
func inputFor(purpose string, s Stream) policy.Input {
	var cols []policy.Column
	var classes []string
	switch s.Class {
	case "card":
		cols = []policy.Column{{Name: "amount", Classes: []string{"financial"}}, {Name: "pan", Classes: []string{"pii"}}}
		classes = []string{"financial", "pii"}
	case "clinical":
		cols = []policy.Column{{Name: "diagnosis", Classes: []string{"phi"}}}
		classes = []string{"phi"}
	}
	return policy.Input{
		Pipeline: policy.Pipeline{Name: "simulate", Purpose: purpose},
		Data:     policy.Data{Jurisdiction: s.Jurisdiction, Region: policy.Region(s.Jurisdiction), Classes: classes, Columns: cols},
	}
}

// arrivals draws every batch's arrival.
func (r *run) arrivals() {
	var wsum float64
	for _, s := range r.cfg.Mix {
		wsum += s.Weight
	}
	for t := time.Duration(0); t < r.cfg.Span; t += r.cfg.Step {
		step := min(r.cfg.Step, r.cfg.Span-t)
		mean := r.cfg.Profile.Rate(t+step/2) * step.Seconds() / float64(r.cfg.BatchRows)
		n := poisson(r.rng, mean)
		at := make([]time.Duration, n)
		for i := range at {
			at[i] = t + time.Duration(r.rng.Float64()*float64(step))
		}
		slices.Sort(at)
		for _, a := range at {
			x := r.rng.Float64() * wsum
			s := 0
			for s < len(r.cfg.Mix)-1 && x >= r.cfg.Mix[s].Weight {
				x -= r.cfg.Mix[s].Weight
				s++
			}
			r.push(&event{t: a, kind: evArrive, b: &batch{arrive: a, stream: s}})
		}
	}
}

func poisson(rng *rand.Rand, mean float64) int {
	if mean <= 0 {
		return 0
	}
	if mean > 50 {
		return max(0, int(math.Round(mean+rng.NormFloat64()*math.Sqrt(mean))))
	}
	l, k, p := math.Exp(-mean), 0, 1.0
	for {
		p *= rng.Float64()
		if p <= l {
			return k
		}
		k++
	}
}

func (r *run) bucketOf(t time.Duration) int {
	return min(int(t/r.bucket), r.cfg.Buckets-1)
}

// arrive decides, places and queues one batch.
func (r *run) arrive(b *batch) error {
	rows := int64(r.cfg.BatchRows)
	r.res.Batches++
	r.res.Rows += rows
	r.res.ArrivalRows[r.bucketOf(r.now)] += rows
	in := r.inputs[b.stream]
	s := r.cfg.Mix[b.stream]

	// The real decisions, per executor, as transform asks them.
	var allowed []string
	for _, e := range r.execs {
		q := in
		q.Executor = policy.Executor{ID: e.id, Kind: e.loc.Kind, Provider: e.loc.Provider, Site: e.loc.Site,
			Region: e.loc.Region, Jurisdiction: e.loc.Jurisdiction, Certifications: e.loc.Certifications}
		d, err := r.cfg.Decider.Decide(r.ctx, q)
		r.res.Decisions++
		if err == nil && d.Allow {
			allowed = append(allowed, e.id)
		}
	}
	req := gpuexec.Request{DataJurisdiction: s.Jurisdiction, Rows: r.cfg.BatchRows, Bytes: rows * int64(r.cfg.RowBytes), Plan: plan}

	var id string
	var err error
	switch {
	case r.cfg.pick != nil:
		id = r.cfg.pick(allowed, r.allIDs)
	default:
		id, err = r.choose(req, allowed)
	}
	if id == "" || errors.Is(err, gpuexec.ErrNoneAllowed) {
		r.res.NotPlacedBatches++
		r.res.NotPlacedRows += rows
		r.res.NotPlacedBy[s.Jurisdiction+"/"+s.Class] += rows
		return nil
	}
	if err != nil {
		return fmt.Errorf("sim: route at %s: %w", r.now, err)
	}
	if !slices.Contains(allowed, id) {
		r.res.Violations++
	}
	e := r.byID[id]
	b.exec = e
	b.release, _ = r.router.Hold(id, req)
	e.stats.Batches++
	e.stats.Rows += rows
	r.integrate(e)
	e.queue = append(e.queue, b)
	r.pending++
	r.dispatch(e)
	return nil
}

// choose is the strategy's placement; "" means not placed.
func (r *run) choose(req gpuexec.Request, allowed []string) (string, error) {
	switch r.strat {
	case OnPremOnly:
		req.Allowed = onlyOf(allowed, r.onIDs)
	case AllCloud:
		best, bestPrice := "", math.Inf(1)
		for _, id := range allowed {
			e := r.byID[id]
			if e.onprem {
				continue
			}
			price := r.rowPrice(e, req.DataJurisdiction)
			if price < bestPrice {
				best, bestPrice = id, price
			}
		}
		if best != "" {
			return best, nil
		}
		req.Allowed = onlyOf(allowed, r.onIDs)
	default:
		req.Allowed = allowed
	}
	if len(req.Allowed) == 0 {
		return "", nil
	}
	ch, err := r.router.Choose(r.ctx, req)
	if err != nil {
		return "", err
	}
	return ch.Chosen, nil
}

// rowPrice is the price of one row on cloud executor e: GPU time and
// egress.
func (r *run) rowPrice(e *simExec, jurisdiction string) float64 {
	gb := 8 / 1e9
	if policy.Region(jurisdiction) != policy.Region(e.loc.Jurisdiction) {
		gb += float64(r.cfg.RowBytes) / 1e9
	}
	return e.price/3600/e.rps + gb*e.egress
}

func onlyOf(ids, keep []string) []string {
	var out []string
	for _, id := range ids {
		if slices.Contains(keep, id) {
			out = append(out, id)
		}
	}
	return out
}

// integrate accumulates e's busy and running GPU time up to now, per bucket.
func (r *run) integrate(e *simExec) {
	gpus := float64(e.gpus)
	if !e.onprem {
		gpus = float64(e.running)
	}
	busy := float64(e.busy)
	t := e.lastT
	for t < r.now {
		k := r.bucketOf(t)
		end := min(r.now, time.Duration(k+1)*r.bucket)
		if k == r.cfg.Buckets-1 {
			end = r.now
		}
		dt := (end - t).Seconds()
		e.stats.Series[k].Busy += busy * dt
		e.stats.Series[k].GPUs += gpus * dt
		e.busyInt += busy * dt
		e.gpInt += gpus * dt
		t = end
	}
	e.lastT = r.now
}

// dispatch starts queued batches on free GPUs, starting cloud instances as
// needed.
func (r *run) dispatch(e *simExec) {
	for len(e.queue) > 0 {
		if e.onprem {
			if e.busy >= e.gpus {
				break
			}
			r.start(e, nil)
			continue
		}
		if n := len(e.idle); n > 0 {
			inst := e.idle[n-1]
			e.idle = e.idle[:n-1]
			inst.gen++
			r.start(e, inst)
			continue
		}
		// Boot instances for the batches no booting instance will take.
		if len(e.queue) > e.booting && e.running < e.gpus {
			e.running++
			e.booting++
			inst := &instance{started: r.now}
			r.push(&event{t: r.now + e.scaleUp, kind: evReady, e: e, inst: inst})
			continue
		}
		break
	}
	k := r.bucketOf(r.now)
	e.stats.Series[k].MaxQueue = max(e.stats.Series[k].MaxQueue, len(e.queue))
	e.stats.MaxQueue = max(e.stats.MaxQueue, len(e.queue))
}

// start runs the head of e's queue.
func (r *run) start(e *simExec, inst *instance) {
	b := e.queue[0]
	e.queue = e.queue[1:]
	b.inst = inst
	e.busy++
	r.push(&event{t: r.now + r.service(e), kind: evDone, b: b})
}

// service is the time one batch keeps a GPU: compute at the pool's
// throughput, the link transfer and the per-batch overhead (the terms of
// the router's estimate), with ±10% noise.
func (r *run) service(e *simExec) time.Duration {
	rows := float64(r.cfg.BatchRows)
	ms := rows / e.cost.RowsPerSecond * 1e3
	if e.cost.LinkMBps > 0 {
		ms += (rows*float64(r.cfg.RowBytes) + rows*8) / (e.cost.LinkMBps * 1e6) * 1e3
	}
	ms += e.cost.OverheadMs
	ms *= math.Exp(0.1 * r.rng.NormFloat64())
	return time.Duration(ms * float64(time.Millisecond))
}

func (r *run) done(b *batch) {
	e := b.exec
	r.integrate(e)
	e.busy--
	r.pending--
	b.release()
	ms := float64(r.now-b.arrive) / float64(time.Millisecond)
	class := r.cfg.Mix[b.stream].Class
	r.lat[class] = append(r.lat[class], ms)
	r.lat[""] = append(r.lat[""], ms)
	if !e.onprem {
		rows := float64(r.cfg.BatchRows)
		gb := rows * 8 / 1e9 // results back
		if policy.Region(r.cfg.Mix[b.stream].Jurisdiction) != policy.Region(e.loc.Jurisdiction) {
			gb += rows * float64(r.cfg.RowBytes) / 1e9
		}
		e.stats.EgressGB += gb
	}
	if e.onprem {
		r.dispatch(e)
		return
	}
	r.free(e, b.inst)
}

// free hands a cloud instance the next batch, or idles it until its idle
// timeout.
func (r *run) free(e *simExec, inst *instance) {
	if len(e.queue) > 0 {
		inst.gen++
		r.start(e, inst)
		r.dispatch(e)
		return
	}
	inst.gen++
	inst.idleSince = r.now
	e.idle = append(e.idle, inst)
	r.push(&event{t: r.now + e.idleTimeout, kind: evIdle, e: e, inst: inst, gen: inst.gen})
}

// finish closes the books at the end of the span.
func (r *run) finish() {
	res := r.res
	span := r.cfg.Span.Hours()
	var onBusy, onCap, placedCloud, placed float64
	for _, e := range r.execs {
		r.integrate(e)
		st := &e.stats
		st.BusyH = e.busyInt / 3600
		for k := range st.Series {
			s := &st.Series[k]
			secs := r.bucket.Seconds()
			if s.GPUs > 0 {
				s.Util = s.Busy / s.GPUs
			}
			s.Busy /= secs
			s.GPUs /= secs
		}
		if e.onprem {
			st.PaidH = float64(e.gpus) * span
			if r.strat == AllCloud {
				st.PaidH = st.BusyH // see AllCloud
			}
			onBusy += st.BusyH
			onCap += float64(e.gpus) * span
		} else {
			// Instances still up are billed to the end of the span.
			for _, inst := range e.idle {
				st.PaidH += (r.cfg.Span - inst.started).Hours()
			}
			placedCloud += float64(st.Rows)
		}
		placed += float64(st.Rows)
		if st.PaidH > 0 {
			st.Util = st.BusyH / st.PaidH
		}
	}
	// Busy and booting cloud instances at the end: billed from their
	// start, which the events in flight carry.
	for _, ev := range r.ev {
		switch {
		case ev.kind == evDone && ev.b.inst != nil:
			ev.b.exec.stats.PaidH += (r.cfg.Span - ev.b.inst.started).Hours()
		case ev.kind == evReady:
			ev.e.stats.PaidH += (r.cfg.Span - ev.inst.started).Hours()
		}
	}
	for _, e := range r.execs {
		st := &e.stats
		if !e.onprem && st.PaidH > 0 {
			st.Util = st.BusyH / st.PaidH
		}
		st.CostUSD = st.PaidH*e.price + st.EgressGB*e.egress
		res.CostUSD += st.CostUSD
		res.EgressUSD += st.EgressGB * e.egress
		if e.onprem {
			res.OnPremUSD += st.CostUSD
		} else {
			res.CloudUSD += st.CostUSD
		}
		res.Executors = append(res.Executors, *st)
	}
	if onCap > 0 {
		res.OnPremUtil = onBusy / onCap
	}
	if placed > 0 {
		res.CloudShare = placedCloud / placed
	}
	res.Unfinished = r.pending
	for class, l := range r.lat {
		lt := latency(l)
		if class == "" {
			res.Latency = lt
		} else {
			res.ByClass[class] = lt
		}
	}
}

func latency(ms []float64) Latency {
	if len(ms) == 0 {
		return Latency{}
	}
	sort.Float64s(ms)
	q := func(p float64) float64 { return ms[min(len(ms)-1, int(math.Ceil(p*float64(len(ms))))-1)] }
	return Latency{Batches: int64(len(ms)), P50Ms: q(0.50), P99Ms: q(0.99), MaxMs: ms[len(ms)-1]}
}
