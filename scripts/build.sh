#!/usr/bin/env bash
# Builds the native CLI (target/release/hearth) and the wasm engine with its
# JS bindings (web/pkg/). Assumes scripts/setup.sh has run.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$ROOT"
trap phase_summary EXIT

phase "build: native CLI"
"$NATIVE_CARGO" build --release --bin hearth

phase "build: default model package"
# The web model package the demo and the npm package load (models/, git-ignored).
package="$MODELS/SmolLM2-135M-Instruct-q4_1"
gguf="$MODELS/SmolLM2-135M-Instruct.Q4_1.gguf"
if [ -f "$package/manifest.json" ] && [ "$package/manifest.json" -nt "$gguf" ] \
   && [ "$package/manifest.json" -nt target/release/hearth ]; then
  echo "up to date: $package"
else
  target/release/hearth convert "$gguf" "$package" --name SmolLM2-135M-Instruct
fi

phase "build: wasm engine"
wasm_cargo build --profile wasm-release --lib --target wasm32-unknown-unknown
# Symbol names are 1.7 MB of the module and only help a debugger.
wasm-bindgen --target web --remove-name-section --out-dir web/pkg \
  target/wasm32-unknown-unknown/wasm-release/hearth_llm.wasm
ls -l web/pkg/hearth_llm_bg.wasm | awk '{printf "web/pkg/hearth_llm_bg.wasm: %.1f KiB\n", $5/1024}'

phase "build: npm package (web/dist)"
web/tools/build-package.sh

phase "build: demo site (web/site)"
web/tools/build-site.sh
