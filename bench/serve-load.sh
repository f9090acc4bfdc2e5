#!/bin/sh
# serve-load.sh — load bench of `fieldlm serve` (bench/serve-load.mjs): CLIENTS concurrent
# streamed chat clients (default 8) for DURATION seconds (default 300) on the bundled model,
# KCC questions from data/agri-kcc. Reports requests/s, time to first token p50/p99, tokens/s
# per client and the server's RSS over time; exits non-zero only on errors, never on slowness.
#   sh bench/serve-load.sh                         # 8 clients, 5 minutes
#   DURATION=30 sh bench/serve-load.sh             # what .ci/run runs
# Other settings: PARALLEL (server slots, 2), THREADS (per slot; default the server's), MAX_TOKENS
# (128), CTX (2048), FLM_BIN (build/fieldlm), JSON=FILE (the report as JSON).
set -eu
cd "$(dirname "$0")/.."
command -v node >/dev/null || { echo "serve-load: node is required"; exit 1; }
[ -x "${FLM_BIN:-build/fieldlm}" ] || make -j2 >/dev/null
exec node bench/serve-load.mjs
