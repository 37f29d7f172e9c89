package sim

import (
	"context"
	"time"

	"github.com/sluice-dev/sluice/gpuexec"
)

// Tuned router settings for the default pool and the built-in day, found
// by Tune (docs/routing.md): burst when every on-prem site has more than
// about three batches per GPU in flight, and keep bursting until one is
// down to half that.
const (
	TunedBurstAbove    = 16
	TunedBurstBelow    = 8
	TunedLatencyTarget = 20 * time.Second
	// DefaultP99Target is the p99 batch latency, arrival to result, that
	// the run is judged against: six batch times on one GPU of the
	// default pool.
	DefaultP99Target = 120 * time.Second
)

// Comparison is the router and both baselines on one configuration.
type Comparison struct {
	Sluice     *Result `json:"sluice"`
	AllCloud   *Result `json:"all_cloud"`
	OnPremOnly *Result `json:"onprem_only"`
}

// Compare runs cfg under the three strategies.
func Compare(ctx context.Context, cfg Config) (*Comparison, error) {
	var c Comparison
	var err error
	if c.Sluice, err = Run(ctx, cfg, Sluice); err != nil {
		return nil, err
	}
	if c.AllCloud, err = Run(ctx, cfg, AllCloud); err != nil {
		return nil, err
	}
	if c.OnPremOnly, err = Run(ctx, cfg, OnPremOnly); err != nil {
		return nil, err
	}
	return &c, nil
}

// Trial is one point of a Tune grid.
type Trial struct {
	BurstAbove    int           `json:"burst_above"`
	BurstBelow    int           `json:"burst_below"`
	LatencyTarget time.Duration `json:"latency_target"`
	OnPremUtil    float64       `json:"onprem_util"`
	P99Ms         float64       `json:"p99_ms"`
	CostUSD       float64       `json:"cost_usd"`
	Violations    int64         `json:"violations"`
	// Meets is true when P99Ms is within the target and no batch was
	// misplaced.
	Meets bool `json:"meets"`
}

// DefaultGrid is the grid Tune searches when given none.
func DefaultGrid() []gpuexec.RouterOptions {
	var g []gpuexec.RouterOptions
	for _, lt := range []time.Duration{TunedLatencyTarget, 45 * time.Second} {
		for _, above := range []int{2, 4, 8, 12, 16, 24} {
			for _, below := range []int{0, above / 2} {
				g = append(g, gpuexec.RouterOptions{BurstAbove: above, BurstBelow: below, LatencyTarget: lt})
			}
		}
	}
	return g
}

// Tune runs cfg under the router for each point of grid (DefaultGrid when
// nil) and returns every trial and the index of the best: among those
// that meet the p99 target with no violation, the highest on-prem
// utilization, then the lowest cost; -1 when none meets it.
func Tune(ctx context.Context, cfg Config, grid []gpuexec.RouterOptions, p99Target time.Duration) ([]Trial, int, error) {
	if grid == nil {
		grid = DefaultGrid()
	}
	best := -1
	var trials []Trial
	for _, o := range grid {
		c := cfg
		c.Router.BurstAbove, c.Router.BurstBelow, c.Router.LatencyTarget = o.BurstAbove, o.BurstBelow, o.LatencyTarget
		res, err := Run(ctx, c, Sluice)
		if err != nil {
			return nil, -1, err
		}
		tr := Trial{BurstAbove: o.BurstAbove, BurstBelow: o.BurstBelow, LatencyTarget: o.LatencyTarget,
			OnPremUtil: res.OnPremUtil, P99Ms: res.Latency.P99Ms, CostUSD: res.CostUSD, Violations: res.Violations}
		tr.Meets = tr.P99Ms <= float64(p99Target.Milliseconds()) && tr.Violations == 0 && res.Unfinished*100 <= res.Batches
		trials = append(trials, tr)
		if tr.Meets && (best < 0 || tr.OnPremUtil > trials[best].OnPremUtil+1e-9 ||
			(tr.OnPremUtil > trials[best].OnPremUtil-1e-9 && tr.CostUSD < trials[best].CostUSD)) {
			best = len(trials) - 1
		}
	}
	return trials, best, nil
}
