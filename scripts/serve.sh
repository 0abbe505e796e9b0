#!/usr/bin/env bash
# Builds everything and serves the demo site (web/site) with the default model on
# http://127.0.0.1:${PORT:-8080}/ (Ctrl+C stops it), cross-origin isolated (the
# CPU backend's threads need it); `scripts/serve.sh --no-isolation` serves it
# without those headers.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$ROOT"
"$ROOT/scripts/setup.sh"
"$ROOT/scripts/build.sh"
# The built static site (demo + hearth-llm + the default model), as a host would serve it.
exec node web/tools/serve.mjs --root web/site --port "${PORT:-8080}" "$@"
