package cuda

import (
	"encoding/binary"
	"fmt"
	"math"
	"runtime"
	"sync"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/bitutil"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/sluice-dev/sluice/gpuexec"
)

// gpuStep is one plan step bound for the device, with its place in the
// staging buffers. Offsets are bytes from the start of the buffers; -1
// means absent.
type gpuStep struct {
	index   int // in the plan
	in      arrow.Array
	n       int
	buckets int64        // > 0: hash_bucket of a string input first
	ops     []gpuexec.Op // the numeric chain (after hash_bucket)
	tab     []uint64     // encodeOps(ops)
	outInt  bool
	// needValid: the output may hold nulls, so the kernels write a bitmap.
	needValid bool

	inVals, inValid, offs, data, tabOff int64
	outVals, outValid                   int64
	dataLen                             int64
	// shared: an earlier step stages the same input column; this one
	// reads it from there.
	shared bool

	result arrow.Array
}

func newGPUStep(index int, st *gpuexec.Step, in arrow.Array) *gpuStep {
	g := &gpuStep{index: index, in: in, n: in.Len(), ops: st.Ops}
	if len(g.ops) > 0 && g.ops[0].Kind == gpuexec.OpHashBucket {
		g.buckets = g.ops[0].Buckets
		g.ops = g.ops[1:]
		g.outInt = true
	}
	for _, op := range g.ops {
		g.outInt = op.Kind == gpuexec.OpBucketize
		if op.Kind == gpuexec.OpLog1p || op.Kind == gpuexec.OpBucketize {
			g.needValid = true // these can turn a valid value into a null
		}
	}
	if in.NullN() > 0 {
		g.needValid = true
	}
	g.tab = encodeOps(g.ops)
	return g
}

const align = 256

func alignUp(x int64) int64 { return (x + align - 1) / align * align }

// bitmapBytes is the size of a bitmap of n bits as the kernels write it:
// whole 32-bit words.
func bitmapBytes(n int) int64 { return int64((n+31)/32) * 4 }

// layout places every step's inputs, then every step's outputs, and
// returns where the outputs start and the total size.
func layout(steps []*gpuStep) (outStart, total int64) {
	var at int64
	place := func(size int64) int64 {
		off := at
		at = alignUp(at + size)
		return off
	}
	// Steps on the same column of the same kind (numbers, or strings to
	// hash) stage it once.
	type key struct {
		in      arrow.Array
		strings bool
	}
	staged := map[key]*gpuStep{}
	for _, g := range steps {
		g.inVals, g.inValid, g.offs, g.data, g.tabOff = -1, -1, -1, -1, -1
		g.shared = false
		if first := staged[key{g.in, g.buckets > 0}]; first != nil {
			g.inVals, g.inValid, g.offs, g.data, g.dataLen = first.inVals, first.inValid, first.offs, first.data, first.dataLen
			g.shared = true
		} else if g.buckets > 0 {
			g.offs = place(int64(g.n+1) * 8)
			g.dataLen = int64(len(stringBytes(g.in)))
			g.data = place(max(g.dataLen, 1))
		} else {
			g.inVals = place(int64(g.n) * 8)
		}
		if !g.shared {
			staged[key{g.in, g.buckets > 0}] = g
			if g.in.NullN() > 0 {
				g.inValid = place(bitmapBytes(g.n))
			}
		}
		if len(g.tab) > 0 {
			g.tabOff = place(int64(len(g.tab)) * 8)
		}
	}
	outStart = at
	for _, g := range steps {
		g.outVals = place(int64(g.n) * 8)
		g.outValid = -1
		if g.needValid {
			g.outValid = place(bitmapBytes(g.n))
		}
	}
	return outStart, at
}

// run stages the inputs of steps, copies them to the device in one
// transfer, launches the kernels, copies the outputs back in one transfer
// and builds each step's result array. It runs on the device thread.
func (d *device) run(steps []*gpuStep, mem memory.Allocator, n int) error {
	outStart, total := layout(steps)
	if err := d.reserve(uint64(total)); err != nil {
		return err
	}
	buf := d.staging(uint64(total))
	for _, g := range steps {
		g.stage(buf)
	}
	if err := d.drv.MemcpyHtoDAsync(d.devBuf, d.host, uint64(outStart), d.stream); err != nil {
		return err
	}
	dev := func(off int64) uint64 {
		if off < 0 {
			return 0
		}
		return uint64(d.devBuf) + uint64(off)
	}
	for _, g := range steps {
		if g.buckets > 0 {
			if err := d.launch(d.hash, n, dev(g.offs), dev(g.data), dev(g.inValid), dev(g.outVals), dev(g.outValid), uint64(g.buckets), uint64(n)); err != nil {
				return fmt.Errorf("hash_bucket: %w", err)
			}
			if len(g.ops) > 0 { // the chain continues in place, from int64
				if err := d.launch(d.chain, n, dev(g.outVals), dev(g.outValid), dev(g.outVals), dev(g.outValid), dev(g.tabOff), uint64(len(g.ops)), uint64(n), 1); err != nil {
					return fmt.Errorf("chain: %w", err)
				}
			}
			continue
		}
		if err := d.launch(d.chain, n, dev(g.inVals), dev(g.inValid), dev(g.outVals), dev(g.outValid), dev(g.tabOff), uint64(len(g.ops)), uint64(n), 0); err != nil {
			return fmt.Errorf("chain: %w", err)
		}
	}
	hostOut := unsafeAdd(d.host, outStart)
	if err := d.drv.MemcpyDtoHAsync(hostOut, d.devBuf+DevicePtr(outStart), uint64(total-outStart), d.stream); err != nil {
		return err
	}
	if err := d.drv.StreamSynchronize(d.stream); err != nil {
		return err
	}
	for _, g := range steps {
		g.result = g.build(buf, mem)
	}
	return nil
}

// stage writes the step's inputs and op table into the host buffer.
func (g *gpuStep) stage(buf []byte) {
	n := g.n
	if g.tabOff >= 0 {
		t := buf[g.tabOff:]
		for i, w := range g.tab {
			binary.LittleEndian.PutUint64(t[8*i:], w)
		}
	}
	if g.shared {
		return
	}
	if g.inValid >= 0 {
		v := buf[g.inValid : g.inValid+bitmapBytes(n)]
		clear(v)
		bitutil.CopyBitmap(g.in.NullBitmapBytes(), g.in.Data().Offset(), n, v, 0)
	}
	if g.buckets > 0 {
		stageStrings(g.in, buf[g.offs:g.offs+int64(n+1)*8], buf[g.data:g.data+g.dataLen])
		return
	}
	stageNumbers(g.in, arrow.Float64Traits.CastFromBytes(buf[g.inVals:g.inVals+int64(n)*8]))
}

// stringBytes is the character data a string array's values span.
func stringBytes(in arrow.Array) []byte {
	if in.NullN() == in.Len() {
		return nil // may have no offsets or data buffer at all
	}
	switch a := in.(type) {
	case *array.String:
		return a.ValueBytes()
	case *array.LargeString:
		return a.ValueBytes()
	}
	return nil
}

// stageStrings writes the offsets rebased to 0 as int64, and the data.
func stageStrings(in arrow.Array, offs, data []byte) {
	if in.NullN() == in.Len() {
		clear(offs)
		return
	}
	switch a := in.(type) {
	case *array.String:
		o := a.ValueOffsets()
		for i, v := range o {
			binary.LittleEndian.PutUint64(offs[8*i:], uint64(int64(v-o[0])))
		}
	case *array.LargeString:
		o := a.ValueOffsets()
		for i, v := range o {
			binary.LittleEndian.PutUint64(offs[8*i:], uint64(v-o[0]))
		}
	}
	copy(data, stringBytes(in))
}

type number interface {
	~int8 | ~int16 | ~int32 | ~int64 | ~uint8 | ~uint16 | ~uint32 | ~uint64 | ~float32 | ~float64
}

func widen[T number](dst []float64, src []T) {
	parallel(len(dst), func(lo, hi int) {
		for i, v := range src[lo:hi] {
			dst[lo+i] = float64(v)
		}
	})
}

// parallelMin is the fewest values worth splitting a host copy for.
const parallelMin = 1 << 18

// parallel runs fn over [0, n) in GOMAXPROCS ranges when n is large: the
// copies into and out of page-locked memory are the host's share of a GPU
// batch, and one core cannot keep up with the PCIe link.
func parallel(n int, fn func(lo, hi int)) {
	w := runtime.GOMAXPROCS(0)
	if n < parallelMin || w == 1 {
		fn(0, n)
		return
	}
	step := (n + w - 1) / w
	var wg sync.WaitGroup
	for lo := 0; lo < n; lo += step {
		wg.Go(func() { fn(lo, min(lo+step, n)) })
	}
	wg.Wait()
}

func copyParallel[T any](dst, src []T) {
	parallel(len(dst), func(lo, hi int) { copy(dst[lo:hi], src[lo:hi]) })
}

// stageNumbers widens the input to float64, exactly as gpuexec.CPU does.
func stageNumbers(in arrow.Array, dst []float64) {
	if in.NullN() == in.Len() {
		clear(dst) // an all-null array may have no values buffer
		return
	}
	switch a := in.(type) {
	case *array.Float64:
		copyParallel(dst, a.Float64Values())
	case *array.Float32:
		widen(dst, a.Float32Values())
	case *array.Int64:
		widen(dst, a.Int64Values())
	case *array.Int32:
		widen(dst, a.Int32Values())
	case *array.Int16:
		widen(dst, a.Int16Values())
	case *array.Int8:
		widen(dst, a.Int8Values())
	case *array.Uint64:
		widen(dst, a.Uint64Values())
	case *array.Uint32:
		widen(dst, a.Uint32Values())
	case *array.Uint16:
		widen(dst, a.Uint16Values())
	case *array.Uint8:
		widen(dst, a.Uint8Values())
	case *array.Float16:
		for i, v := range a.Values() {
			dst[i] = float64(v.Float32())
		}
	default:
		// OnGPU admits only the types above.
		for i := range dst {
			dst[i] = math.NaN()
		}
	}
}

// build copies the step's output out of the staging buffer into an array
// allocated from mem, dropping an all-valid bitmap as gpuexec.CPU does.
func (g *gpuStep) build(buf []byte, mem memory.Allocator) arrow.Array {
	n := g.n
	dt := arrow.DataType(arrow.PrimitiveTypes.Float64)
	if g.outInt {
		dt = arrow.PrimitiveTypes.Int64
	}
	vals := memory.NewResizableBuffer(mem)
	vals.Resize(n * 8)
	copyParallel(vals.Bytes(), buf[g.outVals:g.outVals+int64(n)*8])
	var valid *memory.Buffer
	nulls := 0
	if g.outValid >= 0 {
		bm := buf[g.outValid : g.outValid+bitutil.BytesForBits(int64(n))]
		nulls = n - bitutil.CountSetBits(bm, 0, n)
		if nulls > 0 {
			valid = memory.NewResizableBuffer(mem)
			valid.Resize(len(bm))
			copy(valid.Bytes(), bm)
		}
	}
	data := array.NewData(dt, n, []*memory.Buffer{valid, vals}, nil, nulls, 0)
	vals.Release()
	if valid != nil {
		valid.Release()
	}
	defer data.Release()
	return array.MakeFromData(data)
}
