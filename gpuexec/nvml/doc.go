// Package nvml reads GPU telemetry (devices, memory, utilization, MIG
// mode) through NVIDIA's management library, libnvidia-ml.so.1, with
// github.com/NVIDIA/go-nvml.
//
// go-nvml needs cgo to build but opens the library only at Open, so a
// binary with this package runs on machines without NVIDIA drivers: there
// Open returns an error wrapping gpuexec.ErrUnavailable, a state callers
// handle like "no GPU", not a failure.
package nvml
