#!/usr/bin/env bash
# Many keys: seeds KEYS signing keys through the API, then measures what a large key set
# costs — the seeding rate, the server's resident memory, verify latency for one hot key and
# for cold keys (a cache miss: the key's row and sealed version read from the store, its DEK
# unwrapped by SoftHSM2), and the time a restart takes to listen again.
#
#   bench/scale.sh                          # 100 000 keys on SQLite
#   STORE=postgres bench/scale.sh           # on a fresh database of the local PostgreSQL
#   KEYS=1000000 bench/scale.sh             # the documented million-key run
#   KEK=aws-kms KEYS=20000 bench/scale.sh   # the KEK in AWS KMS (moto's server, local)
#
# Starts `sigvault dev` (release build) in a throw-away data dir with `cache.max_entries` =
# CACHE_ENTRIES (far below KEYS, so cold requests really miss), seeds with bench/seed.py,
# then runs wrk with one connection (latency, not throughput): GET ping, the hot key's
# verify, random keys' verifies (bench/cold.lua). Prints one line per figure and the
# `SCALE …` summary line. Exits non-zero when anything fails, never because of a figure.
#
# Environment:
#   STORE           sqlite (default) or postgres
#   KEK             pkcs11 (default: `sigvault dev` on SoftHSM2) or aws-kms: `sigvault serve`
#                   with [kek] provider = "aws-kms" on a moto_server started here (MOTO_SERVER,
#                   default target/moto/bin/moto_server, which scripts/test.sh installs); moto
#                   adds its own latency (Python, HTTP), so compare the two KEKs' cold figures
#                   knowing that
#   POSTGRES_URL    the server's admin URL for STORE=postgres (default
#                   postgres://postgres@127.0.0.1:5432/postgres); a database
#                   sigvault_scale_<pid> is created there and dropped at the end
#   KEYS            keys to seed (default 100000)
#   SEED_THREADS    concurrent seeding connections (default 16)
#   CACHE_ENTRIES   cache.max_entries of the server (default 1000)
#   DURATION        seconds per latency run (default 10)
#   SKIP_BUILD, KEEP_LOGS, PIN_CPUS, BIN  as for every bench script (bench/lib.sh)
# shellcheck source-path=SCRIPTDIR
set -euo pipefail

STORE="${STORE:-sqlite}"
KEK="${KEK:-pkcs11}"
KEYS="${KEYS:-100000}"
SEED_THREADS="${SEED_THREADS:-16}"
CACHE_ENTRIES="${CACHE_ENTRIES:-1000}"
POSTGRES_URL="${POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/postgres}"

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=lib.sh
source "$here/lib.sh"

case "$STORE" in sqlite | postgres) ;; *) die "STORE must be sqlite or postgres, not '$STORE'" ;; esac
case "$KEK" in pkcs11 | aws-kms) ;; *) die "KEK must be pkcs11 or aws-kms, not '$KEK'" ;; esac
bench_check_ints KEYS SEED_THREADS CACHE_ENTRIES DURATION
# shellcheck disable=SC2119
bench_tools python3
bench_tempdir
bench_build
bench_pinning

store_env=()
database=""
if [ "$STORE" = postgres ]; then
  command -v psql >/dev/null || die "STORE=postgres needs psql (apt-get install postgresql-client)"
  database="sigvault_scale_$$"
  psql "$POSTGRES_URL" -XAtqc "CREATE DATABASE $database" >/dev/null || die "cannot create $database at $POSTGRES_URL"
  store_env=("SIGVAULT_STORE__URL=${POSTGRES_URL%/*}/$database")
  drop_database() { psql "$POSTGRES_URL" -XAtqc "DROP DATABASE IF EXISTS $database WITH (FORCE)" >/dev/null || true; }
  trap 'drop_database; bench_cleanup' EXIT
fi

port="$(free_port)" || die "no free port found"

# KEK=aws-kms: a moto KMS server, a key with an alias, and a serve config naming it.
server_args=()
moto_pid=""
if [ "$KEK" = aws-kms ]; then
  moto="${MOTO_SERVER:-$here/../target/moto/bin/moto_server}"
  [ -x "$moto" ] || die "KEK=aws-kms needs moto_server at $moto (scripts/test.sh installs it; or set MOTO_SERVER)"
  moto_port="$(free_port)" || die "no free port found"
  "$moto" -H 127.0.0.1 -p "$moto_port" >"$work/moto.log" 2>&1 &
  moto_pid=$!
  for _ in $(seq 1 300); do
    curl -sS -o /dev/null "http://127.0.0.1:$moto_port/" 2>/dev/null && break
    sleep 0.1
  done
  export AWS_ACCESS_KEY_ID=bench AWS_SECRET_ACCESS_KEY=bench
  "$(dirname "$moto")/python" -c '
import sys, boto3
kms = boto3.client("kms", endpoint_url=sys.argv[1], region_name="eu-west-1")
arn = kms.create_key()["KeyMetadata"]["Arn"]
kms.create_alias(AliasName="alias/sigvault-bench", TargetKeyId=arn)
' "http://127.0.0.1:$moto_port" || die "cannot create the KMS key"
  # What the KMS stand-in costs by itself: Decrypt of a 32-byte DEK from boto3, one at a time.
  kms_decrypt="$("$(dirname "$moto")/python" -c '
import sys, time, boto3
kms = boto3.client("kms", endpoint_url=sys.argv[1], region_name="eu-west-1")
blob = kms.encrypt(KeyId="alias/sigvault-bench", Plaintext=b"k" * 32)["CiphertextBlob"]
took = []
for _ in range(300):
    t = time.perf_counter(); kms.decrypt(CiphertextBlob=blob); took.append(time.perf_counter() - t)
took.sort()
print("p50 %.2f ms, p99 %.2f ms" % (took[150] * 1e3, took[296] * 1e3))
' "http://127.0.0.1:$moto_port")" || die "cannot time KMS Decrypt"
  log "moto Decrypt from boto3 (300 calls, one at a time): $kms_decrypt"
fi
token="bench_$(head -c 32 /dev/urandom | base64 | tr -dc 'A-Za-z0-9' | head -c 40)"
data_dir="$work/data"
mkdir -m 700 "$data_dir"
if [ "$KEK" = aws-kms ]; then
  printf '%s\n' "listen = \"127.0.0.1:$port\"" "data_dir = \"$data_dir\"" '[kek]' 'provider = "aws-kms"' \
    '[kek.aws_kms]' 'key_id = "alias/sigvault-bench"' 'region = "eu-west-1"' \
    "endpoint_url = \"http://127.0.0.1:$moto_port\"" >"$work/sigvault.toml"
  server_args=(serve --config "$work/sigvault.toml")
  trap 'status=$?; kill "$moto_pid" 2>/dev/null; if declare -F drop_database >/dev/null; then drop_database; fi; (exit "$status"); bench_cleanup' EXIT
else
  server_args=(dev --data-dir "$data_dir" --listen "127.0.0.1:$port")
fi

# Starts the server on $data_dir and waits for ping; sets server_pid and STARTUP_S (process
# start to the first ping answered).
start_server() {
  : >"$work/server.out"
  local t0 line
  t0="$(date +%s.%N)"
  env "${store_env[@]}" SIGVAULT_ROOT_TOKEN="$token" SIGVAULT_LOG="${SIGVAULT_LOG:-warn}" \
    SIGVAULT_CACHE__MAX_ENTRIES="$CACHE_ENTRIES" \
    "${server_pin[@]}" "$bin" "${server_args[@]}" \
    >>"$work/server.out" 2>>"$work/server.err" &
  server_pid=$!
  base=""
  for _ in $(seq 1 6000); do
    if line="$(grep -m1 '^listening on ' "$work/server.out" 2>/dev/null)"; then
      base="${line#listening on }"
      curl -fsS "$base/v1/sys/ping" >/dev/null 2>&1 && break
    fi
    kill -0 "$server_pid" 2>/dev/null || { tail -n 30 "$work/server.err" >&2; die "sigvault exited"; }
    sleep 0.01
  done
  [ -n "$base" ] || die "sigvault did not listen within 60 s"
  STARTUP_S="$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.2f", b - a }')"
}

rss_mib() { awk '/^VmRSS:/ { printf "%.0f", $2 / 1024 }' "/proc/$server_pid/status"; }

# The 50th and 99th percentile of a wrk --latency run, in ms.
percentiles() { # wrk-output-file -> "p50 p99"
  awk '
    function ms(v) {
      if (v ~ /us$/) { sub(/us$/, "", v); return v / 1000 }
      if (v ~ /ms$/) { sub(/ms$/, "", v); return v + 0 }
      if (v ~ /s$/) { sub(/s$/, "", v); return v * 1000 }
      return v
    }
    $1 == "50%" { p50 = ms($2) } $1 == "99%" { p99 = ms($2) }
    END { printf "%.2f %.2f", p50, p99 }' "$1"
}

start_server
bench_set_token "$token"
log "server ready at $base (store: $STORE, KEK: $KEK, cache.max_entries: $CACHE_ENTRIES)"

log "seeding $KEYS keys with $SEED_THREADS connections"
seeded="$(BENCH_TOKEN="$token" python3 "$here/seed.py" "$base" "$KEYS" "$SEED_THREADS")"
log "$seeded"
seed_rate="$(sed -n 's/.*(\([0-9]*\) keys\/s).*/\1/p' <<<"$seeded")"
rss_seeded="$(rss_mib)"

# The audit index catches up with the seeding's events (a listing waits for it), so the
# latency runs do not share the machine with the indexer's backlog.
call GET "/v1/audit/events?limit=1" 200 >/dev/null

# One key signed, for the hot runs.
message="$(head -c 256 /dev/urandom | base64 -w0)"
signature="$(call POST /v1/keys/seed-0/sign 200 "{\"message\":\"$message\"}" | json_string signature)"
[ -n "$signature" ] || die "no signature for seed-0"

CONNECTIONS=1
THREADS=1
# shellcheck disable=SC2034  # read by run_wrk in lib.sh
WRK_ENV=("BENCH_KEY=seed-0" "BENCH_MESSAGE=$message" "BENCH_SIGNATURE=$signature" "BENCH_KEYS=$KEYS")
run_wrk ping "$base/v1/sys/ping" --latency
read -r ping_p50 ping_p99 <<<"$(percentiles "$work/wrk-ping.txt")"
run_wrk hot "$base/v1/keys/seed-0/verify" --latency -s "$here/verify.lua"
read -r hot_p50 hot_p99 <<<"$(percentiles "$work/wrk-hot.txt")"
run_wrk cold "$base/v1/keys/seed-0/verify" --latency -s "$here/cold.lua"
read -r cold_p50 cold_p99 <<<"$(percentiles "$work/wrk-cold.txt")"
rss_loaded="$(rss_mib)"

log "restarting to time the start with $KEYS keys"
kill -TERM "$server_pid"
wait "$server_pid" 2>/dev/null || true
start_server
restart_s="$STARTUP_S"
rss_started="$(rss_mib)"

cat <<EOF
store                   $STORE
KEK                     $KEK
keys                    $KEYS
seeding                 $seed_rate keys/s ($SEED_THREADS connections)
RSS after seeding       $rss_seeded MiB
RSS after the runs      $rss_loaded MiB
RSS after a restart     $rss_started MiB
ping latency            p50 $ping_p50 ms, p99 $ping_p99 ms
hot-key verify          p50 $hot_p50 ms, p99 $hot_p99 ms
cold-key verify         p50 $cold_p50 ms, p99 $cold_p99 ms (random key of $KEYS, cache $CACHE_ENTRIES)
restart to first ping   $restart_s s
EOF
if [ "$KEK" = aws-kms ]; then echo "KMS Decrypt alone       $kms_decrypt (boto3 to moto, for comparison)"; fi
echo "SCALE store=$STORE kek=$KEK keys=$KEYS seed_per_s=$seed_rate rss_mib=$rss_loaded hot_p99_ms=$hot_p99 cold_p99_ms=$cold_p99 startup_s=$restart_s"
