package gpuexec

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"
)

// ErrNoneAllowed means Pick was given no allowed executor: the policy
// allows none for this data, so its rows go to quarantine. Unlike
// ErrUnavailable, waiting does not help.
var ErrNoneAllowed = errors.New("gpuexec: no executor allowed")

// RouterOptions configure a Router.
type RouterOptions struct {
	// HealthTimeout bounds each executor's Healthy call during Pick, so one
	// hung remote executor cannot stall routing. Default (<= 0): 2s.
	HealthTimeout time.Duration
	// Logger receives a warning for each duplicate or nil executor given to
	// NewRouter and a debug line per pick. Default (nil): slog.Default().
	Logger *slog.Logger
}

// Router chooses, for each slice of data, one executor among those the
// policy allows. It is safe for concurrent use; its set of executors is
// fixed at NewRouter.
//
// Pick's policy, in order of precedence:
//
//  1. only executors whose ID is in the allowed list (the policy's answer)
//     and whose Healthy returns nil are candidates;
//  2. an executor in the same jurisdiction as the data (Location.Jurisdiction,
//     compared case-insensitively) comes before one elsewhere, so data
//     leaves its country only when nothing at home can take it;
//  3. an on-prem executor (Location.Kind "onprem") comes before any other
//     (cloud): bursting to the cloud happens only when on-prem is down;
//  4. ties keep the order given to NewRouter (the operator's preference).
//
// When no allowed executor is healthy, Pick returns an error wrapping
// ErrUnavailable: the caller must hold the batch and retry later, never
// skip it or send it elsewhere.
type Router struct {
	execs         []Executor
	byID          map[string]Executor
	healthTimeout time.Duration
	log           *slog.Logger
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
	r := &Router{
		byID:          make(map[string]Executor, len(execs)),
		healthTimeout: opts.HealthTimeout,
		log:           opts.Logger,
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
		r.byID[e.ID()] = e
		r.execs = append(r.execs, e)
	}
	return r
}

// Executors returns the router's executors in order of preference. The
// slice is a copy.
func (r *Router) Executors() []Executor { return slices.Clone(r.execs) }

// Get returns the executor called id.
func (r *Router) Get(id string) (Executor, bool) {
	e, ok := r.byID[id]
	return e, ok
}

// Pick returns the executor to run a slice of data from dataJurisdiction,
// given the IDs the policy allows, following the policy in the Router doc
// comment. It returns an error wrapping ErrNoneAllowed when allowed is
// empty, an error wrapping ErrUnavailable when no allowed executor is known
// and healthy, and ctx's error when ctx ends.
func (r *Router) Pick(ctx context.Context, dataJurisdiction string, allowed []string) (Executor, error) {
	if len(allowed) == 0 {
		return nil, fmt.Errorf("gpuexec: route (data in %q): %w", dataJurisdiction, ErrNoneAllowed)
	}
	type candidate struct {
		e     Executor
		score int // lower is better
		order int
	}
	var cands []candidate
	for i, e := range r.execs {
		if !slices.Contains(allowed, e.ID()) {
			continue
		}
		loc := e.Location()
		score := 0
		if dataJurisdiction == "" || !strings.EqualFold(loc.Jurisdiction, dataJurisdiction) {
			score += 2
		}
		if loc.Kind != "onprem" {
			score++
		}
		// Capacity (queue depth, NVML utilization) and a cost model plug
		// in here: they would add to score, or demote a saturated on-prem
		// executor below an allowed cloud one, before the sort.
		cands = append(cands, candidate{e: e, score: score, order: i})
	}
	if len(cands) == 0 {
		return nil, fmt.Errorf("gpuexec: route (data in %q): none of the allowed executors %v is configured in this router: %w",
			dataJurisdiction, allowed, ErrUnavailable)
	}
	slices.SortStableFunc(cands, func(a, b candidate) int { return a.score - b.score })

	var reasons []string
	for _, c := range cands {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		hctx, cancel := context.WithTimeout(ctx, r.healthTimeout)
		err := c.e.Healthy(hctx)
		cancel()
		if err == nil {
			r.log.Debug("gpuexec: router: picked", "executor", c.e.ID(), "data_jurisdiction", dataJurisdiction)
			return c.e, nil
		}
		reasons = append(reasons, fmt.Sprintf("%s: %v", c.e.ID(), err))
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return nil, fmt.Errorf("gpuexec: route (data in %q): no allowed executor is healthy (%s): %w",
		dataJurisdiction, strings.Join(reasons, "; "), ErrUnavailable)
}
