#!/bin/sh
# GPU check: runs the test binaries `make gpu-check` builds (go test -c of
# gpuexec/cuda and gpuexec/nvml) on a machine with an NVIDIA GPU and the
# driver; no Go toolchain or CUDA toolkit is needed there. It checks every
# op the CUDA executor implements against the CPU executor, measures the
# fused kernel's memory bandwidth and the batch size from which the GPU
# beats the CPU end to end, and writes gpu-report.md into the report folder.
# About a minute on an H100; every step is bounded by a timeout (5 min in
# all).
#
# Usage: scripts/gpu-check.sh [BIN_DIR [REPORT_DIR]]
#   BIN_DIR     where cuda.test and nvml.test are (default bin/gpu-check)
#   REPORT_DIR  where to write the report (default $OUT, else BIN_DIR/report)
# Environment: SLUICE_GPU=fake dry-runs the check on the fake driver and
# go-nvml's mock, on any machine (the numbers then mean nothing).
# Exit status: 0 all passed, 1 a check failed, 2 no GPU here.
set -eu
bin=${1:-bin/gpu-check}
out=${2:-${OUT:-$bin/report}}
mode=${SLUICE_GPU:-1}

for b in cuda.test nvml.test; do
	if [ ! -x "$bin/$b" ]; then
		echo "gpu-check: $bin/$b missing; run 'make gpu-check' where Go is installed" >&2
		exit 1
	fi
done
if [ "$mode" != fake ] && [ ! -e /dev/nvidiactl ] && ! command -v nvidia-smi >/dev/null 2>&1; then
	echo "gpu-check: no NVIDIA GPU on this machine. Copy $bin and scripts/gpu-check.sh to one and run:" >&2
	echo "  scripts/gpu-check.sh $bin REPORT_DIR" >&2
	exit 2
fi

mkdir -p "$out"
sections="$out/sections"
rm -rf "$sections"
mkdir -p "$sections"
export SLUICE_GPU="$mode" SLUICE_GPU_REPORT="$(cd "$sections" && pwd)"
status=0
start=$(date +%s)
if command -v nvidia-smi >/dev/null 2>&1; then
	nvidia-smi >"$out/nvidia-smi.txt" 2>&1 || true
fi
# The binaries run from their package folders' view of nothing: only the
# GPU tests run (the host tests need the source tree and LLVM).
timeout 60 "$bin/nvml.test" -test.run '^TestGPU' -test.v -test.count 1 >"$out/nvml.log" 2>&1 || status=1
timeout 240 "$bin/cuda.test" -test.run '^(TestGPU|TestNewDefault$)' -test.v -test.count 1 -test.timeout 230s >"$out/cuda.log" 2>&1 || status=1
took=$(( $(date +%s) - start ))

result=PASS
[ "$status" -eq 0 ] || result=FAIL
{
	echo "# GPU check report"
	echo
	echo "Result: **$result** ($(date -u '+%Y-%m-%d %H:%M UTC'), $took s, SLUICE_GPU=$mode, host $(uname -n))."
	echo
	cat "$sections"/*.md 2>/dev/null || true
	if [ "$status" -ne 0 ]; then
		echo "## Failures"
		echo
		echo '```'
		grep -h -E -- '--- FAIL|FAIL|panic|_test.go:[0-9]+' "$out/nvml.log" "$out/cuda.log" | head -60
		echo '```'
	fi
} >"$out/gpu-report.md"
echo "gpu-check: $result in $took s; report: $out/gpu-report.md (logs: $out/cuda.log, $out/nvml.log)"
exit "$status"
