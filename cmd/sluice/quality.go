package main

import (
	"context"
	"fmt"
	"io"
	"math"
	"slices"
	"text/tabwriter"
	"time"

	"github.com/sluice-dev/sluice/lineage"
	"github.com/sluice-dev/sluice/transform"
)

func cmdQuality(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] != "report" {
		fmt.Fprintln(stderr, "usage: sluice quality report --store URL --since T [--until T] [--baseline-since T] [--baseline-until T] [--psi-threshold 0.2] [-o json]")
		return errUsage
	}
	return cmdQualityReport(ctx, args[1:], stdout, stderr)
}

// qualityReport is what `sluice quality report` prints; its JSON form is
// the -o json output.
type qualityReport struct {
	Baseline     qualityWindow   `json:"baseline"`
	Current      qualityWindow   `json:"current"`
	PSIThreshold float64         `json:"psi_threshold"`
	Columns      []columnQuality `json:"columns"`
	// Drift is true when some column's PSI is above the threshold.
	Drift bool `json:"drift"`
}

type qualityWindow struct {
	Since  time.Time `json:"since,omitzero"`
	Until  time.Time `json:"until,omitzero"`
	Events int64     `json:"events"`
}

// columnQuality compares one feature column of one pipeline across the
// two windows.
type columnQuality struct {
	Pipeline string        `json:"pipeline"`
	Column   string        `json:"column"`
	Baseline windowFacts   `json:"baseline"`
	Current  windowFacts   `json:"current"`
	PSI      float64       `json:"psi"`
	Drift    bool          `json:"drift"`
	Bins     []float64     `json:"bin_edges,omitempty"`
	hists    [2][]*lHist   // per window, the batches' histograms
	facts    [2]*windowAcc // per window
}

type lHist = lineage.Histogram

// windowFacts sums a column's batch facts over a window.
type windowFacts struct {
	Rows      int64    `json:"rows"`
	NullCount int64    `json:"null_count"`
	Min       *float64 `json:"min,omitempty"`
	Max       *float64 `json:"max,omitempty"`
	Mean      *float64 `json:"mean,omitempty"`
	Histogram []int64  `json:"histogram,omitempty"`
	Below     int64    `json:"below,omitempty"`
	Above     int64    `json:"above,omitempty"`
}

type windowAcc struct {
	nulls, nonFinite int64
	count, sum       float64
	lo, hi           float64
}

func cmdQualityReport(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("quality report", "quality report --store URL --since T [--until T] [--baseline-since T] [--baseline-until T] [--psi-threshold 0.2] [-o json]",
		`Compares the data-quality facts the pipelines recorded in lineage (the
dataQualityMetrics facet of every features event) between two windows of
event time: the current window [--since, --until) and the baseline window
[--baseline-since, --baseline-until), by default everything before --since.

For every feature column it sums the batches' null counts, min, max and
mean, merges their histograms onto one grid of 10 bins over both windows'
range, and computes the population stability index (PSI) of the current
window against the baseline. A column whose PSI is above --psi-threshold is
flagged as drifted and the command exits 1.

Times are RFC 3339 (2026-03-14T09:00:00Z) or a UTC date (2026-03-14).
`, stderr)
	store := fs.String("store", "", "lineage store `URL`")
	var cur, base windowFlags
	cur.register(fs)
	fs.StringVar(&base.since, "baseline-since", "", "baseline window starts at `T` (default: unbounded)")
	fs.StringVar(&base.until, "baseline-until", "", "baseline window ends before `T` (default: --since)")
	threshold := fs.Float64("psi-threshold", 0.2, "flag a column whose PSI is above `X`")
	var out outputFlag
	out.register(fs)
	asJSON, err := parseOutput(fs, &out, args)
	if err != nil {
		return err
	}
	if cur.since == "" {
		return fmt.Errorf("%w: --since is required (the start of the current window)", errUsage)
	}
	cw, err := cur.window()
	if err != nil {
		return err
	}
	if base.until == "" {
		base.until = cur.since
	}
	bw, err := base.window()
	if err != nil {
		return err
	}
	if *threshold <= 0 || math.IsNaN(*threshold) {
		return fmt.Errorf("%w: --psi-threshold must be positive", errUsage)
	}
	st, err := openLineageStore(ctx, *store)
	if err != nil {
		return err
	}
	rep, err := qualityCompare(ctx, st, bw, cw, *threshold)
	if err != nil {
		return err
	}
	if asJSON {
		writeJSON(stdout, rep)
	} else {
		printQuality(stdout, rep)
	}
	if rep.Drift {
		return errFailed
	}
	return nil
}

func inWindow(w lineage.Window, t time.Time) bool {
	return (w.Since.IsZero() || !t.Before(w.Since)) && (w.Until.IsZero() || t.Before(w.Until))
}

// qualityCompare reads every dataQualityMetrics facet under the lineage
// store and compares the windows column by column.
func qualityCompare(ctx context.Context, st lineage.Store, base, cur lineage.Window, threshold float64) (*qualityReport, error) {
	rep := &qualityReport{
		Baseline:     qualityWindow{Since: base.Since, Until: base.Until},
		Current:      qualityWindow{Since: cur.Since, Until: cur.Until},
		PSIThreshold: threshold,
		Columns:      []columnQuality{},
	}
	cols := map[[2]string]*columnQuality{}
	err := lineage.Walk(ctx, st, lineagePrefix, func(e lineage.Entry) error {
		t, err := time.Parse(time.RFC3339Nano, e.Event.EventTime)
		if err != nil {
			return nil
		}
		var wins []int
		if inWindow(base, t) {
			wins = append(wins, 0)
			rep.Baseline.Events++
		}
		if inWindow(cur, t) {
			wins = append(wins, 1)
			rep.Current.Events++
		}
		if len(wins) == 0 {
			return nil
		}
		for _, ds := range e.Event.Outputs {
			q := ds.OutputFacets.DataQualityMetrics
			if q == nil {
				continue
			}
			for name, m := range q.ColumnMetrics {
				k := [2]string{e.Event.Job.Name, name}
				c := cols[k]
				if c == nil {
					c = &columnQuality{Pipeline: k[0], Column: k[1]}
					c.facts[0], c.facts[1] = newAcc(), newAcc()
					cols[k] = c
				}
				for _, w := range wins {
					a := c.facts[w]
					a.nulls += m.NullCount
					a.nonFinite += m.NonFinite
					a.count += m.Count
					a.sum += m.Sum
					if m.Min != nil {
						a.lo = min(a.lo, *m.Min)
					}
					if m.Max != nil {
						a.hi = max(a.hi, *m.Max)
					}
					if m.Histogram != nil && len(m.Histogram.Counts) > 0 {
						c.hists[w] = append(c.hists[w], m.Histogram)
					}
				}
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	keys := make([][2]string, 0, len(cols))
	for k := range cols {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b [2]string) int {
		if a[0] != b[0] {
			return cmpStr(a[0], b[0])
		}
		return cmpStr(a[1], b[1])
	})
	for _, k := range keys {
		c := cols[k]
		c.Baseline, c.Current = c.facts[0].facts(), c.facts[1].facts()
		// One grid over both windows' histogram ranges.
		lo, hi := math.Inf(1), math.Inf(-1)
		for _, hs := range c.hists {
			for _, h := range hs {
				lo, hi = min(lo, h.Edges[0]), max(hi, h.Edges[len(h.Edges)-1])
			}
		}
		if len(c.hists[0]) > 0 && len(c.hists[1]) > 0 {
			var merged [2]*lHist
			for w := range 2 {
				merged[w] = transform.NewHistogram(lo, hi, transform.HistogramBins)
				for _, h := range c.hists[w] {
					transform.Rebin(merged[w], h)
				}
			}
			c.Bins = merged[0].Edges
			c.Baseline.Histogram, c.Baseline.Below, c.Baseline.Above = merged[0].Counts, merged[0].Below, merged[0].Above
			c.Current.Histogram, c.Current.Below, c.Current.Above = merged[1].Counts, merged[1].Below, merged[1].Above
			c.PSI = transform.PSI(merged[0], merged[1])
			c.Drift = c.PSI > threshold
			rep.Drift = rep.Drift || c.Drift
		}
		rep.Columns = append(rep.Columns, *c)
	}
	return rep, nil
}

func cmpStr(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func newAcc() *windowAcc { return &windowAcc{lo: math.Inf(1), hi: math.Inf(-1)} }

func (a *windowAcc) facts() windowFacts {
	f := windowFacts{Rows: int64(a.count) + a.nulls + a.nonFinite, NullCount: a.nulls}
	if a.count > 0 {
		lo, hi, mean := a.lo, a.hi, a.sum/a.count
		f.Min, f.Max, f.Mean = &lo, &hi, &mean
	}
	return f
}

func printQuality(w io.Writer, rep *qualityReport) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "PIPELINE\tCOLUMN\tROWS (BASE/CUR)\tNULLS (BASE/CUR)\tMEAN (BASE/CUR)\tPSI\t\n")
	for _, c := range rep.Columns {
		flag := ""
		if c.Drift {
			flag = "DRIFT"
		}
		fmt.Fprintf(tw, "%s\t%s\t%d/%d\t%d/%d\t%s/%s\t%.4f\t%s\n", c.Pipeline, c.Column,
			c.Baseline.Rows, c.Current.Rows, c.Baseline.NullCount, c.Current.NullCount,
			fmtMean(c.Baseline.Mean), fmtMean(c.Current.Mean), c.PSI, flag)
	}
	tw.Flush()
	fmt.Fprintf(w, "\nbaseline: %d events, current: %d events, threshold %.3g\n", rep.Baseline.Events, rep.Current.Events, rep.PSIThreshold)
	if rep.Drift {
		fmt.Fprintln(w, "drift: at least one column's PSI is above the threshold")
	}
}

func fmtMean(m *float64) string {
	if m == nil {
		return "-"
	}
	return fmt.Sprintf("%.4g", *m)
}
