#!/bin/sh
# Builds the sluice binary exactly as the container image does: the
# Dockerfile runs this script, and deploy's test runs it too, so the image
# build and CI cannot drift apart.
#
# Usage: deploy/build.sh OUTPUT
#
# CGO is on because GPU telemetry uses go-nvml, which is cgo; it dlopens
# libnvidia-ml.so.1 at run time, and the CUDA executor dlopens libcuda.so.1
# (purego), so neither is linked: the binary needs only glibc and runs on
# distroless/cc, with the driver libraries mounted from the host by the
# NVIDIA container toolkit. -trimpath keeps build paths out of the binary.
set -eu
out=${1:?usage: deploy/build.sh OUTPUT}
cd "$(dirname "$0")/.."
export CGO_ENABLED=1
export CGO_CFLAGS="${CGO_CFLAGS:--O2 -Wno-deprecated-declarations}"
exec go build -trimpath -buildvcs=false -ldflags="-s -w" -o "$out" ./cmd/sluice
