#!/usr/bin/env bash
# The packed product and the direct convolution at each instruction level the CPU runs (AVX2,
# AVX-512), against OpenBLAS's sgemm, on the benchmark models' shapes: see tools/bench/kernels.c.
#
#   tools/bench/kernels.sh
#
# Needs clang (the compiler SwiftPM builds CKernels with; cc otherwise) and libopenblas-dev.
set -euo pipefail
cd "$(dirname "$0")/../.."
work=".build/bench"
mkdir -p "$work"
"$(command -v clang || echo cc)" -O3 -Wno-psabi -ISources/CKernels/include -o "$work/kernels" tools/bench/kernels.c Sources/CKernels/kernels.c -lopenblas -lm
"$work/kernels"
