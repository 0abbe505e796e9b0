#!/usr/bin/env bash
# Builds the npm package hearth-llm into web/dist/: copies the wasm-bindgen
# output (web/pkg/, made by scripts/build.sh) into dist/wasm/, then compiles
# src/ with tsc (ESM + .d.ts). Needs `npm ci --prefix web` first (typescript).
set -euo pipefail
WEB="$(cd "$(dirname "$0")/.." && pwd)"
cd "$WEB"

for f in hearth_llm.js hearth_llm.d.ts hearth_llm_bg.wasm hearth_llm_bg.wasm.d.ts; do
  if [ ! -f "pkg/$f" ]; then
    echo "build-package: web/pkg/$f is missing: build the wasm first (scripts/build.sh)" >&2
    exit 1
  fi
done
if [ ! -x node_modules/.bin/tsc ]; then
  echo "build-package: typescript is not installed: run npm ci --prefix web" >&2
  exit 1
fi

rm -rf dist
mkdir -p dist/wasm
cp pkg/hearth_llm.js pkg/hearth_llm.d.ts pkg/hearth_llm_bg.wasm pkg/hearth_llm_bg.wasm.d.ts dist/wasm/
node_modules/.bin/tsc -p tsconfig.json
echo "build-package: web/dist/ ($(du -sh dist | cut -f1)): $(cd dist && ls *.js | tr '\n' ' ')"
