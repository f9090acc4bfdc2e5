#!/bin/sh
# Kernel benchmark: single-thread matvec GB/s per dtype and kernel table vs the
# core's read bandwidth, plus 64-token prefill GFLOP/s (see docs/KERNELS.md).
# Builds from the kernel sources alone (no tokenizer libraries needed).
# Usage (from the repository root): sh bench/kernels.sh [TABLE...]
set -e
OUT=build/bench
mkdir -p $OUT
F="${BENCH_CFLAGS:-} -std=c11 -D_GNU_SOURCE -O2 -g -pthread -Iinclude -Isrc -Wall -Wextra"
SRC="bench/bench_kernels.c src/kernels/kernels_ref.c src/kernels/drivers.c src/kernels/cpu.c src/base/common.c src/base/tensor.c"
case "$(${CC:-cc} -dumpmachine)" in
x86_64*)
  ${CC:-cc} $F -mavx2 -mfma -mf16c -c src/kernels/kernels_avx2.c -o $OUT/kernels_avx2.o
  ${CC:-cc} $F -mavx512f -mavx512bw -mavx512vl -mavx512dq -mfma -mf16c -mavx2 -c src/kernels/kernels_avx512.c -o $OUT/kernels_avx512.o
  EXTRA="$OUT/kernels_avx2.o $OUT/kernels_avx512.o" ;;
aarch64*) EXTRA="src/kernels/kernels_neon.c" ;;
*) EXTRA="" ;;
esac
${CC:-cc} $F -o $OUT/bench_kernels $SRC $EXTRA -lm
exec $OUT/bench_kernels "$@"
