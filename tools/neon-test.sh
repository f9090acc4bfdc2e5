#!/bin/sh
# neon-test.sh — cross-compiles the kernel and quantizer tests for aarch64 (NEON
# tables, the portable quantizer code) and runs them under qemu-user. Only the
# kernels, common.c and tensor.c go in, so no arm64
# tokenizer libraries are needed. Runs under two CPUs (see below); each run ends with
# "N passed, N failed"; exit status 0 when both pass. Needs: apt-get install -y gcc-aarch64-linux-gnu qemu-user
#   usage: sh tools/neon-test.sh [TEST_FILTER...]    (default filters: kernels quant)
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
  -o "$OUT/kernel_tests" tests/main.c tests/test_kernels.c tests/test_quant.c \
  src/kernels/kernels_ref.c src/kernels/kernels_neon.c src/kernels/drivers.c src/kernels/cpu.c src/kernels/quant.c \
  src/base/common.c src/base/tensor.c -lm
[ $# -gt 0 ] || set -- kernels quant
# Twice: on a CPU with FEAT_DotProd and FEAT_I8MM (qemu's "max": the neon-dotprod and
# neon-i8mm tables run and are checked), and on one without (Cortex-A53, ARMv8.0: only
# the plain neon table; the variants must report themselves unavailable).
rc=0
for cpu in ${NEON_TEST_CPUS:-max cortex-a53}; do
  echo "== qemu-aarch64 -cpu $cpu"
  log="$OUT/kernel_tests-$cpu.log"
  if "$QEMU" -cpu "$cpu" -L "$SYSROOT" "$OUT/kernel_tests" "$@" >"$log" 2>&1; then :; else rc=1; fi
  cat "$log"
  case "$cpu:$*" in
    "max:kernels quant")
      grep -q "neon-i8mm q4_0 int8 activations" "$log" && grep -q "neon-dotprod q8_0 int8 activations" "$log" ||
        { echo "neon-test: -cpu max ran without the neon-dotprod/neon-i8mm tables" >&2; rc=1; } ;;
    "cortex-a53:kernels quant")
      ! grep -q "neon-dotprod\|neon-i8mm" "$log" ||
        { echo "neon-test: -cpu cortex-a53 (no SDOT/SMMLA) ran a neon-dotprod/neon-i8mm table" >&2; rc=1; } ;;
  esac
done
exit $rc
