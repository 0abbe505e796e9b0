#!/usr/bin/env bash
# Builds the npm package hearth-llm into web/dist/: copies the wasm-bindgen
# output of both wasm builds (made by scripts/build.sh) into dist/wasm/
# (web/pkg/, single-threaded) and dist/wasm-threads/ (web/pkg-threads/, wasm
# threads for the CPU backend on cross-origin-isolated pages, with its worker
# script under snippets/), then compiles src/ with tsc (ESM + .d.ts). Needs
# `npm ci --prefix web` first (typescript).
set -euo pipefail
WEB="$(cd "$(dirname "$0")/.." && pwd)"
cd "$WEB"

FILES=(hearth_llm.js hearth_llm.d.ts hearth_llm_bg.wasm hearth_llm_bg.wasm.d.ts)
for dir in pkg pkg-threads; do
  for f in "${FILES[@]}"; do
    if [ ! -f "$dir/$f" ]; then
      echo "build-package: web/$dir/$f is missing: build the wasm first (scripts/build.sh)" >&2
      exit 1
    fi
  done
done
if [ ! -x node_modules/.bin/tsc ]; then
  echo "build-package: typescript is not installed: run npm ci --prefix web" >&2
  exit 1
fi

rm -rf dist
mkdir -p dist/wasm dist/wasm-threads
cp "${FILES[@]/#/pkg/}" dist/wasm/
cp "${FILES[@]/#/pkg-threads/}" dist/wasm-threads/
cp -r pkg-threads/snippets dist/wasm-threads/
node_modules/.bin/tsc -p tsconfig.json
echo "build-package: web/dist/ ($(du -sh dist | cut -f1)): $(cd dist && ls *.js | tr '\n' ' ')"
