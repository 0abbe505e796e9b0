#!/usr/bin/env bash
# Builds everything and serves the demo with the default model on
# http://127.0.0.1:${PORT:-8080}/ (Ctrl+C stops it).
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$ROOT"
"$ROOT/scripts/setup.sh"
"$ROOT/scripts/build.sh"
exec node web/tools/serve.mjs --port "${PORT:-8080}"
