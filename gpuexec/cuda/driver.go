package cuda

import (
	"fmt"
	"unsafe"
)

// Handles of the driver API. They are opaque: only the Driver that made
// them may use them.
type (
	Device    int32
	Context   uintptr
	Module    uintptr
	Function  uintptr
	Stream    uintptr
	Event     uintptr
	DevicePtr uint64
)

// Attribute is a CUdevice_attribute.
type Attribute int32

// The device attributes the executor and the GPU check read (values from
// cuda.h).
const (
	AttrMultiprocessorCount    Attribute = 16
	AttrMemoryClockRate        Attribute = 36 // kHz
	AttrGlobalMemoryBusWidth   Attribute = 37 // bits
	AttrComputeCapabilityMajor Attribute = 75
	AttrComputeCapabilityMinor Attribute = 76
)

// Driver is the part of the CUDA driver API the executor uses. Methods
// that act on a context (everything from ModuleLoadData on) must be called
// from the OS thread where that context is current; the executor does so
// from one locked goroutine per device. Load returns the implementation
// over libcuda.so.1; tests use a fake.
type Driver interface {
	Init() error
	DriverVersion() (int, error)
	DeviceCount() (int, error)
	Device(ordinal int) (Device, error)
	DeviceName(Device) (string, error)
	DeviceAttribute(Device, Attribute) (int, error)
	DeviceTotalMem(Device) (uint64, error)
	PrimaryCtxRetain(Device) (Context, error)
	PrimaryCtxRelease(Device) error
	CtxPushCurrent(Context) error
	CtxPopCurrent() error

	// ModuleLoadData loads a NUL-terminated PTX image.
	ModuleLoadData(image []byte) (Module, error)
	ModuleUnload(Module) error
	ModuleGetFunction(m Module, name string) (Function, error)

	StreamCreate() (Stream, error)
	StreamDestroy(Stream) error
	StreamSynchronize(Stream) error

	MemAlloc(size uint64) (DevicePtr, error)
	MemFree(DevicePtr) error
	// MemAllocHost allocates page-locked host memory, outside the Go heap.
	MemAllocHost(size uint64) (unsafe.Pointer, error)
	MemFreeHost(unsafe.Pointer) error
	// The copies are asynchronous on s; src or dst must be page-locked
	// (from MemAllocHost) and stay untouched until s is synchronized.
	MemcpyHtoDAsync(dst DevicePtr, src unsafe.Pointer, size uint64, s Stream) error
	MemcpyDtoHAsync(dst unsafe.Pointer, src DevicePtr, size uint64, s Stream) error

	// LaunchKernel enqueues f on s. params is cuLaunchKernel's
	// kernelParams: an array of pointers to the argument values, in
	// memory that is not on the Go heap; the driver copies the values
	// before it returns.
	LaunchKernel(f Function, grid, block [3]uint32, sharedMem uint32, s Stream, params unsafe.Pointer) error

	EventCreate() (Event, error)
	EventRecord(Event, Stream) error
	EventSynchronize(Event) error
	// EventElapsedTime is the time between two recorded events, in ms.
	EventElapsedTime(start, end Event) (float32, error)
	EventDestroy(Event) error
}

// Error is a CUresult other than CUDA_SUCCESS, with the call that
// returned it.
type Error struct {
	Call string
	Code int
	// Name and Message are cuGetErrorName's and cuGetErrorString's text,
	// when the driver gave them.
	Name, Message string
}

func (e *Error) Error() string {
	if e.Name != "" {
		return fmt.Sprintf("cuda: %s: %s (%d): %s", e.Call, e.Name, e.Code, e.Message)
	}
	return fmt.Sprintf("cuda: %s: error %d", e.Call, e.Code)
}

// CUresult codes that mean "no usable GPU here" rather than a fault.
const (
	errNoDevice                   = 100 // CUDA_ERROR_NO_DEVICE
	errInsufficientDriver         = 35  // CUDA_ERROR_INSUFFICIENT_DRIVER
	errNotInitialized             = 3   // CUDA_ERROR_NOT_INITIALIZED
	errCompatNotSupportedOnDevice = 804
)
