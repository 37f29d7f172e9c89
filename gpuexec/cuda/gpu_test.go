package cuda

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/sluice-dev/sluice/gpuexec"
	"github.com/sluice-dev/sluice/gpuexec/nvml"
)

// The GPU check (scripts/gpu-check.sh, docs/gpu.md). These tests run only
// when SLUICE_GPU is set:
//
//	SLUICE_GPU=1     on the real driver; no usable GPU is a failure.
//	SLUICE_GPU=fake  on the fake driver, to check the check itself here
//	                 (its timings mean nothing).
//
// Each writes a section of the report into SLUICE_GPU_REPORT (a folder;
// default: a temporary one).

func gpuCheck(t *testing.T) (e *Executor, real bool) {
	t.Helper()
	switch os.Getenv("SLUICE_GPU") {
	case "1":
		e, err := New("gpu-check", gpuexec.Location{Name: "check"}, Options{})
		if err != nil {
			t.Fatalf("SLUICE_GPU=1 but no usable GPU: %v", err)
		}
		t.Cleanup(func() { e.Close() })
		return e, true
	case "fake":
		return newFakeExecutor(t, newFake(), memory.DefaultAllocator), false
	default:
		t.Skip("GPU check: set SLUICE_GPU=1 on a machine with an NVIDIA GPU (sm_90+), or SLUICE_GPU=fake to dry-run it")
		return nil, false
	}
}

func writeSection(t *testing.T, name, text string) {
	t.Helper()
	dir := os.Getenv("SLUICE_GPU_REPORT")
	if dir == "" {
		dir = t.TempDir()
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("wrote %s:\n%s", path, text)
}

func deviceHeader(e *Executor, real bool) string {
	var b strings.Builder
	if !real {
		b.WriteString("**Dry run on the fake driver: the numbers below are not measurements.**\n\n")
	}
	for _, d := range e.Devices() {
		fmt.Fprintf(&b, "Device %d: %s, compute capability %s, %d SMs, %.1f GiB, peak memory bandwidth %.0f GB/s (driver attributes).\n",
			d.Ordinal, d.Name, d.ComputeCapability, d.Multiprocessors, float64(d.TotalMemory)/(1<<30), d.PeakBandwidth/1e9)
	}
	fmt.Fprintf(&b, "Host: %d CPUs (GOMAXPROCS %d), %s/%s, Go %s.\n\n", runtime.NumCPU(), runtime.GOMAXPROCS(0), runtime.GOOS, runtime.GOARCH, runtime.Version())
	return b.String()
}

// TestGPUCorrectness runs every op the GPU implements, alone and fused,
// on random data with nulls, NaN, ±Inf and edge values, and compares the
// whole batch with gpuexec.CPU.
func TestGPUCorrectness(t *testing.T) {
	e, real := gpuCheck(t)
	sizes := []int{1, 33, 1000, 5000}
	if real {
		sizes = []int{1, 33, 1000, 100_003, 1<<20 + 7}
	}
	cpu := gpuexec.NewCPU("cpu", gpuexec.Location{}, gpuexec.CPUOptions{})
	type row struct {
		chain, types string
		values       int
		worst        float64
		tol          float64
		failed       bool
	}
	var rows []row
	run := func(name string, ops []gpuexec.Op, types []arrow.DataType) {
		r := row{chain: name, tol: 0}
		if hasLog1p(ops) {
			r.tol = log1pTolerance
		}
		var tn []string
		for _, dt := range types {
			tn = append(tn, dt.String())
		}
		r.types = strings.Join(tn, ", ")
		ok := t.Run(name, func(t *testing.T) {
			rng := rand.New(rand.NewPCG(42, uint64(len(name))))
			for _, dt := range types {
				for _, n := range sizes {
					for _, nullFrac := range []float64{0, 0.2, 1} {
						in := randomArray(memory.DefaultAllocator, rng, dt, n, nullFrac)
						rec := record(map[string]arrow.Array{"x": in})
						plan := &gpuexec.Plan{Steps: []gpuexec.Step{{Output: "y", Input: "x", Ops: ops}}}
						got, err := e.Execute(context.Background(), plan, rec)
						if err != nil {
							t.Fatal(err)
						}
						want, err := cpu.Execute(context.Background(), plan, rec)
						if err != nil {
							t.Fatal(err)
						}
						r.worst = max(r.worst, compareBatches(t, got, want, r.tol))
						r.values += n
						got.Release()
						want.Release()
						rec.Release()
					}
				}
			}
		})
		r.failed = !ok
		rows = append(rows, r)
	}
	numeric := []arrow.DataType{arrow.PrimitiveTypes.Float64, arrow.PrimitiveTypes.Float32, arrow.PrimitiveTypes.Int32}
	for _, name := range sortedKeys(chains()) {
		run(name, chains()[name], numeric)
	}
	for _, name := range sortedKeys(stringChains()) {
		run(name, stringChains()[name], []arrow.DataType{arrow.BinaryTypes.String, arrow.BinaryTypes.LargeString})
	}

	var b strings.Builder
	b.WriteString("## CUDA executor vs CPU reference\n\n")
	b.WriteString(deviceHeader(e, real))
	fmt.Fprintf(&b, "Random data, sizes %v, null shares 0, 0.2 and 1, with NaN, ±Inf, -1 and tiny values mixed in. "+
		"Tolerance: integers, bitmaps and float64 results bit for bit, except chains with log1p: relative %g (to max(1, |cpu|)).\n\n", sizes, log1pTolerance)
	b.WriteString("| chain | input types | values | tolerance | largest relative error | result |\n|---|---|---:|---|---:|---|\n")
	for _, r := range rows {
		tol, res := "exact", "pass"
		if r.tol > 0 {
			tol = fmt.Sprintf("%g", r.tol)
		}
		if r.failed {
			res = "**FAIL**"
		}
		fmt.Fprintf(&b, "| %s | %s | %d | %s | %.2g | %s |\n", r.chain, r.types, r.values, tol, r.worst, res)
	}
	writeSection(t, "10-correctness.md", b.String()+"\n")
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// benchColumn is n float64 values with every tenth null, built quickly.
func benchColumn(n int) arrow.Array {
	b := array.NewFloat64Builder(memory.DefaultAllocator)
	defer b.Release()
	b.Reserve(n)
	for i := range n {
		if i%10 == 9 {
			b.UnsafeAppendBoolToBitmap(false)
			continue
		}
		b.UnsafeAppend(float64(i%2001-1000) / 7)
	}
	return b.NewArray()
}

// TestGPUBandwidth times the fused chain kernel alone on device-resident
// data with CUDA events and reports its memory throughput as a share of
// the device's peak.
func TestGPUBandwidth(t *testing.T) {
	e, real := gpuCheck(t)
	n, reps := 1<<12, 2
	if real {
		n, reps = 1<<26, 20
	}
	peak := e.devices[0].info.PeakBandwidth
	peakFrom := "driver attributes"
	if m, err := nvml.Open(nvml.Options{}); err == nil {
		if tel, err := m.Telemetry(); err == nil && len(tel.Devices) > 0 && tel.Devices[0].PeakBandwidth > 0 {
			peak, peakFrom = tel.Devices[0].PeakBandwidth, "NVML max memory clock x bus width"
		}
		m.Close()
	}
	in := benchColumn(n)
	defer in.Release()
	cases := []struct {
		name string
		ops  []gpuexec.Op
	}{
		{"fill_missing → clip → standardize", []gpuexec.Op{{Kind: gpuexec.OpFillMissing, Value: 0}, {Kind: gpuexec.OpClip, Min: -50, Max: 50}, {Kind: gpuexec.OpStandardize, Mean: 1, Std: 20}}},
		{"fill_missing → clip → log1p → standardize", chains()["fill_clip_log1p_standardize"]},
		{"clip → min_max (nulls kept)", []gpuexec.Op{{Kind: gpuexec.OpClip, Min: -50, Max: 50}, {Kind: gpuexec.OpMinMax, Min: -50, Max: 50}}},
		{"bucketize, 7 boundaries", chains()["bucketize"]},
	}
	var b strings.Builder
	b.WriteString("## Fused chain kernel bandwidth\n\n")
	b.WriteString(deviceHeader(e, real))
	fmt.Fprintf(&b, "%d float64 values (every tenth null), data on the device, %d launches timed with CUDA events after one warm-up. "+
		"Bytes moved per launch: 8 read + 8 written per value, plus the bitmaps read and written. Peak from %s: %.0f GB/s.\n\n", n, reps, peakFrom, peak/1e9)
	b.WriteString("| chain | time per launch | ns per value | GB/s | share of peak |\n|---|---:|---:|---:|---:|\n")
	d := e.devices[0]
	for _, c := range cases {
		g := newGPUStep(0, &gpuexec.Step{Output: "y", Input: "x", Ops: c.ops}, in)
		var ms float32
		err := d.do(context.Background(), func() error {
			var err error
			ms, err = d.timeChain(g, reps)
			return err
		})
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		per := float64(ms) / 1e3 / float64(reps)
		bytes := float64(n)*16 + 2*float64(bitmapBytes(n))
		bw := bytes / per
		share := "n/a"
		if peak > 0 {
			share = fmt.Sprintf("%.0f%%", 100*bw/peak)
		}
		fmt.Fprintf(&b, "| %s | %.3f ms | %.3f | %.0f | %s |\n", c.name, per*1e3, per*1e9/float64(n), bw/1e9, share)
	}
	writeSection(t, "20-bandwidth.md", b.String()+"\n")
}

// timeChain stages g, copies it to the device, and returns the time of
// reps chain launches, on the device thread.
func (d *device) timeChain(g *gpuStep, reps int) (float32, error) {
	steps := []*gpuStep{g}
	outStart, total := layout(steps)
	if err := d.reserve(uint64(total)); err != nil {
		return 0, err
	}
	g.stage(d.staging(uint64(total)))
	if err := d.drv.MemcpyHtoDAsync(d.devBuf, d.host, uint64(outStart), d.stream); err != nil {
		return 0, err
	}
	dev := func(off int64) uint64 {
		if off < 0 {
			return 0
		}
		return uint64(d.devBuf) + uint64(off)
	}
	launch := func() error {
		return d.launch(d.chain, g.n, dev(g.inVals), dev(g.inValid), dev(g.outVals), dev(g.outValid), dev(g.tabOff), uint64(len(g.ops)), uint64(g.n), 0)
	}
	if err := launch(); err != nil { // warm-up: JIT, caches
		return 0, err
	}
	start, err := d.drv.EventCreate()
	if err != nil {
		return 0, err
	}
	defer d.drv.EventDestroy(start)
	end, err := d.drv.EventCreate()
	if err != nil {
		return 0, err
	}
	defer d.drv.EventDestroy(end)
	if err := d.drv.EventRecord(start, d.stream); err != nil {
		return 0, err
	}
	for range reps {
		if err := launch(); err != nil {
			return 0, err
		}
	}
	if err := d.drv.EventRecord(end, d.stream); err != nil {
		return 0, err
	}
	if err := d.drv.StreamSynchronize(d.stream); err != nil {
		return 0, err
	}
	return d.drv.EventElapsedTime(start, end)
}

// TestGPUCrossover times Execute end to end (staging, copies both ways,
// kernels, building the Arrow arrays) against gpuexec.CPU on all cores,
// over batch sizes, and reports the size from which the GPU is faster.
func TestGPUCrossover(t *testing.T) {
	e, real := gpuCheck(t)
	sizes := []int{1 << 10, 1 << 12}
	if real {
		sizes = []int{1 << 10, 1 << 12, 1 << 14, 1 << 16, 1 << 18, 1 << 20, 1 << 22, 1 << 24}
	}
	cpu := gpuexec.NewCPU("cpu", gpuexec.Location{}, gpuexec.CPUOptions{})
	chain := chains()["fill_clip_log1p_standardize"]
	plans := []struct {
		name string
		plan *gpuexec.Plan
	}{
		{"1 column", &gpuexec.Plan{Steps: []gpuexec.Step{{Output: "y", Input: "x", Ops: chain}}}},
		{"4 columns", &gpuexec.Plan{Steps: []gpuexec.Step{
			{Output: "y1", Input: "x", Ops: chain},
			{Output: "y2", Input: "x", Ops: chains()["min_max"]},
			{Output: "y3", Input: "x", Ops: chains()["bucketize"]},
			{Output: "y4", Input: "x", Ops: chains()["fill_missing"]},
		}}},
	}
	median := func(ex gpuexec.Executor, plan *gpuexec.Plan, rec arrow.RecordBatch, reps int) time.Duration {
		ts := make([]time.Duration, reps)
		for i := range ts {
			start := time.Now()
			out, err := ex.Execute(context.Background(), plan, rec)
			ts[i] = time.Since(start)
			if err != nil {
				t.Fatal(err)
			}
			out.Release()
		}
		slices.Sort(ts)
		return ts[reps/2]
	}
	var b strings.Builder
	b.WriteString("## End to end: CUDA executor vs CPU executor\n\n")
	b.WriteString(deviceHeader(e, real))
	fmt.Fprintf(&b, "Execute on a float64 column (every tenth null), median of several runs after a warm-up; "+
		"the GPU time includes staging into pinned memory, both copies, the kernels and building the Arrow result. "+
		"CPU: gpuexec.CPU with %d workers. Chain: fill_missing → clip → log1p → standardize; "+
		"the 4-column plan adds min_max, bucketize and fill_missing columns.\n\n", runtime.GOMAXPROCS(0))
	for _, p := range plans {
		fmt.Fprintf(&b, "### %s\n\n| rows | GPU | CPU | GPU ns/value | CPU ns/value | CPU/GPU |\n|---:|---:|---:|---:|---:|---:|\n", p.name)
		crossover := 0
		for _, n := range sizes {
			in := benchColumn(n)
			rec := record(map[string]arrow.Array{"x": in})
			reps := max(3, min(30, (1<<22)/n))
			median(e, p.plan, rec, 1) // warm-up: staging grows once
			g := median(e, p.plan, rec, reps)
			c := median(cpu, p.plan, rec, reps)
			rec.Release()
			values := float64(n * len(p.plan.Steps))
			fmt.Fprintf(&b, "| %d | %v | %v | %.2f | %.2f | %.2f |\n", n, g.Round(time.Microsecond), c.Round(time.Microsecond),
				float64(g.Nanoseconds())/values, float64(c.Nanoseconds())/values, float64(c)/float64(g))
			if g < c {
				if crossover == 0 {
					crossover = n
				}
			} else {
				crossover = 0 // must stay faster for every larger batch
			}
		}
		if crossover > 0 {
			fmt.Fprintf(&b, "\nGPU faster end to end from %d rows on.\n\n", crossover)
		} else {
			fmt.Fprintf(&b, "\nThe GPU was not faster end to end at the largest size measured (%d rows).\n\n", sizes[len(sizes)-1])
		}
	}
	writeSection(t, "30-crossover.md", b.String())
}
