#!/usr/bin/env bash
# hearth on this machine's GPU against llama.cpp built for the same GPU
# (CUDA where nvcc is, else Vulkan where glslc is), on the same GGUF, in one
# run: prefill and decode tok/s and the ratios. For machines with a real
# GPU (bench/run.sh measures the software adapters, CPU and browser peers).
# Usage: bench/gpu-peer.sh [model.gguf] (default: the default model).
# HEARTH=path uses a hearth binary built elsewhere instead of building one.
# Writes .cache/bench/gpu-<time>/ (raw JSON) and prints a Markdown table, a
# table of hearth's GPU-only kernel choices each turned off, and a profile.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
MODEL="${1:-$MODELS/SmolLM2-135M-Instruct.Q4_1.gguf}"
[ -f "$MODEL" ] || { echo "no model at $MODEL (scripts/fetch-model.sh fetches the default one)" >&2; exit 1; }
if command -v nvcc >/dev/null; then backend=cuda
elif command -v glslc >/dev/null; then backend=vulkan
else echo "llama.cpp's GPU build needs nvcc (CUDA) or glslc (Vulkan): neither is here" >&2; exit 1; fi
LLAMA_BENCH="$(bench/llama-cpp.sh "$backend")"
HEARTH="${HEARTH:-}"
if [ -z "$HEARTH" ]; then
  cargo build --release --bin hearth >&2
  HEARTH=target/release/hearth
fi
OUT_DIR="$CACHE/bench/gpu-$(date +%Y%m%d-%H%M%S)"
mkdir -p "$OUT_DIR"
"$HEARTH" info > "$OUT_DIR/adapter.json"
"$HEARTH" bench -m "$MODEL" --prompt-tokens 128,512 --gen-tokens 128 --repeats 3 --json > "$OUT_DIR/hearth.jsonl"
"$LLAMA_BENCH" -m "$MODEL" -ngl 99 -p 128,512 -n 128 -r 3 -fa 0,1 -o json > "$OUT_DIR/llama.json"
# What each of the GPUs' own choices gives here: one run with it turned off
# each (hearth's env switches), and where a step's time goes (prefill and decode).
for variant in default HEARTH_TILED_PREFILL=0 HEARTH_CHAINED_DECODE=0 HEARTH_NORM_IN_MATMUL=0 HEARTH_ATTENTION_IN_PRODUCT=0 HEARTH_ATTENTION_RUNS=1; do
  switch=(); [ "$variant" = default ] || switch=("$variant")
  env "${switch[@]}" "$HEARTH" bench -m "$MODEL" --prompt-tokens 128,512 --gen-tokens 64 --repeats 2 --json |
    python3 -c 'import json, sys; [print(json.dumps({"variant": sys.argv[1], **json.loads(l)})) for l in sys.stdin if l.strip()]' "$variant" \
    >> "$OUT_DIR/variants.jsonl"
done
"$HEARTH" bench -m "$MODEL" --prompt-tokens 512 --gen-tokens 16 --repeats 1 --profile > "$OUT_DIR/profile.txt"
python3 bench/gpu_report.py "$OUT_DIR" "$backend" | tee "$OUT_DIR/report.md"
cat "$OUT_DIR/profile.txt"
