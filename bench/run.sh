#!/usr/bin/env bash
# One benchmark run, all systems on the same GGUF on this machine: hearth
# natively (`hearth bench`), llama.cpp's llama-bench (2 threads, built from
# the source llama-cpp-python vendors), hearth and wllama (@wllama/wllama,
# 2 threads) in headless Chromium; then
# docs/bench.md (table with ratios) and docs/bench.svg (chart).
# Raw results stay in .cache/bench/<time>/. Assumes scripts/build.sh has run.
set -euo pipefail
source "$(dirname "$0")/../scripts/lib.sh"
cd "$ROOT"
trap phase_summary EXIT
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-$(mktemp -d)}"
GGUF="$MODELS/SmolLM2-135M-Instruct.Q4_1.gguf"
OUT="$CACHE/bench/$(date +%Y%m%d-%H%M%S)"
mkdir -p "$OUT"

phase "bench: build llama.cpp (once)"
LLAMA_BENCH="$(bench/llama-cpp.sh)"

phase "bench: hearth native"
target/release/hearth bench -m "$GGUF" --prompt-tokens 128,512 --gen-tokens 128 --repeats 3 --json | tee "$OUT/hearth-native.jsonl"

phase "bench: hearth native, CPU backend, 2 threads"
target/release/hearth bench -m "$GGUF" --backend cpu --threads 2 --prompt-tokens 128,512 --gen-tokens 128 --repeats 3 --json | tee "$OUT/hearth-native-cpu.jsonl"

phase "bench: llama.cpp native, 2 threads"
"$LLAMA_BENCH" -m "$GGUF" -t 2 -p 128,512 -n 128 -r 3 -o jsonl | tee "$OUT/llama-cpp.jsonl"

phase "bench: wllama (npm, once)"
WLLAMA_VERSION=3.8.1
if [ ! -f "$CACHE/peers/wllama/node_modules/@wllama/wllama/package.json" ] \
   || ! grep -q "\"version\": \"$WLLAMA_VERSION\"" "$CACHE/peers/wllama/node_modules/@wllama/wllama/package.json"; then
  mkdir -p "$CACHE/peers/wllama"
  (cd "$CACHE/peers/wllama" && echo '{"private": true}' > package.json \
    && npm install --no-audit --no-fund --loglevel=error "@wllama/wllama@$WLLAMA_VERSION")
fi

phase "bench: hearth and wllama in Chromium"
node bench/browser.mjs --prompt-tokens 128,512 --gen-tokens 128 --repeats 1 --threads 2 | tee "$OUT/browser.jsonl"

phase "bench: report"
node bench/report.mjs "$OUT"
