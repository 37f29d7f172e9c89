package sim

import (
	"context"
	"math"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/sluice-dev/sluice/gpuexec"
)

func tuned() gpuexec.RouterOptions {
	return gpuexec.RouterOptions{BurstAbove: TunedBurstAbove, BurstBelow: TunedBurstBelow, LatencyTarget: TunedLatencyTarget}
}

func TestDeterministicForSeed(t *testing.T) {
	cfg := Config{Decider: shipped(t), Span: 3 * time.Hour, Router: tuned()}
	a, err := Run(context.Background(), cfg, Sluice)
	if err != nil {
		t.Fatal(err)
	}
	b, err := Run(context.Background(), cfg, Sluice)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(a, b) {
		t.Fatalf("two runs with seed %d differ: cost %v vs %v, p99 %v vs %v", cfg.Seed, a.CostUSD, b.CostUSD, a.Latency.P99Ms, b.Latency.P99Ms)
	}
	cfg.Seed = 2
	c, err := Run(context.Background(), cfg, Sluice)
	if err != nil {
		t.Fatal(err)
	}
	if c.Batches == a.Batches && c.CostUSD == a.CostUSD {
		t.Fatal("seed 2 gave the same run as seed 1")
	}
}

// The targets on the built-in bursty day with the default pool.
func TestBuiltInDayMeetsTargets(t *testing.T) {
	cmp, err := Compare(context.Background(), Config{Decider: shipped(t), Router: tuned()})
	if err != nil {
		t.Fatal(err)
	}
	s, ac := cmp.Sluice, cmp.AllCloud
	ratio := s.CostUSD / ac.CostUSD
	t.Logf("onprem-util %.1f%%, p99 %.0f ms, violations %d, cost %.2f× all-cloud, %d batches",
		100*s.OnPremUtil, s.Latency.P99Ms, s.Violations, ratio, s.Batches)
	if s.Batches < 10000 || s.Batches > 100000 {
		t.Errorf("%d batches in the day; want tens of thousands", s.Batches)
	}
	if s.OnPremUtil < 0.85 {
		t.Errorf("on-prem utilization %.3f < 0.85", s.OnPremUtil)
	}
	if s.Latency.P99Ms > float64(DefaultP99Target.Milliseconds()) {
		t.Errorf("p99 %.0f ms over the target %s", s.Latency.P99Ms, DefaultP99Target)
	}
	if s.Violations != 0 || ac.Violations != 0 || cmp.OnPremOnly.Violations != 0 {
		t.Errorf("violations: sluice %d, all-cloud %d, on-prem only %d", s.Violations, ac.Violations, cmp.OnPremOnly.Violations)
	}
	if ratio > 0.7 {
		t.Errorf("cost %.2f× all-cloud > 0.7", ratio)
	}
	if s.NotPlacedRows != 0 {
		t.Errorf("sluice left %d rows unplaced; every stream has a legal executor", s.NotPlacedRows)
	}
	// The untuned router defaults burst at 2 batches in flight, far below
	// a 5-GPU site's capacity: on-prem utilization suffers.
	def, err := Run(context.Background(), Config{Decider: shipped(t)}, Sluice)
	if err != nil {
		t.Fatal(err)
	}
	if def.OnPremUtil >= s.OnPremUtil {
		t.Errorf("untuned defaults reach %.3f on-prem utilization, tuned %.3f; the tuning buys nothing", def.OnPremUtil, s.OnPremUtil)
	}
}

func TestBaselines(t *testing.T) {
	cmp, err := Compare(context.Background(), Config{Decider: shipped(t), Span: 4 * time.Hour, Router: tuned()})
	if err != nil {
		t.Fatal(err)
	}
	byID := func(r *Result) map[string]ExecStats {
		m := map[string]ExecStats{}
		for _, e := range r.Executors {
			m[e.ID] = e
		}
		return m
	}
	// On-prem only: nothing in the cloud; IN and BR data (no site in
	// country) are not placed, and nothing else.
	op := cmp.OnPremOnly
	for _, e := range op.Executors {
		if e.Kind == "cloud" && e.Batches > 0 {
			t.Errorf("on-prem only ran %d batches on %s", e.Batches, e.ID)
		}
	}
	keys := make([]string, 0, len(op.NotPlacedBy))
	for k := range op.NotPlacedBy {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	if !slices.Equal(keys, []string{"BR/card", "IN/card"}) || op.NotPlacedRows == 0 {
		t.Errorf("on-prem only left %v unplaced, want BR/card and IN/card", op.NotPlacedBy)
	}
	if op.CloudUSD != 0 {
		t.Errorf("on-prem only paid $%.2f for cloud", op.CloudUSD)
	}
	// All-cloud: on-prem runs only the PHI no cloud may take; US data goes
	// to us-east-1, the cheapest legal region for it (no egress), IN to
	// ap-south-1; nothing is left unplaced.
	ac := byID(cmp.AllCloud)
	sl := byID(cmp.Sluice)
	onpremBatches := ac["fra-gpu"].Batches + ac["ash-gpu"].Batches
	clinical := cmp.AllCloud.ByClass["clinical"].Batches
	if onpremBatches == 0 || onpremBatches > clinical+int64(cmp.AllCloud.Unfinished) {
		t.Errorf("all-cloud ran %d batches on-prem; want about the %d clinical (PHI) batches", onpremBatches, clinical)
	}
	if ac["aws-us-east-1"].Batches == 0 || ac["aws-ap-south-1"].Batches == 0 || ac["aws-sa-east-1"].Batches == 0 {
		t.Errorf("all-cloud did not use every region its data needs: %+v", ac)
	}
	if cmp.AllCloud.NotPlacedRows != 0 {
		t.Errorf("all-cloud left %d rows unplaced", cmp.AllCloud.NotPlacedRows)
	}
	if a, s := cmp.AllCloud.CloudShare, cmp.Sluice.CloudShare; a <= s {
		t.Errorf("all-cloud sent %.2f of rows to the cloud, sluice %.2f", a, s)
	}
	if sl["fra-gpu"].Util <= ac["fra-gpu"].BusyH/(4*float64(sl["fra-gpu"].GPUs)) {
		t.Errorf("sluice keeps fra busier than all-cloud does")
	}
}

// A batch put on an executor its decisions do not allow is counted.
func TestViolationIsCounted(t *testing.T) {
	cfg := Config{Decider: shipped(t), Span: time.Hour, Router: tuned()}
	cfg.pick = func(allowed, all []string) string {
		for _, id := range all {
			if !slices.Contains(allowed, id) {
				return id
			}
		}
		return ""
	}
	res, err := Run(context.Background(), cfg, Sluice)
	if err != nil {
		t.Fatal(err)
	}
	// Every stream has some executor it may not use (PHI may not go to the
	// cloud, card data not out of IN/BR...), so every batch is misplaced.
	if res.Violations == 0 || res.Violations != res.Batches-res.NotPlacedBatches {
		t.Errorf("violations %d, batches %d (not placed %d)", res.Violations, res.Batches, res.NotPlacedBatches)
	}
}

// With only executors the policy disallows, the real router places
// nothing: every row is not placed, and nothing is a violation.
func TestOnlyDisallowedExecutorQuarantines(t *testing.T) {
	pool := Pool{Cloud: []Region{{ID: "us-west", Provider: "aws", Region: "us-west-2", Jurisdiction: "US",
		MaxGPUs: 4, RowsPerSecond: 1e5, PricePerHour: 4}}}
	mix := []Stream{{"DE", "card", 1}, {"US", "clinical", 1}} // GDPR (no dpf), HIPAA (cloud)
	res, err := Run(context.Background(), Config{Decider: shipped(t), Pool: pool, Mix: mix, Span: time.Hour, Router: tuned()}, Sluice)
	if err != nil {
		t.Fatal(err)
	}
	if res.Batches == 0 || res.NotPlacedRows != res.Rows || res.Violations != 0 || res.CostUSD != 0 {
		t.Errorf("batches %d rows %d not placed %d violations %d cost %.2f", res.Batches, res.Rows, res.NotPlacedRows, res.Violations, res.CostUSD)
	}
}

// A trace beyond the legal capacity queues; nothing goes elsewhere.
func TestOverCapacityQueues(t *testing.T) {
	pool := Pool{
		OnPrem: []Site{{ID: "fra", Name: "fra", Jurisdiction: "DE", GPUs: 1, RowsPerSecond: 1e5, PricePerHour: 1}},
		Cloud:  []Region{{ID: "mumbai", Provider: "aws", Region: "ap-south-1", Jurisdiction: "IN", MaxGPUs: 8, RowsPerSecond: 1e5, PricePerHour: 4}},
	}
	res, err := Run(context.Background(), Config{Decider: shipped(t), Pool: pool, Mix: []Stream{{"DE", "card", 1}},
		Profile: Profile{{0, 3e5}}, Span: time.Hour, Router: tuned()}, Sluice)
	if err != nil {
		t.Fatal(err)
	}
	if res.Violations != 0 || res.NotPlacedRows != 0 || res.Executors[1].Batches != 0 {
		t.Errorf("violations %d, not placed %d, batches in IN %d", res.Violations, res.NotPlacedRows, res.Executors[1].Batches)
	}
	if res.Unfinished < res.Batches/2 || res.Executors[0].MaxQueue < 100 {
		t.Errorf("3× over capacity: %d of %d batches unfinished, max queue %d; want a growing queue", res.Unfinished, res.Batches, res.Executors[0].MaxQueue)
	}
}

// Cost accounting on a tiny pool, by hand.
func TestCostAccounting(t *testing.T) {
	pool := Pool{
		OnPrem: []Site{{ID: "ash", Name: "ash", Jurisdiction: "US", Certifications: []string{"hipaa"}, GPUs: 2, RowsPerSecond: 1e5, PricePerHour: 1.5}},
		Cloud: []Region{{ID: "east", Provider: "aws", Region: "us-east-1", Jurisdiction: "US", MaxGPUs: 4, RowsPerSecond: 1e5, PricePerHour: 4,
			EgressPerGB: 0.1}}, // no scale-up or idle time: billed exactly its busy time
	}
	cfg := Config{Decider: shipped(t), Pool: pool, Mix: []Stream{{"US", "card", 1}}, Profile: Profile{{0, 2e4}}, Span: 2 * time.Hour, Router: tuned()}
	res, err := Run(context.Background(), cfg, AllCloud)
	if err != nil {
		t.Fatal(err)
	}
	east := res.Executors[1]
	ash := res.Executors[0]
	if east.Batches != res.Batches || ash.Batches != 0 {
		t.Fatalf("all-cloud ran %d of %d batches in the cloud", east.Batches, res.Batches)
	}
	finished := east.Batches - res.Unfinished
	wantGB := float64(finished) * 2e6 * 8 / 1e9 // results back, same region: no input egress
	if math.Abs(east.EgressGB-wantGB) > 1e-9 {
		t.Errorf("egress %.6f GB, want %.6f", east.EgressGB, wantGB)
	}
	if math.Abs(east.PaidH-east.BusyH) > 1e-9 {
		t.Errorf("paid %.6f GPU-h, busy %.6f: with no scale-up or idle time they are equal", east.PaidH, east.BusyH)
	}
	// A batch of 2M rows at 1e5 rows/s: 20 s plus 4.16 s over the 100 MB/s link
	// and 1 ms, ±10% noise.
	perBatch := east.BusyH * 3600 / float64(east.Batches)
	if perBatch < 20 || perBatch > 28.5 {
		t.Errorf("%.2f s busy per batch, want about 24.2", perBatch)
	}
	if want := east.PaidH*4 + wantGB*0.1; math.Abs(res.CostUSD-want) > 1e-9 || res.OnPremUSD != 0 {
		t.Errorf("all-cloud cost $%.6f, want $%.6f (on-prem $%.2f: an unused site costs all-cloud nothing)", res.CostUSD, want, res.OnPremUSD)
	}
	op, err := Run(context.Background(), cfg, OnPremOnly)
	if err != nil {
		t.Fatal(err)
	}
	if want := 2 * 2 * 1.5; math.Abs(op.CostUSD-want) > 1e-9 {
		t.Errorf("on-prem only cost $%.4f, want 2 GPUs × 2 h × $1.5 = $%.2f", op.CostUSD, want)
	}
}

func TestPoolFileIsTheDefault(t *testing.T) {
	p, err := LoadPool("../../testdata/simulate/pool.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(p, DefaultPool()) {
		t.Error("testdata/simulate/pool.yaml differs from the built-in pool")
	}
	if _, err := ParsePool([]byte("onprem:\n  - id: x\n    gpus: 0\n")); err == nil {
		t.Error("a site with no GPUs parsed")
	}
}
