#!/usr/bin/env bash
# Runs the fuzz targets of fuzz/ (docs/FUZZING.md) and prints the executions of each.
#
#   scripts/fuzz.sh [seconds-per-target] [target...]     # default: 60 s, every target
#
# The committed corpus fuzz/corpus/<target> is read, never written: what a run finds goes to
# a scratch directory under fuzz/target/, removed when the script ends. The first crash stops the script with a non-zero status; its
# input is in fuzz/artifacts/<target>/ (reproduce with `cargo +nightly fuzz run <target>
# <file>`). Installs the nightly toolchain (rustup) and cargo-fuzz when they are missing.
#
# Environment:
#   FUZZ_RUNS=N        run each target for N executions instead of a time (0 = no time limit)
#   FUZZ_MERGE=1       afterwards, merge what the runs found into fuzz/corpus/<target>
#                      (libFuzzer -merge=1: only inputs that add coverage)
#   FUZZ_TIMEOUT=S     the longest one input may take, in wall-clock seconds (default 10); a
#                      long run at a low priority on a busy machine needs more, or a starved
#                      process reports a timeout that is only the scheduler's
#   FUZZ_SANITIZER=S   address (default, cargo-fuzz's default) or none: no AddressSanitizer,
#                      for long runs of slow targets (policy_request) over safe Rust only;
#                      a build of its own (fuzz/target/no-sanitizer), which can run beside
#                      an AddressSanitizer run
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=${1:-60}
[ $# -gt 0 ] && shift
case $seconds in
  '' | *[!0-9]*) echo "fuzz.sh: seconds-per-target must be a whole number, not '$seconds'" >&2; exit 2 ;;
esac

if ! cargo +nightly --version >/dev/null 2>&1; then
  command -v rustup >/dev/null || { echo "fuzz.sh: the nightly toolchain is needed; install rustup (https://rustup.rs)" >&2; exit 1; }
  echo "fuzz.sh: installing the nightly toolchain" >&2
  rustup toolchain install nightly --profile minimal >&2
fi
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
  echo "fuzz.sh: installing cargo-fuzz" >&2
  cargo +nightly install cargo-fuzz --locked >&2
fi

# One set of flags for the build and every run, so no run rebuilds: optimised, with
# AddressSanitizer (cargo-fuzz's defaults; FUZZ_SANITIZER=none leaves it out), overflow checks and debug assertions (a wrapped
# integer is a finding too).
sanitizer=${FUZZ_SANITIZER:-address}
case $sanitizer in
  address | none) ;;
  *) echo "fuzz.sh: FUZZ_SANITIZER must be address or none, not '$sanitizer'" >&2; exit 2 ;;
esac
flags=(--debug-assertions --sanitizer "$sanitizer")
# A build of its own, so it can run beside an AddressSanitizer run without either
# rebuilding the other's binaries.
[ "$sanitizer" = none ] && flags+=(--target-dir fuzz/target/no-sanitizer)

if [ $# -gt 0 ]; then
  targets=("$@")
else
  mapfile -t targets < <(cargo +nightly fuzz list)
fi

started=$(date +%s)
cargo +nightly fuzz build "${flags[@]}" >&2
echo "fuzz.sh: built in $(($(date +%s) - started)) s" >&2

limit=(-max_total_time="$seconds")
[ -n "${FUZZ_RUNS:-}" ] && limit=(-runs="$FUZZ_RUNS")
mkdir -p fuzz/target
log=$(mktemp)
scratch=$(mktemp -d fuzz/target/corpus.XXXXXX)
trap 'rm -rf "$log" "$scratch"' EXIT

printf '%-20s %14s %9s %8s\n' target executions seconds crashes
for target in "${targets[@]}"; do
  # Each run starts from the committed corpus alone (what earlier runs found and did not
  # merge is gone), so a run is repeatable and its start-up does not grow.
  grown=$scratch/$target
  mkdir -p "$grown" "fuzz/artifacts/$target" "fuzz/corpus/$target"
  began=$(date +%s)
  # -timeout: no single input may take longer; -rss_limit_mb: libFuzzer's default, stated.
  if ! cargo +nightly fuzz run "${flags[@]}" "$target" "$grown" "fuzz/corpus/$target" -- \
    "${limit[@]}" -timeout="${FUZZ_TIMEOUT:-10}" -rss_limit_mb=2048 -print_final_stats=1 >"$log" 2>&1; then
    tail -n 80 "$log" >&2
    echo "fuzz.sh: $target failed; its input is in fuzz/artifacts/$target/" >&2
    exit 1
  fi
  executions=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
  printf '%-20s %14s %9s %8s\n' "$target" "${executions:-?}" "$(($(date +%s) - began))" 0
  if [ -n "${FUZZ_MERGE:-}" ]; then
    cargo +nightly fuzz run "${flags[@]}" "$target" "fuzz/corpus/$target" "$grown" -- -merge=1 >"$log" 2>&1 ||
      { tail -n 40 "$log" >&2; exit 1; }
  fi
done
echo "fuzz.sh: all targets ran without a crash in $(($(date +%s) - started)) s" >&2
