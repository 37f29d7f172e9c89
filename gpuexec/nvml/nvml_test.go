package nvml

import (
	"errors"
	"strings"
	"testing"

	nv "github.com/NVIDIA/go-nvml/pkg/nvml"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock/dgxh100"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock/server"
	"github.com/sluice-dev/sluice/gpuexec"
)

// dgx is go-nvml's mock of an 8 x H100 SXM5 server, with the calls it
// leaves out (utilization, clocks, bus width) answered like an H100.
func dgx(t *testing.T) *server.Server {
	t.Helper()
	s := dgxh100.New()
	for i, d := range s.Devices {
		d := d.(*server.Device)
		d.MemoryInfo.Used = uint64(i) << 30
		d.GetUtilizationRatesFunc = func() (nv.Utilization, nv.Return) {
			return nv.Utilization{Gpu: uint32(10 * i), Memory: uint32(5 * i)}, nv.SUCCESS
		}
		d.GetMaxClockInfoFunc = func(c nv.ClockType) (uint32, nv.Return) {
			if c != nv.CLOCK_MEM {
				t.Errorf("clock %v asked, want CLOCK_MEM", c)
			}
			return 2619, nv.SUCCESS
		}
		d.GetMemoryBusWidthFunc = func() (uint32, nv.Return) { return 5120, nv.SUCCESS }
	}
	return s
}

func TestTelemetry(t *testing.T) {
	s := dgx(t)
	s.Devices[3].(*server.Device).MigMode = nv.DEVICE_MIG_ENABLE
	m, err := Open(Options{Library: s})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	tel, err := m.Telemetry()
	if err != nil {
		t.Fatal(err)
	}
	if tel.DriverVersion != "550.54.15" || tel.CUDAVersion != 12040 {
		t.Errorf("driver %q cuda %d", tel.DriverVersion, tel.CUDAVersion)
	}
	if len(tel.Devices) != 8 {
		t.Fatalf("%d devices, want 8", len(tel.Devices))
	}
	uuids := map[string]bool{}
	for i, d := range tel.Devices {
		if d.Index != i || !strings.Contains(d.Name, "H100") || d.UUID == "" {
			t.Errorf("device %d: %+v", i, d)
		}
		uuids[d.UUID] = true
		if d.MemoryTotal != 81920<<20 || d.MemoryUsed != uint64(i)<<30 {
			t.Errorf("device %d memory %d/%d", i, d.MemoryUsed, d.MemoryTotal)
		}
		if d.UtilizationGPU != uint32(10*i) || d.UtilizationMemory != uint32(5*i) {
			t.Errorf("device %d utilization %d/%d", i, d.UtilizationGPU, d.UtilizationMemory)
		}
		if d.MIG != (i == 3) {
			t.Errorf("device %d MIG %v", i, d.MIG)
		}
		// H100 SXM5: 2 x 2619 MHz x 5120 bits / 8 = 3.35 TB/s.
		if d.PeakBandwidth != 2*2619e6*640 {
			t.Errorf("device %d peak bandwidth %g", i, d.PeakBandwidth)
		}
		if len(d.Unsupported) > 0 {
			t.Errorf("device %d unsupported %v", i, d.Unsupported)
		}
	}
	if len(uuids) != 8 {
		t.Errorf("UUIDs not distinct: %v", uuids)
	}
}

// A value a device does not report is left out, not an error; a lost GPU
// is an error.
func TestTelemetryPartial(t *testing.T) {
	s := dgx(t)
	s.Devices[0].(*server.Device).GetUtilizationRatesFunc = func() (nv.Utilization, nv.Return) {
		return nv.Utilization{}, nv.ERROR_NOT_SUPPORTED // as under MIG
	}
	m, err := Open(Options{Library: s})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	tel, err := m.Telemetry()
	if err != nil {
		t.Fatal(err)
	}
	if d := tel.Devices[0]; d.UtilizationGPU != 0 || len(d.Unsupported) != 1 || d.Unsupported[0] != "utilization" {
		t.Errorf("device 0: %+v", d)
	}

	s.Devices[5].(*server.Device).GetMemoryInfoFunc = func() (nv.Memory, nv.Return) {
		return nv.Memory{}, nv.ERROR_GPU_IS_LOST
	}
	tel, err = m.Telemetry()
	if !errors.Is(err, gpuexec.ErrUnavailable) || !strings.Contains(err.Error(), "device 5") {
		t.Errorf("lost GPU: %v, want ErrUnavailable naming device 5", err)
	}
	if len(tel.Devices) != 7 {
		t.Errorf("%d devices reported, want the 7 still there", len(tel.Devices))
	}
}

func TestOpenUnavailable(t *testing.T) {
	tests := []struct {
		name string
		lib  func() nv.Interface
		want string
	}{
		{"no library", func() nv.Interface {
			return &mock.Interface{InitFunc: func() nv.Return { return nv.ERROR_LIBRARY_NOT_FOUND }}
		}, "libnvidia-ml.so.1 not found"},
		{"driver not loaded", func() nv.Interface {
			return &mock.Interface{InitFunc: func() nv.Return { return nv.ERROR_DRIVER_NOT_LOADED }}
		}, "DRIVER_NOT_LOADED"},
		{"no device", func() nv.Interface {
			return &mock.Interface{
				InitFunc:           func() nv.Return { return nv.SUCCESS },
				DeviceGetCountFunc: func() (int, nv.Return) { return 0, nv.SUCCESS },
				ShutdownFunc:       func() nv.Return { return nv.SUCCESS },
			}
		}, "no device"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			lib := tt.lib()
			m, err := Open(Options{Library: lib})
			if err == nil {
				m.Close()
				t.Fatal("Open succeeded")
			}
			if !errors.Is(err, gpuexec.ErrUnavailable) || !strings.Contains(strings.ToLower(err.Error()), strings.ToLower(tt.want)) {
				t.Errorf("err = %v, want ErrUnavailable with %q", err, tt.want)
			}
			if ml, ok := lib.(*mock.Interface); ok && len(ml.InitCalls()) > 0 && len(ml.DeviceGetCountCalls()) > 0 && len(ml.ShutdownCalls()) != 1 {
				t.Errorf("NVML initialized and not shut down")
			}
		})
	}
}

// The real library: absent on a machine without NVIDIA drivers (this
// package must then build, run and say so); present on a GPU machine.
func TestOpenReal(t *testing.T) {
	m, err := Open(Options{})
	if err != nil {
		if !errors.Is(err, gpuexec.ErrUnavailable) {
			t.Fatalf("Open = %v, want nil or ErrUnavailable", err)
		}
		t.Logf("no NVML here: %v", err)
		return
	}
	defer m.Close()
	tel, err := m.Telemetry()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%+v", tel)
}

func TestClose(t *testing.T) {
	s := dgx(t)
	m, err := Open(Options{Library: s})
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Telemetry(); !errors.Is(err, gpuexec.ErrUnavailable) {
		t.Errorf("Telemetry after Close = %v", err)
	}
	if n := len(s.ShutdownCalls()); n != 1 {
		t.Errorf("%d Shutdown calls, want 1", n)
	}
}
