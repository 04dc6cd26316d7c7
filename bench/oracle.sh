#!/usr/bin/env bash
# Existence oracle: does a service the policy denies learn from the time of its 403 whether
# a key exists? Measures refused signs of an existing key (owned by another service) and of
# a missing one, each request on a new connection, alternating with pings (so drift hits
# all alike), after a warm-up; prints medians and 90th percentiles in microseconds, the
# difference of the refused medians, and `RATIO refused-existing/ping`,
# `RATIO refused-missing/ping`. Latency, not throughput: the client is Python (its own
# overhead is the same for all three).
#
# Environment: REQUESTS (3000 of each), SKIP_BUILD, KEEP_LOGS, PIN_CPUS, SIGVAULT_LOG, BIN
# as in bench/lib.sh.
# shellcheck source-path=SCRIPTDIR
set -euo pipefail

REQUESTS="${REQUESTS:-3000}"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=lib.sh
source "$here/lib.sh"

bench_check_ints REQUESTS
bench_tools python3
bench_tempdir
bench_build
bench_pinning
bench_start_server

# A key of `billing`; the caller is the service `payments`, whom the shipped policies let
# sign only its own keys: both requests below are refused with 403.
call POST /v1/keys 201 '{"name":"billing.webhook","algorithm":"hmac-sha256","owner":"billing"}' >/dev/null
svc_token="$(call POST /v1/auth/tokens 201 '{"principal":"payments","groups":["service"]}' | json_string token)"
[ -n "$svc_token" ] || die "no token in the create-token response"

log "timing $REQUESTS refused signs of an existing and of a missing key, alternating with pings"
BENCH_BASE="$base" BENCH_TOKEN="$svc_token" BENCH_EXISTING="billing.webhook" BENCH_MISSING="billing.absent" \
  BENCH_REQUESTS="$REQUESTS" "${client_pin[@]}" python3 "$here/oracle.py"
