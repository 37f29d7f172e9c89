package transform

import (
	"maps"
	"slices"
	"sync"
	"time"
)

// Snapshot is a point-in-time copy of a Runner's counters. Every record the
// runner finished is counted exactly once as a feature row, a dead letter
// or a quarantined row.
type Snapshot struct {
	Batches     int64 `json:"batches"`
	Records     int64 `json:"records_in"`
	FeatureRows int64 `json:"feature_rows"`
	DeadLetters int64 `json:"dead_letters"`
	Quarantined int64 `json:"quarantined"`
	// QuarantineReasons counts quarantined rows per reason.
	QuarantineReasons map[string]int64 `json:"quarantine_reasons"`
	// RowsByExecutor and RowsByLocation count feature rows.
	RowsByExecutor map[string]int64 `json:"rows_by_executor"`
	RowsByLocation map[string]int64 `json:"rows_by_location"`
	LineageEvents  int64            `json:"lineage_events"`
	// Replayed counts records read again after a crash or rebalance that
	// the lineage already recorded; they are not processed twice and not
	// counted in Records.
	Replayed int64 `json:"replayed"`
	// Stalls counts retries after a store, topic or executor failed.
	Stalls int64 `json:"stalls"`
	// BatchTime is the total time spent processing batches.
	BatchTime time.Duration `json:"batch_time_ns"`
	// Decisions counts policy decisions the runner used, per outcome
	// ("allow", "deny", "error") and rule label ("" when none fired). A
	// memoized decision counts each time a batch uses it.
	Decisions map[DecisionKey]int64 `json:"-"`
	// Latency is the distribution of batch processing time, in seconds.
	Latency Histogram `json:"latency"`
	// StageTime is the time spent per stage (Stage* names), summed over
	// batches; ingest (fetch and decode) happens in the Source and is not
	// in it.
	StageTime map[string]time.Duration `json:"stage_time_ns"`
	// Recent holds the processing times of the latest batches (at most
	// recentBatches), for percentiles.
	Recent []time.Duration `json:"-"`
}

// Stage names of Snapshot.StageTime.
const (
	StageDeadLetters = "dead_letters"
	StagePolicy      = "policy"
	StageExecute     = "execute"
	StageWrite       = "write"
	StageLineage     = "lineage"
)

// recentBatches bounds Snapshot.Recent.
const recentBatches = 10_000

// DecisionKey labels a decision count.
type DecisionKey struct {
	Outcome string
	Rule    string
}

// LatencyBuckets are the upper bounds, in seconds, of Snapshot.Latency.
var LatencyBuckets = []float64{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30}

// Histogram is a cumulative histogram: Counts[i] observations were at most
// Bounds[i]; Count and Sum cover all of them.
type Histogram struct {
	Bounds []float64 `json:"bounds"`
	Counts []uint64  `json:"counts"`
	Count  uint64    `json:"count"`
	Sum    float64   `json:"sum"`
}

func (h *Histogram) observe(v float64) {
	for i, b := range h.Bounds {
		if v <= b {
			h.Counts[i]++
		}
	}
	h.Count++
	h.Sum += v
}

// Stats is safe for concurrent use.
type Stats struct {
	mu sync.Mutex
	s  Snapshot
}

func newStats() *Stats {
	return &Stats{s: Snapshot{
		QuarantineReasons: map[string]int64{},
		RowsByExecutor:    map[string]int64{},
		RowsByLocation:    map[string]int64{},
		Decisions:         map[DecisionKey]int64{},
		StageTime:         map[string]time.Duration{},
		Latency:           Histogram{Bounds: LatencyBuckets, Counts: make([]uint64, len(LatencyBuckets))},
	}}
}

func (st *Stats) add(o batchOutcome) {
	st.mu.Lock()
	defer st.mu.Unlock()
	st.s.Batches++
	st.s.Replayed += o.replayed
	st.s.Records += o.records
	st.s.DeadLetters += o.deadLetters
	st.s.Quarantined += o.quarantined
	for k, v := range o.qReasons {
		st.s.QuarantineReasons[k] += v
	}
	for k, v := range o.rowsByExec {
		st.s.RowsByExecutor[k] += v
		st.s.FeatureRows += v
	}
	for k, v := range o.rowsByLoc {
		st.s.RowsByLocation[k] += v
	}
	st.s.LineageEvents += o.events
	st.s.BatchTime += o.elapsed
	for k, v := range o.decisions {
		st.s.Decisions[k] += v
	}
	st.s.Latency.observe(o.elapsed.Seconds())
	for k, v := range o.stages {
		st.s.StageTime[k] += v
	}
	if len(st.s.Recent) == recentBatches {
		st.s.Recent = st.s.Recent[1:]
	}
	st.s.Recent = append(st.s.Recent, o.elapsed)
}

func (st *Stats) stall() {
	st.mu.Lock()
	st.s.Stalls++
	st.mu.Unlock()
}

func (st *Stats) snapshot() Snapshot {
	st.mu.Lock()
	defer st.mu.Unlock()
	s := st.s
	s.QuarantineReasons = maps.Clone(st.s.QuarantineReasons)
	s.RowsByExecutor = maps.Clone(st.s.RowsByExecutor)
	s.RowsByLocation = maps.Clone(st.s.RowsByLocation)
	s.Decisions = maps.Clone(st.s.Decisions)
	s.Latency.Counts = slices.Clone(st.s.Latency.Counts)
	s.StageTime = maps.Clone(st.s.StageTime)
	s.Recent = slices.Clone(st.s.Recent)
	return s
}
