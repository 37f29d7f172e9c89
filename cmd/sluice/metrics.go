package main

import (
	"context"
	"maps"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/sluice-dev/sluice/gpuexec"
	"github.com/sluice-dev/sluice/ingest/kafka"
	"github.com/sluice-dev/sluice/transform"
)

// metricsSource is what /metrics reads, once per scrape. Every field is
// optional: a nil func or an empty list leaves its metrics out, so
// `sluice serve` (no pipeline) exports only the process metrics and
// `sluice run --http` exports everything. The funcs are called from the
// scrape goroutine and must be safe for concurrent use (Runner.Stats,
// Source.Stats and Memo.Revision are).
type metricsSource struct {
	// Runner is transform.Runner.Stats.
	Runner func() transform.Snapshot
	// Source is kafka.Source.Stats.
	Source func() kafka.Stats
	// Executors are asked Healthy on each scrape (concurrently, each
	// bounded by HealthTimeout).
	Executors []gpuexec.Executor
	// PolicyRevision is policy.Memo.Revision: the revision of the policy
	// in force.
	PolicyRevision func() string
	// Telemetry reports accelerator utilization (NVML); nil when the
	// build or the host has none.
	Telemetry func(ctx context.Context) []deviceTelemetry
	// HealthTimeout bounds each Healthy and the Telemetry call. Default
	// (<= 0): 2s.
	HealthTimeout time.Duration
}

// deviceTelemetry is one accelerator's utilization as NVML reports it.
type deviceTelemetry struct {
	// Executor is the id of the executor that owns the device.
	Executor string
	// Device names the device ("NVIDIA H100 80GB HBM3", or its index).
	Device string
	// GPU and Memory are utilization over the last sample period, 0..1.
	GPU, Memory float64
	// MemoryUsed and MemoryTotal are in bytes.
	MemoryUsed, MemoryTotal uint64
}

// newMetricsRegistry returns a registry with the Go runtime and process
// collectors, sluice_build_info, and (when src is not nil) the pipeline
// collector.
func newMetricsRegistry(src *metricsSource) *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	build := prometheus.NewGauge(prometheus.GaugeOpts{
		Name:        "sluice_build_info",
		Help:        "Always 1; the version label names the sluice build.",
		ConstLabels: prometheus.Labels{"version": version()},
	})
	build.Set(1)
	reg.MustRegister(build)
	if src != nil {
		reg.MustRegister(&pipelineCollector{src: src})
	}
	return reg
}

// Descriptions of the pipeline metrics. Counters mirror the Runner's and
// Source's totals since the process started.
var (
	descSourceRecords = prometheus.NewDesc("sluice_source_records_total",
		"Kafka records the source handed to the pipeline (stage ingest, out), including malformed ones.", nil, nil)
	descSourceBatches = prometheus.NewDesc("sluice_source_batches_total",
		"Batches the Kafka source handed to the pipeline.", nil, nil)
	descRecordsIn = prometheus.NewDesc("sluice_records_in_total",
		"Records the pipeline finished (stage pipeline, in); each ends as exactly one of the outcomes of sluice_records_out_total.", nil, nil)
	descRecordsOut = prometheus.NewDesc("sluice_records_out_total",
		"Records the pipeline finished, by outcome: features (written as feature rows), dead_letter (malformed), quarantine (no executor allowed).",
		[]string{"outcome"}, nil)
	descBatches = prometheus.NewDesc("sluice_batches_total",
		"Batches the pipeline finished (output and lineage durable, offsets acked).", nil, nil)
	descDeadLetters = prometheus.NewDesc("sluice_dead_letters_total",
		"Malformed records sent to the dead-letter topic.", nil, nil)
	descQuarantined = prometheus.NewDesc("sluice_quarantined_rows_total",
		"Rows quarantined because no executor may take them, by deny reason.", []string{"reason"}, nil)
	descDecisions = prometheus.NewDesc("sluice_policy_decisions_total",
		"Policy decisions used by batches, by outcome (allow, deny, error) and rule label (empty when no rule fired).",
		[]string{"outcome", "rule"}, nil)
	descRoutedRows = prometheus.NewDesc("sluice_routed_rows_total",
		"Feature rows routed to each executor (the router's choices).", []string{"executor"}, nil)
	descLocationRows = prometheus.NewDesc("sluice_location_rows_total",
		"Feature rows processed per executor location.", []string{"location"}, nil)
	descLineageEvents = prometheus.NewDesc("sluice_lineage_events_total",
		"Lineage events written (signed and durable).", nil, nil)
	descReplayed = prometheus.NewDesc("sluice_replayed_records_total",
		"Records read again after a crash or rebalance that the lineage already held; skipped, not processed twice.", nil, nil)
	descStalls = prometheus.NewDesc("sluice_stalls_total",
		"Retries after the object store, the dead-letter topic or every allowed executor failed.", nil, nil)
	descLatency = prometheus.NewDesc("sluice_batch_duration_seconds",
		"Time to process one batch, from decode to durable lineage.", nil, nil)
	descLag = prometheus.NewDesc("sluice_consumer_lag_records",
		"Records between the group's committed offset and the high-water mark, summed over the partitions this replica holds.", nil, nil)
	descPartitionLag = prometheus.NewDesc("sluice_consumer_partition_lag_records",
		"Records between the committed offset and the high-water mark of one partition this replica has seen.", []string{"partition"}, nil)
	descAssigned = prometheus.NewDesc("sluice_consumer_assigned_partitions",
		"Partitions the consumer group assigned to this replica.", nil, nil)
	descExecHealthy = prometheus.NewDesc("sluice_executor_healthy",
		"1 when the executor answered Healthy within the timeout, else 0.", []string{"executor", "kind", "location"}, nil)
	descGPUUtil = prometheus.NewDesc("sluice_executor_gpu_utilization_ratio",
		"Accelerator busy time over the last NVML sample period, 0..1.", []string{"executor", "device"}, nil)
	descMemUtil = prometheus.NewDesc("sluice_executor_memory_utilization_ratio",
		"Accelerator memory-controller busy time over the last NVML sample period, 0..1.", []string{"executor", "device"}, nil)
	descMemUsed = prometheus.NewDesc("sluice_executor_memory_used_bytes",
		"Accelerator memory in use.", []string{"executor", "device"}, nil)
	descMemTotal = prometheus.NewDesc("sluice_executor_memory_total_bytes",
		"Accelerator memory installed.", []string{"executor", "device"}, nil)
	descPolicy = prometheus.NewDesc("sluice_policy_revision_info",
		"Always 1; the revision label names the policy in force.", []string{"revision"}, nil)
)

// pipelineCollector turns one read of its metricsSource into const
// metrics, so a scrape sees a consistent snapshot and costs nothing
// between scrapes.
type pipelineCollector struct {
	src *metricsSource
}

// Describe sends nothing: the collector is unchecked, because which
// metrics exist depends on which parts of metricsSource are set.
func (c *pipelineCollector) Describe(chan<- *prometheus.Desc) {}

func (c *pipelineCollector) Collect(ch chan<- prometheus.Metric) {
	counter := func(d *prometheus.Desc, v int64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	src := c.src
	if src.Runner != nil {
		s := src.Runner()
		counter(descRecordsIn, s.Records)
		counter(descRecordsOut, s.FeatureRows, "features")
		counter(descRecordsOut, s.DeadLetters, "dead_letter")
		counter(descRecordsOut, s.Quarantined, "quarantine")
		counter(descBatches, s.Batches)
		counter(descDeadLetters, s.DeadLetters)
		for _, r := range slices.Sorted(maps.Keys(s.QuarantineReasons)) {
			counter(descQuarantined, s.QuarantineReasons[r], r)
		}
		for k, v := range s.Decisions {
			counter(descDecisions, v, k.Outcome, k.Rule)
		}
		for id, v := range s.RowsByExecutor {
			counter(descRoutedRows, v, id)
		}
		for loc, v := range s.RowsByLocation {
			counter(descLocationRows, v, loc)
		}
		counter(descLineageEvents, s.LineageEvents)
		counter(descReplayed, s.Replayed)
		counter(descStalls, s.Stalls)
		if h := s.Latency; len(h.Bounds) == len(h.Counts) {
			buckets := make(map[float64]uint64, len(h.Bounds))
			for i, b := range h.Bounds {
				buckets[b] = h.Counts[i]
			}
			ch <- prometheus.MustNewConstHistogram(descLatency, h.Count, h.Sum, buckets)
		}
	}
	if src.Source != nil {
		st := src.Source()
		counter(descSourceRecords, st.Records)
		counter(descSourceBatches, st.Batches)
		gauge(descLag, float64(st.Lag()))
		gauge(descAssigned, float64(len(st.Assigned)))
		for p, hw := range st.HighWater {
			if c, ok := st.Committed[p]; ok {
				gauge(descPartitionLag, float64(max(hw-c, 0)), strconv.Itoa(p))
			}
		}
	}
	if src.PolicyRevision != nil {
		if rev := src.PolicyRevision(); rev != "" {
			gauge(descPolicy, 1, rev)
		}
	}
	timeout := src.HealthTimeout
	if timeout <= 0 {
		timeout = 2 * time.Second
	}
	healthy := executorHealth(src.Executors, timeout)
	for i, e := range src.Executors {
		v := 0.0
		if healthy[i] {
			v = 1
		}
		gauge(descExecHealthy, v, e.ID(), e.Kind(), e.Location().Name)
	}
	if src.Telemetry != nil {
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		devs := src.Telemetry(ctx)
		cancel()
		for _, d := range devs {
			gauge(descGPUUtil, d.GPU, d.Executor, d.Device)
			gauge(descMemUtil, d.Memory, d.Executor, d.Device)
			gauge(descMemUsed, float64(d.MemoryUsed), d.Executor, d.Device)
			gauge(descMemTotal, float64(d.MemoryTotal), d.Executor, d.Device)
		}
	}
}

// executorHealth asks every executor Healthy at once, each bounded by
// timeout, so one hung remote executor delays a scrape by at most timeout.
func executorHealth(execs []gpuexec.Executor, timeout time.Duration) []bool {
	ok := make([]bool, len(execs))
	var wg sync.WaitGroup
	for i, e := range execs {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(context.Background(), timeout)
			defer cancel()
			done := make(chan error, 1)
			go func() { done <- e.Healthy(ctx) }()
			select {
			case err := <-done:
				ok[i] = err == nil
			case <-ctx.Done():
			}
		})
	}
	wg.Wait()
	return ok
}
