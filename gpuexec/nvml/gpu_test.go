package nvml

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestGPUTelemetry is the NVML part of the GPU check (scripts/gpu-check.sh):
// with SLUICE_GPU=1 it reads the real devices, and no NVML is a failure;
// with SLUICE_GPU=fake it reads go-nvml's mock DGX H100. It writes the
// report section 00-telemetry.md into SLUICE_GPU_REPORT.
func TestGPUTelemetry(t *testing.T) {
	var opts Options
	switch os.Getenv("SLUICE_GPU") {
	case "1":
	case "fake":
		opts.Library = dgx(t)
	default:
		t.Skip("GPU check: set SLUICE_GPU=1 on a machine with an NVIDIA GPU, or SLUICE_GPU=fake to dry-run it")
	}
	m, err := Open(opts)
	if err != nil {
		t.Fatalf("NVML: %v", err)
	}
	defer m.Close()
	tel, err := m.Telemetry()
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	b.WriteString("## Devices (NVML)\n\n")
	if opts.Library != nil {
		b.WriteString("**Dry run on go-nvml's mock DGX H100.**\n\n")
	}
	fmt.Fprintf(&b, "Driver %s, CUDA %d.%d.\n\n", tel.DriverVersion, tel.CUDAVersion/1000, tel.CUDAVersion%1000/10)
	b.WriteString("| # | name | UUID | memory used / total | GPU / memory utilization | MIG | peak bandwidth |\n|---:|---|---|---:|---:|---|---:|\n")
	for _, d := range tel.Devices {
		mig := "off"
		if d.MIG {
			mig = "on"
		}
		fmt.Fprintf(&b, "| %d | %s | %s | %.1f / %.1f GiB | %d%% / %d%% | %s | %.0f GB/s |\n", d.Index, d.Name, d.UUID,
			float64(d.MemoryUsed)/(1<<30), float64(d.MemoryTotal)/(1<<30), d.UtilizationGPU, d.UtilizationMemory, mig, d.PeakBandwidth/1e9)
		if len(d.Unsupported) > 0 {
			fmt.Fprintf(&b, "\nDevice %d does not report: %s.\n", d.Index, strings.Join(d.Unsupported, ", "))
		}
	}
	dir := os.Getenv("SLUICE_GPU_REPORT")
	if dir == "" {
		dir = t.TempDir()
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "00-telemetry.md"), []byte(b.String()+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Log(b.String())
}
