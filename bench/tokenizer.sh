#!/bin/sh
# Tokenizer benchmark: load time and one-core encode/decode MB/s on the KCC CSV files.
# Usage (from the repository root): sh bench/tokenizer.sh [MODEL_DIR]
set -e
make -s build/libfieldlm.a
mkdir -p build/bench
cc -std=c11 -D_GNU_SOURCE -O2 -Iinclude -Isrc -o build/bench/bench_tokenizer bench/bench_tokenizer.c \
  build/libfieldlm.a $(pkg-config --libs libutf8proc libpcre2-8 2>/dev/null || echo -lutf8proc -lpcre2-8) -lm -pthread
exec build/bench/bench_tokenizer "${1:-models/kcc-advisor}"
