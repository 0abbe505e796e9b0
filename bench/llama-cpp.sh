#!/usr/bin/env bash
# Builds llama.cpp's llama-bench from the source the PyPI package
# llama-cpp-python vendors (pinned, sha256-checked), into .cache/peers/.
# Prints the path of the binary. Needs a C++ compiler; cmake comes from PyPI.
# Usage: bench/llama-cpp.sh [cpu|cuda|vulkan] (default cpu; cuda needs nvcc,
# for the GPUs of CUDA_ARCHITECTURES, default those this machine has;
# vulkan needs glslc and the Vulkan headers).
# CPU: not -march=native: sandboxes may report CPU features (AMX) they then
# trap; AVX2 + FMA + F16C is what llama.cpp's x86 kernels are tuned for.
set -euo pipefail
source "$(dirname "$0")/../scripts/lib.sh"
VERSION=0.3.36
SDIST_SHA256=832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e
SDIST_URL="https://files.pythonhosted.org/packages/ec/e9/e7de2b0463ea3ffbf0ede6cb21b58c1258a8f6521aae45ca773a59fe7cf3/llama_cpp_python-$VERSION.tar.gz"
DIR="$CACHE/peers/llama-cpp-python-$VERSION"
BACKEND="${1:-cpu}"
case "$BACKEND" in
  cpu) BUILD="$DIR/build"
       FLAGS=(-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON) ;;
  cuda) BUILD="$DIR/build-cuda"
        FLAGS=(-DGGML_CUDA=ON "-DCMAKE_CUDA_ARCHITECTURES=${CUDA_ARCHITECTURES:-native}" -DGGML_CUDA_NCCL=OFF) ;;
  vulkan) BUILD="$DIR/build-vulkan"; FLAGS=(-DGGML_VULKAN=ON) ;;
  *) echo "usage: $0 [cpu|cuda|vulkan]" >&2; exit 2 ;;
esac
BIN="$BUILD/bin/llama-bench"

if [ -x "$BIN" ]; then echo "$BIN"; exit 0; fi
mkdir -p "$CACHE/peers"
if [ ! -d "$DIR" ]; then
  curl -sSfL "$SDIST_URL" -o "$DIR.tar.gz.part"
  got="$(sha256sum "$DIR.tar.gz.part" | cut -d' ' -f1)"
  [ "$got" = "$SDIST_SHA256" ] || { echo "llama-cpp-python sdist: sha256 $got, expected $SDIST_SHA256" >&2; exit 1; }
  tar -xzf "$DIR.tar.gz.part" -C "$CACHE/peers" && rm "$DIR.tar.gz.part"
  mv "$CACHE/peers/llama_cpp_python-$VERSION" "$DIR"
fi
command -v cmake >/dev/null || python3 -m pip install --quiet --disable-pip-version-check --target "$CACHE/peers/cmake" cmake >&2
export PATH="$CACHE/peers/cmake/bin:$PATH"
export PYTHONPATH="$CACHE/peers/cmake${PYTHONPATH:+:$PYTHONPATH}"
cd "$DIR/vendor/llama.cpp"
cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DLLAMA_CURL=OFF -DLLAMA_BUILD_TESTS=OFF \
  -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=OFF "${FLAGS[@]}" >&2
cmake --build "$BUILD" --target llama-bench -j "$(nproc)" >&2
echo "$BIN"
