#!/usr/bin/env bash
# Assembles the demo as a static site in web/site/ (git-ignored) that any
# static host can serve: the page (web/demo), the npm package build
# (web/dist, at hearth/) and the default model package (at models/), then
# prints the app's size: what a first visit transfers besides the model.
# Needs web/dist (web/tools/build-package.sh) and the model package.
set -euo pipefail
WEB="$(cd "$(dirname "$0")/.." && pwd)"
ROOT="$(dirname "$WEB")"
MODEL="SmolLM2-135M-Instruct-q4_1"
SITE="$WEB/site"

[ -f "$WEB/dist/index.js" ] || { echo "build-site: web/dist is missing: run web/tools/build-package.sh" >&2; exit 1; }
[ -f "$ROOT/models/$MODEL/manifest.json" ] || { echo "build-site: models/$MODEL is missing: run scripts/build.sh" >&2; exit 1; }

rm -rf "$SITE"
mkdir -p "$SITE/models"
cp -r "$WEB/demo/." "$SITE/"
cp -r "$WEB/dist" "$SITE/hearth"
find "$SITE/hearth" -name '*.d.ts' -delete # types are for the npm package, not the page
# Hard links where the file system allows: the model is 94 MB.
cp -rl "$ROOT/models/$MODEL" "$SITE/models/" 2>/dev/null || cp -r "$ROOT/models/$MODEL" "$SITE/models/"

# The app shell: every file but the model and the threaded engine, raw and
# gzipped (what a static host with compression sends). The threaded engine
# is reported apart: a visitor loads it instead of the other one (the CPU
# backend on a cross-origin-isolated page).
shell_files() { find "$SITE" -type f -not -path "$SITE/models/*" -not -path "$SITE/hearth/wasm-threads/*" -not -name diagnostics.\* "$@"; }
raw=$(shell_files -printf '%s\n' | awk '{s+=$1} END {print s}')
gz=$(shell_files -exec sh -c 'gzip -9 -c "$1" | wc -c' _ {} \; | awk '{s+=$1} END {print s}')
wasm_raw=$(stat -c %s "$SITE/hearth/wasm/hearth_llm_bg.wasm")
wasm_gz=$(gzip -9 -c "$SITE/hearth/wasm/hearth_llm_bg.wasm" | wc -c)
threads_raw=$(stat -c %s "$SITE/hearth/wasm-threads/hearth_llm_bg.wasm")
threads_gz=$(gzip -9 -c "$SITE/hearth/wasm-threads/hearth_llm_bg.wasm" | wc -c)
printf 'build-site: web/site/ (serve it as static files)\n'
printf '  app shell: %s KiB raw, %s KiB gzipped (of which the wasm engine %s KiB raw, %s KiB gzipped)\n' \
  $((raw / 1024)) $((gz / 1024)) $((wasm_raw / 1024)) $((wasm_gz / 1024))
printf '  threaded wasm engine (loaded instead on cross-origin-isolated pages running on the CPU): %s KiB raw, %s KiB gzipped\n' \
  $((threads_raw / 1024)) $((threads_gz / 1024))
printf '  default model: %s MiB\n' "$(du -sLm "$SITE/models/$MODEL" | cut -f1)"
