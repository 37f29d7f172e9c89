package cuda

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/sluice-dev/sluice/gpuexec"
)

// Options configure an Executor.
type Options struct {
	// Devices are the CUDA device ordinals to use. Default (empty): every
	// device the driver reports.
	Devices []int
	// Library is the driver library to open. Default (""): DefaultLibrary.
	Library string
	// Driver replaces the loaded library (tests use a fake). Default
	// (nil): Load(Library).
	Driver Driver
	// Allocator allocates the output columns. Default (nil):
	// memory.DefaultAllocator.
	Allocator memory.Allocator
	// Fallback runs the steps the GPU does not (see OnGPU) and empty
	// batches. Default (nil): a gpuexec.CPU with Allocator and
	// GOMAXPROCS workers.
	Fallback gpuexec.Executor
	// Logger receives start-up and fallback notes. Default (nil):
	// slog.Default().
	Logger *slog.Logger
}

// Executor runs plans on one or more GPUs. It is safe for concurrent use;
// each Execute runs on the device with the fewest jobs in flight, and jobs
// on one device run one after another (staging, copies, kernels, copies
// back), so the pinned staging buffers are reused without locks.
type Executor struct {
	id       string
	loc      gpuexec.Location
	mem      memory.Allocator
	fallback gpuexec.Executor
	log      *slog.Logger
	devices  []*device
	closed   atomic.Bool
}

var _ gpuexec.Executor = (*Executor)(nil)

// New loads the driver, initializes it and starts one goroutine per
// device. With no driver library, no device, a driver older than CUDA 11.8
// or a GPU older than sm_90, it returns an error wrapping
// gpuexec.ErrUnavailable (and starts nothing); the caller then leaves the
// executor out of the router.
func New(id string, loc gpuexec.Location, opts Options) (*Executor, error) {
	if opts.Allocator == nil {
		opts.Allocator = memory.DefaultAllocator
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Fallback == nil {
		opts.Fallback = gpuexec.NewCPU(id+"/cpu", loc, gpuexec.CPUOptions{Allocator: opts.Allocator})
	}
	drv := opts.Driver
	if drv == nil {
		var err error
		if drv, err = Load(opts.Library); err != nil {
			return nil, err
		}
	}
	if err := drv.Init(); err != nil {
		return nil, fmt.Errorf("cuda: init: %w: %w", err, gpuexec.ErrUnavailable)
	}
	v, err := drv.DriverVersion()
	if err != nil {
		return nil, fmt.Errorf("cuda: %w: %w", err, gpuexec.ErrUnavailable)
	}
	if v < minDriverVersion {
		return nil, fmt.Errorf("cuda: driver supports CUDA %d.%d; the kernels need 11.8 or later: %w", v/1000, v%1000/10, gpuexec.ErrUnavailable)
	}
	ordinals := opts.Devices
	if len(ordinals) == 0 {
		n, err := drv.DeviceCount()
		if err != nil {
			return nil, fmt.Errorf("cuda: %w: %w", err, gpuexec.ErrUnavailable)
		}
		for i := range n {
			ordinals = append(ordinals, i)
		}
	}
	if len(ordinals) == 0 {
		return nil, fmt.Errorf("cuda: no device: %w", gpuexec.ErrUnavailable)
	}
	e := &Executor{id: id, loc: loc, mem: opts.Allocator, fallback: opts.Fallback, log: opts.Logger}
	for _, o := range ordinals {
		d, err := startDevice(drv, o)
		if err != nil {
			e.Close()
			if !errors.Is(err, gpuexec.ErrUnavailable) {
				err = fmt.Errorf("%w: %w", err, gpuexec.ErrUnavailable)
			}
			return nil, err
		}
		e.devices = append(e.devices, d)
		e.log.Info("cuda device ready", "executor", id, "device", o, "name", d.info.Name,
			"compute_capability", d.info.ComputeCapability, "memory_bytes", d.info.TotalMemory)
	}
	return e, nil
}

// ID returns the executor's id.
func (e *Executor) ID() string { return e.id }

// Kind returns "cuda".
func (e *Executor) Kind() string { return "cuda" }

// Location returns where the executor runs.
func (e *Executor) Location() gpuexec.Location { return e.loc }

// Devices describes the devices the executor drives.
func (e *Executor) Devices() []DeviceInfo {
	out := make([]DeviceInfo, len(e.devices))
	for i, d := range e.devices {
		out[i] = d.info
	}
	return out
}

// Healthy returns nil while the executor is open and at least one device
// works; an error wrapping gpuexec.ErrUnavailable after Close or once every
// device has had a fault that corrupts its context (an illegal address, a
// failed launch, an uncorrectable ECC error).
func (e *Executor) Healthy(ctx context.Context) error {
	if e.closed.Load() {
		return fmt.Errorf("cuda: %s: closed: %w", e.id, gpuexec.ErrUnavailable)
	}
	if _, err := e.pick(); err != nil {
		return fmt.Errorf("cuda: %s: %w", e.id, err)
	}
	return ctx.Err()
}

// Close stops the device goroutines after their current job, frees the
// staging buffers and releases the primary contexts. Execute calls waiting
// for a device fail with ErrUnavailable. It is idempotent.
func (e *Executor) Close() error {
	e.closed.Store(true)
	for _, d := range e.devices {
		d.stop()
	}
	return nil
}

// OnGPU says whether a step with an input column of type input runs on the
// GPU: a numeric input (any integer or float width, widened to float64 on
// the host) through fill_missing, clip, log1p, standardize, min_max and
// bucketize; or a string or large string input through hash_bucket and
// then any of those. Everything else (categorify, string views) runs on
// the fallback CPU executor.
func OnGPU(step *gpuexec.Step, input arrow.DataType) bool {
	ops := step.Ops
	switch input.ID() {
	case arrow.STRING, arrow.LARGE_STRING:
		if len(ops) == 0 || ops[0].Kind != gpuexec.OpHashBucket {
			return false
		}
		ops = ops[1:]
	case arrow.INT8, arrow.INT16, arrow.INT32, arrow.INT64,
		arrow.UINT8, arrow.UINT16, arrow.UINT32, arrow.UINT64,
		arrow.FLOAT16, arrow.FLOAT32, arrow.FLOAT64:
	default:
		return false
	}
	for _, op := range ops {
		if !onGPU(op.Kind) {
			return false
		}
	}
	return true
}

// Execute runs plan on rec with the same result as gpuexec.CPU: integer
// results and bitmaps exactly, float64 results bit for bit except after
// log1p (within a few ulp; see docs/gpu.md). Steps OnGPU rejects run on
// the fallback executor meanwhile. It does not release rec; the caller
// releases the result. An invalid plan gives an error wrapping
// gpuexec.ErrInvalidPlan.
func (e *Executor) Execute(ctx context.Context, plan *gpuexec.Plan, rec arrow.RecordBatch) (arrow.RecordBatch, error) {
	if e.closed.Load() {
		return nil, fmt.Errorf("cuda: %s: closed: %w", e.id, gpuexec.ErrUnavailable)
	}
	if rec == nil {
		return nil, fmt.Errorf("cuda: %s: record is nil", e.id)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	schema := rec.Schema()
	if err := gpuexec.ValidatePlan(plan, schema); err != nil {
		return nil, fmt.Errorf("cuda: %s: %w", e.id, err)
	}
	n := int(rec.NumRows())
	if n == 0 {
		return e.fallback.Execute(ctx, plan, rec)
	}

	var gpu []*gpuStep
	var cpuPlan gpuexec.Plan
	var cpuIdx []int // plan step index of each cpuPlan step
	for i := range plan.Steps {
		st := &plan.Steps[i]
		in := rec.Column(schema.FieldIndices(st.Input)[0])
		if OnGPU(st, in.DataType()) {
			gpu = append(gpu, newGPUStep(i, st, in))
			continue
		}
		cpuPlan.Steps = append(cpuPlan.Steps, *st)
		cpuIdx = append(cpuIdx, i)
	}

	cols := make([]arrow.Array, len(plan.Steps))
	defer func() {
		for _, c := range cols {
			if c != nil {
				c.Release()
			}
		}
	}()

	// The CPU share runs while the device works.
	cpuDone := make(chan error, 1)
	var cpuOut arrow.RecordBatch
	if len(cpuPlan.Steps) > 0 {
		e.log.Debug("cuda: steps on cpu", "executor", e.id, "steps", len(cpuPlan.Steps))
		go func() {
			var err error
			cpuOut, err = e.fallback.Execute(ctx, &cpuPlan, rec)
			cpuDone <- err
		}()
	} else {
		cpuDone <- nil
	}

	var gpuErr error
	if len(gpu) > 0 {
		d, err := e.pick()
		if err == nil {
			err = d.do(ctx, func() error { return d.run(gpu, e.mem, n) })
		}
		gpuErr = err
		for _, g := range gpu {
			cols[g.index] = g.result
			g.result = nil
		}
	}
	cpuErr := <-cpuDone
	if cpuOut != nil {
		for j, i := range cpuIdx {
			c := cpuOut.Column(j)
			c.Retain()
			cols[i] = c
		}
		cpuOut.Release()
	}
	if gpuErr != nil {
		return nil, fmt.Errorf("cuda: %s: %w", e.id, gpuErr)
	}
	if cpuErr != nil {
		return nil, fmt.Errorf("cuda: %s: fallback: %w", e.id, cpuErr)
	}

	fields := make([]arrow.Field, 0, len(plan.Passthrough)+len(plan.Steps))
	out := make([]arrow.Array, 0, cap(fields))
	for _, name := range plan.Passthrough {
		idx := schema.FieldIndices(name)[0]
		fields = append(fields, schema.Field(idx))
		out = append(out, rec.Column(idx))
	}
	for i, st := range plan.Steps {
		fields = append(fields, arrow.Field{Name: st.Output, Type: cols[i].DataType(), Nullable: true})
		out = append(out, cols[i])
	}
	md := schema.Metadata()
	return array.NewRecordBatch(arrow.NewSchema(fields, &md), out, int64(n)), nil
}

// pick returns the working device with the fewest jobs in flight, or the
// fault of the last device when none works.
func (e *Executor) pick() (*device, error) {
	var best *device
	var fault error
	for _, d := range e.devices {
		if err := d.faulted(); err != nil {
			fault = err
			continue
		}
		if best == nil || d.inflight.Load() < best.inflight.Load() {
			best = d
		}
	}
	if best == nil {
		return nil, fault
	}
	return best, nil
}
