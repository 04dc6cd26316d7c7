#!/usr/bin/env bash
# Throughput of POST /v1/sigv4/verify against GET /v1/sys/ping, in one run.
#
#   bench/sigv4.sh                  # 10 s per wrk run (ping, sigv4-verify, ping)
#   ROUNDS=3 bench/sigv4.sh         # 3 sigv4-verify runs between 4 ping runs; median ratio
#
# Starts `sigvault dev` (release build) in a throw-away data dir on a free loopback port,
# creates a SigV4 credential for the principal `bench-client` (POST /v1/credentials), signs
# ONE request with botocore through examples/sigv4_sign.py (POST
# https://api.example.test/orders?dry_run=1, body {"qty":1}, Authorization header form), and
# loads the server with wrk (64 keep-alive connections, 2 threads) posting that request as
# the body of POST /v1/sigv4/verify: ping, sigv4-verify, ping again. Prints requests/s and
# the line `RATIO sigv4-verify/ping = X.XX` (sigv4-verify over the mean of the two ping
# runs). Exits non-zero when anything fails (build, start, set-up, a verification that is
# not `"valid":true` before or after the load, a non-2xx response or a socket error under
# load), never because of the ratio itself. See bench/README.md; the machinery it shares
# with bench/verify.sh is bench/lib.sh.
#
# The request is signed once, at set-up, and the vault accepts its date for 15 minutes
# (sigv4.time_window), so the whole load must fit in that: the script refuses to start when
# (2*ROUNDS+1)*DURATION + 60 > 840 seconds (e.g. ROUNDS=3 allows DURATION up to 111).
# The credential's secret access key goes to the signing python process through its
# environment only: it is never in a process's argv, in the output, or left in the temp dir.
#
# Requires python3 with botocore (`pip install botocore`, or apt's python3-botocore).
#
# Environment:
#   DURATION     seconds per wrk run (default 10)
#   CONNECTIONS  wrk connections (default 64)
#   THREADS      wrk threads (default 2)
#   ROUNDS       sigv4-verify runs, each between two ping runs (default 1: ping, sigv4-verify,
#                ping); with N > 1 the RATIO line is the median of the N per-round ratios
#   PIN_CPUS     1 (default) pins the server and wrk to different cores with taskset when
#                the machine has >= 2 CPUs; 0 disables pinning
#   SKIP_BUILD   1 skips `cargo build --release` (uses the existing binary)
#   KEEP_LOGS    1 keeps the temp dir (server log, wrk outputs, the signed request) and
#                prints its path
#   CALLER       service (default): verify with a caller token of principal `bench-gateway`
#                in group `service`, through the shipped Cedar policies
#                (`service-verify-sigv4`); root: verify with the root token (group admin)
#   SIGVAULT_LOG the server's log filter (default warn)
# shellcheck source-path=SCRIPTDIR
set -euo pipefail

# The request signed once and verified over and over.
SIGNED_METHOD="POST"
SIGNED_URL="https://api.example.test/orders?dry_run=1"
SIGNED_BODY='{"qty":1}'
CLIENT_PRINCIPAL="bench-client"
# The vault's SigV4 window is 15 minutes; leave a minute of it for clock skew.
SIGNED_BUDGET_S=840

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=lib.sh
source "$here/lib.sh"   # DURATION CONNECTIONS THREADS ROUNDS PIN_CPUS SKIP_BUILD KEEP_LOGS CALLER

bench_check_caller sigv4.sh
bench_check_ints DURATION CONNECTIONS THREADS ROUNDS
# (Length first, so that huge values cannot overflow the shell's arithmetic.)
if [ "${#ROUNDS}" -gt 3 ] || [ "${#DURATION}" -gt 3 ] ||
   [ $(( (2 * ROUNDS + 1) * DURATION + 60 )) -gt "$SIGNED_BUDGET_S" ]; then
  die "the request is signed once and the vault accepts it for 15 minutes, so" \
      "(2*ROUNDS+1)*DURATION + 60 must be <= $SIGNED_BUDGET_S s" \
      "(ROUNDS=$ROUNDS, DURATION=$DURATION); lower ROUNDS or DURATION"
fi
command -v python3 >/dev/null 2>&1 ||
  die "python3 with botocore is required (install python3, then \`pip install botocore\` or apt-get install python3-botocore)"
python3 -c 'import botocore' 2>/dev/null ||
  die "python3 cannot import botocore: run \`pip install botocore\` (or apt-get install python3-botocore)"
signer="$root/examples/sigv4_sign.py"
[ -f "$signer" ] || die "$signer is missing"

bench_tools python3
bench_tempdir
bench_build
bench_pinning
bench_start_server

# ---- credential, caller, signed request ----------------------------------------------
# As root: a credential for the client principal. Its secret is in this one answer: kept in
# a shell variable (not exported) until the signer has run, and the answer's file is removed.
cred="$(call POST /v1/credentials 201 "{\"principal\":\"$CLIENT_PRINCIPAL\"}")"
rm -f "$work/resp.json"
access_key_id="$(printf '%s' "$cred" | json_string access_key_id)"
secret="$(printf '%s' "$cred" | json_string secret_access_key)"
unset cred
[ -n "$access_key_id" ] || die "no access_key_id in the create-credential response"
[ -n "$secret" ] || die "no secret_access_key in the create-credential response"
log "credential $access_key_id for principal $CLIENT_PRINCIPAL"

# With CALLER=service the load runs as a gateway service (group `service`): every
# verification is decided by the shipped policy `service-verify-sigv4`.
if [ "$CALLER" = "service" ]; then
  svc_token="$(call POST /v1/auth/tokens 201 '{"principal":"bench-gateway","groups":["service"],"description":"bench/sigv4.sh"}' | json_string token)"
  [ -n "$svc_token" ] || die "no token in the create-token response"
  bench_set_token "$svc_token"
  who="$(call GET /v1/auth/whoami 200)"
  [[ "$who" == *'"groups":["service"]'* ]] || die "the bench token is not a service: $who"
  log "verifying as principal bench-gateway in group service (shipped policies)"
fi

# Signed as late as possible: the 15-minute window starts here. The secret reaches python
# through its environment only.
request_file="$work/sigv4-request.json"
log "signing $SIGNED_METHOD $SIGNED_URL (body $SIGNED_BODY) once with botocore (examples/sigv4_sign.py)"
if ! signed="$(AWS_ACCESS_KEY_ID="$access_key_id" AWS_SECRET_ACCESS_KEY="$secret" \
                 python3 "$signer" "$SIGNED_METHOD" "$SIGNED_URL" --body "$SIGNED_BODY")"; then
  unset secret
  die "examples/sigv4_sign.py failed"
fi
unset secret
signed_at="$(date +%s)"
[[ "$signed" == *AWS4-HMAC-SHA256* ]] || die "examples/sigv4_sign.py printed no SigV4 Authorization header: $signed"
# Without the trailing newline: curl (below) and wrk (sigv4.lua) send these exact bytes.
(umask 077 && printf '%s' "$signed" >"$request_file")

check="$(call POST /v1/sigv4/verify 200 "@$request_file")"
[[ "$check" =~ \"valid\"[[:space:]]*:[[:space:]]*true ]] ||
  die "sigv4 verify of the signed request did not answer \"valid\":true: $check"
[[ "$check" =~ \"principal\"[[:space:]]*:[[:space:]]*\"$CLIENT_PRINCIPAL\" ]] ||
  die "sigv4 verify of the signed request names another principal: $check"
log "sigv4 verify of the signed request answers 200 \"valid\":true (principal $CLIENT_PRINCIPAL)"

# ---- load ----------------------------------------------------------------------------
# sigv4.lua's input (the token goes as BENCH_TOKEN, see run_wrk in lib.sh).
# shellcheck disable=SC2034  # read by run_wrk in lib.sh
WRK_ENV=("BENCH_BODY_FILE=$request_file")
bench_rounds sigv4-verify /v1/sigv4/verify -s "$here/sigv4.lua"

# The server must still verify the request after the load (and it must still be in its
# window: if this says REQUEST_EXPIRED, the runs took longer than planned).
check="$(call POST /v1/sigv4/verify 200 "@$request_file")"
[[ "$check" =~ \"valid\"[[:space:]]*:[[:space:]]*true ]] ||
  die "sigv4 verify after the load ($(( $(date +%s) - signed_at )) s after signing): $check"

# ---- report --------------------------------------------------------------------------
bench_report "POST /v1/sigv4/verify" sigv4-verify "one request pre-signed with botocore"
