# Sourced by the other scripts: repository paths, phase timing and the
# toolchain choice for wasm builds. Not meant to be run on its own.

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="$ROOT/.cache"          # git-ignored: built tools, downloads
MODELS="$ROOT/models"         # git-ignored: model files
TOOLS_BIN="$CACHE/tools/bin"
export PATH="$TOOLS_BIN:$PATH"

SUDO=""
if [ "$(id -u)" != 0 ] && command -v sudo >/dev/null; then SUDO=sudo; fi

# --- phase timing: `phase NAME` closes the previous phase and opens NAME;
# `phase_summary` prints the table (call it from an EXIT trap).
_PHASES=()
_PHASE_NAME=""
_PHASE_START=0
phase() {
  local now; now=$(date +%s.%N)
  if [ -n "$_PHASE_NAME" ]; then
    _PHASES+=("$(printf '%-34s %7.1f s' "$_PHASE_NAME" "$(awk "BEGIN{print $now - $_PHASE_START}")")")
  fi
  _PHASE_NAME="$1"; _PHASE_START=$now
  [ -n "$1" ] && printf '\n==> %s\n' "$1"
  return 0
}
phase_summary() {
  phase ""
  printf '\nphase timings (%s):\n' "$(basename "$0")"
  printf '  %s\n' "${_PHASES[@]}"
}

# --- Rust toolchains. Native builds use the machine's `cargo`. wasm builds
# use it too when its sysroot has the wasm32 standard library (a rustup
# target); otherwise Debian's rustc-web builds std from source (see
# ../shared/TOOLCHAIN.md): no download of a toolchain is needed either way.
NATIVE_CARGO="$(command -v cargo || echo /usr/bin/cargo)"
has_rustup_wasm() {
  command -v rustc >/dev/null &&
    [ -d "$(rustc --print sysroot)/lib/rustlib/wasm32-unknown-unknown/lib" ]
}
# simd128: the CPU backend's kernels; every browser with WebGPU has wasm SIMD.
WASM_RUSTFLAGS='--cfg getrandom_backend="wasm_js" -C target-feature=+simd128'
wasm_cargo() {
  if has_rustup_wasm; then
    RUSTFLAGS="$WASM_RUSTFLAGS" cargo "$@"
  else
    PATH="/usr/bin:$PATH" RUSTC=/usr/bin/rustc RUSTDOC=/usr/bin/rustdoc RUSTC_BOOTSTRAP=1 \
      RUSTFLAGS="$WASM_RUSTFLAGS" \
      CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_LINKER=wasm-ld \
      /usr/bin/cargo "$@" -Zbuild-std=std,panic_abort
  fi
}

# The threaded wasm build (feature `threads`: rayon on Web Workers over shared
# memory, for cross-origin-isolated pages; ../shared/cpu-threads.md). The
# standard library must be rebuilt with atomics whichever toolchain builds it,
# so -Zbuild-std always (RUSTC_BOOTSTRAP on a stable rustup toolchain, which
# then needs its rust-src component). Its own target dir: the flags differ, and
# sharing one would make the two builds rebuild each other.
# The linker flags: memory is imported and shared between the workers (its
# maximum must be declared: 2 GiB, room for the weights of a CPU-run model),
# and the TLS symbols let each worker set up its thread-local storage.
WASM_THREADS_RUSTFLAGS="$WASM_RUSTFLAGS -C target-feature=+atomics,+bulk-memory,+mutable-globals
  -C link-arg=--shared-memory -C link-arg=--max-memory=2147483648 -C link-arg=--import-memory
  -C link-arg=--export=__wasm_init_tls -C link-arg=--export=__tls_size
  -C link-arg=--export=__tls_align -C link-arg=--export=__tls_base"
wasm_threads_cargo() {
  local flags; flags="$(echo $WASM_THREADS_RUSTFLAGS)" # one line
  local args=("$@" --target-dir "$ROOT/target/wasm-threads" --features threads -Zbuild-std=std,panic_abort)
  if has_rustup_wasm; then
    RUSTC_BOOTSTRAP=1 RUSTFLAGS="$flags" cargo "${args[@]}"
  else
    PATH="/usr/bin:$PATH" RUSTC=/usr/bin/rustc RUSTDOC=/usr/bin/rustdoc RUSTC_BOOTSTRAP=1 \
      RUSTFLAGS="$flags" \
      CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_LINKER=wasm-ld \
      /usr/bin/cargo "${args[@]}"
  fi
}

# Version of a crate pinned in Cargo.lock.
locked_version() {
  awk -v name="$1" '$0 == "name = \"" name "\"" { getline; gsub(/version = |"/, ""); print; exit }' "$ROOT/Cargo.lock"
}
