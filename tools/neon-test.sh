#!/bin/sh
# neon-test.sh — cross-compiles the kernel tests for aarch64 (NEON table) and runs
# them under qemu-user. Only the kernels, common.c and tensor.c go in, so no arm64
# tokenizer libraries are needed. Last line: "N passed, N failed"; exit status 0 on
# success. Needs: apt-get install -y gcc-aarch64-linux-gnu qemu-user
#   usage: sh tools/neon-test.sh [TEST_FILTER...]    (default filter: kernels)
set -eu
CC=${AARCH64_CC:-aarch64-linux-gnu-gcc}
QEMU=${QEMU_AARCH64:-qemu-aarch64}
SYSROOT=${AARCH64_SYSROOT:-/usr/aarch64-linux-gnu}
OUT=${BUILD_NEON:-build/neon}
command -v "$CC" >/dev/null 2>&1 || { echo "neon-test: $CC missing; run: apt-get install -y gcc-aarch64-linux-gnu qemu-user" >&2; exit 2; }
command -v "$QEMU" >/dev/null 2>&1 || { echo "neon-test: $QEMU missing; run: apt-get install -y qemu-user" >&2; exit 2; }
mkdir -p "$OUT"
$CC -std=c11 -D_GNU_SOURCE -O2 -g -pthread -Iinclude -Isrc \
  -Wall -Wextra -Wshadow -Wstrict-prototypes -Wmissing-prototypes -Wvla -Wpointer-arith ${WERROR:-} \
  -o "$OUT/kernel_tests" tests/main.c tests/test_kernels.c \
  src/kernels/kernels_ref.c src/kernels/kernels_neon.c src/kernels/drivers.c src/kernels/cpu.c src/base/common.c src/base/tensor.c -lm
[ $# -gt 0 ] || set -- kernels
exec "$QEMU" -L "$SYSROOT" "$OUT/kernel_tests" "$@"
