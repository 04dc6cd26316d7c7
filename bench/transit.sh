#!/usr/bin/env bash
# HMAC through the Vault Transit-compatible route against GET /v1/sys/ping, in one run, and
# the native sign route in the same run for comparison.
#
#   bench/transit.sh                # 10 s per wrk run: ping, sign, ping, then ping, transit, ping
#   ROUNDS=3 bench/transit.sh       # medians of three rounds each
#
# Starts `sigvault dev` (release build) like bench/verify.sh, creates an hmac-sha256 key
# owned by `bench-svc` and a caller token of that service (group `service`: every request is
# decided by the shipped policies), then loads
#   POST /v1/keys/bench/sign            {"message": <base64>}   (Authorization: Bearer)
#   POST /v1/transit/hmac/bench         {"input": <base64>}     (X-Vault-Token, as hvac sends it)
# and prints `RATIO sign/ping = X` and `RATIO transit-hmac/ping = X`. Environment as
# bench/verify.sh (DURATION, CONNECTIONS, THREADS, MESSAGE_BYTES, ROUNDS, PIN_CPUS,
# SKIP_BUILD, KEEP_LOGS, SIGVAULT_LOG); CALLER is always `service` here.
# shellcheck source-path=SCRIPTDIR
set -euo pipefail

MESSAGE_BYTES="${MESSAGE_BYTES:-256}"
KEY_NAME="bench"
CALLER=service

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=lib.sh
source "$here/lib.sh"

bench_check_ints DURATION CONNECTIONS THREADS MESSAGE_BYTES ROUNDS
# shellcheck disable=SC2119
bench_tools
bench_tempdir
bench_build
bench_pinning
bench_start_server
bench_verify_key "bench/transit.sh"

# The Transit HMAC of the message must be the native signature, with Vault's prefix.
transit_body="{\"input\":\"$message\"}"
answer="$(curl -sS -X POST -H "X-Vault-Token: $token" -H 'Content-Type: application/json' \
  --data-binary "$transit_body" "$base/v1/transit/hmac/$KEY_NAME")" || die "transit hmac: curl failed"
[[ "$answer" == *"\"hmac\":\"vault:v1:$signature\""* ]] || die "the Transit HMAC is not the native signature: $answer"
log "the Transit HMAC of the bench message is the native signature"

# shellcheck disable=SC2034  # read by run_wrk in lib.sh
WRK_ENV=("BENCH_PATH=/v1/keys/$KEY_NAME/sign" "BENCH_BODY={\"message\":\"$message\"}" "BENCH_AUTH=bearer")
bench_rounds sign "/v1/keys/$KEY_NAME/sign" -s "$here/post.lua"
bench_report "POST /v1/keys/$KEY_NAME/sign" sign "$MESSAGE_BYTES-byte message, native route"

# shellcheck disable=SC2034
WRK_ENV=("BENCH_PATH=/v1/transit/hmac/$KEY_NAME" "BENCH_BODY=$transit_body" "BENCH_AUTH=vault")
bench_rounds transit "/v1/transit/hmac/$KEY_NAME" -s "$here/post.lua"
bench_report "POST /v1/transit/hmac/$KEY_NAME" transit-hmac "$MESSAGE_BYTES-byte message, X-Vault-Token"
