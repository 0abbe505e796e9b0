#!/usr/bin/env bash
# Fuzzes the engine's untrusted-input parsers (fuzz/, cargo-fuzz + libFuzzer):
# every target for RUNS executions, one target at a time on one core, then
# minimizes its corpus (cargo fuzz cmin) and picks the inputs to commit.
#
#   scripts/fuzz.sh [RUNS] [TARGET...]     (default: 1000000 runs, every target)
#   scripts/fuzz.sh 10000000               the reliability run: 10M per target
#   scripts/fuzz.sh 0 [TARGET...]          no fuzzing: only pick the corpus
#
# Environment:
#   FUZZ_SANITIZER  address (default) or none (no ASan: about 2x faster,
#                   panics and leaks of Rust code are still caught)
#   FUZZ_MAX_LEN    largest input libFuzzer generates (default 16384 bytes)
#   FUZZ_LOG_DIR    where each target's log goes (default /tmp: fuzz-<target>.log)
#   FUZZ_KEEP       inputs per target committed in fuzz/corpus/ (default 55)
#   FUZZ_CMIN       0 to leave both corpora as they are after fuzzing
#
# The working corpus is fuzz/corpus-new/<target>/ (git-ignored): every run
# starts from it, fuzz/corpus/<target>/ and fuzz/regressions/<target>/, adds
# its new inputs to it, and cmin keeps it minimal. fuzz/corpus/<target>/, the
# committed corpus, then becomes the FUZZ_KEEP inputs of the working corpus
# that cover the most edges (fuzz/select_corpus.py, a greedy set cover over
# libFuzzer's merge control file). Crashes land in fuzz/artifacts/<target>/
# (git-ignored): fix them, then copy the input into fuzz/regressions/<target>/,
# which tests/fuzz_corpus.rs replays in the normal test suite along with
# fuzz/corpus/<target>/. Installs cargo-fuzz and the nightly toolchain it
# needs when they are missing; picking the corpus needs python3.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
FUZZ="$ROOT/fuzz"
RUNS="${1:-1000000}"
shift || true
SANITIZER="${FUZZ_SANITIZER:-address}"
MAX_LEN="${FUZZ_MAX_LEN:-16384}"
LOG_DIR="${FUZZ_LOG_DIR:-/tmp}"
KEEP="${FUZZ_KEEP:-55}"

if ! rustup toolchain list | grep -q '^nightly'; then
  rustup toolchain install nightly --profile minimal
fi
if ! command -v cargo-fuzz >/dev/null; then
  cargo install cargo-fuzz --locked
fi

# The generated seeds (tests/fuzz_corpus.rs) into fuzz/corpus/<target>/:
# the GGUF ones are not committed.
(cd "$ROOT" && cargo test --release --test fuzz_corpus -- --ignored write_seed_corpus >/dev/null)

cd "$FUZZ"
if [ "$#" -gt 0 ]; then
  TARGETS=("$@")
else
  mapfile -t TARGETS < <(cargo +nightly fuzz list)
fi

# One run's figures from its log: executions, exec/s, seconds, cov, ft, peak RSS.
summary() {
  local log="$1"
  local execs rate rss line cov ft secs
  execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo '?')
  rate=$(grep -o 'stat::average_exec_per_sec: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo '?')
  rss=$(grep -o 'stat::peak_rss_mb: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo '?')
  secs=$(grep -o 'Done [0-9]* runs in [0-9]* second' "$log" | grep -o 'in [0-9]*' | grep -o '[0-9]*' || echo '?')
  line=$(grep -E '^#[0-9]+.*cov: ' "$log" | tail -1)
  cov=$(grep -o 'cov: [0-9]*' <<<"$line" | grep -o '[0-9]*' || echo '?')
  ft=$(grep -o 'ft: [0-9]*' <<<"$line" | grep -o '[0-9]*' || echo '?')
  printf '%-22s %12s %8s %7s %7s %7s %8s\n' "$(basename "$log" .log | sed 's/^fuzz-//')" "$execs" "$rate" "$secs" "$cov" "$ft" "$rss"
}

failed=()
for target in "${TARGETS[@]}"; do
  case "$target" in
    gguf) dict="$FUZZ/dicts/gguf.dict" ;;
    *) dict="$FUZZ/dicts/json.dict" ;;
  esac
  mkdir -p "corpus-new/$target" "corpus/$target" "regressions/$target"
  log="$LOG_DIR/fuzz-$target.log"
  if [ "$RUNS" != 0 ]; then
    echo "==> $target: $RUNS runs (sanitizer $SANITIZER), log $log"
    # -rss_limit_mb/-malloc_limit_mb: a single allocation over 512 MiB or a
    # process over 2 GiB is a finding; -timeout: an input running 10 s is one.
    if ! nice -n 10 cargo +nightly fuzz run -s "$SANITIZER" "$target" \
        "corpus-new/$target" "corpus/$target" "regressions/$target" -- \
        -runs="$RUNS" -max_len="$MAX_LEN" -dict="$dict" \
        -rss_limit_mb=2048 -malloc_limit_mb=512 -timeout=10 -print_final_stats=1 \
        >"$log" 2>&1; then
      echo "    FAILED: see $log and fuzz/artifacts/$target/"
      failed+=("$target")
      continue
    fi
    grep -E '^Done [0-9]+ runs' "$log" | sed 's/^/    /'
  fi
  if [ "${FUZZ_CMIN:-1}" = 1 ]; then
    cp -n "corpus/$target"/* "corpus-new/$target"/ 2>/dev/null || true
    nice -n 10 cargo +nightly fuzz cmin -s "$SANITIZER" "$target" "corpus-new/$target" -- -max_len="$MAX_LEN" \
      >"$LOG_DIR/fuzz-$target-cmin.log" 2>&1
    # Edge coverage only (no hit counts) for picking what to commit.
    work=$(mktemp -d) && mkdir "$work/out"
    nice -n 10 cargo +nightly fuzz run -s "$SANITIZER" "$target" "$work/out" "corpus-new/$target" -- \
      -merge=1 -use_counters=0 -max_len="$MAX_LEN" -merge_control_file="$work/control" \
      >>"$LOG_DIR/fuzz-$target-cmin.log" 2>&1
    python3 select_corpus.py "$work/control" "$KEEP" "$work/keep" | sed "s|^|    corpus/$target: |"
    rm -rf "corpus/$target" && mv "$work/keep" "corpus/$target" && rm -rf "$work"
    echo "    corpus-new/$target: $(find "corpus-new/$target" -type f | wc -l) files after cmin"
  fi
done

echo
printf '%-22s %12s %8s %7s %7s %7s %8s\n' target executions exec/s seconds cov ft rss_mb
for target in "${TARGETS[@]}"; do
  [ -f "$LOG_DIR/fuzz-$target.log" ] && summary "$LOG_DIR/fuzz-$target.log"
done
if [ "${#failed[@]}" -gt 0 ]; then
  echo "findings in: ${failed[*]}"
  exit 1
fi
