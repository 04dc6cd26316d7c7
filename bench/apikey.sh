#!/usr/bin/env bash
# Throughput of POST /v1/apikeys/verify against GET /v1/sys/ping, in one run.
#
#   bench/apikey.sh                 # MODE=cached: one valid key, verified over and over
#   MODE=miss bench/apikey.sh       # every request presents another well-formed key
#   ROUNDS=3 bench/apikey.sh        # 3 verify runs between 4 ping runs; median ratio
#
# Starts `sigvault dev` (release build) in a throw-away data dir on a free loopback port,
# creates an API key for the principal `bench-client` (POST /v1/apikeys), and loads the
# server with wrk (64 keep-alive connections, 2 threads): ping, verify, ping again.
#   MODE=cached  the hot path: the key's lookup is remembered by the SHA-256 of the key, so a
#                verification costs one SHA-256 and no store read (the issue's target for
#                this ratio is >= 0.7).
#   MODE=miss    the miss path: 20000 well-formed keys with valid checksums that were never
#                issued, cycled; each costs the keyed hash under the pepper and a store
#                lookup (answers "valid":false, "NOT_FOUND"; misses are not remembered).
# Prints requests/s and `RATIO apikey-cached/ping = X` or `RATIO apikey-miss/ping = X`. Exits
# non-zero when anything fails (build, start, set-up, a check before or after the load, a
# non-2xx response or a socket error under load), never because of the ratio itself. The
# machinery is shared with the other benches in bench/lib.sh; see bench/README.md.
#
# The key goes to wrk in a file in the temp dir (removed at exit): never in argv or output.
#
# Environment:
#   MODE         cached (default) or miss
#   DURATION     seconds per wrk run (default 10)
#   CONNECTIONS  wrk connections (default 64)
#   THREADS      wrk threads (default 2)
#   ROUNDS       verify runs, each between two ping runs (default 1); with N > 1 the RATIO
#                line is the median of the N per-round ratios
#   PIN_CPUS     1 (default) pins the server and wrk to different cores with taskset when
#                the machine has >= 2 CPUs; 0 disables pinning
#   SKIP_BUILD   1 skips `cargo build --release` (uses the existing binary)
#   KEEP_LOGS    1 keeps the temp dir and prints its path
#   CALLER       service (default): verify with a caller token of principal `bench-gateway`
#                in group `service` (`service-verify-apikeys`); root: the root token
#   SIGVAULT_LOG the server's log filter (default warn)
# shellcheck source-path=SCRIPTDIR
set -euo pipefail

MODE="${MODE:-cached}"
case "$MODE" in cached|miss) ;; *) echo "apikey.sh: MODE must be cached or miss" >&2; exit 2;; esac
MISS_KEYS=20000

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=lib.sh
source "$here/lib.sh"

bench_check_caller apikey.sh
bench_check_ints DURATION CONNECTIONS THREADS ROUNDS
bench_tools python3
bench_tempdir
bench_build
bench_pinning
bench_start_server

# ---- key, caller, bodies ---------------------------------------------------------------
created="$(call POST /v1/apikeys 201 '{"principal":"bench-client","meta":{"plan":"bench"}}')"
rm -f "$work/resp.json"
key="$(printf '%s' "$created" | json_string key)"
unset created
[ -n "$key" ] || die "no key in the create-API-key response"

if [ "$CALLER" = "service" ]; then
  svc_token="$(call POST /v1/auth/tokens 201 '{"principal":"bench-gateway","groups":["service"],"description":"bench/apikey.sh"}' | json_string token)"
  [ -n "$svc_token" ] || die "no token in the create-token response"
  bench_set_token "$svc_token"
  log "verifying as principal bench-gateway in group service (shipped policies)"
fi

bodies="$work/apikey-bodies.txt"
(umask 077 && printf '{"key":"%s"}\n' "$key" >"$bodies")
unset key
check="$(call POST /v1/apikeys/verify 200 "@$bodies")"
[[ "$check" == *'"code":"VALID"'* ]] || die "verify of the bench key did not answer VALID: $check"

if [ "$MODE" = "miss" ]; then
  # Never-issued keys with valid checksums (CRC-32 in base62, as src/apikeys/format.rs).
  python3 - "$MISS_KEYS" >"$bodies" <<'PY'
import secrets, sys, zlib
A = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
for _ in range(int(sys.argv[1])):
    body = "sk_" + "".join(secrets.choice(A) for _ in range(32))
    c, digits = zlib.crc32(body.encode()), []
    for _ in range(6):
        digits.append(A[c % 62]); c //= 62
    print('{"key":"%s"}' % (body + "".join(reversed(digits))))
PY
  check="$(head -n1 "$bodies" | call POST /v1/apikeys/verify 200 "@-")"
  [[ "$check" == *'"code":"NOT_FOUND"'* ]] || die "a never-issued key did not answer NOT_FOUND: $check"
  log "miss path: $MISS_KEYS never-issued, well-formed keys"
fi

# ---- load ----------------------------------------------------------------------------
# shellcheck disable=SC2034  # read by run_wrk in lib.sh
WRK_ENV=("BENCH_BODY_FILE=$bodies")
bench_rounds "apikey-$MODE" /v1/apikeys/verify -s "$here/apikey.lua"

if [ "$MODE" = "cached" ]; then
  check="$(call POST /v1/apikeys/verify 200 "@$bodies")"
  [[ "$check" == *'"code":"VALID"'* ]] || die "verify after the load: $check"
fi

# ---- report --------------------------------------------------------------------------
bench_report "POST /v1/apikeys/verify" "apikey-$MODE" \
  "$([ "$MODE" = cached ] && echo "one remembered key" || echo "$MISS_KEYS never-issued keys, cycled")"
