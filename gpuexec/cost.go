package gpuexec

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
)

// Cost says what running work on one executor costs, in time and money.
// A zero field takes the default its comment names, which depends on the
// executor's Location().Kind ("onprem" or anything else, i.e. cloud) and
// Kind() ("remote" executors sit behind a network link; "cpu" and "cuda"
// run in the process).
type Cost struct {
	// PricePerHour is what an hour of the executor's work costs, in USD:
	// the cloud bill, or for owned hardware its amortized price (purchase
	// over its life, plus power and space). Default: 1.0 on-prem (a
	// ~$25k server over three years), 3.0 in the cloud (an on-demand GPU
	// or large CPU instance). Set it from your own bill.
	PricePerHour float64 `yaml:"price_per_hour" json:"price_per_hour"`
	// RowsPerSecond is the executor's throughput on a one-step plan of one
	// clip op; a plan's estimated time scales with its op costs relative to
	// that (RouterOptions.OpCosts). Router.Calibrate measures it. Default:
	// 3e8, one core of the machine the CPU executor was benchmarked on
	// (docs/executors.md).
	RowsPerSecond float64 `yaml:"rows_per_second" json:"rows_per_second"`
	// LinkMBps is the bandwidth, in MB/s (1e6 bytes), between the runner
	// and the executor; input and output bytes cross it. Default: no
	// transfer for an in-process executor; for a remote one 1000 on-prem
	// (10 GbE) and 100 to the cloud (a shared WAN link).
	LinkMBps float64 `yaml:"link_mbps" json:"link_mbps"`
	// Slots is how many batches the executor runs at once at full speed;
	// beyond that batches queue. Default: 1.
	Slots int `yaml:"slots" json:"slots"`
	// OverheadMs is a fixed cost per batch: an RPC round trip, a kernel
	// launch. Default: 1 for a remote executor, 0 otherwise.
	OverheadMs float64 `yaml:"overhead_ms" json:"overhead_ms"`
}

// Default cost parameters; see Cost and RouterOptions.
const (
	DefaultOnPremPricePerHour = 1.0
	DefaultCloudPricePerHour  = 3.0
	DefaultRowsPerSecond      = 3e8
	DefaultOnPremLinkMBps     = 1000
	DefaultCloudLinkMBps      = 100
	DefaultRemoteOverheadMs   = 1
	// DefaultStepCostNs is the fixed cost of one plan step per row
	// (reading the input column, writing the output), in nanoseconds on
	// one core of the reference machine.
	DefaultStepCostNs = 3.0
	// DefaultIdlePriceFactor is the share of PricePerHour an on-prem
	// executor's work costs while it has a free slot: owned hardware is
	// paid for whether it works or not, so idle capacity costs only power.
	DefaultIdlePriceFactor = 0.1
)

// DefaultOpCosts returns the per-op costs the router assumes, in
// nanoseconds per value on one core of the reference machine, on top of
// DefaultStepCostNs per step. They come from BenchmarkCPUOps
// (executor-1core, one op per step, minus the step cost); only their
// ratios matter once an executor's RowsPerSecond is calibrated.
func DefaultOpCosts() map[OpKind]float64 {
	return map[OpKind]float64{
		OpFillMissing: 1.2,
		OpClip:        0.3,
		OpLog1p:       8,
		OpStandardize: 0.6,
		OpMinMax:      0.5,
		OpBucketize:   2.3,
		OpHashBucket:  8.6,
		OpCategorify:  15.5,
	}
}

// withDefaults fills Cost's zero fields for executor e.
func (c Cost) withDefaults(e Executor) Cost {
	onprem := e.Location().Kind == "onprem"
	remote := e.Kind() == "remote"
	if c.PricePerHour <= 0 {
		c.PricePerHour = DefaultCloudPricePerHour
		if onprem {
			c.PricePerHour = DefaultOnPremPricePerHour
		}
	}
	if c.RowsPerSecond <= 0 {
		c.RowsPerSecond = DefaultRowsPerSecond
	}
	if c.LinkMBps <= 0 && remote {
		c.LinkMBps = DefaultCloudLinkMBps
		if onprem {
			c.LinkMBps = DefaultOnPremLinkMBps
		}
	}
	if c.Slots <= 0 {
		c.Slots = 1
	}
	if c.OverheadMs <= 0 && remote {
		c.OverheadMs = DefaultRemoteOverheadMs
	}
	return c
}

// planWork is the plan's cost per row in reference nanoseconds.
func (r *Router) planWork(p *Plan) float64 {
	if p == nil {
		return 0
	}
	var w float64
	for _, s := range p.Steps {
		w += r.stepCostNs
		for _, op := range s.Ops {
			c, ok := r.opCosts[op.Kind]
			if !ok {
				c = r.stepCostNs // an op we have no figure for: assume a step's worth
			}
			w += c
		}
	}
	return w
}

// refWork is the work of the reference plan RowsPerSecond is stated for.
func (r *Router) refWork() float64 { return r.stepCostNs + r.opCosts[OpClip] }

// estimate is the time one request takes on an executor, split into its
// parts, in milliseconds.
type estimate struct {
	computeMs, transferMs, overheadMs float64
}

func (e estimate) busyMs() float64 { return e.computeMs + e.transferMs + e.overheadMs }

func (r *Router) estimate(c Cost, req Request) estimate {
	var est estimate
	if req.Rows > 0 {
		est.computeMs = float64(req.Rows) * r.planWork(req.Plan) / r.refWork() / c.RowsPerSecond * 1e3
	}
	if c.LinkMBps > 0 {
		est.transferMs = float64(transferBytes(req)) / (c.LinkMBps * 1e6) * 1e3
	}
	est.overheadMs = c.OverheadMs
	return est
}

// transferBytes is what crosses the link: the input, and one 8-byte value
// per row and step back.
func transferBytes(req Request) int64 {
	out := int64(req.Rows) * 8
	if req.Plan != nil {
		out *= int64(len(req.Plan.Steps))
	}
	return req.Bytes + out
}

// requestFor describes rec for the cost model.
func requestFor(plan *Plan, rec arrow.RecordBatch) Request {
	req := Request{Plan: plan}
	if rec != nil {
		req.Rows = int(rec.NumRows())
		for _, col := range rec.Columns() {
			req.Bytes += dataBytes(col.Data())
		}
	}
	return req
}

// dataBytes is the size of an array's buffers, children included. A slice
// counts its whole buffers: an estimate, not an accounting.
func dataBytes(d arrow.ArrayData) int64 {
	var n int64
	for _, b := range d.Buffers() {
		if b != nil {
			n += int64(b.Len())
		}
	}
	for _, c := range d.Children() {
		n += dataBytes(c)
	}
	return n
}

// Calibrate measures the executor called id on plan and rec (one warm-up
// run, then the median of runs, at least three and up to one second's
// worth), sets its RowsPerSecond from the result and returns the new Cost.
// Use a batch the size of real ones: small batches measure overhead. It
// runs the executor outside the router's queue accounting, so call it
// before traffic starts.
func (r *Router) Calibrate(ctx context.Context, id string, plan *Plan, rec arrow.RecordBatch) (Cost, error) {
	ent, ok := r.byID[id]
	if !ok {
		return Cost{}, fmt.Errorf("gpuexec: calibrate: no executor %q", id)
	}
	if rec == nil || rec.NumRows() == 0 || r.planWork(plan) == 0 {
		return Cost{}, errors.New("gpuexec: calibrate: need a plan with steps and a batch with rows")
	}
	run := func() (time.Duration, error) {
		start := time.Now()
		out, err := ent.exec.Execute(ctx, plan, rec)
		if err != nil {
			return 0, fmt.Errorf("gpuexec: calibrate %s: %w", id, err)
		}
		d := time.Since(start)
		out.Release()
		return d, nil
	}
	if _, err := run(); err != nil {
		return Cost{}, err
	}
	var times []time.Duration
	var total time.Duration
	for len(times) < 3 || (total < time.Second && len(times) < 50) {
		d, err := run()
		if err != nil {
			return Cost{}, err
		}
		times = append(times, d)
		total += d
	}
	slices.Sort(times)
	med := times[len(times)/2]

	r.mu.Lock()
	defer r.mu.Unlock()
	c := ent.cost
	// Subtract what the model attributes to the link and the fixed
	// overhead, so RowsPerSecond describes compute alone.
	req := requestFor(plan, rec)
	fixed := estimate{transferMs: r.estimate(c, req).transferMs, overheadMs: c.OverheadMs}
	computeMs := max(float64(med.Nanoseconds())/1e6-fixed.transferMs-fixed.overheadMs, float64(med.Nanoseconds())/1e6/10)
	c.RowsPerSecond = float64(req.Rows) * r.planWork(plan) / r.refWork() / (computeMs / 1e3)
	ent.cost = c
	return c, nil
}

// Predict returns the time the router expects plan on rec to take on the
// executor called id when it is idle (no queue wait), and false when
// there is no such executor.
func (r *Router) Predict(id string, plan *Plan, rec arrow.RecordBatch) (time.Duration, bool) {
	ent, ok := r.byID[id]
	if !ok {
		return 0, false
	}
	r.mu.Lock()
	c := ent.cost
	r.mu.Unlock()
	ms := r.estimate(c, requestFor(plan, rec)).busyMs()
	return time.Duration(ms * float64(time.Millisecond)), true
}

// CostOf returns the cost parameters in force for the executor called id
// (defaults filled in, calibration applied).
func (r *Router) CostOf(id string) (Cost, bool) {
	ent, ok := r.byID[id]
	if !ok {
		return Cost{}, false
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return ent.cost, true
}
