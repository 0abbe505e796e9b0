#!/usr/bin/env bash
# Builds the native CLI (target/release/hearth) and the wasm engine with its
# JS bindings: web/pkg/ (single-threaded) and web/pkg-threads/ (wasm threads,
# for cross-origin-isolated pages). Assumes scripts/setup.sh has run.
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

# The threaded build: the CPU backend on several cores, for cross-origin-isolated pages.
phase "build: wasm engine (threads)"
wasm_threads_cargo build --profile wasm-release --lib --target wasm32-unknown-unknown
rm -rf web/pkg-threads
wasm-bindgen --target web --remove-name-section --out-dir web/pkg-threads \
  target/wasm-threads/wasm32-unknown-unknown/wasm-release/hearth_llm.wasm
# wasm-bindgen-rayon's worker script imports the bindings as '../../..' (the
# package folder, which a bundler resolves to its entry point); name the file,
# so that it also loads without a bundler (a browser cannot import a folder).
helper=$(find web/pkg-threads/snippets -name workerHelpers.js)
grep -q "import('../../..')" "$helper" || { echo "build: $helper no longer imports '../../..': update this fix" >&2; exit 1; }
sed -i "s|import('../../..')|import('../../../hearth_llm.js')|" "$helper"
ls -l web/pkg-threads/hearth_llm_bg.wasm | awk '{printf "web/pkg-threads/hearth_llm_bg.wasm: %.1f KiB\n", $5/1024}'

phase "build: npm package (web/dist)"
web/tools/build-package.sh

phase "build: demo site (web/site)"
web/tools/build-site.sh
