#!/bin/sh
# logits-fingerprint.sh — a fingerprint of what the forward pass computes, to show that a
# refactor changed nothing: sha256 (first 16 hex) of `fieldlm logits` for the bundled model
# (HF folder, + LoRA), tests/data/tiny-qwen2, and their f32/f16/q8_0/q4_0 packages, under the
# default and the scalar kernels, plus the sha256 of every package written.
# Usage: sh tools/logits-fingerprint.sh [BIN] > before.txt; (change) ...; diff before.txt after.txt
set -eu
cd "$(dirname "$0")/.."
BIN=${1:-build/fieldlm}
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
IDS=151644,8948,198,2610,525,264,10950,17847,13,151645,198,151644,872,198,3838,374,279,1850,882,311,9226,33053,30,151645,198
for ty in f32 f16 q8_0 q4_0; do
  $BIN convert models/kcc-advisor --lora tests/data/kcc-advisor-lora -o "$T/kl-$ty.gguf" --type $ty -q 2>/dev/null
  $BIN convert tests/data/tiny-qwen2 -o "$T/tiny-$ty.gguf" --type $ty -q 2>/dev/null
done
for m in models/kcc-advisor tests/data/tiny-qwen2 "$T"/*.gguf; do
  for k in default scalar; do
    ids=$IDS; case $m in *tiny*) ids=1,2,3,4,5,6,7,8,9,10,11,12 ;; esac
    if [ $k = scalar ]; then FLM_KERNELS=scalar $BIN logits -m "$m" --ids $ids -o "$T/out.bin" 2>/dev/null
    else $BIN logits -m "$m" --ids $ids -o "$T/out.bin" 2>/dev/null; fi
    echo "$(basename "$m") $k $(sha256sum <"$T/out.bin" | cut -c1-16)"
  done
done
$BIN logits -m models/kcc-advisor --lora tests/data/kcc-advisor-lora --ids $IDS -o "$T/out.bin" 2>/dev/null
echo "kcc+lora default $(sha256sum <"$T/out.bin" | cut -c1-16)"
(cd "$T" && sha256sum ./*.gguf | sed 's| \./| |')
