#!/bin/sh
# Converts a synthetic Qwen2.5-1.5B checkpoint (3.1 GB bf16, `fieldlm synth`) to a q8_0
# package and reports wall time and peak RSS from /usr/bin/time -v (issue 4: peak RSS
# must stay within 1 GB; the seed deployment needed a ~128 GB host and 30-35 minutes).
#   sh bench/convert.sh [WORK_DIR] [TYPE]     (default /tmp/fieldlm-convert-bench, q8_0)
set -eu
B=${BUILD:-build}/fieldlm
W=${1:-/tmp/fieldlm-convert-bench}
T=${2:-q8_0}
mkdir -p "$W"
[ -f "$W/qwen2.5-1.5b/model.safetensors" ] || "$B" synth --preset qwen2.5-1.5b -o "$W/qwen2.5-1.5b"
sync
/usr/bin/time -v "$B" convert "$W/qwen2.5-1.5b" -o "$W/qwen2.5-1.5b-$T.gguf" --type "$T" -q 2> "$W/time.txt" || { cat "$W/time.txt"; exit 1; }
grep -E "^convert:" "$W/time.txt"
wall=$(grep "Elapsed (wall clock)" "$W/time.txt" | sed 's/.*: //')
rss=$(grep "Maximum resident set size" "$W/time.txt" | sed 's/.*: //')
echo "input:  $(du -h "$W/qwen2.5-1.5b/model.safetensors" | cut -f1) bf16 safetensors"
echo "output: $(du -h "$W/qwen2.5-1.5b-$T.gguf" | cut -f1) $T package"
echo "wall time: $wall; peak RSS: $rss kB ($(( rss / 1024 )) MiB; limit 1024 MiB: $( [ "$rss" -le 1048576 ] && echo within || echo EXCEEDED))"
