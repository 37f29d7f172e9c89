package gpuexec

import (
	"context"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/bitutil"
	"github.com/apache/arrow-go/v18/arrow/memory"
)

// chunkRows is how many rows one unit of kernel work covers. It is a
// multiple of 64 so that chunks never share a byte (or word) of a validity
// bitmap, and small enough (256 KiB of float64) to stay in cache while a
// chain of ops runs over it.
const chunkRows = 32 * 1024

// CPUOptions configure a CPU executor.
type CPUOptions struct {
	// Workers is the most goroutines running kernels at once, across all
	// concurrent Execute calls on this executor. Default (<= 0):
	// runtime.GOMAXPROCS(0).
	Workers int
	// Allocator allocates the output columns. Default (nil):
	// memory.DefaultAllocator.
	Allocator memory.Allocator
}

// CPU is the in-process executor that runs feature ops on the CPU. Its
// kernels are the reference implementation: every other executor (CUDA,
// remote) must give the same results on the same input, integers exactly,
// floats within the tolerance its package states. It is safe for
// concurrent use.
//
// A step's value starts as its input column: integers and floats of any
// width become float64; strings stay strings until hash_bucket or
// categorify encodes them. A null stays null through every op but
// fill_missing. Ops, in the vocabulary of NVTabular:
//
//   - fill_missing: a null or a NaN becomes Value (and valid).
//   - clip: min(max(x, Min), Max). NaN stays NaN.
//   - log1p: ln(1+x) for x > -1; x <= -1 becomes null. NaN stays NaN.
//   - standardize: (x-Mean)/Std. Std == 0 (a constant column) divides by
//     1 instead, as scikit-learn's StandardScaler does.
//   - min_max: (x-Min)/(Max-Min), clipped to [0, 1]. Max == Min maps every
//     value to 0. NaN stays NaN.
//   - bucketize: the index of the first boundary greater than x, as int64
//     (0 when x < Boundaries[0], len(Boundaries) when x >= the last one).
//     NaN becomes null.
//   - hash_bucket: FNV-1a 64 of the string's UTF-8 bytes, as an unsigned
//     64-bit integer, modulo Buckets, as int64 (see HashBucket).
//   - categorify: the 1-based index of the string in Vocabulary, 0 when it
//     is not there, as int64.
//
// An int64 value followed by a numeric op is converted to float64 first.
// Values under nulls are zero in the output, so the same input always
// gives the same bytes.
type CPU struct {
	id      string
	loc     Location
	mem     memory.Allocator
	workers int
	// sem holds one token per running kernel unit, so concurrent Execute
	// calls share the Workers budget instead of multiplying it.
	sem    chan struct{}
	closed atomic.Bool
}

var _ Executor = (*CPU)(nil)

// NewCPU returns a CPU executor called id that runs at loc.
func NewCPU(id string, loc Location, opts CPUOptions) *CPU {
	if opts.Workers <= 0 {
		opts.Workers = runtime.GOMAXPROCS(0)
	}
	if opts.Allocator == nil {
		opts.Allocator = memory.DefaultAllocator
	}
	return &CPU{
		id:      id,
		loc:     loc,
		mem:     opts.Allocator,
		workers: opts.Workers,
		sem:     make(chan struct{}, opts.Workers),
	}
}

// ID returns the executor's id.
func (c *CPU) ID() string { return c.id }

// Kind returns "cpu".
func (c *CPU) Kind() string { return "cpu" }

// Location returns where the executor runs.
func (c *CPU) Location() Location { return c.loc }

// Healthy returns nil until Close is called, then an error wrapping
// ErrUnavailable.
func (c *CPU) Healthy(ctx context.Context) error {
	if c.closed.Load() {
		return fmt.Errorf("gpuexec: cpu %s: closed: %w", c.id, ErrUnavailable)
	}
	return ctx.Err()
}

// Close marks the executor unavailable; Execute calls already running
// finish. It is idempotent and always returns nil.
func (c *CPU) Close() error {
	c.closed.Store(true)
	return nil
}

// Execute runs plan on rec and returns a new batch: the Passthrough columns
// (the same arrays, retained), then one column per Step in order, float64 or
// int64 as the step's last op decides. It does not release rec; the caller
// releases the result. Work is split by step and by ranges of rows across
// the executor's workers. An invalid plan yields an error wrapping
// ErrInvalidPlan; a cancelled ctx yields ctx's error and no batch.
func (c *CPU) Execute(ctx context.Context, plan *Plan, rec arrow.RecordBatch) (arrow.RecordBatch, error) {
	if c.closed.Load() {
		return nil, fmt.Errorf("gpuexec: cpu %s: closed: %w", c.id, ErrUnavailable)
	}
	if rec == nil {
		return nil, fmt.Errorf("gpuexec: cpu %s: record is nil", c.id)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	cp, err := compilePlan(plan, rec.Schema())
	if err != nil {
		return nil, fmt.Errorf("gpuexec: cpu %s: %w", c.id, err)
	}
	n := int(rec.NumRows())

	outs := make([]stepOutput, len(cp.steps))
	defer func() {
		for i := range outs {
			outs[i].release()
		}
	}()
	for i := range cp.steps {
		outs[i] = c.allocStep(&cp.steps[i], rec.Column(cp.steps[i].input), n)
	}

	if err := c.runUnits(ctx, cp, rec, outs, n); err != nil {
		return nil, err
	}

	cols := make([]arrow.Array, 0, len(cp.passthrough)+len(cp.steps))
	for _, idx := range cp.passthrough {
		cols = append(cols, rec.Column(idx))
	}
	built := make([]arrow.Array, len(cp.steps))
	for i := range cp.steps {
		built[i] = outs[i].array(cp.steps[i].out, n)
		cols = append(cols, built[i])
	}
	out := array.NewRecordBatch(cp.schema, cols, int64(n))
	for _, a := range built {
		a.Release()
	}
	return out, nil
}

// stepOutput holds the buffers one step writes.
type stepOutput struct {
	values *memory.Buffer // n 8-byte slots, float64 or int64
	valid  *memory.Buffer // nil when the output cannot hold nulls
	c      chunk
}

func (c *CPU) allocStep(cs *compiledStep, in arrow.Array, n int) stepOutput {
	var so stepOutput
	so.values = memory.NewResizableBuffer(c.mem)
	so.values.Resize(n * arrow.Float64SizeBytes)
	b := so.values.Bytes()
	so.c.f = arrow.Float64Traits.CastFromBytes(b)
	so.c.iv = arrow.Int64Traits.CastFromBytes(b)
	if in.NullN() > 0 || cs.introducesNulls {
		so.valid = memory.NewResizableBuffer(c.mem)
		so.valid.Resize(int(bitutil.BytesForBits(int64(n))))
		vb := so.valid.Bytes()
		if in.NullN() > 0 {
			// NullBitmapBytes is nil for an array of type null or with no
			// bitmap; NullN > 0 implies a bitmap for the types we accept.
			bitutil.CopyBitmap(in.NullBitmapBytes(), in.Data().Offset(), n, vb, 0)
		} else {
			for i := range vb {
				vb[i] = 0xff
			}
		}
		so.c.valid = vb
	}
	return so
}

func (so *stepOutput) release() {
	if so.values != nil {
		so.values.Release()
		so.values = nil
	}
	if so.valid != nil {
		so.valid.Release()
		so.valid = nil
	}
}

// array turns the buffers into an array; the stepOutput keeps (and later
// releases) its own references.
func (so *stepOutput) array(kind valueKind, n int) arrow.Array {
	dt := arrow.DataType(arrow.PrimitiveTypes.Float64)
	if kind == kindInt {
		dt = arrow.PrimitiveTypes.Int64
	}
	nulls := 0
	valid := so.valid
	if valid != nil {
		nulls = n - bitutil.CountSetBits(valid.Bytes(), 0, n)
		if nulls == 0 {
			valid = nil // no need to ship an all-valid bitmap
		}
	}
	data := array.NewData(dt, n, []*memory.Buffer{valid, so.values}, nil, nulls, 0)
	defer data.Release()
	return array.MakeFromData(data)
}

// runUnits runs every (step, row range) unit, at most c.workers at a time
// across the executor.
func (c *CPU) runUnits(ctx context.Context, cp *compiled, rec arrow.RecordBatch, outs []stepOutput, n int) error {
	chunks := (n + chunkRows - 1) / chunkRows
	units := chunks * len(cp.steps)
	if units == 0 {
		return nil
	}
	runUnit := func(u int) {
		s, k := u/chunks, u%chunks
		ch := outs[s].c
		ch.lo = k * chunkRows
		ch.hi = min(ch.lo+chunkRows, n)
		ch.run(&cp.steps[s], rec.Column(cp.steps[s].input))
	}

	var (
		next     atomic.Int64
		wg       sync.WaitGroup
		errOnce  sync.Once
		firstErr error
	)
	work := func() {
		for {
			u := int(next.Add(1) - 1)
			if u >= units {
				return
			}
			select {
			case c.sem <- struct{}{}:
			case <-ctx.Done():
				errOnce.Do(func() { firstErr = ctx.Err() })
				return
			}
			if ctx.Err() == nil {
				runUnit(u)
			}
			<-c.sem
		}
	}
	g := min(c.workers, units)
	wg.Add(g - 1)
	for range g - 1 {
		go func() {
			defer wg.Done()
			work()
		}()
	}
	work() // the caller's goroutine is one of the workers
	wg.Wait()
	if firstErr != nil {
		return firstErr
	}
	return ctx.Err()
}
