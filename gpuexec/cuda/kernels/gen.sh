#!/bin/sh
# Regenerates kernels.ptx from ops.ll and kernels.ll with LLVM (llvm-link,
# opt, llc; version 14 or later with the NVPTX target). No CUDA toolkit is
# needed. LLVM 14 emits PTX 7.5 for sm_86 at most; the code uses nothing
# newer, so the header is raised to .version 7.8 / .target sm_90 (the
# oldest PTX that names sm_90), which the driver JIT-compiles for
# Hopper and later.
# Usage: gen.sh [output] (default: kernels.ptx beside this script).
set -eu
out=$(realpath -m "${1:-$(dirname "$0")/kernels.ptx}")
cd "$(dirname "$0")"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
llvm-link ops.ll kernels.ll -o "$tmp/linked.bc"
opt -internalize -internalize-public-api-list=sluice_chain_kernel,sluice_hash_kernel -globaldce -O3 "$tmp/linked.bc" -o "$tmp/opt.bc"
llc -O3 -march=nvptx64 -mcpu=sm_86 -mattr=+ptx75 "$tmp/opt.bc" -o "$tmp/kernels.ptx"
sed -e 's/^\.version 7\.5$/.version 7.8/' -e 's/^\.target sm_86$/.target sm_90/' "$tmp/kernels.ptx" > "$out"
grep -q '^\.version 7\.8$' "$out"
grep -q '^\.target sm_90$' "$out"
