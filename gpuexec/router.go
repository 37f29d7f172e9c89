package gpuexec

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
)

// ErrNoneAllowed means Pick was given no allowed executor: the policy
// allows none for this data, so its rows go to quarantine. Unlike
// ErrUnavailable, waiting does not help.
var ErrNoneAllowed = errors.New("gpuexec: no executor allowed")

// RouterOptions configure a Router. Every zero field takes the default its
// comment names.
type RouterOptions struct {
	// HealthTimeout bounds each executor's Healthy call during Choose, so
	// one hung remote executor cannot stall routing. Default (<= 0): 2s.
	HealthTimeout time.Duration
	// Logger receives a warning for each duplicate or nil executor given to
	// NewRouter, for contradictory options, and a debug line per choice.
	// Default (nil): slog.Default().
	Logger *slog.Logger
	// Costs holds each executor's cost parameters by executor id; a
	// missing executor or a zero field takes Cost's defaults.
	Costs map[string]Cost
	// OpCosts are the per-op costs in reference nanoseconds per value.
	// Default (nil): DefaultOpCosts(). An op missing from a non-nil map
	// costs StepCostNs.
	OpCosts map[OpKind]float64
	// StepCostNs is the per-row cost of a plan step besides its ops.
	// Default (<= 0): DefaultStepCostNs.
	StepCostNs float64
	// LatencyTarget is the time a batch should take, queue wait included.
	// Among the candidates that meet it the cheapest wins; when none does,
	// the fastest. Default (<= 0): 2s.
	LatencyTarget time.Duration
	// BurstAbove is the queue depth (batches in flight) that every allowed
	// on-prem executor must exceed before cloud executors become
	// candidates. Default (<= 0): 2.
	BurstAbove int
	// BurstBelow is the queue depth at or below which some on-prem
	// executor must fall to end a burst. The gap between the two is the
	// hysteresis that keeps routing from flapping. Default (< 0, or >=
	// BurstAbove): 0.
	BurstBelow int
	// IdlePriceFactor scales an on-prem executor's PricePerHour while it
	// has a free slot. Default (<= 0): DefaultIdlePriceFactor; values above
	// 1 are clamped to 1.
	IdlePriceFactor float64
	// FailCooldown is how long an executor whose Execute failed with
	// ErrUnavailable is left out of choices before its health is probed
	// again. Default (<= 0): 5s.
	FailCooldown time.Duration
	// Clock is the router's time source, for queue-wait estimates and
	// failure cooldowns. A simulation sets it to its simulated clock.
	// Default (nil): time.Now.
	Clock func() time.Time
}

// Request describes one slice of data to route.
type Request struct {
	// DataJurisdiction is where the data comes from ("DE").
	DataJurisdiction string
	// Allowed are the executor ids the policy allows for every row.
	Allowed []string
	// Rows and Bytes size the slice; zero means unknown (only queue wait,
	// overhead, price and preference then decide).
	Rows  int
	Bytes int64
	// Plan is what will run; nil means unknown.
	Plan *Plan
}

// Candidate is one allowed executor as the router scored it.
type Candidate struct {
	ID       string `json:"id"`
	Location string `json:"location"`
	// Kind is the location kind: "onprem" or "cloud".
	Kind    string `json:"kind"`
	Healthy bool   `json:"healthy"`
	// EstimatedMs is queue wait + compute + transfer + overhead.
	EstimatedMs float64 `json:"estimated_ms"`
	QueueWaitMs float64 `json:"queue_wait_ms"`
	// CostUSD is the marginal price of this slice's work there.
	CostUSD    float64 `json:"cost_usd"`
	QueueDepth int     `json:"queue_depth"`
	// Eligible is false when a rule (health, jurisdiction, burst gate)
	// kept the candidate out before scoring.
	Eligible bool   `json:"eligible"`
	Reason   string `json:"reason"`
}

// Choice is a routing decision and the evidence behind it, for lineage.
type Choice struct {
	// Executor is the chosen executor, wrapped so that the router counts
	// its queue; it has the same ID, Kind and Location as the original.
	Executor   Executor    `json:"-"`
	Chosen     string      `json:"chosen"`
	Candidates []Candidate `json:"candidates"`
	// Bursting is true when cloud executors were candidates because the
	// on-prem ones were saturated (rule 3 of Router).
	Bursting bool   `json:"bursting"`
	Why      string `json:"why"`
	// Failovers lists, for Router.Execute, each executor that failed
	// before the chosen one ran the batch, with its error.
	Failovers []string `json:"failovers,omitempty"`
}

// Router chooses, for each slice of data, one executor among those the
// policy allows, and keeps each executor's queue. It is safe for
// concurrent use; its set of executors is fixed at NewRouter.
//
// Choose's policy, in order of precedence:
//
//  1. only executors whose ID is in the allowed list (the policy's answer),
//     whose Healthy returns nil and which have not failed within
//     FailCooldown are candidates;
//  2. executors in the data's jurisdiction (Location.Jurisdiction,
//     compared case-insensitively) are candidates before any elsewhere, so
//     data leaves its country only when nothing at home can take it;
//  3. while an on-prem executor (Location.Kind "onprem") is a candidate,
//     cloud executors are held back until every on-prem one has more than
//     BurstAbove batches in flight; the burst lasts until one falls to
//     BurstBelow (hysteresis);
//  4. each remaining candidate is scored: estimated time = queue wait +
//     rows × plan cost / throughput + bytes / link bandwidth + overhead;
//     price = that compute time × the executor's price per second, where
//     an on-prem executor with a free slot costs only IdlePriceFactor of
//     its price. The cheapest that meets LatencyTarget wins; when none
//     does, the fastest;
//  5. ties go to on-prem, then to the order given to NewRouter (the
//     operator's preference).
//
// When no allowed executor is healthy, Choose returns an error wrapping
// ErrUnavailable: the caller must hold the batch and retry later, never
// skip it or send it elsewhere.
type Router struct {
	execs         []Executor
	entries       []*entry
	byID          map[string]*entry
	healthTimeout time.Duration
	log           *slog.Logger

	opCosts         map[OpKind]float64
	stepCostNs      float64
	target          time.Duration
	burstAbove      int
	burstBelow      int
	idlePriceFactor float64
	failCooldown    time.Duration
	now             func() time.Time

	mu sync.Mutex // guards the mutable fields of entries, and bursting
	// bursting records, per set of on-prem candidates, whether a burst
	// to the cloud is on.
	bursting map[string]bool
}

// entry is one executor with its cost and queue.
type entry struct {
	exec    Executor
	tracked *tracked
	order   int

	// Guarded by Router.mu.
	cost       Cost
	inflight   int
	busyStart  time.Time // when inflight last rose from 0
	busyWorkMs float64   // estimated work begun since busyStart
	downUntil  time.Time
	downErr    error
}

// NewRouter returns a router over execs, in order of preference. A nil
// executor or one whose ID repeats an earlier one is ignored with a
// warning.
func NewRouter(execs []Executor, opts RouterOptions) *Router {
	if opts.HealthTimeout <= 0 {
		opts.HealthTimeout = 2 * time.Second
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.OpCosts == nil {
		opts.OpCosts = DefaultOpCosts()
	}
	if opts.StepCostNs <= 0 {
		opts.StepCostNs = DefaultStepCostNs
	}
	if opts.LatencyTarget <= 0 {
		opts.LatencyTarget = 2 * time.Second
	}
	if opts.BurstAbove <= 0 {
		opts.BurstAbove = 2
	}
	if opts.BurstBelow < 0 || opts.BurstBelow >= opts.BurstAbove {
		if opts.BurstBelow != 0 {
			opts.Logger.Warn("gpuexec: router: BurstBelow must be below BurstAbove; using 0",
				"burst_below", opts.BurstBelow, "burst_above", opts.BurstAbove)
		}
		opts.BurstBelow = 0
	}
	if opts.IdlePriceFactor <= 0 {
		opts.IdlePriceFactor = DefaultIdlePriceFactor
	}
	opts.IdlePriceFactor = min(opts.IdlePriceFactor, 1)
	if opts.FailCooldown <= 0 {
		opts.FailCooldown = 5 * time.Second
	}
	if opts.Clock == nil {
		opts.Clock = time.Now
	}
	r := &Router{
		byID:            make(map[string]*entry, len(execs)),
		healthTimeout:   opts.HealthTimeout,
		log:             opts.Logger,
		opCosts:         opts.OpCosts,
		stepCostNs:      opts.StepCostNs,
		target:          opts.LatencyTarget,
		burstAbove:      opts.BurstAbove,
		burstBelow:      opts.BurstBelow,
		idlePriceFactor: opts.IdlePriceFactor,
		failCooldown:    opts.FailCooldown,
		now:             opts.Clock,
		bursting:        map[string]bool{},
	}
	for i, e := range execs {
		if e == nil {
			r.log.Warn("gpuexec: router: ignoring nil executor", "index", i)
			continue
		}
		if _, dup := r.byID[e.ID()]; dup {
			r.log.Warn("gpuexec: router: ignoring executor with duplicate id", "id", e.ID(), "index", i)
			continue
		}
		ent := &entry{exec: e, order: len(r.entries), cost: opts.Costs[e.ID()].withDefaults(e)}
		ent.tracked = &tracked{Executor: e, r: r, ent: ent}
		r.byID[e.ID()] = ent
		r.entries = append(r.entries, ent)
		r.execs = append(r.execs, e)
	}
	for id := range opts.Costs {
		if _, ok := r.byID[id]; !ok {
			r.log.Warn("gpuexec: router: cost given for unknown executor", "id", id)
		}
	}
	return r
}

// Executors returns the router's executors (as given, not wrapped) in
// order of preference. The slice is a copy.
func (r *Router) Executors() []Executor { return slices.Clone(r.execs) }

// Get returns the executor called id, as given to NewRouter.
func (r *Router) Get(id string) (Executor, bool) {
	ent, ok := r.byID[id]
	if !ok {
		return nil, false
	}
	return ent.exec, true
}

// Track returns the executor called id wrapped so that its Execute calls
// count in the router's queue for it (as Choice.Executor is), and false
// when there is no such executor.
func (r *Router) Track(id string) (Executor, bool) {
	ent, ok := r.byID[id]
	if !ok {
		return nil, false
	}
	return ent.tracked, true
}

// QueueDepth returns the batches in flight on the executor called id
// through the router's wrappers.
func (r *Router) QueueDepth(id string) int {
	ent, ok := r.byID[id]
	if !ok {
		return 0
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return ent.inflight
}

// Pick returns the executor to run a slice of data from dataJurisdiction,
// given the IDs the policy allows: Choose with nothing known of the slice's
// size. It returns an error wrapping ErrNoneAllowed when allowed is empty,
// an error wrapping ErrUnavailable when no allowed executor is known and
// healthy, and ctx's error when ctx ends. The executor returned counts its
// Execute calls in the router's queue.
func (r *Router) Pick(ctx context.Context, dataJurisdiction string, allowed []string) (Executor, error) {
	c, err := r.Choose(ctx, Request{DataJurisdiction: dataJurisdiction, Allowed: allowed})
	if err != nil {
		return nil, err
	}
	return c.Executor, nil
}

// Choose returns the executor to run req on, following the policy in the
// Router doc comment, with every candidate's score and the reason for the
// choice. Errors are those of Pick; on ErrUnavailable the Choice still
// lists the candidates and why each was out.
func (r *Router) Choose(ctx context.Context, req Request) (Choice, error) {
	return r.choose(ctx, req, nil)
}

func (r *Router) choose(ctx context.Context, req Request, failed map[string]error) (Choice, error) {
	var ch Choice
	if len(req.Allowed) == 0 {
		return ch, fmt.Errorf("gpuexec: route (data in %q): %w", req.DataJurisdiction, ErrNoneAllowed)
	}
	var ents []*entry
	for _, e := range r.entries {
		if slices.Contains(req.Allowed, e.exec.ID()) {
			ents = append(ents, e)
		}
	}
	if len(ents) == 0 {
		return ch, fmt.Errorf("gpuexec: route (data in %q): none of the allowed executors %v is configured in this router: %w",
			req.DataJurisdiction, req.Allowed, ErrUnavailable)
	}
	if err := ctx.Err(); err != nil {
		return ch, err
	}

	health := r.probe(ctx, ents, failed)
	if err := ctx.Err(); err != nil {
		return ch, err
	}

	cands := make([]Candidate, len(ents))
	ests := make([]float64, len(ents))
	r.mu.Lock()
	now := r.now()
	for i, e := range ents {
		loc := e.exec.Location()
		c := Candidate{ID: e.exec.ID(), Location: loc.Name, Kind: loc.Kind, QueueDepth: e.inflight}
		if health[i] == nil {
			c.Healthy = true
		} else {
			c.Reason = "unhealthy: " + health[i].Error()
		}
		est := r.estimate(e.cost, req)
		if e.inflight >= e.cost.Slots && e.inflight > 0 {
			remaining := e.busyWorkMs - float64(now.Sub(e.busyStart))/float64(time.Millisecond)
			c.QueueWaitMs = max(remaining, 0) / float64(e.cost.Slots)
		}
		c.EstimatedMs = c.QueueWaitMs + est.busyMs()
		price := e.cost.PricePerHour
		if loc.Kind == "onprem" && e.inflight < e.cost.Slots {
			price *= r.idlePriceFactor
		}
		c.CostUSD = price / 3600 * (est.computeMs + est.overheadMs) / 1e3
		ests[i] = c.EstimatedMs
		cands[i] = c
	}
	r.mu.Unlock()
	ch.Candidates = cands

	// Rule 2: home jurisdiction first.
	home := func(i int) bool {
		return req.DataJurisdiction != "" && strings.EqualFold(ents[i].exec.Location().Jurisdiction, req.DataJurisdiction)
	}
	anyHome := false
	for i := range cands {
		if cands[i].Healthy && home(i) {
			anyHome = true
		}
	}
	var tier []int
	for i := range cands {
		switch {
		case !cands[i].Healthy:
		case anyHome && !home(i):
			cands[i].Reason = fmt.Sprintf("held back: jurisdiction %s, and an executor in %s can take the data",
				ents[i].exec.Location().Jurisdiction, req.DataJurisdiction)
		default:
			tier = append(tier, i)
		}
	}
	if len(tier) == 0 {
		var reasons []string
		for _, c := range cands {
			reasons = append(reasons, c.ID+": "+strings.TrimPrefix(c.Reason, "unhealthy: "))
		}
		ch.Why = "no allowed executor is healthy"
		return ch, fmt.Errorf("gpuexec: route (data in %q): no allowed executor is healthy (%s): %w",
			req.DataJurisdiction, strings.Join(reasons, "; "), ErrUnavailable)
	}

	// Rule 3: the burst gate, with hysteresis per set of on-prem executors.
	var onprem []string
	pressure := math.MaxInt
	for _, i := range tier {
		if cands[i].Kind == "onprem" {
			onprem = append(onprem, cands[i].ID)
			pressure = min(pressure, cands[i].QueueDepth)
		}
	}
	bursting := len(onprem) == 0
	if len(onprem) > 0 {
		key := strings.Join(onprem, "\x00")
		r.mu.Lock()
		b := r.bursting[key]
		switch {
		case !b && pressure > r.burstAbove:
			b = true
		case b && pressure <= r.burstBelow:
			b = false
		}
		r.bursting[key] = b
		r.mu.Unlock()
		bursting = b
		ch.Bursting = b && len(tier) > len(onprem)
	}
	var elig []int
	for _, i := range tier {
		if cands[i].Kind != "onprem" && !bursting {
			cands[i].Reason = fmt.Sprintf("held back: on-prem not saturated (least queue %d, burst above %d)", pressure, r.burstAbove)
			continue
		}
		cands[i].Eligible = true
		elig = append(elig, i)
	}

	// Rules 4 and 5.
	targetMs := float64(r.target) / float64(time.Millisecond)
	anyMeets := false
	for _, i := range elig {
		if ests[i] <= targetMs {
			anyMeets = true
		}
	}
	better := func(a, b int) bool {
		ca, cb := &cands[a], &cands[b]
		if anyMeets {
			ma, mb := ests[a] <= targetMs, ests[b] <= targetMs
			if ma != mb {
				return ma
			}
			if ca.CostUSD != cb.CostUSD {
				return ca.CostUSD < cb.CostUSD
			}
		} else if ca.EstimatedMs != cb.EstimatedMs {
			return ca.EstimatedMs < cb.EstimatedMs
		}
		if (ca.Kind == "onprem") != (cb.Kind == "onprem") {
			return ca.Kind == "onprem"
		}
		return ents[a].order < ents[b].order
	}
	best := elig[0]
	for _, i := range elig[1:] {
		if better(i, best) {
			best = i
		}
	}
	for _, i := range elig {
		c := &cands[i]
		switch {
		case i == best:
		case anyMeets && ests[i] > targetMs:
			c.Reason = fmt.Sprintf("misses the %s latency target (%.1f ms)", r.target, c.EstimatedMs)
		case anyMeets:
			c.Reason = fmt.Sprintf("costs $%.3g, more than $%.3g or ties and ranks lower", c.CostUSD, cands[best].CostUSD)
		default:
			c.Reason = fmt.Sprintf("slower (%.1f ms) than %s", c.EstimatedMs, cands[best].ID)
		}
	}
	win := &cands[best]
	if anyMeets {
		win.Reason = fmt.Sprintf("chosen: cheapest ($%.3g) within the %s latency target (%.1f ms)", win.CostUSD, r.target, win.EstimatedMs)
	} else {
		win.Reason = fmt.Sprintf("chosen: fastest (%.1f ms); none meets the %s latency target", win.EstimatedMs, r.target)
	}
	ch.Chosen = win.ID
	ch.Executor = ents[best].tracked
	ch.Why = win.Reason
	if home(best) {
		ch.Why += "; in the data's jurisdiction"
	}
	if ch.Bursting {
		ch.Why += fmt.Sprintf("; bursting: every on-prem executor had more than %d batches in flight", r.burstAbove)
	}
	r.log.Debug("gpuexec: router: chose", "executor", win.ID, "data_jurisdiction", req.DataJurisdiction,
		"estimated_ms", win.EstimatedMs, "cost_usd", win.CostUSD, "bursting", ch.Bursting)
	return ch, nil
}

// probe calls Healthy on every entry at once, each bounded by the health
// timeout. An entry in its failure cooldown, or in failed, is not probed.
func (r *Router) probe(ctx context.Context, ents []*entry, failed map[string]error) []error {
	errs := make([]error, len(ents))
	var wg sync.WaitGroup
	now := r.now()
	for i, e := range ents {
		if err, ok := failed[e.exec.ID()]; ok {
			errs[i] = fmt.Errorf("failed this batch: %w", err)
			continue
		}
		r.mu.Lock()
		down, downErr := e.downUntil, e.downErr
		r.mu.Unlock()
		if now.Before(down) {
			errs[i] = fmt.Errorf("failed %s ago, retried after %s: %w",
				(r.failCooldown - down.Sub(now)).Round(time.Millisecond), down.Sub(now).Round(time.Millisecond), downErr)
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			hctx, cancel := context.WithTimeout(ctx, r.healthTimeout)
			defer cancel()
			errs[i] = e.exec.Healthy(hctx)
		}()
	}
	wg.Wait()
	return errs
}

// Execute routes req and runs its plan on rec. When the chosen executor
// fails with ErrUnavailable (it died, its device went away), the batch is
// retried on the next choice within req.Allowed; Choice.Failovers says
// what failed. When none is left it returns an error wrapping
// ErrUnavailable, and the caller holds the batch and retries later. Other
// errors (an invalid plan, a refused decision) are returned at once.
// Rows and Bytes of req are taken from rec when zero. It does not release
// rec; the caller releases the result.
func (r *Router) Execute(ctx context.Context, req Request, rec arrow.RecordBatch) (arrow.RecordBatch, Choice, error) {
	if req.Rows == 0 && req.Bytes == 0 {
		sized := requestFor(req.Plan, rec)
		req.Rows, req.Bytes = sized.Rows, sized.Bytes
	}
	failed := map[string]error{}
	var failovers []string
	for {
		ch, err := r.choose(ctx, req, failed)
		ch.Failovers = failovers
		if err != nil {
			return nil, ch, err
		}
		out, err := ch.Executor.Execute(ctx, req.Plan, rec)
		if err == nil {
			return out, ch, nil
		}
		if !errors.Is(err, ErrUnavailable) || ctx.Err() != nil {
			return nil, ch, err
		}
		r.log.Warn("gpuexec: router: executor failed; trying another allowed one", "executor", ch.Chosen, "err", err)
		failed[ch.Chosen] = err
		failovers = append(failovers, ch.Chosen+": "+err.Error())
	}
}

// tracked is an executor whose Execute calls count in its router's queue,
// and whose ErrUnavailable failures put it in cooldown.
type tracked struct {
	Executor
	r   *Router
	ent *entry
}

// Unwrap returns the executor as given to NewRouter.
func (t *tracked) Unwrap() Executor { return t.Executor }

func (t *tracked) Execute(ctx context.Context, plan *Plan, rec arrow.RecordBatch) (arrow.RecordBatch, error) {
	t.r.begin(t.ent, requestFor(plan, rec))
	out, err := t.Executor.Execute(ctx, plan, rec)
	t.r.end(t.ent, errors.Is(err, ErrUnavailable) && ctx.Err() == nil, err)
	return out, err
}

// begin counts one batch of req in flight on e.
func (r *Router) begin(e *entry, req Request) {
	r.mu.Lock()
	defer r.mu.Unlock()
	est := r.estimate(e.cost, req).busyMs()
	if e.inflight == 0 {
		e.busyStart = r.now()
		e.busyWorkMs = 0
	}
	e.inflight++
	e.busyWorkMs += est
}

// end counts one batch on e as done; down puts e in its failure cooldown
// with err.
func (r *Router) end(e *entry, down bool, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	e.inflight--
	if down {
		e.downUntil = r.now().Add(r.failCooldown)
		e.downErr = err
	}
}

// Hold counts one batch of req in flight on the executor called id, as
// the executor Choose returns does while its Execute runs, until release
// is called (once; later calls do nothing). It is for callers that run a
// batch outside Execute, such as a simulation driving the router with
// simulated executors. ok is false when there is no such executor.
func (r *Router) Hold(id string, req Request) (release func(), ok bool) {
	ent, ok := r.byID[id]
	if !ok {
		return func() {}, false
	}
	r.begin(ent, req)
	var once sync.Once
	return func() { once.Do(func() { r.end(ent, false, nil) }) }, true
}
