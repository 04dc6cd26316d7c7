#!/usr/bin/env bash
# HMAC through the AWS KMS-compatible API (GenerateMac, SigV4-signed) against
# GET /v1/sys/ping, in one run.
#
#   bench/kms.sh                    # 10 s per wrk run: ping, GenerateMac, ping
#   ROUNDS=3 bench/kms.sh           # the median of three rounds
#
# Starts `sigvault dev` (release build) like bench/verify.sh, creates an hmac-sha256 key
# owned by `bench-svc` and a SigV4 credential of that principal (group `service`: every
# request is decided by the shipped policies, as a boto3 caller's would be), signs ONE
# GenerateMac request with botocore's SigV4 signer (service kms) and replays it with wrk:
# the vault accepts a signature for 15 minutes, so (2*ROUNDS+1)*DURATION + 60 must stay
# under 840 s. Prints `RATIO kms-generate-mac/ping = X`. Environment as bench/verify.sh
# (DURATION, CONNECTIONS, THREADS, MESSAGE_BYTES, ROUNDS, PIN_CPUS, SKIP_BUILD, KEEP_LOGS,
# SIGVAULT_LOG). Needs python3 with botocore.
# shellcheck source-path=SCRIPTDIR
set -euo pipefail

MESSAGE_BYTES="${MESSAGE_BYTES:-256}"
KEY_NAME="bench"
CALLER=service
SIGNED_BUDGET_S=840

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=lib.sh
source "$here/lib.sh"

bench_check_ints DURATION CONNECTIONS THREADS MESSAGE_BYTES ROUNDS
if [ "${#ROUNDS}" -gt 3 ] || [ "${#DURATION}" -gt 3 ] ||
   [ $(( (2 * ROUNDS + 1) * DURATION + 60 )) -gt "$SIGNED_BUDGET_S" ]; then
  die "the request is signed once and the vault accepts it for 15 minutes, so" \
      "(2*ROUNDS+1)*DURATION + 60 must be <= $SIGNED_BUDGET_S s; lower ROUNDS or DURATION"
fi
python3 -c 'import botocore' 2>/dev/null ||
  die "python3 cannot import botocore: run \`pip install botocore\` (or apt-get install python3-botocore)"
bench_tools python3
bench_tempdir
bench_build
bench_pinning
bench_start_server

call POST /v1/keys 201 "{\"name\":\"$KEY_NAME\",\"algorithm\":\"hmac-sha256\",\"owner\":\"bench-svc\"}" >/dev/null
cred="$(call POST /v1/credentials 201 '{"principal":"bench-svc","groups":["service"]}')"
rm -f "$work/resp.json"
access_key_id="$(printf '%s' "$cred" | json_string access_key_id)"
secret="$(printf '%s' "$cred" | json_string secret_access_key)"
unset cred
[ -n "$access_key_id" ] && [ -n "$secret" ] || die "no credential in the create-credential response"
message="$(head -c "$MESSAGE_BYTES" /dev/urandom | base64 -w0)"
native="$(call POST "/v1/keys/$KEY_NAME/sign" 200 "{\"message\":\"$message\"}" | json_string signature)"

request_file="$work/kms-request.txt"
log "signing one GenerateMac request with botocore (service kms, principal bench-svc)"
(umask 077 && AWS_ACCESS_KEY_ID="$access_key_id" AWS_SECRET_ACCESS_KEY="$secret" python3 - "$base/" "$KEY_NAME" "$message" >"$request_file" <<'PY'
import json, os, sys
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
url, key, message = sys.argv[1:4]
body = json.dumps({"KeyId": key, "Message": message, "MacAlgorithm": "HMAC_SHA_256"}, separators=(",", ":"))
req = AWSRequest(method="POST", url=url, data=body,
                 headers={"X-Amz-Target": "TrentService.GenerateMac", "Content-Type": "application/x-amz-json-1.1"})
SigV4Auth(Credentials(os.environ["AWS_ACCESS_KEY_ID"], os.environ["AWS_SECRET_ACCESS_KEY"]), "kms", "eu-west-1").add_auth(req)
for name, value in req.headers.items():
    if name.lower() != "host":
        print(f"{name}: {value}")
print()
sys.stdout.write(body)
PY
) || die "signing with botocore failed"
unset secret

# The replayed request must answer the native MAC of the message.
headers=()
while IFS= read -r line; do
  [ -z "$line" ] && break
  headers+=(-H "$line")
done <"$request_file"
body="$(sed '1,/^$/d' "$request_file")"
answer="$(curl -sS -X POST "${headers[@]}" --data-binary "$body" "$base/")" || die "GenerateMac: curl failed"
[[ "$answer" == *"\"Mac\":\"$native\""* ]] || die "GenerateMac did not answer the native MAC: $answer"
log "GenerateMac of the bench message answers the native MAC"

# shellcheck disable=SC2034  # read by run_wrk in lib.sh
WRK_ENV=("BENCH_REQUEST_FILE=$request_file")
bench_rounds kms / -s "$here/kms.lua"
bench_report "POST / (TrentService.GenerateMac)" kms-generate-mac "$MESSAGE_BYTES-byte message, one request pre-signed with botocore"
