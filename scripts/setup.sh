#!/usr/bin/env bash
# Installs whatever the build and the tests need and is missing: system
# packages (lavapipe, Chromium, Firefox, WebKitGTK and Xvfb, the wasm
# toolchain), wasm-bindgen-cli at the version in Cargo.lock, the npm test
# dependencies and the default model.
# Idempotent: a second run only checks.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$ROOT"
trap phase_summary EXIT

phase "setup: system packages"
want=(mesa-vulkan-drivers libvulkan1 chromium firefox-esr webkit2gtk-driver xvfb fonts-dejavu-core)
command -v node >/dev/null || want+=(nodejs)
command -v npm >/dev/null || want+=(npm)
python3 -m pip --version >/dev/null 2>&1 || want+=(python3-pip)
command -v cargo >/dev/null || want+=(rustc-web cargo-web)
has_rustup_wasm || want+=(rustc-web cargo-web rust-web-src lld)
missing=()
for p in "${want[@]}"; do
  ! dpkg -s "$p" >/dev/null 2>&1 && missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}"
  $SUDO apt-get update -qq
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
else
  echo "all present"
fi

phase "setup: wasm-bindgen-cli"
wbg_version="$(locked_version wasm-bindgen)"
if [ "$(wasm-bindgen --version 2>/dev/null)" != "wasm-bindgen $wbg_version" ]; then
  echo "building wasm-bindgen-cli $wbg_version into $CACHE/tools (a few minutes, once)"
  "$NATIVE_CARGO" install --quiet --force --root "$CACHE/tools" wasm-bindgen-cli --version "$wbg_version"
fi
wasm-bindgen --version

phase "setup: npm packages"
for dir in web tests/browser; do
  if [ ! -f "$dir/node_modules/.installed" ] || [ "$dir/package-lock.json" -nt "$dir/node_modules/.installed" ]; then
    (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error && touch node_modules/.installed)
  fi
done
echo "ok"

phase "setup: default model"
"$ROOT/scripts/fetch-model.sh"
