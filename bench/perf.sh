#!/bin/sh
# bench/perf.sh — reproduces the table of docs/PERFORMANCE.md.
#
# A random-weight Qwen2.5-1.5B folder (fieldlm synth, 3.1 GB bf16) is converted to
# each type in TYPES (fieldlm convert, timed with /usr/bin/time -v), then each
# package is measured:
#   * fieldlm bench -p 512 -n 128 -r 3: prefill and decode tok/s (median of 3 runs),
#     decode GB/s, the machine's read bandwidth measured in the same run, peak RSS,
#     with the weights loaded into memory (the default), and the decode again with
#     --mmap (weights run from the file mapping);
#   * time to first token of a 256-token chat prompt (bench/prompt-256.txt as the
#     user message through the chat template) with fieldlm run, best of 2 runs;
#   * peak RSS with a 4096-token context actually filled (-c 4096 -p 3968 -n 128;
#     the KV cache grows with the tokens processed), and decode speed at that depth.
# The results go to WORK/results.md (a markdown table; llama.cpp is compared on the same
# files in the same run by bench/vs-llama.sh, not here) and
# stdout. Big files stay in WORK (default /tmp/fieldlm-perf), never in the repo.
#
# usage (from the repository root): sh bench/perf.sh [WORK]
#   FLM=build/fieldlm  THREADS=2  TYPES="f16 q8_0 q4_0"  PROMPT=512  DECODE=128  REPEAT=3
#   CTX=4096 (0 skips the long-context run)   SRC=DIR (an existing synth folder)
# When `fieldlm convert` is not available, the bf16 folder itself is measured.
set -eu

FLM=${FLM:-build/fieldlm}
WORK=${1:-/tmp/fieldlm-perf}
THREADS=${THREADS:-2}
TYPES=${TYPES:-"f16 q8_0 q4_0"}
PROMPT=${PROMPT:-512}
DECODE=${DECODE:-128}
REPEAT=${REPEAT:-3}
CTX=${CTX:-4096}
SRC=${SRC:-$WORK/qwen2.5-1.5b}
CHAT_PROMPT=bench/prompt-256.txt

[ -x "$FLM" ] || { echo "perf.sh: $FLM not found (run make first)" >&2; exit 1; }
[ -f "$CHAT_PROMPT" ] || { echo "perf.sh: run from the repository root ($CHAT_PROMPT missing)" >&2; exit 1; }
mkdir -p "$WORK"

# jget FILE KEY: the value of "KEY": in a one-line JSON object (first match).
jget() { sed -n "s/.*\"$2\": \([^,}]*\).*/\1/p" "$1" | head -n 1 | tr -d '"'; }

if [ ! -f "$SRC/config.json" ]; then
    echo "perf.sh: synth qwen2.5-1.5b -> $SRC" >&2
    "$FLM" synth --preset qwen2.5-1.5b -o "$SRC" >&2
fi

MODELS=""
if "$FLM" convert --help >/dev/null 2>&1; then
    for T in $TYPES; do
        OUT=$WORK/qwen2.5-1.5b-$T.gguf
        if [ ! -f "$OUT" ]; then
            echo "perf.sh: convert --type $T -> $OUT" >&2
            sync
            /usr/bin/time -v "$FLM" convert "$SRC" -o "$OUT" --type "$T" >"$WORK/convert-$T.out" 2>"$WORK/convert-$T.log" ||
                { cat "$WORK/convert-$T.log" >&2; exit 1; }
        fi
        MODELS="$MODELS $T:$OUT"
    done
else
    echo "perf.sh: 'fieldlm convert' is not available; measuring the bf16 folder only" >&2
    MODELS="bf16:$SRC"
fi

# Other processes on the cores distort everything (a 2-thread decode waits for a
# descheduled thread at every matrix product): say so in the results.
load_start=$(cut -d' ' -f1 /proc/loadavg 2>/dev/null || echo "?")
if awk -v l="$load_start" 'BEGIN { exit !(l + 0 > 0.5) }'; then
    echo "perf.sh: warning: load average $load_start before the measurements; other processes compete for the cores" >&2
fi

HAVE_RUN=0
"$FLM" run --help >/dev/null 2>&1 && HAVE_RUN=1

for M in $MODELS; do
    T=${M%%:*}
    P=${M#*:}
    echo "perf.sh: $T: bench -p $PROMPT -n $DECODE -t $THREADS" >&2
    # touch the weights once so every measurement starts from the page cache
    cat "$P" >/dev/null 2>&1 || cat "$P"/*.safetensors >/dev/null
    "$FLM" bench -m "$P" -p "$PROMPT" -n "$DECODE" -t "$THREADS" -r "$REPEAT" --json >"$WORK/bench-$T.json"
    echo "perf.sh: $T: the same with --mmap" >&2
    "$FLM" bench -m "$P" -p "$PROMPT" -n "$DECODE" -t "$THREADS" -r "$REPEAT" --mmap --no-membw --json >"$WORK/mmap-$T.json"
    best=""
    if [ "$HAVE_RUN" = 1 ]; then
        echo "perf.sh: $T: time to first token (256-token chat prompt)" >&2
        for i in 1 2; do
            if "$FLM" run -m "$P" -p "$(cat "$CHAT_PROMPT")" -n 1 --greedy -t "$THREADS" -c 1024 --json \
                >"$WORK/ttft-$T.json" 2>"$WORK/ttft-$T.err"; then
                t=$(jget "$WORK/ttft-$T.json" ttft_s)
                best=$(awk -v a="$best" -v b="$t" 'BEGIN { print (a == "" || b < a) ? b : a }')
            else
                echo "perf.sh: $T: fieldlm run failed ($(cat "$WORK/ttft-$T.err")); timing a 256-token prefill instead" >&2
                break
            fi
        done
    fi
    if [ -n "$best" ]; then
        echo "{\"ttft_s\": $best, \"prompt_tokens\": $(jget "$WORK/ttft-$T.json" prompt_tokens), \"how\": \"run\"}" >"$WORK/ttft-$T.sum"
    else
        "$FLM" bench -m "$P" -p 256 -n 0 -t "$THREADS" --no-membw --json >"$WORK/ttft-$T.json"
        echo "{\"ttft_s\": $(jget "$WORK/ttft-$T.json" prefill_s), \"prompt_tokens\": 256, \"how\": \"bench-prefill\"}" >"$WORK/ttft-$T.sum"
    fi
    if [ "$CTX" -gt 0 ]; then
        echo "perf.sh: $T: context $CTX filled (prefill $((CTX - DECODE)), decode $DECODE)" >&2
        "$FLM" bench -m "$P" -c "$CTX" -p $((CTX - DECODE)) -n "$DECODE" -t "$THREADS" --no-membw --json >"$WORK/ctx-$T.json"
    fi
done

{
    first=${MODELS# }
    first=${first%% *}
    echo "machine: $(lscpu | sed -n 's/^Model name: *//p' | head -n 1), $(nproc) CPUs; kernels: $(jget "$WORK/bench-${first%%:*}.json" kernels); threads: $THREADS; load average $load_start before, $(cut -d' ' -f1 /proc/loadavg 2>/dev/null || echo "?") after"
    echo
    echo "| type | prefill $PROMPT tok/s | decode tok/s | decode GB/s | measured bandwidth GB/s | decode / bandwidth | decode step median / slowest | load into memory | decode tok/s with --mmap (slowest step) | TTFT, 256-token chat prompt | peak RSS (p$PROMPT+n$DECODE) | peak RSS, $CTX ctx filled | decode tok/s at $CTX ctx | convert time, peak RSS |"
    echo "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
    for M in $MODELS; do
        T=${M%%:*}
        B=$WORK/bench-$T.json
        pf=$(jget "$B" prefill_tok_s); dc=$(jget "$B" decode_tok_s); gb=$(jget "$B" decode_gb_s)
        bw=$(jget "$B" membw_gb_s); pct=$(jget "$B" decode_membw_pct); rss=$(jget "$B" peak_rss_mb)
        smed=$(jget "$B" decode_step_median_ms); smax=$(jget "$B" decode_step_max_ms); ld=$(jget "$B" load_s)
        mdc=$(jget "$WORK/mmap-$T.json" decode_tok_s); mmax=$(jget "$WORK/mmap-$T.json" decode_step_max_ms)
        tt=$(jget "$WORK/ttft-$T.sum" ttft_s); how=$(jget "$WORK/ttft-$T.sum" how)
        if [ -f "$WORK/ctx-$T.json" ] && [ "$CTX" -gt 0 ]; then
            crss=$(jget "$WORK/ctx-$T.json" peak_rss_mb); cdec=$(jget "$WORK/ctx-$T.json" decode_tok_s)
        else
            crss=-; cdec=-
        fi
        conv=-
        if [ -f "$WORK/convert-$T.log" ]; then
            wall=$(sed -n 's/.*Elapsed (wall clock) time (h:mm:ss or m:ss): //p' "$WORK/convert-$T.log")
            kb=$(sed -n 's/.*Maximum resident set size (kbytes): //p' "$WORK/convert-$T.log")
            conv="$wall, $(awk -v k="$kb" 'BEGIN { printf "%.0f MiB", k / 1024 }')"
        fi
        awk -v t="$T" -v pf="$pf" -v dc="$dc" -v gb="$gb" -v bw="$bw" -v pct="$pct" -v rss="$rss" -v tt="$tt" \
            -v how="$how" -v crss="$crss" -v cdec="$cdec" -v conv="$conv" \
            -v smed="$smed" -v smax="$smax" -v ld="$ld" -v mdc="$mdc" -v mmax="$mmax" 'BEGIN {
            note = (how == "run") ? "" : " (bench prefill)"
            c1 = (crss == "-") ? "-" : sprintf("%.0f MiB", crss)
            c2 = (cdec == "-") ? "-" : sprintf("%.1f", cdec)
            printf "| %s | %.1f | %.1f | %.1f | %.1f | %.0f%% | %.1f / %.1f ms | %.2f s | %.1f (%.0f ms) | %.3f s%s | %.0f MiB | %s | %s | %s |\n",
                t, pf, dc, gb, bw, pct, smed, smax, ld, mdc, mmax, tt, note, rss, c1, c2, conv
        }'
    done
    echo
    echo "llama.cpp on the same files in the same run: LLAMA_BENCH=/path/to/llama-bench sh bench/vs-llama.sh"
} | tee "$WORK/results.md"
