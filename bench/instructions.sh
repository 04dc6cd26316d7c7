#!/usr/bin/env bash
# Instructions the server executes per request, counted by callgrind: GET /v1/sys/ping against
# POST /v1/keys/{name}/verify (the same request bench/verify.sh loads), in one run.
#
#   bench/instructions.sh                  # 2000 requests of each kind
#   REQUESTS=500 bench/instructions.sh
#   BIN=/other/checkout/target/release/sigvault bench/instructions.sh   # compare two builds
#
# Wall-clock ratios on a shared 2-core machine move by ±10 % from run to run; instruction
# counts do not, so this is the figure to compare two builds with. The server runs under
# `valgrind --tool=callgrind` (every thread counted: workers, blocking pool, audit writer);
# one client sends the requests one after another on one keep-alive connection. The counter
# is zeroed before each kind and dumped after it. Prints `INSTRUCTIONS ping = N`,
# `INSTRUCTIONS verify = N` (per request) and `INSTRUCTION-RATIO verify/ping = X` (ping's
# instructions over verify's: comparable to RATIO verify/ping, higher is cheaper).
#
# Also prints `AUDIT-SHARE verify = P %`: the part of a verify's instructions spent on its
# audit event, from callgrind's inclusive counts of the audit roots (the event's fields and
# its append on the request's thread, the indexer task, SQLite's worker thread, the syncer).
# Sequential requests are the audit's worst case: every event is a write(2) of its own. Under
# valgrind SHA-256 runs without the SHA extensions (CPUID hides them), so HMAC-heavy paths —
# the chain MAC of every event among them — count several times what they cost natively;
# bench/audit-share.sh samples the audit's share of a loaded server natively.
#
# Environment: REQUESTS (2000), WARMUP (200 unmeasured requests of each kind), MESSAGE_BYTES (256), SKIP_BUILD (0), BIN (the release
# binary of this checkout), KEEP_LOGS (0), CALLER (service, or root), DURABILITY (os, or
# fsync: the server's audit.durability). Installs valgrind with apt-get when missing. Never
# fails because of a figure.
# shellcheck source-path=SCRIPTDIR
set -euo pipefail

REQUESTS="${REQUESTS:-2000}"
WARMUP="${WARMUP:-200}"
DURABILITY="${DURABILITY:-os}"
case "$DURABILITY" in
  os|fsync) ;;
  *) echo "instructions.sh: DURABILITY must be os or fsync" >&2; exit 2;;
esac
export SIGVAULT_AUDIT__DURABILITY="$DURABILITY"
MESSAGE_BYTES="${MESSAGE_BYTES:-256}"
KEY_NAME="bench"
# Starting under valgrind (SoftHSM2, migrations, policy compile) takes far longer than natively.
START_TRIES=3000

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=lib.sh
source "$here/lib.sh"

bench_check_caller instructions.sh
bench_check_ints REQUESTS WARMUP MESSAGE_BYTES
if ! command -v valgrind >/dev/null 2>&1; then
  sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  log "valgrind not found, installing with apt-get"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends valgrind >/dev/null
fi
bench_tools valgrind callgrind_control python3
bench_tempdir
bench_build
[ -n "${BIN:-}" ] && bin="$BIN"
[ -x "$bin" ] || die "$bin is missing"
server_pin=(valgrind --tool=callgrind --callgrind-out-file="$work/callgrind.out")
pinning="none (under callgrind)"
bench_start_server

bench_verify_key "bench/instructions.sh"

# REQUESTS requests on one keep-alive connection; every answer must be 200 (and, for verify,
# "valid":true). The token travels through the environment, not argv.
send() { # method path body
  BENCH_TOKEN="$token" python3 - "$base" "$1" "$2" "$3" "$REQUESTS" <<'PY'
import http.client, os, sys, urllib.parse
base, method, path, body, n = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5])
url = urllib.parse.urlsplit(base)
conn = http.client.HTTPConnection(url.hostname, url.port, timeout=600)
headers = {"Authorization": "Bearer " + os.environ["BENCH_TOKEN"], "Content-Type": "application/json"}
for i in range(n):
    conn.request(method, path, body=body.encode() if body else None, headers=headers)
    resp = conn.getresponse()
    data = resp.read()
    if resp.status != 200 or (body and b'"valid":true' not in data):
        sys.exit(f"request {i}: {resp.status} {data[:200]!r}")
PY
}

# Instructions since the last zeroing, from a fresh dump.
counted() { # label -> prints the total
  callgrind_control -d "$1" "$server_pid" >/dev/null 2>&1
  local file
  file="$(ls -t "$work"/callgrind.out.* | head -1)"
  awk '/^(summary|totals):/ { print $2; exit }' "$file"
}

declare -A per_request
for kind in ping verify; do
  # WARMUP unmeasured requests first, so the phase starts warm (caches filled, the audit
  # index's statements prepared).
  if [ "$kind" = "ping" ]; then
    REQUESTS="$WARMUP" send GET /v1/sys/ping ""
    callgrind_control -z "$server_pid" >/dev/null 2>&1
    send GET /v1/sys/ping ""
  else
    REQUESTS="$WARMUP" send POST "/v1/keys/$KEY_NAME/verify" "$verify_body"
    callgrind_control -z "$server_pid" >/dev/null 2>&1
    send POST "/v1/keys/$KEY_NAME/verify" "$verify_body"
  fi
  total="$(counted "$kind")"
  [ -n "$total" ] || die "no instruction total in the callgrind dump"
  per_request[$kind]=$(( total / REQUESTS ))
  log "$kind: $total instructions for $REQUESTS requests"
done

# The audit's share of the verify phase: inclusive counts of its roots in the last dump.
audit_share() {
  local file
  file="$(ls -t "$work"/callgrind.out.* | head -1)"
  callgrind_annotate --inclusive=yes "$file" 2>/dev/null | python3 -c '
import re, sys
roots = ["sigvault::audit::writer::Auditor::record", "sigvault::api::event_data",
         "sigvault::audit::writer::indexer::Indexer::run", "sqlx_sqlite::connection::execute::ExecuteIter",
         "sigvault::audit::writer::syncer::run"]
total, found = 0, {}
for line in sys.stdin:
    if "PROGRAM TOTALS" in line:
        total = int(line.split()[0].replace(",", ""))
        continue
    m = re.match(r"\s*([\d,]+)\s+\([^)]*\)\s+\S*?:(.*)", line)
    if not m:
        continue
    n, name = int(m.group(1).replace(",", "")), m.group(2)
    for r in roots:
        # Trait methods are named `<Type as Trait>::method` (the SQLite worker is one).
        if name.startswith(r) or name.startswith("<" + r):
            found[r] = max(found.get(r, 0), n)
if total:
    print("%.1f" % (100.0 * sum(found.values()) / total))
'
}
share="$(audit_share)"

echo "sigvault instructions per request (callgrind, $REQUESTS sequential keep-alive requests each, caller $CALLER, $MESSAGE_BYTES-byte message, audit.durability $DURABILITY)"
echo "INSTRUCTIONS ping = ${per_request[ping]}"
echo "INSTRUCTIONS verify = ${per_request[verify]}"
awk -v p="${per_request[ping]}" -v v="${per_request[verify]}" \
  'BEGIN { printf "INSTRUCTION-RATIO verify/ping = %.2f\n", (v > 0) ? p / v : 0 }'
echo "AUDIT-SHARE verify = ${share:-?} %"
