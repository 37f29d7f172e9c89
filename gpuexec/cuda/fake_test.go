package cuda

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"sort"
	"sync"
	"syscall"
	"unsafe"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/bitutil"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/sluice-dev/sluice/gpuexec"
)

// fakeDriver is a Driver whose "device" is host memory and whose kernels
// are the CPU reference: a launch decodes the kernel's arguments the way
// the PTX does (pointers into device memory, the op table, the bitmaps),
// rebuilds Arrow arrays from the device bytes, runs gpuexec.CPU on them and
// writes the result back in the kernel's output format. Copies and
// launches are queued on the stream and run at StreamSynchronize, so
// reading staging memory before a sync shows up as wrong results.
type fakeDriver struct {
	mu sync.Mutex

	devices    int
	ccMajor    int
	version    int
	initErr    error
	fail       map[string]error // method name -> error to return
	violations []string         // misuse the executor must never do

	host    map[uintptr][]byte
	dev     map[uint64][]byte
	nextDev uint64
	queue   []func()
	current map[int]bool // threads with a context current
	retains int
	modules int
	streams int

	launches     map[string]int
	hostAllocs   int
	kernelsImage []byte
}

func newFake() *fakeDriver {
	return &fakeDriver{
		devices:  1,
		ccMajor:  9,
		version:  12040,
		fail:     map[string]error{},
		host:     map[uintptr][]byte{},
		dev:      map[uint64][]byte{},
		nextDev:  1 << 40,
		launches: map[string]int{},
		current:  map[int]bool{},
	}
}

func (f *fakeDriver) err(name string) error {
	if e := f.fail[name]; e != nil {
		return e
	}
	return nil
}

func (f *fakeDriver) violate(format string, args ...any) {
	f.violations = append(f.violations, fmt.Sprintf(format, args...))
}

// onContextThread records a violation when a context call comes from a
// thread other than the one that pushed the context.
func (f *fakeDriver) onContextThread(call string) {
	if t := syscall.Gettid(); !f.current[t] {
		f.violate("%s on thread %d, which has no current context", call, t)
	}
}

func (f *fakeDriver) Init() error { return f.initErr }
func (f *fakeDriver) DriverVersion() (int, error) {
	return f.version, nil
}
func (f *fakeDriver) DeviceCount() (int, error) { return f.devices, nil }
func (f *fakeDriver) Device(o int) (Device, error) {
	if o < 0 || o >= f.devices {
		return 0, &Error{Call: "cuDeviceGet", Code: 101, Name: "CUDA_ERROR_INVALID_DEVICE"}
	}
	return Device(o), nil
}
func (f *fakeDriver) DeviceName(d Device) (string, error) { return "Fake H100", nil }
func (f *fakeDriver) DeviceAttribute(d Device, a Attribute) (int, error) {
	switch a {
	case AttrComputeCapabilityMajor:
		return f.ccMajor, nil
	case AttrMemoryClockRate:
		return 2_619_000, nil
	case AttrGlobalMemoryBusWidth:
		return 5120, nil
	case AttrMultiprocessorCount:
		return 132, nil
	}
	return 0, nil
}
func (f *fakeDriver) DeviceTotalMem(Device) (uint64, error) { return 80 << 30, nil }

func (f *fakeDriver) PrimaryCtxRetain(Device) (Context, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.retains++
	return 0xc0, nil
}
func (f *fakeDriver) PrimaryCtxRelease(Device) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.retains--
	return nil
}
func (f *fakeDriver) CtxPushCurrent(Context) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	t := syscall.Gettid()
	if f.current[t] {
		f.violate("second context pushed on thread %d", t)
	}
	f.current[t] = true
	return nil
}
func (f *fakeDriver) CtxPopCurrent() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.onContextThread("cuCtxPopCurrent")
	delete(f.current, syscall.Gettid())
	return nil
}

func (f *fakeDriver) ModuleLoadData(image []byte) (Module, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.onContextThread("cuModuleLoadData")
	if err := f.err("ModuleLoadData"); err != nil {
		return 0, err
	}
	if len(image) == 0 || image[len(image)-1] != 0 {
		f.violate("PTX image not NUL-terminated")
	}
	f.kernelsImage = image
	f.modules++
	return 0x10, nil
}
func (f *fakeDriver) ModuleUnload(Module) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.onContextThread("cuModuleUnload")
	f.modules--
	return nil
}
func (f *fakeDriver) ModuleGetFunction(m Module, name string) (Function, error) {
	switch name {
	case chainKernel:
		return 1, nil
	case hashKernel:
		return 2, nil
	}
	return 0, &Error{Call: "cuModuleGetFunction", Code: 500, Name: "CUDA_ERROR_NOT_FOUND"}
}

func (f *fakeDriver) StreamCreate() (Stream, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.onContextThread("cuStreamCreate")
	f.streams++
	return 0x5, nil
}
func (f *fakeDriver) StreamDestroy(Stream) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.streams--
	return nil
}
func (f *fakeDriver) StreamSynchronize(Stream) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.onContextThread("cuStreamSynchronize")
	q := f.queue
	f.queue = nil
	for _, op := range q {
		op()
	}
	return nil
}

func (f *fakeDriver) MemAlloc(size uint64) (DevicePtr, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.onContextThread("cuMemAlloc")
	if err := f.err("MemAlloc"); err != nil {
		return 0, err
	}
	p := f.nextDev
	f.dev[p] = make([]byte, size)
	f.nextDev += (size + 1<<20) &^ 0xfffff
	return DevicePtr(p), nil
}
func (f *fakeDriver) MemFree(p DevicePtr) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.dev[uint64(p)]; !ok {
		f.violate("cuMemFree of unknown %#x", p)
	}
	delete(f.dev, uint64(p))
	return nil
}
func (f *fakeDriver) MemAllocHost(size uint64) (unsafe.Pointer, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.onContextThread("cuMemAllocHost")
	if err := f.err("MemAllocHost"); err != nil {
		return nil, err
	}
	b := make([]byte, size)
	p := unsafe.Pointer(&b[0])
	f.host[uintptr(p)] = b
	f.hostAllocs++
	return p, nil
}
func (f *fakeDriver) MemFreeHost(p unsafe.Pointer) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.host[uintptr(p)]; !ok {
		f.violate("cuMemFreeHost of unknown %p", p)
	}
	delete(f.host, uintptr(p))
	return nil
}

// hostMem returns the size bytes of page-locked memory at address a.
func (f *fakeDriver) hostMem(a uintptr, size uint64) []byte {
	for base, b := range f.host {
		if a >= base && uint64(a-base)+size <= uint64(len(b)) {
			return b[a-base : uint64(a-base)+size]
		}
	}
	f.violate("host access [%#x, +%d) outside page-locked memory", a, size)
	return make([]byte, size)
}

// devMem returns the size bytes of device memory at address a.
func (f *fakeDriver) devMem(a uint64, size uint64) []byte {
	for base, b := range f.dev {
		if a >= base && a-base+size <= uint64(len(b)) {
			return b[a-base : a-base+size]
		}
	}
	f.violate("device access [%#x, +%d) outside allocations", a, size)
	return make([]byte, size)
}

func (f *fakeDriver) MemcpyHtoDAsync(dst DevicePtr, src unsafe.Pointer, size uint64, s Stream) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.onContextThread("cuMemcpyHtoDAsync")
	from, to := f.hostMem(uintptr(src), size), f.devMem(uint64(dst), size)
	f.queue = append(f.queue, func() { copy(to, from) })
	return nil
}
func (f *fakeDriver) MemcpyDtoHAsync(dst unsafe.Pointer, src DevicePtr, size uint64, s Stream) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.onContextThread("cuMemcpyDtoHAsync")
	from, to := f.devMem(uint64(src), size), f.hostMem(uintptr(dst), size)
	f.queue = append(f.queue, func() { copy(to, from) })
	return nil
}

func (f *fakeDriver) LaunchKernel(fn Function, grid, block [3]uint32, shared uint32, s Stream, params unsafe.Pointer) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.onContextThread("cuLaunchKernel")
	if err := f.err("LaunchKernel"); err != nil {
		return err
	}
	nargs := map[Function]int{1: 8, 2: 7}[fn]
	if nargs == 0 {
		f.violate("launch of unknown function %d", fn)
		return nil
	}
	// kernelParams: pointers to the values, read now as the driver does.
	ptrs := f.hostMem(uintptr(params), uint64(nargs)*8)
	args := make([]uint64, nargs)
	for i := range args {
		at := uintptr(binary.LittleEndian.Uint64(ptrs[8*i:]))
		args[i] = binary.LittleEndian.Uint64(f.hostMem(at, 8))
	}
	if block[0]%32 != 0 || block[1] != 1 || block[2] != 1 {
		f.violate("block %v: the kernels need a 1-D block of whole warps", block)
	}
	threads := uint64(grid[0]) * uint64(block[0])
	if fn == 1 {
		f.launches[chainKernel]++
		n := args[6]
		if threads < n {
			f.violate("chain: %d threads for %d values", threads, n)
		}
		f.queue = append(f.queue, func() { f.runChain(args) })
	} else {
		f.launches[hashKernel]++
		n := args[6]
		if threads < n {
			f.violate("hash: %d threads for %d values", threads, n)
		}
		f.queue = append(f.queue, func() { f.runHash(args) })
	}
	return nil
}

func (f *fakeDriver) EventCreate() (Event, error)                  { return 1, nil }
func (f *fakeDriver) EventRecord(Event, Stream) error              { return nil }
func (f *fakeDriver) EventSynchronize(Event) error                 { return nil }
func (f *fakeDriver) EventElapsedTime(a, b Event) (float32, error) { return 1, nil }
func (f *fakeDriver) EventDestroy(Event) error                     { return nil }

// validity reads n bits of the bitmap at device address a (0: all valid).
func (f *fakeDriver) validity(a uint64, n int) *memory.Buffer {
	if a == 0 {
		return nil
	}
	return memory.NewBufferBytes(append([]byte(nil), f.devMem(a, uint64(bitmapBytes(n)))...))
}

// nullCount is 0 for no bitmap, else "count it".
func nullCount(valid *memory.Buffer) int {
	if valid == nil {
		return 0
	}
	return array.UnknownNullCount
}

// decodeOps reads the op table the way ops.ll does.
func (f *fakeDriver) decodeOps(a uint64, nops int) []gpuexec.Op {
	if nops == 0 {
		return nil
	}
	word := func(i int) uint64 { return binary.LittleEndian.Uint64(f.devMem(a+uint64(8*i), 8)) }
	fl := func(i int) float64 { return math.Float64frombits(word(i)) }
	ops := make([]gpuexec.Op, nops)
	for j := range ops {
		r := 4 * j
		switch word(r) {
		case codeFill:
			ops[j] = gpuexec.Op{Kind: gpuexec.OpFillMissing, Value: fl(r + 1)}
		case codeClip:
			ops[j] = gpuexec.Op{Kind: gpuexec.OpClip, Min: fl(r + 1), Max: fl(r + 2)}
		case codeLog1p:
			ops[j] = gpuexec.Op{Kind: gpuexec.OpLog1p}
		case codeStandardize:
			ops[j] = gpuexec.Op{Kind: gpuexec.OpStandardize, Mean: fl(r + 1), Std: fl(r + 2)}
			if ops[j].Std == 0 {
				f.violate("standardize with std 0 reached the kernel")
			}
		case codeMinMax:
			ops[j] = gpuexec.Op{Kind: gpuexec.OpMinMax, Min: fl(r + 1), Max: fl(r + 2)}
			if fl(r+3) != ops[j].Max-ops[j].Min {
				f.violate("min_max span %g, want %g", fl(r+3), ops[j].Max-ops[j].Min)
			}
		case codeBucketize:
			first, count := int(word(r+1)), int(word(r+2))
			b := make([]float64, count)
			for i := range b {
				b[i] = fl(4*nops + first + i)
			}
			ops[j] = gpuexec.Op{Kind: gpuexec.OpBucketize, Boundaries: b}
		default:
			f.violate("op code %d", word(r))
		}
	}
	return ops
}

// runChain is sluice_chain_kernel(in, vin, out, vout, tab, nops, n, flags).
func (f *fakeDriver) runChain(a []uint64) {
	in, vin, out, vout, tab := a[0], a[1], a[2], a[3], a[4]
	nops, n, flags := int(uint32(a[5])), int(a[6]), uint32(a[7])
	dt := arrow.DataType(arrow.PrimitiveTypes.Float64)
	if flags&1 != 0 {
		dt = arrow.PrimitiveTypes.Int64
	}
	vals := memory.NewBufferBytes(append([]byte(nil), f.devMem(in, uint64(n)*8)...))
	valid := f.validity(vin, n)
	data := array.NewData(dt, n, []*memory.Buffer{valid, vals}, nil, nullCount(valid), 0)
	defer data.Release()
	f.reference(array.MakeFromData(data), f.decodeOps(tab, nops), out, vout)
}

// runHash is sluice_hash_kernel(offs, data, vin, out, vout, buckets, n).
func (f *fakeDriver) runHash(a []uint64) {
	offs, chars, vin, out, vout, buckets, n := a[0], a[1], a[2], a[3], a[4], int64(a[5]), int(a[6])
	ob := append([]byte(nil), f.devMem(offs, uint64(n+1)*8)...)
	last := binary.LittleEndian.Uint64(ob[8*n:])
	var db []byte
	if last > 0 {
		db = append(db, f.devMem(chars, last)...)
	}
	valid := f.validity(vin, n)
	data := array.NewData(arrow.BinaryTypes.LargeString, n,
		[]*memory.Buffer{valid, memory.NewBufferBytes(ob), memory.NewBufferBytes(db)}, nil, nullCount(valid), 0)
	defer data.Release()
	f.reference(array.MakeFromData(data), []gpuexec.Op{{Kind: gpuexec.OpHashBucket, Buckets: buckets}}, out, vout)
}

// reference runs ops on in with gpuexec.CPU and stores the result at out
// and vout in the kernels' format.
func (f *fakeDriver) reference(in arrow.Array, ops []gpuexec.Op, out, vout uint64) {
	defer in.Release()
	n := in.Len()
	rec := array.NewRecordBatch(arrow.NewSchema([]arrow.Field{{Name: "x", Type: in.DataType(), Nullable: true}}, nil), []arrow.Array{in}, int64(n))
	defer rec.Release()
	cpu := gpuexec.NewCPU("reference", gpuexec.Location{}, gpuexec.CPUOptions{Workers: 1})
	res, err := cpu.Execute(context.Background(), &gpuexec.Plan{Steps: []gpuexec.Step{{Output: "y", Input: "x", Ops: ops}}}, rec)
	if err != nil {
		f.violate("reference: %v", err)
		return
	}
	defer res.Release()
	col := res.Column(0)
	copy(f.devMem(out, uint64(n)*8), col.Data().Buffers()[1].Bytes()[:n*8])
	if vout == 0 {
		if col.NullN() > 0 {
			f.violate("kernel made %d nulls but was given no output bitmap", col.NullN())
		}
		return
	}
	bm := f.devMem(vout, uint64(bitmapBytes(n)))
	clear(bm)
	for i := range n {
		if col.IsValid(i) {
			bitutil.SetBit(bm, i)
		}
	}
}

// live reports what the executor still holds.
func (f *fakeDriver) live() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	var errs []error
	if len(f.host) > 0 {
		errs = append(errs, fmt.Errorf("%d page-locked allocations", len(f.host)))
	}
	if len(f.dev) > 0 {
		errs = append(errs, fmt.Errorf("%d device allocations", len(f.dev)))
	}
	if f.retains != 0 || len(f.current) != 0 || f.modules != 0 || f.streams != 0 {
		errs = append(errs, fmt.Errorf("retains %d, current on %d threads, modules %d, streams %d", f.retains, len(f.current), f.modules, f.streams))
	}
	return errors.Join(errs...)
}

func (f *fakeDriver) problems() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := append([]string(nil), f.violations...)
	sort.Strings(out)
	return out
}
