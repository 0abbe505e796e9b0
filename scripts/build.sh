#!/usr/bin/env bash
# Builds the native CLI (target/release/hearth) and the wasm engine with its
# JS bindings (web/pkg/). Assumes scripts/setup.sh has run.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$ROOT"
trap phase_summary EXIT

phase "build: native CLI"
"$NATIVE_CARGO" build --release --bin hearth

phase "build: wasm engine"
wasm_cargo build --release --lib --target wasm32-unknown-unknown
wasm-bindgen --target web --out-dir web/pkg \
  target/wasm32-unknown-unknown/release/hearth_llm.wasm
ls -l web/pkg/hearth_llm_bg.wasm | awk '{printf "web/pkg/hearth_llm_bg.wasm: %.1f KiB\n", $5/1024}'
