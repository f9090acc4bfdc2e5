#!/bin/sh
# Measures how far each package type of the bundled kcc-advisor model is from
# transformers (fp32 reference): mean KL, top-1 agreement, max |logit error|, greedy
# agreement. Prints a Markdown table (used in docs/FIDELITY.md).
#   sh bench/fidelity.sh [BUILD_DIR]
set -eu
B=${1:-build}/fieldlm
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
row() { # label model ref [extra...]
  label=$1; model=$2; ref=$3; shift 3
  "$B" verify -m "$model" --reference "$ref" --tol 1e9 --json "$@" | python3 -c '
import json, sys
d = json.load(sys.stdin); cs = d["cases"]
pos = sum(c["n_input"] for c in cs)
kl = sum(c["mean_kl"] * c["n_input"] for c in cs) / pos
top1 = sum(c["top1_agree"] for c in cs) / pos
err = max(c["max_abs_err"] for c in cs)
g = sum(c["greedy_compared"] for c in cs); gt = sum(c["greedy_total"] for c in cs)
diff = [c["greedy_first_diff"] for c in cs if c["greedy_first_diff"] >= 0]
print("| %s | %.2e | %.2f%% | %.3g | %d/%d%s |" % (sys.argv[1], kl, 100 * top1, err, g, gt,
      (" (first diff at steps %s)" % ",".join(map(str, diff))) if diff else ""))' "$label"
}
echo "| package | mean KL | top-1 | max abs logit err | greedy steps matching |"
echo "| --- | --- | --- | --- | --- |"
row "HF folder (bf16 weights, f32 compute)" models/kcc-advisor tests/data/kcc-advisor
for t in f32 bf16 f16 q8_0 q4_0; do
  "$B" convert models/kcc-advisor -o "$T/kcc-$t.gguf" --type "$t" -q 2>/dev/null
  row "fieldlm $t package" "$T/kcc-$t.gguf" tests/data/kcc-advisor
done
row "llama.cpp's q8_0 file (gguf-peer)" tests/data/gguf-peer/kcc-advisor-q8_0.gguf tests/data/kcc-advisor
row "HF folder + LoRA merged at load" models/kcc-advisor tests/data/kcc-advisor-lora --lora tests/data/kcc-advisor-lora
"$B" convert models/kcc-advisor --lora tests/data/kcc-advisor-lora -o "$T/kcc-lora-q8_0.gguf" --type q8_0 -q 2>/dev/null
row "q8_0 package with LoRA merged" "$T/kcc-lora-q8_0.gguf" tests/data/kcc-advisor-lora
