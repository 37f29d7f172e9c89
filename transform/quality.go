package transform

import (
	"math"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"

	"github.com/sluice-dev/sluice/gpuexec"
	"github.com/sluice-dev/sluice/lineage"
)

// HistogramBins is the number of fixed bins of the per-batch histograms.
const HistogramBins = 10

// HistogramRange is the range a feature's values are known to lie in after
// ops, derived from their parameters (clip and min_max bound it; log1p and
// standardize map a known range; bucketize, hash_bucket and categorify
// produce ids in a known range). ok is false when the ops do not bound the
// values; the histogram then spans the batch's own range.
func HistogramRange(ops []gpuexec.Op) (lo, hi float64, ok bool) {
	for _, op := range ops {
		switch op.Kind {
		case gpuexec.OpClip:
			lo, hi, ok = op.Min, op.Max, true
		case gpuexec.OpMinMax:
			lo, hi, ok = 0, 1, true
		case gpuexec.OpLog1p:
			if ok {
				if lo <= -1 {
					ok = false
				} else {
					lo, hi = math.Log1p(lo), math.Log1p(hi)
				}
			}
		case gpuexec.OpStandardize:
			if ok {
				if op.Std <= 0 {
					ok = false
				} else {
					lo, hi = (lo-op.Mean)/op.Std, (hi-op.Mean)/op.Std
				}
			}
		case gpuexec.OpBucketize:
			lo, hi, ok = 0, float64(len(op.Boundaries)), true
		case gpuexec.OpHashBucket:
			lo, hi, ok = 0, float64(max(op.Buckets-1, 0)), true
		case gpuexec.OpCategorify:
			lo, hi, ok = 0, float64(len(op.Vocabulary)), true
		case gpuexec.OpFillMissing:
			// Fills nulls; a fill value outside a later clip is clipped, one
			// inside a known range stays inside. Leaves the range as is.
		default:
			ok = false
		}
	}
	if ok && !(lo <= hi) {
		ok = false
	}
	return lo, hi, ok
}

// ColumnQuality computes the data-quality facts of the named columns of
// rec: null count, count, sum, min, max, mean of the finite values, and a
// histogram of bins fixed bins over ranges[col] (or over the column's own
// min..max when ranges has no entry). Non-numeric and missing columns are
// left out.
func ColumnQuality(rec arrow.RecordBatch, cols []string, ranges map[string][2]float64, bins int) map[string]lineage.ColumnMetrics {
	if bins <= 0 {
		bins = HistogramBins
	}
	out := map[string]lineage.ColumnMetrics{}
	for _, name := range cols {
		idx := rec.Schema().FieldIndices(name)
		if len(idx) == 0 {
			continue
		}
		vals, nulls, ok := float64Values(rec.Column(idx[0]))
		if !ok {
			continue
		}
		m := lineage.ColumnMetrics{NullCount: nulls}
		lo, hi := math.Inf(1), math.Inf(-1)
		n := 0 // finite values
		for _, v := range vals {
			if math.IsNaN(v) || math.IsInf(v, 0) {
				m.NonFinite++
				continue
			}
			n++
			m.Sum += v
			lo, hi = min(lo, v), max(hi, v)
		}
		m.Count = float64(n)
		if n > 0 {
			mean := m.Sum / m.Count
			m.Min, m.Max, m.Mean = &lo, &hi, &mean
			hlo, hhi := lo, hi
			if r, ok := ranges[name]; ok {
				hlo, hhi = r[0], r[1]
			}
			m.Histogram = NewHistogram(hlo, hhi, bins)
			for _, v := range vals {
				if !math.IsNaN(v) && !math.IsInf(v, 0) {
					histAdd(m.Histogram, v, 1)
				}
			}
		}
		out[name] = m
	}
	return out
}

// NewHistogram returns an empty histogram of bins equal bins over lo..hi.
// A degenerate range (lo == hi) gets one bin.
func NewHistogram(lo, hi float64, bins int) *lineage.Histogram {
	if hi <= lo {
		return &lineage.Histogram{Edges: []float64{lo, lo}, Counts: make([]int64, 1)}
	}
	h := &lineage.Histogram{Edges: make([]float64, bins+1), Counts: make([]int64, bins)}
	for i := range h.Edges {
		h.Edges[i] = lo + (hi-lo)*float64(i)/float64(bins)
	}
	h.Edges[bins] = hi
	return h
}

// histAdd counts n values at v in h.
func histAdd(h *lineage.Histogram, v float64, n int64) {
	lo, hi := h.Edges[0], h.Edges[len(h.Edges)-1]
	switch {
	case v < lo:
		h.Below += n
	case v > hi:
		h.Above += n
	case hi == lo:
		h.Counts[0] += n
	default:
		i := int(float64(len(h.Counts)) * (v - lo) / (hi - lo))
		i = min(max(i, 0), len(h.Counts)-1)
		// Floating point may put v one bin off its edges.
		for i > 0 && v < h.Edges[i] {
			i--
		}
		for i < len(h.Counts)-1 && v >= h.Edges[i+1] {
			i++
		}
		h.Counts[i] += n
	}
}

// Rebin adds the counts of src to dst, each bin's count at its midpoint
// (Below at src's lower edge, Above at its upper edge). Histograms over the
// same edges add exactly; others approximately.
func Rebin(dst, src *lineage.Histogram) {
	if src == nil || len(src.Counts) == 0 {
		return
	}
	same := len(dst.Edges) == len(src.Edges)
	for i := 0; same && i < len(src.Edges); i++ {
		same = dst.Edges[i] == src.Edges[i]
	}
	if same {
		for i, c := range src.Counts {
			dst.Counts[i] += c
		}
		dst.Below += src.Below
		dst.Above += src.Above
		return
	}
	for i, c := range src.Counts {
		if c > 0 {
			histAdd(dst, (src.Edges[i]+src.Edges[i+1])/2, c)
		}
	}
	if src.Below > 0 {
		histAdd(dst, math.Nextafter(src.Edges[0], math.Inf(-1)), src.Below)
	}
	if src.Above > 0 {
		histAdd(dst, math.Nextafter(src.Edges[len(src.Edges)-1], math.Inf(1)), src.Above)
	}
}

// PSI is the population stability index of actual against expected:
// sum over bins (including Below and Above) of (a-e)·ln(a/e), with a and e
// the bins' shares; empty bins count as a share of 1e-4. Both histograms
// must have the same bins. 0 means the same distribution; above 0.2 is the
// usual threshold for a significant shift.
func PSI(expected, actual *lineage.Histogram) float64 {
	ec := append([]int64{expected.Below, expected.Above}, expected.Counts...)
	ac := append([]int64{actual.Below, actual.Above}, actual.Counts...)
	var et, at int64
	for i := range ec {
		et += ec[i]
		at += ac[i]
	}
	if et == 0 || at == 0 {
		return 0
	}
	const eps = 1e-4
	var psi float64
	for i := range ec {
		e := max(float64(ec[i])/float64(et), eps)
		a := max(float64(ac[i])/float64(at), eps)
		psi += (a - e) * math.Log(a/e)
	}
	return psi
}

// float64Values reads a numeric column as float64; nulls are left out and
// counted.
func float64Values(c arrow.Array) (vals []float64, nulls int64, ok bool) {
	n := c.Len()
	var get func(i int) float64
	switch a := c.(type) {
	case *array.Float64:
		get = func(i int) float64 { return a.Value(i) }
	case *array.Float32:
		get = func(i int) float64 { return float64(a.Value(i)) }
	case *array.Int64:
		get = func(i int) float64 { return float64(a.Value(i)) }
	case *array.Int32:
		get = func(i int) float64 { return float64(a.Value(i)) }
	case *array.Int16:
		get = func(i int) float64 { return float64(a.Value(i)) }
	case *array.Int8:
		get = func(i int) float64 { return float64(a.Value(i)) }
	default:
		return nil, 0, false
	}
	vals = make([]float64, 0, n)
	for i := 0; i < n; i++ {
		if c.IsNull(i) {
			nulls++
			continue
		}
		vals = append(vals, get(i))
	}
	return vals, nulls, true
}

// qualityFacet is the dataQualityMetrics facet of one written feature
// object: the facts of every feature column of rec.
func (r *Runner) qualityFacet(rec arrow.RecordBatch) *lineage.DataQualityMetricsFacet {
	cols := make([]string, 0, len(r.plan.Steps))
	ranges := map[string][2]float64{}
	for _, s := range r.plan.Steps {
		cols = append(cols, s.Output)
		if lo, hi, ok := HistogramRange(s.Ops); ok {
			ranges[s.Output] = [2]float64{lo, hi}
		}
	}
	return &lineage.DataQualityMetricsFacet{
		RowCount:      rec.NumRows(),
		FileCount:     1,
		ColumnMetrics: ColumnQuality(rec, cols, ranges, HistogramBins),
	}
}
