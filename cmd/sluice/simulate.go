package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"text/tabwriter"
	"time"

	"github.com/sluice-dev/sluice/gpuexec"
	"github.com/sluice-dev/sluice/gpuexec/sim"
	"github.com/sluice-dev/sluice/policy"
	"github.com/sluice-dev/sluice/policy/rego"
)

const simulateHelp = `Simulates a day (or --span) of batches through the real router and the
real policy decisions, with simulated executors: owned GPU sites (a fixed
number of GPUs, paid for all day) and cloud regions whose GPU instances
start on demand after a scale-up delay, stop when idle, and charge egress.
Batches arrive at the profile's rate with a mix of jurisdictions (DE, FR,
US, IN, BR) and classes (card: pii + financial; clinical: phi), under the
purpose ml-training.

Three strategies run on the same arrivals: sluice's router, all-cloud
(every batch to the cheapest cloud region its decisions allow; batches no
cloud region may take run on-prem, charged for busy time only) and
on-prem only (the router without cloud: batches no site may take are not
placed). A batch placed on an executor its decisions do not allow is a
violation. --tune searches burst thresholds and latency targets for the
highest on-prem utilization within the p99 target (docs/routing.md).

The profile is "bursty-weekday" (built in: night floor, ramps, lunch dip,
a launch spike at 14:00) or a CSV of time,records_per_s. The pool is a
YAML file (testdata/simulate/pool.yaml is the built-in default).

The last line reads:
  simulate: onprem-util U%, p99 L ms (target T ms), violations 0, cost C× all-cloud

Example:
  sluice simulate --out sim-out
`

// simulateReport is the -o json document.
type simulateReport struct {
	Seed        uint64          `json:"seed"`
	Span        string          `json:"span"`
	BatchRows   int             `json:"batch_rows"`
	P99TargetMs int64           `json:"p99_target_ms"`
	Router      routerSettings  `json:"router"`
	Comparison  *sim.Comparison `json:"comparison"`
	Tuning      []sim.Trial     `json:"tuning,omitempty"`
	TunedBest   int             `json:"tuned_best,omitempty"`
	CostRatio   float64         `json:"cost_ratio_vs_all_cloud"`
	Plots       []string        `json:"plots,omitempty"`
}

type routerSettings struct {
	BurstAbove      int     `json:"burst_above"`
	BurstBelow      int     `json:"burst_below"`
	LatencyTargetMs float64 `json:"latency_target_ms"`
}

func cmdSimulate(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("simulate", "simulate [--profile bursty-weekday|FILE.csv] [--pool FILE.yaml] [--span 24h] [--step 1s] [--out DIR] [-o json]", simulateHelp, stderr)
	profile := fs.String("profile", "bursty-weekday", "arrival profile: bursty-weekday or a CSV `file` of time,records_per_s")
	poolFile := fs.String("pool", "", "executor pool YAML `file` (default: the built-in pool, testdata/simulate/pool.yaml)")
	span := fs.Duration("span", 24*time.Hour, "simulated time")
	step := fs.Duration("step", time.Second, "arrival grid step")
	outDir := fs.String("out", "", "write summary.json and SVG plots to this `dir`ectory")
	policyDir := fs.String("policies", "", "policy `dir`ectory (default: the shipped policies)")
	seed := fs.Uint64("seed", 1, "random seed")
	batchRows := fs.Int("batch-rows", sim.DefaultBatchRows, "rows per batch")
	p99Target := fs.Duration("p99-target", sim.DefaultP99Target, "p99 batch latency target (arrival to result)")
	burstAbove := fs.Int("burst-above", sim.TunedBurstAbove, "router BurstAbove: batches in flight on every on-prem site before bursting")
	burstBelow := fs.Int("burst-below", sim.TunedBurstBelow, "router BurstBelow: queue depth that ends a burst")
	latTarget := fs.Duration("latency-target", sim.TunedLatencyTarget, "router LatencyTarget per batch")
	tune := fs.Bool("tune", false, "also grid-search burst thresholds and latency targets")
	var out outputFlag
	out.register(fs)
	asJSON, err := parseOutput(fs, &out, args)
	if err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%w: unexpected arguments %v", errUsage, fs.Args())
	}

	cfg := sim.Config{Span: *span, Step: *step, Seed: *seed, BatchRows: *batchRows,
		Router: gpuexec.RouterOptions{BurstAbove: *burstAbove, BurstBelow: *burstBelow, LatencyTarget: *latTarget}}
	if *profile != "bursty-weekday" {
		if cfg.Profile, err = sim.LoadProfile(*profile); err != nil {
			return fmt.Errorf("%w: --profile: %v", errUsage, err)
		}
	}
	cfg.Pool = sim.DefaultPool()
	if *poolFile != "" {
		if cfg.Pool, err = sim.LoadPool(*poolFile); err != nil {
			return fmt.Errorf("%w: --pool: %v", errUsage, err)
		}
	}
	d, err := rego.New(ctx, rego.Config{FS: policySource(*policyDir)})
	if err != nil {
		return err
	}
	cfg.Decider = policy.NewMemo(d)

	cmp, err := sim.Compare(ctx, cfg)
	if err != nil {
		return err
	}
	rep := simulateReport{Seed: *seed, Span: span.String(), BatchRows: *batchRows, P99TargetMs: p99Target.Milliseconds(),
		Router:     routerSettings{BurstAbove: *burstAbove, BurstBelow: *burstBelow, LatencyTargetMs: float64(latTarget.Milliseconds())},
		Comparison: cmp, TunedBest: -1}
	if cmp.AllCloud.CostUSD > 0 {
		rep.CostRatio = cmp.Sluice.CostUSD / cmp.AllCloud.CostUSD
	}
	if *tune {
		if rep.Tuning, rep.TunedBest, err = sim.Tune(ctx, cfg, nil, *p99Target); err != nil {
			return err
		}
	}
	if *outDir != "" {
		if rep.Plots, err = writeSimulatePlots(*outDir, cfg.Span, cmp); err != nil {
			return err
		}
		b, _ := json.MarshalIndent(rep, "", "  ")
		if err := os.WriteFile(filepath.Join(*outDir, "summary.json"), b, 0o644); err != nil {
			return err
		}
	}
	s := cmp.Sluice
	if asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(rep); err != nil {
			return err
		}
	} else {
		printSimulate(stdout, &rep)
	}
	fmt.Fprintf(stdout, "simulate: onprem-util %.1f%%, p99 %.0f ms (target %d ms), violations %d, cost %.2f× all-cloud\n",
		100*s.OnPremUtil, s.Latency.P99Ms, p99Target.Milliseconds(), s.Violations, rep.CostRatio)
	if s.Violations > 0 {
		fmt.Fprintf(stderr, "sluice: simulate: %d batches placed on an executor their decisions do not allow\n", s.Violations)
		return errFailed
	}
	if s.Latency.P99Ms > float64(p99Target.Milliseconds()) {
		fmt.Fprintf(stderr, "sluice: simulate: p99 %.0f ms is over the target %s\n", s.Latency.P99Ms, *p99Target)
		return errFailed
	}
	return nil
}

func printSimulate(w io.Writer, rep *simulateReport) {
	c := rep.Comparison
	runs := []*sim.Result{c.Sluice, c.AllCloud, c.OnPremOnly}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(w, "simulated %s, seed %d, %d batches of %d rows; router burst above %d, below %d, latency target %.0f ms\n\n",
		rep.Span, rep.Seed, c.Sluice.Batches, rep.BatchRows, rep.Router.BurstAbove, rep.Router.BurstBelow, rep.Router.LatencyTargetMs)
	fmt.Fprintln(tw, "strategy\tcost $\tvs all-cloud\ton-prem $\tcloud $\tegress $\tonprem util\tcloud rows\tp50 ms\tp99 ms\tviolations\tnot placed rows\tunfinished\t")
	for _, r := range runs {
		ratio := 0.0
		if c.AllCloud.CostUSD > 0 {
			ratio = r.CostUSD / c.AllCloud.CostUSD
		}
		fmt.Fprintf(tw, "%s\t%.0f\t%.2f×\t%.0f\t%.0f\t%.0f\t%.1f%%\t%.1f%%\t%.0f\t%.0f\t%d\t%d\t%d\t\n",
			r.Strategy, r.CostUSD, ratio, r.OnPremUSD, r.CloudUSD, r.EgressUSD, 100*r.OnPremUtil, 100*r.CloudShare,
			r.Latency.P50Ms, r.Latency.P99Ms, r.Violations, r.NotPlacedRows, r.Unfinished)
	}
	tw.Flush()
	if c.AllCloud.OnPremUtil > 0 || c.Sluice.OnPremUtil > 0 {
		fmt.Fprintf(w, "on-prem utilization, sluice / on-prem-only: %.2f\n", c.Sluice.OnPremUtil/max(c.OnPremOnly.OnPremUtil, 1e-9))
	}
	fmt.Fprintln(w, "\nlatency per class (sluice):")
	classes := make([]string, 0, len(c.Sluice.ByClass))
	for k := range c.Sluice.ByClass {
		classes = append(classes, k)
	}
	slices.Sort(classes)
	for _, k := range classes {
		l := c.Sluice.ByClass[k]
		fmt.Fprintf(w, "  %-9s %6d batches  p50 %6.0f ms  p99 %6.0f ms  max %6.0f ms\n", k, l.Batches, l.P50Ms, l.P99Ms, l.MaxMs)
	}
	for _, r := range runs {
		if len(r.NotPlacedBy) == 0 {
			continue
		}
		keys := make([]string, 0, len(r.NotPlacedBy))
		for k := range r.NotPlacedBy {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		fmt.Fprintf(w, "not placed (%s):", r.Strategy)
		for _, k := range keys {
			fmt.Fprintf(w, " %s %d rows", k, r.NotPlacedBy[k])
		}
		fmt.Fprintln(w)
	}
	fmt.Fprintln(w, "\nexecutors (sluice):")
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "executor\tkind\tgpus\tbatches\tbusy GPU-h\tpaid GPU-h\tutil\tcost $\tmax queue\t")
	for _, e := range c.Sluice.Executors {
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%.1f\t%.1f\t%.1f%%\t%.0f\t%d\t\n", e.ID, e.Kind, e.GPUs, e.Batches, e.BusyH, e.PaidH, 100*e.Util, e.CostUSD, e.MaxQueue)
	}
	tw.Flush()
	if len(rep.Tuning) > 0 {
		fmt.Fprintf(w, "\ntuning (p99 target %d ms):\n", rep.P99TargetMs)
		tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, "burst above\tburst below\tlatency target\tonprem util\tp99 ms\tcost $\tmeets\t\t")
		for i, t := range rep.Tuning {
			mark := ""
			if i == rep.TunedBest {
				mark = "<- best"
			}
			fmt.Fprintf(tw, "%d\t%d\t%s\t%.1f%%\t%.0f\t%.0f\t%v\t%s\t\n", t.BurstAbove, t.BurstBelow, t.LatencyTarget, 100*t.OnPremUtil, t.P99Ms, t.CostUSD, t.Meets, mark)
		}
		tw.Flush()
	}
	for _, p := range rep.Plots {
		fmt.Fprintln(w, "wrote", p)
	}
}

// writeSimulatePlots writes the SVG charts of the router's run and the
// load, and returns their paths.
func writeSimulatePlots(dir string, span time.Duration, c *sim.Comparison) ([]string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	s := c.Sluice
	hours := span.Hours()
	var util, queue []sim.Series
	var onBusy, cloudBusy, onCap []float64
	for _, e := range s.Executors {
		u := make([]float64, len(e.Series))
		q := make([]float64, len(e.Series))
		for i, x := range e.Series {
			u[i], q[i] = 100*x.Util, float64(x.MaxQueue)
		}
		util = append(util, sim.Series{Name: e.ID, Values: u})
		queue = append(queue, sim.Series{Name: e.ID, Values: q})
		if onBusy == nil {
			onBusy, cloudBusy, onCap = make([]float64, len(e.Series)), make([]float64, len(e.Series)), make([]float64, len(e.Series))
		}
		for i, x := range e.Series {
			if e.Kind == "onprem" {
				onBusy[i] += x.Busy
				onCap[i] += x.GPUs
			} else {
				cloudBusy[i] += x.Busy
			}
		}
	}
	demand := make([]float64, len(s.ArrivalRows))
	for i, rows := range s.ArrivalRows {
		demand[i] = float64(rows) / s.BucketSeconds / 1e3
	}
	charts := []struct {
		file, title, y string
		series         []sim.Series
	}{
		{"utilization.svg", "GPU utilization per executor (sluice router)", "% of running GPUs busy", util},
		{"queue.svg", "Batches waiting per executor (sluice router, max per bucket)", "batches", queue},
		{"gpus.svg", "GPUs busy: on-prem vs cloud (sluice router)", "GPUs", []sim.Series{
			{Name: "on-prem owned", Values: onCap}, {Name: "on-prem busy", Values: onBusy}, {Name: "cloud busy", Values: cloudBusy}}},
		{"load.svg", "Arrivals", "thousand records/s", []sim.Series{{Name: "arrivals", Values: demand}}},
	}
	var paths []string
	for _, ch := range charts {
		p := filepath.Join(dir, ch.file)
		f, err := os.Create(p)
		if err != nil {
			return nil, err
		}
		err = sim.WriteSVG(f, ch.title, ch.y, hours, ch.series)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return nil, err
		}
		paths = append(paths, p)
	}
	return paths, nil
}
