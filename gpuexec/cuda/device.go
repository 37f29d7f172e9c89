package cuda

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"unsafe"

	"github.com/sluice-dev/sluice/gpuexec"
)

// DeviceInfo describes one device an Executor drives.
type DeviceInfo struct {
	Ordinal int    `json:"ordinal"`
	Name    string `json:"name"`
	// ComputeCapability is "major.minor", e.g. "9.0".
	ComputeCapability string `json:"compute_capability"`
	Multiprocessors   int    `json:"multiprocessors"`
	TotalMemory       uint64 `json:"total_memory_bytes"`
	// PeakBandwidth is the theoretical memory bandwidth in bytes per
	// second: 2 (double data rate) x memory clock x bus width; 0 when the
	// driver does not report both.
	PeakBandwidth float64 `json:"peak_bandwidth_bytes_per_s"`
}

// argSlots is how many kernel arguments the launch block holds.
const argSlots = 16

// device owns one GPU. Every driver call for it runs on its goroutine,
// which is locked to an OS thread with the device's primary context
// current; the fields below jobs are that goroutine's alone.
type device struct {
	drv      Driver
	info     DeviceInfo
	jobs     chan func()
	closing  chan struct{}
	stopped  chan struct{}
	stopOnce sync.Once
	inflight atomic.Int64
	// fault is set, once, by an error that leaves the context unusable
	// (see sticky); the device then takes no more work.
	fault atomic.Pointer[error]

	dev    Device
	ctx    Context
	pushed bool
	mod    Module
	chain  Function
	hash   Function
	stream Stream
	// host (page-locked) and dev are the staging buffers, the same size
	// and the same layout, grown and never shrunk.
	host     unsafe.Pointer
	devBuf   DevicePtr
	capacity uint64
	// args is page-locked memory for cuLaunchKernel's parameter array:
	// argSlots pointers, then the argSlots 8-byte values they point to.
	args unsafe.Pointer
}

// startDevice starts the goroutine for device ordinal and waits until it
// has its context, stream and kernels.
func startDevice(drv Driver, ordinal int) (*device, error) {
	d := &device{
		drv:     drv,
		jobs:    make(chan func()),
		closing: make(chan struct{}),
		stopped: make(chan struct{}),
	}
	d.info.Ordinal = ordinal
	ready := make(chan error, 1)
	go d.loop(ready)
	if err := <-ready; err != nil {
		return nil, fmt.Errorf("cuda: device %d: %w", ordinal, err)
	}
	return d, nil
}

func (d *device) loop(ready chan<- error) {
	// The thread is never unlocked: when this goroutine ends, the thread
	// ends with it and takes the context stack along, so no other
	// goroutine inherits a current context.
	runtime.LockOSThread()
	defer close(d.stopped)
	if err := d.open(); err != nil {
		d.release()
		ready <- err
		return
	}
	ready <- nil
	for {
		select {
		case fn := <-d.jobs:
			fn()
		case <-d.closing:
			d.release()
			return
		}
	}
}

func (d *device) open() error {
	var err error
	if d.dev, err = d.drv.Device(d.info.Ordinal); err != nil {
		return err
	}
	if err := d.describe(); err != nil {
		return err
	}
	if d.ctx, err = d.drv.PrimaryCtxRetain(d.dev); err != nil {
		return err
	}
	if err := d.drv.CtxPushCurrent(d.ctx); err != nil {
		_ = d.drv.PrimaryCtxRelease(d.dev)
		d.ctx = 0
		return err
	}
	d.pushed = true
	image := make([]byte, len(kernelsPTX)+1) // NUL-terminated
	copy(image, kernelsPTX)
	if d.mod, err = d.drv.ModuleLoadData(image); err != nil {
		return fmt.Errorf("load kernels (PTX 7.8 for sm_90 needs a Hopper or later GPU and driver >= 520): %w", err)
	}
	if d.chain, err = d.drv.ModuleGetFunction(d.mod, chainKernel); err != nil {
		return err
	}
	if d.hash, err = d.drv.ModuleGetFunction(d.mod, hashKernel); err != nil {
		return err
	}
	if d.stream, err = d.drv.StreamCreate(); err != nil {
		return err
	}
	if d.args, err = d.drv.MemAllocHost(2 * argSlots * 8); err != nil {
		return err
	}
	return nil
}

func (d *device) describe() error {
	var err error
	if d.info.Name, err = d.drv.DeviceName(d.dev); err != nil {
		return err
	}
	if d.info.TotalMemory, err = d.drv.DeviceTotalMem(d.dev); err != nil {
		return err
	}
	attr := func(a Attribute) int {
		v, err := d.drv.DeviceAttribute(d.dev, a)
		if err != nil {
			return 0
		}
		return v
	}
	major, minor := attr(AttrComputeCapabilityMajor), attr(AttrComputeCapabilityMinor)
	d.info.ComputeCapability = fmt.Sprintf("%d.%d", major, minor)
	d.info.Multiprocessors = attr(AttrMultiprocessorCount)
	clockKHz, busBits := attr(AttrMemoryClockRate), attr(AttrGlobalMemoryBusWidth)
	d.info.PeakBandwidth = 2 * float64(clockKHz) * 1e3 * float64(busBits) / 8
	if major != 0 && major < 9 {
		return fmt.Errorf("%s has compute capability %d.%d; the kernels target sm_90 (Hopper) and later: %w",
			d.info.Name, major, minor, gpuexec.ErrUnavailable)
	}
	return nil
}

// release frees what open got, in reverse; it runs on the device thread.
func (d *device) release() {
	if d.stream != 0 {
		_ = d.drv.StreamSynchronize(d.stream)
	}
	d.freeStaging()
	if d.args != nil {
		_ = d.drv.MemFreeHost(d.args)
		d.args = nil
	}
	if d.stream != 0 {
		_ = d.drv.StreamDestroy(d.stream)
		d.stream = 0
	}
	if d.mod != 0 {
		_ = d.drv.ModuleUnload(d.mod)
		d.mod = 0
	}
	if d.pushed {
		_ = d.drv.CtxPopCurrent()
		d.pushed = false
	}
	if d.ctx != 0 {
		_ = d.drv.PrimaryCtxRelease(d.dev)
		d.ctx = 0
	}
}

func (d *device) freeStaging() {
	if d.host != nil {
		_ = d.drv.MemFreeHost(d.host)
		d.host = nil
	}
	if d.devBuf != 0 {
		_ = d.drv.MemFree(d.devBuf)
		d.devBuf = 0
	}
	d.capacity = 0
}

// reserve makes the staging buffers hold at least n bytes. Growth at least
// doubles, in whole MiB, so a stream of similar batches allocates once.
func (d *device) reserve(n uint64) error {
	if n <= d.capacity {
		return nil
	}
	const mib = 1 << 20
	c := max(n, 2*d.capacity, mib)
	c = (c + mib - 1) / mib * mib
	d.freeStaging()
	host, err := d.drv.MemAllocHost(c)
	if err != nil {
		return fmt.Errorf("staging of %d bytes: %w", c, err)
	}
	d.host = host
	dev, err := d.drv.MemAlloc(c)
	if err != nil {
		d.freeStaging()
		return fmt.Errorf("device buffer of %d bytes: %w", c, err)
	}
	d.devBuf, d.capacity = dev, c
	return nil
}

// staging returns the first n bytes of the host staging buffer.
func (d *device) staging(n uint64) []byte { return unsafe.Slice((*byte)(d.host), n) }

// launch enqueues f over n threads (rounded up to whole blocks) with args,
// each an 8-byte little-endian slot (a 32-bit parameter reads its low half).
func (d *device) launch(f Function, n int, args ...uint64) error {
	if len(args) > argSlots {
		return errors.New("too many kernel arguments")
	}
	for i, a := range args {
		val := unsafe.Add(d.args, 8*(argSlots+i))
		*(*uint64)(val) = a
		*(*uintptr)(unsafe.Add(d.args, 8*i)) = uintptr(val)
	}
	grid := (n + blockSize - 1) / blockSize
	return d.drv.LaunchKernel(f, [3]uint32{uint32(grid), 1, 1}, [3]uint32{blockSize, 1, 1}, 0, d.stream, d.args)
}

// do runs fn on the device thread and returns its error. A job not yet
// started when ctx ends is skipped; one that started runs to the end, since
// the device may be writing into its buffers.
func (d *device) do(ctx context.Context, fn func() error) error {
	if err := d.faulted(); err != nil {
		return err
	}
	d.inflight.Add(1)
	defer d.inflight.Add(-1)
	res := make(chan error, 1)
	job := func() {
		if err := d.faulted(); err != nil {
			res <- err
			return
		}
		if err := ctx.Err(); err != nil {
			res <- err
			return
		}
		err := fn()
		if sticky(err) {
			f := fmt.Errorf("cuda: device %d is unusable until the process restarts: %w: %w", d.info.Ordinal, err, gpuexec.ErrUnavailable)
			d.fault.CompareAndSwap(nil, &f)
			err = f
		}
		res <- err
	}
	select {
	case d.jobs <- job:
		return <-res
	case <-ctx.Done():
		return ctx.Err()
	case <-d.closing:
		return fmt.Errorf("cuda: device %d: closed: %w", d.info.Ordinal, gpuexec.ErrUnavailable)
	}
}

// faulted returns the error that made the device unusable, or nil.
func (d *device) faulted() error {
	if p := d.fault.Load(); p != nil {
		return *p
	}
	return nil
}

// sticky says whether err is a CUresult after which the context is
// corrupt and every later call fails (cuda.h: "the process must be
// terminated and relaunched").
func sticky(err error) bool {
	var e *Error
	if !errors.As(err, &e) {
		return false
	}
	switch e.Code {
	case 214, // CUDA_ERROR_ECC_UNCORRECTABLE
		700, // CUDA_ERROR_ILLEGAL_ADDRESS
		702, // CUDA_ERROR_LAUNCH_TIMEOUT
		714, // CUDA_ERROR_HARDWARE_STACK_ERROR
		715, // CUDA_ERROR_ILLEGAL_INSTRUCTION
		716, // CUDA_ERROR_MISALIGNED_ADDRESS
		717, // CUDA_ERROR_INVALID_ADDRESS_SPACE
		718, // CUDA_ERROR_INVALID_PC
		719, // CUDA_ERROR_LAUNCH_FAILED
		999: // CUDA_ERROR_UNKNOWN
		return true
	}
	return false
}

// stop ends the device goroutine after the job it runs, freeing its
// buffers and releasing the primary context; it waits for that.
func (d *device) stop() {
	d.stopOnce.Do(func() { close(d.closing) })
	<-d.stopped
}

func unsafeAdd(p unsafe.Pointer, off int64) unsafe.Pointer { return unsafe.Add(p, off) }
