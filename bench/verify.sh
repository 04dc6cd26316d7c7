#!/usr/bin/env bash
# Throughput of POST /v1/keys/{name}/verify against GET /v1/sys/ping, in one run.
#
#   bench/verify.sh                 # 10 s per wrk run (ping, verify, ping)
#   DURATION=30 bench/verify.sh     # longer runs
#
# Starts `sigvault dev` (release build) in a throw-away data dir on a free loopback port,
# creates an hmac-sha256 key, signs one random 256-byte message, then loads the server with
# wrk (64 keep-alive connections, 2 threads): ping, verify, ping again. Prints requests/s
# and the line `RATIO verify/ping = X.XX` (verify over the mean of the two ping runs).
# Exits non-zero when anything fails (build, start, set-up, a non-2xx response or a socket
# error under load), never because of the ratio itself. See bench/README.md. The machinery it
# shares with bench/sigv4.sh (tools, server, curl helper, wrk runs, report) is bench/lib.sh.
#
# Environment:
#   DURATION     seconds per wrk run (default 10)
#   CONNECTIONS  wrk connections (default 64)
#   THREADS      wrk threads (default 2)
#   MESSAGE_BYTES size of the signed message (default 256)
#   ROUNDS       verify runs, each between two ping runs (default 1: ping, verify, ping);
#                with N > 1 the RATIO line is the median of the N per-round ratios
#   PIN_CPUS     1 (default) pins the server and wrk to different cores with taskset when
#                the machine has >= 2 CPUs; 0 disables pinning
#   SKIP_BUILD   1 skips `cargo build --release` (uses the existing binary)
#   KEEP_LOGS    1 keeps the temp dir (server log, wrk outputs) and prints its path
#   CALLER       service (default): verify with a caller token of group `service`, through
#                the shipped Cedar policies (the key is owned by that principal); root:
#                verify with the root token (group admin)
#   BOUNDARY     process (default) or hsm: where the key's HMAC runs (bench/resident.sh
#                compares the two)
#   SIGVAULT_LOG the server's log filter (default warn)
# shellcheck source-path=SCRIPTDIR
set -euo pipefail

MESSAGE_BYTES="${MESSAGE_BYTES:-256}"
KEY_NAME="bench"

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=lib.sh
source "$here/lib.sh"   # DURATION CONNECTIONS THREADS ROUNDS PIN_CPUS SKIP_BUILD KEEP_LOGS CALLER

bench_check_caller verify.sh
bench_check_ints DURATION CONNECTIONS THREADS MESSAGE_BYTES ROUNDS
# shellcheck disable=SC2119  # bench_tools takes optional extra tools; none here
bench_tools
bench_tempdir
bench_build
bench_pinning
bench_start_server

# ---- key, message, signature ---------------------------------------------------------
# The key belongs to the principal `bench-svc`; with CALLER=service the load runs as that
# service (group `service`), so every verify is decided by the shipped policy
# `service-sign-verify-own-keys`.
bench_verify_key "bench/verify.sh"

# ---- load ----------------------------------------------------------------------------
# verify.lua's inputs (the token goes as BENCH_TOKEN, see run_wrk in lib.sh).
# shellcheck disable=SC2034  # read by run_wrk in lib.sh
WRK_ENV=("BENCH_KEY=$KEY_NAME" "BENCH_MESSAGE=$message" "BENCH_SIGNATURE=$signature")
bench_rounds verify "/v1/keys/$KEY_NAME/verify" -s "$here/verify.lua"

# The server must still verify correctly after the load.
check="$(call POST "/v1/keys/$KEY_NAME/verify" 200 "$verify_body")"
[[ "$check" =~ \"valid\"[[:space:]]*:[[:space:]]*true ]] || die "verify after the load: $check"

# ---- report --------------------------------------------------------------------------
bench_report "POST /v1/keys/$KEY_NAME/verify" verify "$MESSAGE_BYTES-byte message, boundary ${BOUNDARY:-process}"
