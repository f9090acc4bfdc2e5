#!/bin/sh
# bench/vs-llama.sh — fieldlm beside llama.cpp on the same GGUF files, in one run.
#
# A random-weight Qwen2.5-1.5B folder (`fieldlm synth --preset qwen2.5-1.5b`) is
# converted by `fieldlm convert` to each type in TYPES (cached in WORK), and every
# file is measured by both programs, interleaved, ROUNDS times (the order of the
# two alternates from round to round):
#   llama-bench -m FILE -p PROMPT -n DECODE -t THREADS -r 1 -o jsonl
#       pp512: one batch of 512 prompt tokens; tg128: 128 single-token steps from an
#       empty context (positions 0..127); each after llama-bench's own warm-up run.
#   fieldlm bench -m FILE -p PROMPT -n DECODE -t THREADS --json
#       prefill: one forward over 512 prompt tokens (after a 4-token warm-up);
#       decode: 128 single-token steps AFTER that prompt (positions 512..639), so
#       each fieldlm step also reads the 512+ cached positions (33 MB of K/V per
#       token for this shape): fieldlm's decode is measured on harder terms.
#       Its bandwidth probe (`bench --membw`, same threads) runs right after each
#       decode and the share decode GB/s / probe GB/s is reported.
# It prints the CPU (vendor, family/model, the flags the kernels care about), the
# load average, every round, and per type the medians, the ratio of medians
# fieldlm / llama.cpp, and the range of the per-round ratios.
#
# llama.cpp is not built or fetched here: give its llama-bench binary with
# LLAMA_BENCH=path. Without one, only fieldlm is measured, and the script says so.
#
# usage (from the repository root): [LLAMA_BENCH=path] sh bench/vs-llama.sh [WORK]
#   FLM=build/fieldlm  THREADS=2  ROUNDS=3  TYPES="f16 q8_0 q4_0"  PROMPT=512
#   DECODE=128  SRC=DIR (an existing synth folder)  LOCK=FILE (run each
#   measurement under `flock -x FILE`, e.g. /tmp/fieldlm-cpu.lock on a shared host)
set -eu

FLM=${FLM:-build/fieldlm}
WORK=${1:-/tmp/fieldlm-vs-llama}
THREADS=${THREADS:-2}
ROUNDS=${ROUNDS:-3}
TYPES=${TYPES:-"f16 q8_0 q4_0"}
PROMPT=${PROMPT:-512}
DECODE=${DECODE:-128}
SRC=${SRC:-$WORK/qwen2.5-1.5b}
LLAMA_BENCH=${LLAMA_BENCH:-}
LOCK=${LOCK:-}

[ -x "$FLM" ] || { echo "vs-llama.sh: $FLM not found (run make first)" >&2; exit 1; }
case "$ROUNDS" in ''|*[!0-9]*|0) echo "vs-llama.sh: ROUNDS must be a positive number" >&2; exit 1 ;; esac
if [ -z "$LLAMA_BENCH" ]; then
    echo "vs-llama.sh: no llama-bench given (set LLAMA_BENCH=/path/to/llama-bench): measuring fieldlm only, no ratios" >&2
elif [ ! -x "$LLAMA_BENCH" ]; then
    echo "vs-llama.sh: LLAMA_BENCH=$LLAMA_BENCH is not an executable file" >&2; exit 1
fi
mkdir -p "$WORK"

locked() { if [ -n "$LOCK" ]; then flock -x "$LOCK" "$@"; else "$@"; fi; }
# jget KEY: the value of "KEY": in one-line JSON on stdin (first match).
jget() { sed -n "s/.*\"$1\": *\([^,}]*\).*/\1/p" | head -n 1 | tr -d '"'; }

# ---- the CPU ----
cpu_field() { sed -n "s/^$1[[:space:]]*: *//p" /proc/cpuinfo 2>/dev/null | head -n 1; }
VENDOR=$(cpu_field vendor_id); FAMILY=$(cpu_field "cpu family"); MODEL=$(cpu_field model)
NAME=$(cpu_field "model name"); [ -n "$NAME" ] || NAME=$(cpu_field "CPU part")
FLAGS=$( (cpu_field flags; cpu_field Features) | tr ' ' '\n' | grep -E -x \
    'avx2|fma|f16c|avx512f|avx512bw|avx512vl|avx512dq|avx512_vnni|avx512vbmi|avx512_bf16|avx_vnni|amx_int8|asimddp|i8mm|sve' |
    tr '\n' ' ')
echo "cpu: ${VENDOR:-?} family ${FAMILY:-?} model ${MODEL:-?} (${NAME:-?}), $(nproc) CPUs; flags: ${FLAGS:-none of interest}"
echo "fieldlm: $FLM (source tree at $(git rev-parse --short HEAD 2>/dev/null || echo '?'))${FLM_KERNELS:+, FLM_KERNELS=$FLM_KERNELS}"
[ -n "$LLAMA_BENCH" ] && echo "llama.cpp: $LLAMA_BENCH"
echo "threads $THREADS, rounds $ROUNDS, prompt $PROMPT, decode $DECODE; load average before: $(cut -d' ' -f1-3 /proc/loadavg)"

# ---- the files ----
if [ ! -f "$SRC/config.json" ]; then
    echo "vs-llama.sh: synth qwen2.5-1.5b -> $SRC" >&2
    "$FLM" synth --preset qwen2.5-1.5b -o "$SRC" >&2
fi
for T in $TYPES; do
    F=$WORK/qwen2.5-1.5b-$T.gguf
    if [ ! -f "$F" ]; then
        echo "vs-llama.sh: convert --type $T -> $F" >&2
        "$FLM" convert "$SRC" -o "$F" --type "$T" -q >&2
    fi
    cat "$F" >/dev/null # into the page cache, as for every later round
done

# ---- the rounds: one line per (round, type, program) in $RES ----
RES=$WORK/rounds.tsv
: >"$RES"
run_llama() { # type file round
    locked "$LLAMA_BENCH" -m "$2" -p "$PROMPT" -n "$DECODE" -t "$THREADS" -r 1 -o jsonl >"$WORK/llama.jsonl" 2>"$WORK/llama.log" ||
        { cat "$WORK/llama.log" >&2; exit 1; }
    pp=$(grep "\"n_prompt\": *$PROMPT, *\"n_gen\": *0," "$WORK/llama.jsonl" | jget avg_ts)
    tg=$(grep "\"n_prompt\": *0, *\"n_gen\": *$DECODE," "$WORK/llama.jsonl" | jget avg_ts)
    printf '%s\t%s\tllama.cpp\t%s\t%s\t-\n' "$3" "$1" "$pp" "$tg" | tee -a "$RES"
}
run_flm() { # type file round
    locked "$FLM" bench -m "$2" -p "$PROMPT" -n "$DECODE" -t "$THREADS" --json >"$WORK/flm.json" 2>"$WORK/flm.log" ||
        { cat "$WORK/flm.log" >&2; exit 1; }
    printf '%s\t%s\tfieldlm\t%s\t%s\t%s\n' "$3" "$1" "$(jget prefill_tok_s <"$WORK/flm.json")" \
        "$(jget decode_tok_s <"$WORK/flm.json")" "$(jget decode_membw_pct <"$WORK/flm.json")" | tee -a "$RES"
}
echo "round	type	program	prefill tok/s	decode tok/s	fieldlm decode / --membw %"
r=1
while [ "$r" -le "$ROUNDS" ]; do
    for T in $TYPES; do
        F=$WORK/qwen2.5-1.5b-$T.gguf
        if [ -z "$LLAMA_BENCH" ]; then run_flm "$T" "$F" "$r"
        elif [ $((r % 2)) -eq 1 ]; then run_llama "$T" "$F" "$r"; run_flm "$T" "$F" "$r"
        else run_flm "$T" "$F" "$r"; run_llama "$T" "$F" "$r"; fi
    done
    r=$((r + 1))
done
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg); fieldlm kernels: $(jget kernels <"$WORK/flm.json")"

# ---- summary: medians, ratio of medians, range of per-round ratios ----
echo
echo "| type | prefill $PROMPT tok/s: llama.cpp / fieldlm (×) [per-round × range] | decode tok/s: llama.cpp / fieldlm (×) [per-round × range] | fieldlm decode / --membw |"
echo "| --- | --- | --- | --- |"
for T in $TYPES; do
    awk -F '\t' -v T="$T" '
    function med(a, n,   i, j, t) { for (i = 2; i <= n; i++) for (j = i; j > 1 && a[j-1] > a[j]; j--) { t = a[j]; a[j] = a[j-1]; a[j-1] = t }
                                   return n % 2 ? a[(n+1)/2] : (a[n/2] + a[n/2+1]) / 2 }
    function rng(a, n,   i, lo, hi) { lo = hi = a[1]; for (i = 2; i <= n; i++) { if (a[i] < lo) lo = a[i]; if (a[i] > hi) hi = a[i] }
                                    return sprintf("%.2f–%.2f", lo, hi) }
    $2 == T && $3 == "fieldlm"   { nf++; fp[nf] = $4; fd[nf] = $5; pc[nf] = $6; FP[$1] = $4; FD[$1] = $5 }
    $2 == T && $3 == "llama.cpp" { nl++; lp[nl] = $4; ld[nl] = $5; LP[$1] = $4; LD[$1] = $5 }
    END {
        if (!nf) exit
        nr = 0
        for (k in LP) if (k in FP && LP[k] > 0 && LD[k] > 0) { nr++; rp[nr] = FP[k] / LP[k]; rd[nr] = FD[k] / LD[k] }
        mfp = med(fp, nf); mfd = med(fd, nf); mpc = med(pc, nf)
        if (nl) {
            mlp = med(lp, nl); mld = med(ld, nl)
            printf "| %s | %.1f / %.1f (%.2f×) [%s] | %.1f / %.1f (%.2f×) [%s] | %.0f%% |\n", T, mlp, mfp, mfp / mlp, rng(rp, nr),
                   mld, mfd, mfd / mld, rng(rd, nr), mpc
        } else
            printf "| %s | – / %.1f | – / %.1f | %.0f%% |\n", T, mfp, mfd, mpc
    }' "$RES"
done
echo
echo "medians of $ROUNDS interleaved rounds; fieldlm decodes after the $PROMPT-token prompt, llama-bench tg$DECODE from an empty context"
[ -n "$LLAMA_BENCH" ] || echo "no llama-bench was given (LLAMA_BENCH=path): no ratios"
echo "rounds: $RES"
