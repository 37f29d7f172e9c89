// Package gpuexec runs feature preprocessing on executors and routes each
// slice of data to one the policy allows.
//
// It owns the Executor interface, Location (what residency policy reads),
// the Plan of feature ops, the CPU executor that is the reference
// implementation of every op, and the Router. The CUDA driver API, NVML and
// Arrow Flight live in sub-packages.
package gpuexec
