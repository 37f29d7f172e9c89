// Package cuda runs gpuexec plans on NVIDIA GPUs through the CUDA driver
// API, loaded at run time: no CUDA toolkit, no cgo, only the driver's
// libcuda.so.1.
//
// It owns the Driver interface (the calls the executor makes), its
// implementation over purego, the kernels (PTX generated from hand-written
// LLVM IR in kernels/, embedded in the binary) and Executor, a
// gpuexec.Executor of kind "cuda". Each device is driven by one goroutine
// locked to an OS thread that holds the device's primary context, so no
// other goroutine ever touches CUDA state. When the library or a device is
// absent, New returns an error wrapping gpuexec.ErrUnavailable; nothing in
// this package panics for want of a GPU.
package cuda
