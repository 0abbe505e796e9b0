#!/usr/bin/env bash
# The whole test suite: installs what is missing, builds native and wasm,
# then runs the Rust tests (CPU references, GPU kernels on the local adapter:
# lavapipe in CI) and the browser tests (headless Chromium, WebGPU).
# With CI=true a missing GPU adapter fails the run instead of skipping.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$ROOT"
trap phase_summary EXIT
# Quiet the Vulkan loader's complaint on machines without a session bus.
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-$(mktemp -d)}"

phase "setup (all steps)"
"$ROOT/scripts/setup.sh"
phase "build (all steps)"
"$ROOT/scripts/build.sh"

phase "test: rust (cpu references, gpu kernels)"
"$NATIVE_CARGO" test --release

phase "test: browser (headless chromium, firefox and webkit, dawn in node)"
node --test --test-concurrency=1 tests/browser/
