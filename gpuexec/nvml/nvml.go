package nvml

import (
	"errors"
	"fmt"
	"sync"
	"time"

	nv "github.com/NVIDIA/go-nvml/pkg/nvml"
	"github.com/sluice-dev/sluice/gpuexec"
)

// Device is one GPU's telemetry at one moment. A value the device does not
// report (utilization of a MIG-enabled GPU, say) is zero and named in
// Unsupported.
type Device struct {
	Index int    `json:"index"`
	Name  string `json:"name"`
	UUID  string `json:"uuid"`
	// MemoryTotal and MemoryUsed are bytes.
	MemoryTotal uint64 `json:"memory_total_bytes"`
	MemoryUsed  uint64 `json:"memory_used_bytes"`
	// UtilizationGPU is the percent of the last sample period in which a
	// kernel ran; UtilizationMemory the percent in which device memory was
	// read or written.
	UtilizationGPU    uint32 `json:"utilization_gpu_percent"`
	UtilizationMemory uint32 `json:"utilization_memory_percent"`
	// MIG is whether Multi-Instance GPU mode is on now; MIGPending what it
	// will be after the next GPU reset.
	MIG        bool `json:"mig"`
	MIGPending bool `json:"mig_pending"`
	// PeakBandwidth is the theoretical memory bandwidth in bytes per
	// second: 2 (double data rate) x the maximum memory clock x the bus
	// width.
	PeakBandwidth float64  `json:"peak_bandwidth_bytes_per_s"`
	Unsupported   []string `json:"unsupported,omitempty"`
}

// Telemetry is a snapshot of every device.
type Telemetry struct {
	Time          time.Time `json:"time"`
	DriverVersion string    `json:"driver_version"`
	// CUDAVersion is the CUDA version the driver supports, e.g. 12040.
	CUDAVersion int      `json:"cuda_version"`
	Devices     []Device `json:"devices"`
}

// Options configure a Monitor.
type Options struct {
	// Library is the NVML binding. Default (nil): go-nvml's, over
	// LibraryPath. Tests pass a mock from go-nvml's pkg/nvml/mock.
	Library nv.Interface
	// LibraryPath is the shared library to open. Default (""):
	// libnvidia-ml.so.1.
	LibraryPath string
}

// Monitor holds NVML initialized. It is safe for concurrent use.
type Monitor struct {
	mu     sync.Mutex
	lib    nv.Interface
	closed bool
}

// Open initializes NVML. With no library, no driver loaded, no permission
// or no device, it returns an error wrapping gpuexec.ErrUnavailable and
// leaves NVML shut down.
func Open(opts Options) (*Monitor, error) {
	lib := opts.Library
	if lib == nil {
		var lo []nv.LibraryOption
		if opts.LibraryPath != "" {
			lo = append(lo, nv.WithLibraryPath(opts.LibraryPath))
		}
		lib = nv.New(lo...)
	}
	if ret := lib.Init(); ret != nv.SUCCESS {
		what := ret.Error()
		if ret == nv.ERROR_LIBRARY_NOT_FOUND {
			what = "libnvidia-ml.so.1 not found (no NVIDIA driver installed)"
		}
		return nil, fmt.Errorf("nvml: init: %s: %w", what, gpuexec.ErrUnavailable)
	}
	n, ret := lib.DeviceGetCount()
	if ret != nv.SUCCESS || n == 0 {
		_ = lib.Shutdown()
		if ret != nv.SUCCESS {
			return nil, fmt.Errorf("nvml: device count: %s: %w", ret.Error(), gpuexec.ErrUnavailable)
		}
		return nil, fmt.Errorf("nvml: no device: %w", gpuexec.ErrUnavailable)
	}
	return &Monitor{lib: lib}, nil
}

// Close shuts NVML down. It is idempotent.
func (m *Monitor) Close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil
	}
	m.closed = true
	if ret := m.lib.Shutdown(); ret != nv.SUCCESS {
		return fmt.Errorf("nvml: shutdown: %s", ret.Error())
	}
	return nil
}

// errClosed is returned after Close.
var errClosed = fmt.Errorf("nvml: closed: %w", gpuexec.ErrUnavailable)

// Telemetry reads every device. A device that cannot be opened, or has
// vanished (fallen off the bus), is an error wrapping
// gpuexec.ErrUnavailable; a single value the device does not support is
// not an error (see Device.Unsupported).
func (m *Monitor) Telemetry() (Telemetry, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return Telemetry{}, errClosed
	}
	t := Telemetry{Time: time.Now()}
	if v, ret := m.lib.SystemGetDriverVersion(); ret == nv.SUCCESS {
		t.DriverVersion = v
	}
	if v, ret := m.lib.SystemGetCudaDriverVersion(); ret == nv.SUCCESS {
		t.CUDAVersion = v
	}
	n, ret := m.lib.DeviceGetCount()
	if ret != nv.SUCCESS {
		return t, fmt.Errorf("nvml: device count: %s: %w", ret.Error(), gpuexec.ErrUnavailable)
	}
	var errs []error
	for i := range n {
		d, err := readDevice(m.lib, i)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		t.Devices = append(t.Devices, d)
	}
	if len(errs) > 0 {
		return t, fmt.Errorf("%w: %w", errors.Join(errs...), gpuexec.ErrUnavailable)
	}
	return t, nil
}

func readDevice(lib nv.Interface, i int) (Device, error) {
	d := Device{Index: i}
	h, ret := lib.DeviceGetHandleByIndex(i)
	if ret != nv.SUCCESS {
		return d, fmt.Errorf("nvml: device %d: %s", i, ret.Error())
	}
	// fatal are the answers that mean the device is gone, not that it
	// lacks a feature.
	var fatal error
	check := func(what string, ret nv.Return) bool {
		switch ret {
		case nv.SUCCESS:
			return true
		case nv.ERROR_GPU_IS_LOST, nv.ERROR_UNINITIALIZED, nv.ERROR_INVALID_ARGUMENT:
			if fatal == nil {
				fatal = fmt.Errorf("nvml: device %d: %s: %s", i, what, ret.Error())
			}
		default:
			d.Unsupported = append(d.Unsupported, what)
		}
		return false
	}
	d.Name, ret = h.GetName()
	check("name", ret)
	d.UUID, ret = h.GetUUID()
	check("uuid", ret)
	if mem, ret := h.GetMemoryInfo(); check("memory", ret) {
		d.MemoryTotal, d.MemoryUsed = mem.Total, mem.Used
	}
	if u, ret := h.GetUtilizationRates(); check("utilization", ret) {
		d.UtilizationGPU, d.UtilizationMemory = u.Gpu, u.Memory
	}
	if cur, pending, ret := h.GetMigMode(); check("mig", ret) {
		d.MIG, d.MIGPending = cur == nv.DEVICE_MIG_ENABLE, pending == nv.DEVICE_MIG_ENABLE
	}
	var clockMHz, busBits uint32
	clockMHz, ret = h.GetMaxClockInfo(nv.CLOCK_MEM)
	if check("memory clock", ret) {
		busBits, ret = h.GetMemoryBusWidth()
		if check("memory bus width", ret) {
			d.PeakBandwidth = 2 * float64(clockMHz) * 1e6 * float64(busBits) / 8
		}
	}
	return d, fatal
}
