package cuda

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/sluice-dev/sluice/gpuexec"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

func newFakeExecutor(t *testing.T, f *fakeDriver, mem memory.Allocator) *Executor {
	t.Helper()
	e, err := New("gpu0", gpuexec.Location{Name: "fra", Kind: "onprem"}, Options{Driver: f, Allocator: mem, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		e.Close()
		if err := f.live(); err != nil {
			t.Errorf("after Close the executor still holds: %v", err)
		}
		for _, p := range f.problems() {
			t.Errorf("driver misuse: %s", p)
		}
	})
	return e
}

// record makes a batch of cols in name order and takes over their
// references.
func record(cols map[string]arrow.Array) arrow.RecordBatch {
	names := make([]string, 0, len(cols))
	for k := range cols {
		names = append(names, k)
	}
	slices.Sort(names)
	fields := make([]arrow.Field, len(names))
	arrs := make([]arrow.Array, len(names))
	for i, k := range names {
		fields[i] = arrow.Field{Name: k, Type: cols[k].DataType(), Nullable: true}
		arrs[i] = cols[k]
	}
	md := arrow.NewMetadata([]string{"source"}, []string{"test"})
	rec := array.NewRecordBatch(arrow.NewSchema(fields, &md), arrs, int64(arrs[0].Len()))
	for _, a := range arrs {
		a.Release() // the batch holds them now
	}
	return rec
}

// runBoth runs plan on rec with the executor and with the CPU reference and
// asserts the same batch, bit for bit.
func runBoth(t *testing.T, e *Executor, mem memory.Allocator, plan *gpuexec.Plan, rec arrow.RecordBatch) {
	t.Helper()
	got, err := e.Execute(context.Background(), plan, rec)
	if err != nil {
		t.Fatal(err)
	}
	defer got.Release()
	cpu := gpuexec.NewCPU("cpu", gpuexec.Location{}, gpuexec.CPUOptions{Allocator: mem})
	want, err := cpu.Execute(context.Background(), plan, rec)
	if err != nil {
		t.Fatal(err)
	}
	defer want.Release()
	compareBatches(t, got, want, 0)
}

func TestExecuteMatchesCPU(t *testing.T) {
	types := []arrow.DataType{
		arrow.PrimitiveTypes.Float64, arrow.PrimitiveTypes.Float32, arrow.FixedWidthTypes.Float16,
		arrow.PrimitiveTypes.Int64, arrow.PrimitiveTypes.Int32, arrow.PrimitiveTypes.Int8,
		arrow.PrimitiveTypes.Uint8, arrow.PrimitiveTypes.Uint64,
	}
	// Sizes around a warp, a block and a bitmap byte.
	sizes := []int{1, 31, 33, 257, 1000}
	for name, ops := range chains() {
		t.Run(name, func(t *testing.T) {
			rng := rand.New(rand.NewPCG(1, uint64(len(name))))
			for _, dt := range types {
				for _, n := range sizes {
					for _, nullFrac := range []float64{0, 0.3, 1} {
						mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
						f := newFake()
						e := newFakeExecutor(t, f, mem)
						rec := record(map[string]arrow.Array{"x": randomArray(mem, rng, dt, n, nullFrac)})
						runBoth(t, e, mem, &gpuexec.Plan{Steps: []gpuexec.Step{{Output: "y", Input: "x", Ops: ops}}}, rec)
						rec.Release()
						if f.launches[chainKernel] != 1 {
							t.Fatalf("%s n=%d: %d chain launches, want 1 fused launch", dt, n, f.launches[chainKernel])
						}
						mem.AssertSize(t, 0)
					}
				}
			}
		})
	}
	for name, ops := range stringChains() {
		t.Run(name, func(t *testing.T) {
			rng := rand.New(rand.NewPCG(2, uint64(len(name))))
			for _, dt := range []arrow.DataType{arrow.BinaryTypes.String, arrow.BinaryTypes.LargeString} {
				for _, n := range sizes {
					for _, nullFrac := range []float64{0, 0.3, 1} {
						mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
						f := newFake()
						e := newFakeExecutor(t, f, mem)
						rec := record(map[string]arrow.Array{"s": randomArray(mem, rng, dt, n, nullFrac)})
						runBoth(t, e, mem, &gpuexec.Plan{Steps: []gpuexec.Step{{Output: "h", Input: "s", Ops: ops}}}, rec)
						rec.Release()
						wantChain := 0
						if len(ops) > 1 {
							wantChain = 1
						}
						if f.launches[hashKernel] != 1 || f.launches[chainKernel] != wantChain {
							t.Fatalf("launches %v, want 1 hash and %d chain", f.launches, wantChain)
						}
						mem.AssertSize(t, 0)
					}
				}
			}
		})
	}
}

// A plan mixing GPU steps, CPU steps (categorify) and passthrough columns,
// on sliced input, comes back in plan order with the same bytes as on the
// CPU, and only the GPU steps reach the device.
func TestExecuteMixedPlan(t *testing.T) {
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer mem.AssertSize(t, 0)
	f := newFake()
	e := newFakeExecutor(t, f, mem)
	rng := rand.New(rand.NewPCG(3, 4))
	full := record(map[string]arrow.Array{
		"amount":  randomArray(mem, rng, arrow.PrimitiveTypes.Float64, 5000, 0.1),
		"age":     randomArray(mem, rng, arrow.PrimitiveTypes.Int32, 5000, 0.05),
		"country": randomArray(mem, rng, arrow.BinaryTypes.String, 5000, 0.2),
		"user":    randomArray(mem, rng, arrow.BinaryTypes.String, 5000, 0),
	})
	defer full.Release()
	rec := full.NewSlice(13, 4013) // offsets into bitmaps and string offsets
	defer rec.Release()
	chain := chains()["fill_clip_log1p_standardize"]
	plan := &gpuexec.Plan{
		Passthrough: []string{"user"},
		Steps: []gpuexec.Step{
			{Output: "amount_f", Input: "amount", Ops: chain},
			{Output: "country_id", Input: "country", Ops: []gpuexec.Op{{Kind: gpuexec.OpCategorify, Vocabulary: []string{"a", "b", ""}}}},
			{Output: "age_b", Input: "age", Ops: []gpuexec.Op{{Kind: gpuexec.OpBucketize, Boundaries: []float64{18, 30, 65}}}},
			{Output: "country_h", Input: "country", Ops: []gpuexec.Op{{Kind: gpuexec.OpHashBucket, Buckets: 64}}},
			{Output: "amount_b", Input: "amount", Ops: chains()["bucketize"]},
		},
	}
	runBoth(t, e, mem, plan, rec)
	if f.launches[chainKernel] != 3 || f.launches[hashKernel] != 1 {
		t.Errorf("launches %v, want 3 chain (amount twice, age) and 1 hash; categorify stays on the CPU", f.launches)
	}
	if f.hostAllocs != 2 { // the argument block and one staging buffer
		t.Errorf("%d page-locked allocations, want 2", f.hostAllocs)
	}
}

// The staging buffers are allocated once for a stream of batches and grow
// when a bigger one comes.
func TestStagingReused(t *testing.T) {
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer mem.AssertSize(t, 0)
	f := newFake()
	e := newFakeExecutor(t, f, mem)
	rng := rand.New(rand.NewPCG(5, 6))
	plan := &gpuexec.Plan{Steps: []gpuexec.Step{{Output: "y", Input: "x", Ops: chains()["min_max"]}}}
	for i, n := range []int{1000, 1000, 900, 1000, 200_000} {
		rec := record(map[string]arrow.Array{"x": randomArray(mem, rng, arrow.PrimitiveTypes.Float64, n, 0.1)})
		runBoth(t, e, mem, plan, rec)
		rec.Release()
		want := 2
		if i == 4 {
			want = 3 // grown once
		}
		if f.hostAllocs != want {
			t.Fatalf("batch %d (%d rows): %d page-locked allocations so far, want %d", i, n, f.hostAllocs, want)
		}
	}
}

func TestExecuteConcurrent(t *testing.T) {
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer mem.AssertSize(t, 0)
	f := newFake()
	f.devices = 2
	e := newFakeExecutor(t, f, mem)
	if len(e.Devices()) != 2 {
		t.Fatalf("devices %v, want 2", e.Devices())
	}
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(7, uint64(g)))
			for range 5 {
				rec := record(map[string]arrow.Array{"x": randomArray(mem, rng, arrow.PrimitiveTypes.Float64, 3000, 0.2)})
				runBoth(t, e, mem, &gpuexec.Plan{Steps: []gpuexec.Step{{Output: "y", Input: "x", Ops: chains()["log1p_fill_min_max"]}}}, rec)
				rec.Release()
			}
		})
	}
	wg.Wait()
}

// A fault that corrupts the context (here an illegal address) makes the
// device unavailable for good: that batch and every later one fail with
// ErrUnavailable, so the router sends them elsewhere, and no more work
// reaches the device.
func TestStickyFault(t *testing.T) {
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer mem.AssertSize(t, 0)
	f := newFake()
	e := newFakeExecutor(t, f, mem)
	rng := rand.New(rand.NewPCG(8, 10))
	rec := record(map[string]arrow.Array{"x": randomArray(mem, rng, arrow.PrimitiveTypes.Float64, 100, 0.1)})
	defer rec.Release()
	plan := &gpuexec.Plan{Steps: []gpuexec.Step{{Output: "y", Input: "x", Ops: chains()["clip"]}}}
	f.mu.Lock()
	f.fail["LaunchKernel"] = &Error{Call: "cuLaunchKernel", Code: 700, Name: "CUDA_ERROR_ILLEGAL_ADDRESS"}
	f.mu.Unlock()
	if _, err := e.Execute(context.Background(), plan, rec); !errors.Is(err, gpuexec.ErrUnavailable) || !strings.Contains(err.Error(), "ILLEGAL_ADDRESS") {
		t.Fatalf("Execute = %v, want ErrUnavailable with the driver's error", err)
	}
	f.mu.Lock()
	delete(f.fail, "LaunchKernel")
	f.queue = nil
	f.mu.Unlock()
	if err := e.Healthy(context.Background()); !errors.Is(err, gpuexec.ErrUnavailable) {
		t.Errorf("Healthy = %v, want ErrUnavailable", err)
	}
	if _, err := e.Execute(context.Background(), plan, rec); !errors.Is(err, gpuexec.ErrUnavailable) {
		t.Errorf("second Execute = %v, want ErrUnavailable", err)
	}
	if n := f.launches[chainKernel]; n != 0 {
		t.Errorf("%d launches recorded on a faulted device, want 0", n)
	}
}

func TestExecuteErrors(t *testing.T) {
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer mem.AssertSize(t, 0)
	f := newFake()
	e := newFakeExecutor(t, f, mem)
	rng := rand.New(rand.NewPCG(8, 9))
	rec := record(map[string]arrow.Array{"x": randomArray(mem, rng, arrow.PrimitiveTypes.Float64, 100, 0.1)})
	defer rec.Release()
	good := &gpuexec.Plan{Steps: []gpuexec.Step{{Output: "y", Input: "x", Ops: chains()["clip"]}}}

	if _, err := e.Execute(context.Background(), &gpuexec.Plan{Steps: []gpuexec.Step{{Output: "y", Input: "nope"}}}, rec); !errors.Is(err, gpuexec.ErrInvalidPlan) {
		t.Errorf("missing column: %v, want ErrInvalidPlan", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := e.Execute(ctx, good, rec); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled: %v, want context.Canceled", err)
	}

	// A launch refused for a recoverable reason fails that batch; the
	// next one works.
	f.mu.Lock()
	f.fail["LaunchKernel"] = &Error{Call: "cuLaunchKernel", Code: 1, Name: "CUDA_ERROR_INVALID_VALUE"}
	f.mu.Unlock()
	if _, err := e.Execute(context.Background(), good, rec); err == nil || !strings.Contains(err.Error(), "CUDA_ERROR_INVALID_VALUE") || errors.Is(err, gpuexec.ErrUnavailable) {
		t.Errorf("failed launch: %v, want the driver's error, not ErrUnavailable", err)
	}
	f.mu.Lock()
	delete(f.fail, "LaunchKernel")
	f.queue = nil // what the failed batch enqueued is gone with it
	f.mu.Unlock()
	runBoth(t, e, mem, good, rec)

	// An empty batch needs no device.
	empty := rec.NewSlice(0, 0)
	defer empty.Release()
	before := f.launches[chainKernel]
	runBoth(t, e, mem, good, empty)
	if f.launches[chainKernel] != before {
		t.Errorf("an empty batch was launched")
	}

	if err := e.Healthy(context.Background()); err != nil {
		t.Errorf("Healthy = %v", err)
	}
	e.Close()
	e.Close()
	if err := e.Healthy(context.Background()); !errors.Is(err, gpuexec.ErrUnavailable) {
		t.Errorf("Healthy after Close = %v, want ErrUnavailable", err)
	}
	if _, err := e.Execute(context.Background(), good, rec); !errors.Is(err, gpuexec.ErrUnavailable) {
		t.Errorf("Execute after Close = %v, want ErrUnavailable", err)
	}
}

// Every way of having no usable GPU is ErrUnavailable, not a panic, and
// leaves nothing allocated.
func TestNewUnavailable(t *testing.T) {
	tests := []struct {
		name  string
		setup func(*fakeDriver)
		want  string
	}{
		{"no device (cuInit fails)", func(f *fakeDriver) {
			f.initErr = &Error{Call: "cuInit", Code: errNoDevice, Name: "CUDA_ERROR_NO_DEVICE"}
		}, "CUDA_ERROR_NO_DEVICE"},
		{"zero devices", func(f *fakeDriver) { f.devices = 0 }, "no device"},
		{"old driver", func(f *fakeDriver) { f.version = 11020 }, "11.8"},
		{"pre-Hopper GPU", func(f *fakeDriver) { f.ccMajor = 8 }, "sm_90"},
		{"PTX rejected", func(f *fakeDriver) {
			f.fail["ModuleLoadData"] = &Error{Call: "cuModuleLoadData", Code: 222, Name: "CUDA_ERROR_UNSUPPORTED_PTX_VERSION"}
		}, "UNSUPPORTED_PTX_VERSION"},
		{"no page-locked memory", func(f *fakeDriver) {
			f.fail["MemAllocHost"] = &Error{Call: "cuMemAllocHost_v2", Code: 2, Name: "CUDA_ERROR_OUT_OF_MEMORY"}
		}, "OUT_OF_MEMORY"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFake()
			tt.setup(f)
			e, err := New("gpu", gpuexec.Location{}, Options{Driver: f, Logger: quiet})
			if err == nil {
				e.Close()
				t.Fatal("New succeeded")
			}
			if !errors.Is(err, gpuexec.ErrUnavailable) || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %v, want ErrUnavailable mentioning %q", err, tt.want)
			}
			if err := f.live(); err != nil {
				t.Errorf("a failed New left: %v", err)
			}
		})
	}
}

func TestLoadAbsentLibrary(t *testing.T) {
	_, err := Load("/nonexistent/libcuda.so.1")
	if !errors.Is(err, gpuexec.ErrUnavailable) {
		t.Fatalf("Load = %v, want ErrUnavailable", err)
	}
	_, err = New("gpu", gpuexec.Location{}, Options{Library: "/nonexistent/libcuda.so.1", Logger: quiet})
	if !errors.Is(err, gpuexec.ErrUnavailable) {
		t.Fatalf("New = %v, want ErrUnavailable", err)
	}
}

// On a machine without the driver (this one, in CI), the default New says
// unavailable; with one, it must work.
func TestNewDefault(t *testing.T) {
	e, err := New("gpu", gpuexec.Location{}, Options{Logger: quiet})
	if err != nil {
		if !errors.Is(err, gpuexec.ErrUnavailable) {
			t.Fatalf("New = %v, want nil or ErrUnavailable", err)
		}
		t.Logf("no GPU here: %v", err)
		return
	}
	defer e.Close()
	if err := e.Healthy(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func TestLoadFromMissingSymbol(t *testing.T) {
	tests := []struct {
		name   string
		lookup Lookup
		want   string
	}{
		{"error", func(name string) (uintptr, error) {
			if name == "cuLaunchKernel" {
				return 0, errors.New("undefined symbol")
			}
			return 0x1000, nil
		}, "cuLaunchKernel: undefined symbol"},
		{"zero address", func(name string) (uintptr, error) {
			if name == "cuMemAllocHost_v2" {
				return 0, nil
			}
			return 0x1000, nil
		}, "cuMemAllocHost_v2"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, err := LoadFrom(tt.lookup)
			if err == nil || d != nil {
				t.Fatalf("LoadFrom = %v, %v; want an error", d, err)
			}
			if !errors.Is(err, gpuexec.ErrUnavailable) || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %v, want ErrUnavailable naming %q", err, tt.want)
			}
		})
	}
	// Every symbol present: bound, nothing called.
	var asked []string
	d, err := LoadFrom(func(name string) (uintptr, error) { asked = append(asked, name); return 0x1000, nil })
	if err != nil || d == nil {
		t.Fatalf("LoadFrom = %v, %v", d, err)
	}
	for _, s := range asked {
		if strings.HasPrefix(s, "cuMemAlloc") || strings.HasPrefix(s, "cuMemcpy") || strings.HasPrefix(s, "cuCtx") {
			if !strings.HasSuffix(s, "_v2") {
				t.Errorf("%s bound without _v2: that is the 32-bit legacy entry point", s)
			}
		}
	}
}

func TestEncodeOps(t *testing.T) {
	tab := encodeOps([]gpuexec.Op{
		{Kind: gpuexec.OpBucketize, Boundaries: []float64{1, 2}},
		{Kind: gpuexec.OpStandardize, Mean: 3, Std: 0},
		{Kind: gpuexec.OpBucketize, Boundaries: []float64{5}},
	})
	f := newFake()
	f.dev[1<<40] = make([]byte, 8*len(tab))
	for i, w := range tab {
		for b := range 8 {
			f.dev[1<<40][8*i+b] = byte(w >> (8 * b))
		}
	}
	ops := f.decodeOps(1<<40, 3)
	if !slices.Equal(ops[0].Boundaries, []float64{1, 2}) || !slices.Equal(ops[2].Boundaries, []float64{5}) {
		t.Errorf("boundaries %v %v", ops[0].Boundaries, ops[2].Boundaries)
	}
	if ops[1].Std != 1 {
		t.Errorf("standardize std 0 encoded as %g, want 1 (the CPU divides by 1)", ops[1].Std)
	}
}

// Two steps on one column stage and copy it once.
func TestLayoutSharesInput(t *testing.T) {
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer mem.AssertSize(t, 0)
	rng := rand.New(rand.NewPCG(1, 1))
	x := randomArray(mem, rng, arrow.PrimitiveTypes.Float64, 1000, 0.1)
	defer x.Release()
	s := randomArray(mem, rng, arrow.BinaryTypes.String, 1000, 0.1)
	defer s.Release()
	steps := []*gpuStep{
		newGPUStep(0, &gpuexec.Step{Ops: chains()["clip"]}, x),
		newGPUStep(1, &gpuexec.Step{Ops: chains()["log1p"]}, x),
		newGPUStep(2, &gpuexec.Step{Ops: stringChains()["hash_bucket"]}, s),
		newGPUStep(3, &gpuexec.Step{Ops: stringChains()["hash_bucket_min_max"]}, s),
	}
	outStart, total := layout(steps)
	one, _ := layout(steps[:1])
	if steps[1].inVals != steps[0].inVals || steps[1].inValid != steps[0].inValid || steps[3].offs != steps[2].offs || steps[3].data != steps[2].data {
		t.Errorf("a column staged twice: %+v", steps)
	}
	if !steps[1].shared || !steps[3].shared || steps[0].shared || steps[2].shared {
		t.Errorf("shared flags wrong")
	}
	if steps[0].outVals == steps[1].outVals || outStart <= one || total <= outStart {
		t.Errorf("outputs overlap: out %d %d, outStart %d total %d", steps[0].outVals, steps[1].outVals, outStart, total)
	}
}
