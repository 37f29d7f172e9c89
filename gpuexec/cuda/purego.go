package cuda

import (
	"errors"
	"fmt"
	"unsafe"

	"github.com/ebitengine/purego"
	"github.com/sluice-dev/sluice/gpuexec"
)

// DefaultLibrary is the file Load opens when given no path: the driver's
// versioned soname, which the NVIDIA driver package installs (the
// unversioned libcuda.so comes only with the toolkit).
const DefaultLibrary = "libcuda.so.1"

// Lookup resolves a symbol to its address; purego.Dlsym on an open library
// is one.
type Lookup func(name string) (uintptr, error)

// Load opens the CUDA driver library at path (DefaultLibrary when empty)
// and binds the calls Driver needs. A library that cannot be opened or
// lacks a symbol gives an error wrapping gpuexec.ErrUnavailable. Load does
// not call cuInit.
func Load(path string) (Driver, error) {
	if path == "" {
		path = DefaultLibrary
	}
	h, err := purego.Dlopen(path, purego.RTLD_NOW|purego.RTLD_GLOBAL)
	if err != nil {
		return nil, fmt.Errorf("cuda: open %s: %v: %w", path, err, gpuexec.ErrUnavailable)
	}
	d, err := LoadFrom(func(name string) (uintptr, error) { return purego.Dlsym(h, name) })
	if err != nil {
		_ = purego.Dlclose(h)
		return nil, fmt.Errorf("cuda: %s: %w", path, err)
	}
	return d, nil
}

// LoadFrom binds the driver calls to the addresses lookup gives. Every
// symbol is resolved before any is registered, so a missing one is an
// error wrapping gpuexec.ErrUnavailable (naming the symbol), never a panic.
func LoadFrom(lookup Lookup) (Driver, error) {
	l := &lib{}
	syms := l.symbols()
	addrs := make([]uintptr, len(syms))
	var missing []error
	for i, s := range syms {
		a, err := lookup(s.name)
		if err == nil && a == 0 {
			err = errors.New("address is 0")
		}
		if err != nil {
			missing = append(missing, fmt.Errorf("%s: %v", s.name, err))
			continue
		}
		addrs[i] = a
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("cuda: driver lacks symbols (too old?): %w: %w", errors.Join(missing...), gpuexec.ErrUnavailable)
	}
	for i, s := range syms {
		purego.RegisterFunc(s.fn, addrs[i])
	}
	return l, nil
}

// lib is Driver over the C functions. The _v2 symbols are the ones whose
// sizes are 64-bit (CUdeviceptr, size_t), which cuda.h maps the plain
// names to; binding the plain names would get the 32-bit legacy ABI.
type lib struct {
	cuInit                    func(flags uint32) int32
	cuDriverGetVersion        func(v *int32) int32
	cuDeviceGetCount          func(n *int32) int32
	cuDeviceGet               func(dev *int32, ordinal int32) int32
	cuDeviceGetName           func(name *byte, n int32, dev int32) int32
	cuDeviceGetAttribute      func(v *int32, attr int32, dev int32) int32
	cuDeviceTotalMem          func(bytes *uint64, dev int32) int32
	cuDevicePrimaryCtxRetain  func(ctx *uintptr, dev int32) int32
	cuDevicePrimaryCtxRelease func(dev int32) int32
	cuCtxPushCurrent          func(ctx uintptr) int32
	cuCtxPopCurrent           func(ctx *uintptr) int32
	cuModuleLoadData          func(mod *uintptr, image *byte) int32
	cuModuleUnload            func(mod uintptr) int32
	cuModuleGetFunction       func(fn *uintptr, mod uintptr, name *byte) int32
	cuStreamCreate            func(s *uintptr, flags uint32) int32
	cuStreamDestroy           func(s uintptr) int32
	cuStreamSynchronize       func(s uintptr) int32
	cuMemAlloc                func(p *uint64, size uint64) int32
	cuMemFree                 func(p uint64) int32
	cuMemAllocHost            func(p *unsafe.Pointer, size uint64) int32
	cuMemFreeHost             func(p unsafe.Pointer) int32
	cuMemcpyHtoDAsync         func(dst uint64, src unsafe.Pointer, n uint64, s uintptr) int32
	cuMemcpyDtoHAsync         func(dst unsafe.Pointer, src uint64, n uint64, s uintptr) int32
	cuLaunchKernel            func(f uintptr, gx, gy, gz, bx, by, bz, shared uint32, s uintptr, params, extra unsafe.Pointer) int32
	cuEventCreate             func(e *uintptr, flags uint32) int32
	cuEventRecord             func(e, s uintptr) int32
	cuEventSynchronize        func(e uintptr) int32
	cuEventElapsedTime        func(ms *float32, start, end uintptr) int32
	cuEventDestroy            func(e uintptr) int32
	cuGetErrorName            func(code int32, s **byte) int32
	cuGetErrorString          func(code int32, s **byte) int32
}

type symbol struct {
	name string
	fn   any
}

func (l *lib) symbols() []symbol {
	return []symbol{
		{"cuInit", &l.cuInit},
		{"cuDriverGetVersion", &l.cuDriverGetVersion},
		{"cuDeviceGetCount", &l.cuDeviceGetCount},
		{"cuDeviceGet", &l.cuDeviceGet},
		{"cuDeviceGetName", &l.cuDeviceGetName},
		{"cuDeviceGetAttribute", &l.cuDeviceGetAttribute},
		{"cuDeviceTotalMem_v2", &l.cuDeviceTotalMem},
		{"cuDevicePrimaryCtxRetain", &l.cuDevicePrimaryCtxRetain},
		{"cuDevicePrimaryCtxRelease_v2", &l.cuDevicePrimaryCtxRelease},
		{"cuCtxPushCurrent_v2", &l.cuCtxPushCurrent},
		{"cuCtxPopCurrent_v2", &l.cuCtxPopCurrent},
		{"cuModuleLoadData", &l.cuModuleLoadData},
		{"cuModuleUnload", &l.cuModuleUnload},
		{"cuModuleGetFunction", &l.cuModuleGetFunction},
		{"cuStreamCreate", &l.cuStreamCreate},
		{"cuStreamDestroy_v2", &l.cuStreamDestroy},
		{"cuStreamSynchronize", &l.cuStreamSynchronize},
		{"cuMemAlloc_v2", &l.cuMemAlloc},
		{"cuMemFree_v2", &l.cuMemFree},
		{"cuMemAllocHost_v2", &l.cuMemAllocHost},
		{"cuMemFreeHost", &l.cuMemFreeHost},
		{"cuMemcpyHtoDAsync_v2", &l.cuMemcpyHtoDAsync},
		{"cuMemcpyDtoHAsync_v2", &l.cuMemcpyDtoHAsync},
		{"cuLaunchKernel", &l.cuLaunchKernel},
		{"cuEventCreate", &l.cuEventCreate},
		{"cuEventRecord", &l.cuEventRecord},
		{"cuEventSynchronize", &l.cuEventSynchronize},
		{"cuEventElapsedTime", &l.cuEventElapsedTime},
		{"cuEventDestroy_v2", &l.cuEventDestroy},
		{"cuGetErrorName", &l.cuGetErrorName},
		{"cuGetErrorString", &l.cuGetErrorString},
	}
}

// check turns a CUresult into an error naming call.
func (l *lib) check(call string, r int32) error {
	if r == 0 {
		return nil
	}
	e := &Error{Call: call, Code: int(r)}
	var s *byte
	if l.cuGetErrorName(r, &s) == 0 {
		e.Name = cString(s)
	}
	s = nil
	if l.cuGetErrorString(r, &s) == 0 {
		e.Message = cString(s)
	}
	return e
}

// cString copies a NUL-terminated C string the driver owns.
func cString(p *byte) string {
	if p == nil {
		return ""
	}
	var b []byte
	for q := unsafe.Pointer(p); *(*byte)(q) != 0; q = unsafe.Add(q, 1) {
		b = append(b, *(*byte)(q))
	}
	return string(b)
}

func cBytes(s string) []byte { return append([]byte(s), 0) }

func (l *lib) Init() error { return l.check("cuInit", l.cuInit(0)) }

func (l *lib) DriverVersion() (int, error) {
	var v int32
	return int(v), l.check("cuDriverGetVersion", l.cuDriverGetVersion(&v))
}

func (l *lib) DeviceCount() (int, error) {
	var n int32
	return int(n), l.check("cuDeviceGetCount", l.cuDeviceGetCount(&n))
}

func (l *lib) Device(ordinal int) (Device, error) {
	var d int32
	return Device(d), l.check("cuDeviceGet", l.cuDeviceGet(&d, int32(ordinal)))
}

func (l *lib) DeviceName(d Device) (string, error) {
	buf := make([]byte, 256)
	if err := l.check("cuDeviceGetName", l.cuDeviceGetName(&buf[0], int32(len(buf)), int32(d))); err != nil {
		return "", err
	}
	for i, c := range buf {
		if c == 0 {
			return string(buf[:i]), nil
		}
	}
	return string(buf), nil
}

func (l *lib) DeviceAttribute(d Device, a Attribute) (int, error) {
	var v int32
	return int(v), l.check("cuDeviceGetAttribute", l.cuDeviceGetAttribute(&v, int32(a), int32(d)))
}

func (l *lib) DeviceTotalMem(d Device) (uint64, error) {
	var n uint64
	return n, l.check("cuDeviceTotalMem_v2", l.cuDeviceTotalMem(&n, int32(d)))
}

func (l *lib) PrimaryCtxRetain(d Device) (Context, error) {
	var c uintptr
	return Context(c), l.check("cuDevicePrimaryCtxRetain", l.cuDevicePrimaryCtxRetain(&c, int32(d)))
}

func (l *lib) PrimaryCtxRelease(d Device) error {
	return l.check("cuDevicePrimaryCtxRelease_v2", l.cuDevicePrimaryCtxRelease(int32(d)))
}

func (l *lib) CtxPushCurrent(c Context) error {
	return l.check("cuCtxPushCurrent_v2", l.cuCtxPushCurrent(uintptr(c)))
}

func (l *lib) CtxPopCurrent() error {
	var c uintptr
	return l.check("cuCtxPopCurrent_v2", l.cuCtxPopCurrent(&c))
}

func (l *lib) ModuleLoadData(image []byte) (Module, error) {
	if len(image) == 0 || image[len(image)-1] != 0 {
		return 0, errors.New("cuda: cuModuleLoadData: image is not NUL-terminated")
	}
	var m uintptr
	return Module(m), l.check("cuModuleLoadData", l.cuModuleLoadData(&m, &image[0]))
}

func (l *lib) ModuleUnload(m Module) error {
	return l.check("cuModuleUnload", l.cuModuleUnload(uintptr(m)))
}

func (l *lib) ModuleGetFunction(m Module, name string) (Function, error) {
	var f uintptr
	b := cBytes(name)
	return Function(f), l.check("cuModuleGetFunction "+name, l.cuModuleGetFunction(&f, uintptr(m), &b[0]))
}

// streamNonBlocking (CU_STREAM_NON_BLOCKING) keeps the stream from
// synchronizing with the legacy default stream, which other libraries in
// the process may use.
const streamNonBlocking = 1

func (l *lib) StreamCreate() (Stream, error) {
	var s uintptr
	return Stream(s), l.check("cuStreamCreate", l.cuStreamCreate(&s, streamNonBlocking))
}

func (l *lib) StreamDestroy(s Stream) error {
	return l.check("cuStreamDestroy_v2", l.cuStreamDestroy(uintptr(s)))
}

func (l *lib) StreamSynchronize(s Stream) error {
	return l.check("cuStreamSynchronize", l.cuStreamSynchronize(uintptr(s)))
}

func (l *lib) MemAlloc(size uint64) (DevicePtr, error) {
	var p uint64
	return DevicePtr(p), l.check("cuMemAlloc_v2", l.cuMemAlloc(&p, size))
}

func (l *lib) MemFree(p DevicePtr) error { return l.check("cuMemFree_v2", l.cuMemFree(uint64(p))) }

func (l *lib) MemAllocHost(size uint64) (unsafe.Pointer, error) {
	var p unsafe.Pointer
	return p, l.check("cuMemAllocHost_v2", l.cuMemAllocHost(&p, size))
}

func (l *lib) MemFreeHost(p unsafe.Pointer) error {
	return l.check("cuMemFreeHost", l.cuMemFreeHost(p))
}

func (l *lib) MemcpyHtoDAsync(dst DevicePtr, src unsafe.Pointer, size uint64, s Stream) error {
	return l.check("cuMemcpyHtoDAsync_v2", l.cuMemcpyHtoDAsync(uint64(dst), src, size, uintptr(s)))
}

func (l *lib) MemcpyDtoHAsync(dst unsafe.Pointer, src DevicePtr, size uint64, s Stream) error {
	return l.check("cuMemcpyDtoHAsync_v2", l.cuMemcpyDtoHAsync(dst, uint64(src), size, uintptr(s)))
}

func (l *lib) LaunchKernel(f Function, grid, block [3]uint32, sharedMem uint32, s Stream, params unsafe.Pointer) error {
	return l.check("cuLaunchKernel", l.cuLaunchKernel(uintptr(f), grid[0], grid[1], grid[2], block[0], block[1], block[2], sharedMem, uintptr(s), params, nil))
}

func (l *lib) EventCreate() (Event, error) {
	var e uintptr
	return Event(e), l.check("cuEventCreate", l.cuEventCreate(&e, 0))
}

func (l *lib) EventRecord(e Event, s Stream) error {
	return l.check("cuEventRecord", l.cuEventRecord(uintptr(e), uintptr(s)))
}

func (l *lib) EventSynchronize(e Event) error {
	return l.check("cuEventSynchronize", l.cuEventSynchronize(uintptr(e)))
}

func (l *lib) EventElapsedTime(start, end Event) (float32, error) {
	var ms float32
	return ms, l.check("cuEventElapsedTime", l.cuEventElapsedTime(&ms, uintptr(start), uintptr(end)))
}

func (l *lib) EventDestroy(e Event) error {
	return l.check("cuEventDestroy_v2", l.cuEventDestroy(uintptr(e)))
}
