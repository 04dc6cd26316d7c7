#!/usr/bin/env bash
# HSM-resident keys: POST /v1/keys/{name}/verify with a `boundary: hsm` key (the HMAC runs in
# SoftHSM2, C_Sign) next to the same with a `process` key, each as a ratio against
# GET /v1/sys/ping measured in the same run (bench/verify.sh), and next to the raw rate of
# SoftHSM2's C_Sign (CKM_SHA256_HMAC) without sigvault in the way (examples/hsm_sign_rate.rs,
# on the same CPU the server gets).
#
#   bench/resident.sh               # 10 s per wrk run
#   DURATION=5 bench/resident.sh
#
# Prints both verify.sh reports, the raw rate, and three lines:
#   RATIO verify/ping (process) = X   RATIO verify/ping (hsm) = Y   HSM_VERIFY/C_SIGN = Z
# Exits non-zero when anything fails, never because of a figure. Environment: as
# bench/verify.sh (DURATION, CONNECTIONS, THREADS, MESSAGE_BYTES, PIN_CPUS, CALLER, …).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"
cd "$root"
DURATION="${DURATION:-10}"
MESSAGE_BYTES="${MESSAGE_BYTES:-256}"
export DURATION MESSAGE_BYTES

die() { echo "bench: error: $*" >&2; exit 1; }

if [ "${SKIP_BUILD:-0}" != "1" ]; then
  cargo build --release --quiet || die "cargo build --release failed"
  cargo build --release --quiet --example hsm_sign_rate || die "building examples/hsm_sign_rate failed"
fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

BOUNDARY=process SKIP_BUILD=1 "$here/verify.sh" | tee "$work/process.out"
BOUNDARY=hsm SKIP_BUILD=1 "$here/verify.sh" | tee "$work/hsm.out"
process_ratio="$(sed -n 's/^RATIO verify\/ping = //p' "$work/process.out")"
hsm_ratio="$(sed -n 's/^RATIO verify\/ping = //p' "$work/hsm.out")"
[ -n "$process_ratio" ] && [ -n "$hsm_ratio" ] || die "a verify.sh run printed no RATIO line"
# The hsm run's verify requests/s: the row verify.sh prints for the verify run.
hsm_rps="$(awk '$1 == "POST" && $2 ~ /verify$/ {print $3; exit}' "$work/hsm.out")"

# ---- the raw C_Sign rate on a throw-away SoftHSM2 token ----------------------------------
module="/usr/lib/softhsm/libsofthsm2.so"
[ -e "$module" ] || die "SoftHSM2 is not installed ($module)"
mkdir -m 700 "$work/tokens"
printf 'directories.tokendir = %s\nobjectstore.backend = file\nlog.level = ERROR\n' "$work/tokens" > "$work/softhsm2.conf"
pin="$(head -c 16 /dev/urandom | base64 | tr -dc 'A-Za-z0-9' | head -c 12)"
SOFTHSM2_CONF="$work/softhsm2.conf" softhsm2-util --init-token --free --label bench-raw \
  --so-pin "so-$pin" --pin "$pin" >/dev/null
pin_cpu=()
if [ "${PIN_CPUS:-1}" = "1" ] && command -v taskset >/dev/null && [ "$(nproc)" -ge 2 ]; then
  pin_cpu=(taskset -c 1)
fi
raw="$(SOFTHSM2_CONF="$work/softhsm2.conf" HSM_PIN="$pin" "${pin_cpu[@]}" \
  target/release/examples/hsm_sign_rate "$module" bench-raw "$DURATION" "$MESSAGE_BYTES" 2)"
raw_rate="$(printf '%s\n' "$raw" | sed -n 's/^C_SIGN_PER_S //p')"
[ -n "$raw_rate" ] || die "hsm_sign_rate printed no rate: $raw"

echo
echo "raw SoftHSM2 C_Sign (CKM_SHA256_HMAC, $MESSAGE_BYTES-byte message, 2 sessions${pin_cpu:+, CPU 1}): $raw_rate/s"
echo "RATIO verify/ping (process) = $process_ratio"
echo "RATIO verify/ping (hsm) = $hsm_ratio"
awk -v v="$hsm_rps" -v c="$raw_rate" 'BEGIN { if (c > 0 && v != "") printf "HSM_VERIFY/C_SIGN = %.2f  (hsm-boundary verifies/s over raw C_Sign/s)\n", v / c }'
