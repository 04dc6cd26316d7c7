#!/usr/bin/env bash
# The cost of the verify path's two cache hits (key metadata by name, secret by id and
# version) through sigvault's `keys::cache::TtlCache` (quick_cache underneath), through the
# hand-written map it replaced, and through the same API over moka: instructions per request
# under callgrind (steady on a shared machine), then wall time natively (noisy).
#
#   bench/cache.sh                       # 100000 lookups under callgrind, 3000000 natively
#   LOOKUPS=20000 WALL_LOOKUPS=0 bench/cache.sh
#
# The benchmark is its own crate (bench/cache), so moka is never built into sigvault; it is
# built in release mode in target/cache-bench. Installs valgrind with apt-get if missing.
set -euo pipefail

LOOKUPS="${LOOKUPS:-100000}"
WALL_LOOKUPS="${WALL_LOOKUPS:-3000000}"
for name in LOOKUPS WALL_LOOKUPS; do
  [[ "${!name}" =~ ^[0-9]+$ ]] || { echo "cache.sh: $name must be a whole number" >&2; exit 2; }
done
[ "$LOOKUPS" -gt 0 ] || { echo "cache.sh: LOOKUPS must be positive" >&2; exit 2; }

root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"

if ! command -v valgrind >/dev/null; then
  sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  echo "cache.sh: valgrind not found, installing it with apt-get" >&2
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends valgrind >/dev/null
fi

export CARGO_TARGET_DIR="$root/target/cache-bench"
cargo build --release --locked --quiet --manifest-path bench/cache/Cargo.toml
bin="$CARGO_TARGET_DIR/release/sigvault-cache-bench"

# Instructions of a whole run; the set-up is measured alone (0 lookups) and subtracted.
instructions() {
  valgrind --tool=callgrind --callgrind-out-file=/dev/null "$bin" "$1" "$2" 2>&1 >/dev/null |
    sed -n 's/.*Collected : *\([0-9]*\).*/\1/p'
}

echo "verify-path cache hits (2 per request): callgrind over $LOOKUPS requests"
printf '%-14s %22s\n' variant "instructions/request"
for variant in ours hand-written moka; do
  base="$(instructions "$variant" 0)"
  total="$(instructions "$variant" "$LOOKUPS")"
  printf '%-14s %22s\n' "$variant" "$(( (total - base) / LOOKUPS ))"
done

if [ "$WALL_LOOKUPS" -gt 0 ]; then
  echo "wall time, $WALL_LOOKUPS requests, native (noisy on a shared machine)"
  for variant in ours hand-written moka; do
    "$bin" "$variant" "$WALL_LOOKUPS"
  done
fi
