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
# error under load), never because of the ratio itself. See bench/README.md.
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
set -euo pipefail

DURATION="${DURATION:-10}"
CONNECTIONS="${CONNECTIONS:-64}"
THREADS="${THREADS:-2}"
MESSAGE_BYTES="${MESSAGE_BYTES:-256}"
ROUNDS="${ROUNDS:-1}"
PIN_CPUS="${PIN_CPUS:-1}"
SKIP_BUILD="${SKIP_BUILD:-0}"
KEEP_LOGS="${KEEP_LOGS:-0}"
KEY_NAME="bench"
CALLER="${CALLER:-service}"
case "$CALLER" in service|root) ;; *) echo "verify.sh: CALLER must be service or root" >&2; exit 2;; esac

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"
cd "$root"

log() { echo "bench: $*" >&2; }
die() { echo "bench: error: $*" >&2; exit 1; }

for n in DURATION CONNECTIONS THREADS MESSAGE_BYTES ROUNDS; do
  [[ "${!n}" =~ ^[1-9][0-9]*$ ]] || die "$n must be a positive integer (got '${!n}')"
done

sudo=""
[ "$(id -u)" -ne 0 ] && sudo="sudo"

# ---- tools ---------------------------------------------------------------------------
if ! command -v wrk >/dev/null 2>&1; then
  log "wrk not found, installing with apt-get"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq wrk >/dev/null
  command -v wrk >/dev/null 2>&1 || die "wrk is still missing after apt-get install"
fi
bash "$root/softhsm/install.sh"
for tool in curl base64 head; do
  command -v "$tool" >/dev/null 2>&1 || die "$tool is required"
done

# ---- temp dir, cleanup ---------------------------------------------------------------
work="$(mktemp -d "${TMPDIR:-/tmp}/sigvault-bench.XXXXXX")"
server_pid=""
cleanup() {
  local rc=$?
  if [ -n "$server_pid" ] && kill -0 "$server_pid" 2>/dev/null; then
    kill -TERM "$server_pid" 2>/dev/null || true
    for _ in $(seq 1 50); do
      kill -0 "$server_pid" 2>/dev/null || break
      sleep 0.1
    done
    kill -KILL "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
  fi
  if [ "$KEEP_LOGS" = "1" ]; then
    echo "bench: kept $work" >&2
  else
    rm -rf "$work"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---- build ---------------------------------------------------------------------------
if [ "$SKIP_BUILD" != "1" ]; then
  log "cargo build --release"
  cargo build --release --quiet || die "cargo build --release failed"
fi
bin="$root/target/release/sigvault"
[ -x "$bin" ] || die "$bin is missing"

# ---- CPU pinning ---------------------------------------------------------------------
# On a 2-core machine the server gets one core and wrk (plus curl) the other, so that the
# load generator and the server do not steal time from each other and both runs see the
# same split. tokio sizes its worker pool from the affinity mask, so the server runs one
# worker thread on its core.
server_pin=()
client_pin=()
ncpu="$(nproc 2>/dev/null || echo 1)"
if [ "$PIN_CPUS" = "1" ] && command -v taskset >/dev/null 2>&1 && [ "$ncpu" -ge 2 ]; then
  server_pin=(taskset -c 1)
  client_pin=(taskset -c 0)
  pinning="server on CPU 1, wrk on CPU 0 (taskset)"
else
  pinning="none (PIN_CPUS=$PIN_CPUS, taskset $(command -v taskset >/dev/null 2>&1 && echo present || echo missing), $ncpu CPUs)"
fi

# ---- start the server ----------------------------------------------------------------
free_port() {
  if command -v python3 >/dev/null 2>&1; then
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
    return
  fi
  local port
  for _ in $(seq 1 100); do
    port=$((20000 + RANDOM % 40000))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      echo "$port"
      return
    fi
  done
  return 1
}
port="$(free_port)" || die "no free port found"
token="bench_$(head -c 32 /dev/urandom | base64 | tr -dc 'A-Za-z0-9' | head -c 40)"
data_dir="$work/data"
mkdir -m 700 "$data_dir"

log "starting sigvault dev on 127.0.0.1:$port (pinning: $pinning)"
SIGVAULT_ROOT_TOKEN="$token" SIGVAULT_LOG="${SIGVAULT_LOG:-warn}" \
  "${server_pin[@]}" "$bin" dev --data-dir "$data_dir" --listen "127.0.0.1:$port" \
  >"$work/server.out" 2>"$work/server.err" &
server_pid=$!

base=""
for _ in $(seq 1 600); do
  if line="$(grep -m1 '^listening on ' "$work/server.out" 2>/dev/null)"; then
    base="${line#listening on }"
    break
  fi
  if ! kill -0 "$server_pid" 2>/dev/null; then
    cat "$work/server.out" "$work/server.err" >&2 || true
    die "sigvault dev exited before listening"
  fi
  sleep 0.1
done
if [ -z "$base" ]; then
  cat "$work/server.err" >&2 || true
  die "sigvault dev did not print 'listening on' within 60 s"
fi
log "server ready at $base"

# ---- key, message, signature ---------------------------------------------------------
# The token goes to curl through a header file and to wrk through the environment, so it
# never shows up in a process's argv.
(umask 077 && printf 'Authorization: Bearer %s\n' "$token" >"$work/auth.header")
# curl writes the body to a file and prints the status; any non-expected status fails.
call() { # method path expected_status [json_body] -> body on stdout
  local method="$1" path="$2" want="$3" body="${4:-}" status
  local args=(-sS -o "$work/resp.json" -w '%{http_code}' -X "$method"
              -H "@$work/auth.header" -H 'Content-Type: application/json')
  [ -n "$body" ] && args+=(--data-binary "$body")
  status="$("${client_pin[@]}" curl "${args[@]}" "$base$path")" || die "$method $path: curl failed"
  if [ "$status" != "$want" ]; then
    cat "$work/resp.json" >&2 || true; echo >&2
    die "$method $path answered $status, expected $want"
  fi
  cat "$work/resp.json"
}
# Pulls a top-level string field out of a small JSON object (base64 values need no unescaping).
json_string() { sed -n "s/.*\"$1\"[[:space:]]*:[[:space:]]*\"\([^\"]*\)\".*/\1/p" | head -n1; }

call GET /v1/sys/ping 200 >/dev/null
# The key belongs to the principal `bench-svc`; with CALLER=service the load runs as that
# service (group `service`), so every verify is decided by the shipped policy
# `service-sign-verify-own-keys`.
call POST /v1/keys 201 "{\"name\":\"$KEY_NAME\",\"algorithm\":\"hmac-sha256\",\"owner\":\"bench-svc\"}" >/dev/null
if [ "$CALLER" = "service" ]; then
  token="$(call POST /v1/auth/tokens 201 '{"principal":"bench-svc","groups":["service"],"description":"bench/verify.sh"}' | json_string token)"
  [ -n "$token" ] || die "no token in the create-token response"
  (umask 077 && printf 'Authorization: Bearer %s\n' "$token" >"$work/auth.header")
  who="$(call GET /v1/auth/whoami 200)"
  [[ "$who" == *'"groups":["service"]'* ]] || die "the bench token is not a service: $who"
  log "verifying as principal bench-svc in group service (shipped policies)"
fi
message="$(head -c "$MESSAGE_BYTES" /dev/urandom | base64 -w0)"
signature="$(call POST "/v1/keys/$KEY_NAME/sign" 200 "{\"message\":\"$message\"}" | json_string signature)"
[ -n "$signature" ] || die "no signature in the sign response"
verify_body="{\"message\":\"$message\",\"signature\":\"$signature\"}"
check="$(call POST "/v1/keys/$KEY_NAME/verify" 200 "$verify_body")"
[[ "$check" =~ \"valid\"[[:space:]]*:[[:space:]]*true ]] || die "verify did not answer \"valid\":true: $check"
log "verify of the bench message answers 200 \"valid\":true"

# ---- load ----------------------------------------------------------------------------
# CPU time (user + system, in clock ticks) the server process has used so far; fields 14
# and 15 of /proc/PID/stat, counted after the ")" that ends the command name.
clk_tck="$(getconf CLK_TCK 2>/dev/null || echo 100)"
server_ticks() {
  local stat
  stat="$(cat "/proc/$server_pid/stat" 2>/dev/null)" || { echo 0; return; }
  stat="${stat##*) }"
  awk '{ print $12 + $13 }' <<<"$stat"
}

# run_wrk NAME URL [extra wrk args...] -> sets RPS, REQS, CPU_S (server CPU seconds used
# while wrk ran) and WALL_S (how long wrk ran); fails on non-2xx/3xx or socket errors
RPS=""; REQS=""; CPU_S=""; WALL_S=""
run_wrk() {
  local name="$1" url="$2"; shift 2
  local out="$work/wrk-$name.txt"
  log "wrk $name: ${DURATION}s, $CONNECTIONS connections, $THREADS threads -> $url"
  local t0 t1 w0 w1
  t0="$(server_ticks)"; w0="$(date +%s.%N)"
  if ! BENCH_KEY="$KEY_NAME" BENCH_MESSAGE="$message" BENCH_SIGNATURE="$signature" BENCH_TOKEN="$token" \
      "${client_pin[@]}" wrk -t"$THREADS" -c"$CONNECTIONS" -d"${DURATION}s" --timeout 10s "$@" "$url" >"$out" 2>&1; then
    cat "$out" >&2
    die "wrk $name failed"
  fi
  t1="$(server_ticks)"; w1="$(date +%s.%N)"
  CPU_S="$(awk -v a="$t0" -v b="$t1" -v hz="$clk_tck" 'BEGIN { printf "%.3f", (b - a) / hz }')"
  WALL_S="$(awk -v a="$w0" -v b="$w1" 'BEGIN { printf "%.3f", b - a }')"
  sed 's/^/    /' "$out" >&2
  if ! kill -0 "$server_pid" 2>/dev/null; then
    tail -n 50 "$work/server.err" >&2 || true
    die "the server died during wrk $name"
  fi
  local non2xx errors
  non2xx="$(sed -n 's/^[[:space:]]*Non-2xx or 3xx responses:[[:space:]]*\([0-9]*\).*/\1/p' "$out")"
  if [ -n "$non2xx" ] && [ "$non2xx" != "0" ]; then
    die "wrk $name: $non2xx non-2xx/3xx responses"
  fi
  errors="$(grep -E '^[[:space:]]*Socket errors:' "$out" || true)"
  [ -z "$errors" ] || die "wrk $name: $errors"
  RPS="$(sed -n 's/^Requests\/sec:[[:space:]]*\([0-9.]*\).*/\1/p' "$out")"
  [ -n "$RPS" ] || die "wrk $name: no Requests/sec in its output"
  local total
  total="$(sed -n 's/^[[:space:]]*\([0-9]*\) requests in .*/\1/p' "$out")"
  [ "${total:-0}" -gt 0 ] || die "wrk $name: no request completed"
  REQS="$total"
}

# ROUNDS=1 (default): ping, verify, ping. ROUNDS=N: ping, verify, ping, verify, …, ping;
# each verify run is compared with the mean of the ping runs on either side of it.
rows=()   # "kind rps requests server_cpu_seconds wall_seconds" per wrk run, in order
run_wrk ping1 "$base/v1/sys/ping"
rows+=("ping $RPS $REQS $CPU_S $WALL_S")
for r in $(seq 1 "$ROUNDS"); do
  run_wrk "verify$r" "$base/v1/keys/$KEY_NAME/verify" -s "$here/verify.lua"
  rows+=("verify $RPS $REQS $CPU_S $WALL_S")
  run_wrk "ping$((r + 1))" "$base/v1/sys/ping"
  rows+=("ping $RPS $REQS $CPU_S $WALL_S")
done

# The server must still verify correctly after the load.
check="$(call POST "/v1/keys/$KEY_NAME/verify" 200 "$verify_body")"
[[ "$check" =~ \"valid\"[[:space:]]*:[[:space:]]*true ]] || die "verify after the load: $check"

# ---- report --------------------------------------------------------------------------
printf '%s\n' "${rows[@]}" | awk -v d="$DURATION" -v c="$CONNECTIONS" -v t="$THREADS" \
    -v m="$MESSAGE_BYTES" -v pin="$pinning" -v caller="$CALLER" -v key="$KEY_NAME" '
function median(a, n,    i, j, x, b) {
  for (i = 1; i <= n; i++) b[i] = a[i]
  for (i = 2; i <= n; i++) { x = b[i]; for (j = i - 1; j >= 1 && b[j] > x; j--) b[j + 1] = b[j]; b[j + 1] = x }
  return (n % 2) ? b[(n + 1) / 2] : (b[n / 2] + b[n / 2 + 1]) / 2
}
{ kind[NR] = $1; rps[NR] = $2; reqs[NR] = $3; cpu[NR] = $4; wall[NR] = $5 }
END {
  n = NR; rounds = (n - 1) / 2
  # Server CPU microseconds per request, and how busy the server was (CPU s / wall s).
  for (i = 1; i <= n; i++) us[i] = (reqs[i] > 0) ? cpu[i] * 1e6 / reqs[i] : 0
  pings = 0; psum = 0; pcpu = 0; preq = 0
  for (i = 1; i <= n; i += 2) { pings++; psum += rps[i]; pcpu += cpu[i]; preq += reqs[i] }
  pmean = psum / pings; pus = pcpu * 1e6 / preq
  if (pmean <= 0) { print "bench: error: ping throughput is 0" > "/dev/stderr"; exit 1 }
  drift = (rps[1] > 0) ? (rps[n] - rps[1]) / rps[1] * 100 : 0
  vsum = 0; vcpu = 0; vreq = 0
  for (r = 1; r <= rounds; r++) {
    i = 2 * r
    ratio[r] = rps[i] / ((rps[i - 1] + rps[i + 1]) / 2)
    pu_r = (cpu[i - 1] + cpu[i + 1]) * 1e6 / (reqs[i - 1] + reqs[i + 1])
    cratio[r] = (us[i] > 0) ? pu_r / us[i] : 0
    vsum += rps[i]; vcpu += cpu[i]; vreq += reqs[i]
  }
  vmean = vsum / rounds; vus = vcpu * 1e6 / vreq
  printf "\n"
  printf "sigvault verify vs ping: wrk %d threads, %d keep-alive connections, %d s per run, %d-byte message, %d round(s)\n", t, c, d, m, rounds
  printf "pinning: %s\n", pin
  printf "caller: %s\n", (caller == "service" ? "service token (group service), shipped Cedar policies" : "root token (group admin), shipped Cedar policies")
  printf "%-32s %12s %14s %12s\n", "endpoint", "requests/s", "server CPU/req", "server busy"
  p = 0; v = 0
  for (i = 1; i <= n; i++) {
    if (kind[i] == "ping") label = sprintf("GET /v1/sys/ping (run %d)", ++p)
    else label = sprintf("POST /v1/keys/%s/verify", key) (rounds > 1 ? sprintf(" (%d)", ++v) : "")
    printf "%-32s %12.0f %11.1f us %11.0f%%\n", label, rps[i], us[i], (wall[i] > 0) ? cpu[i] / wall[i] * 100 : 0
  }
  printf "%-32s %12.0f %11.1f us   (ping drift first->last %+.1f%%)\n", "GET /v1/sys/ping (mean)", pmean, pus, drift
  if (rounds > 1) printf "%-32s %12.0f %11.1f us\n", sprintf("POST /v1/keys/%s/verify (mean)", key), vmean, vus
  for (r = 1; r <= rounds && rounds > 1; r++)
    printf "%-32s %12.2f %14.2f\n", sprintf("ratio verify/ping, round %d", r), ratio[r], cratio[r]
  printf "%-32s %12.2f %14.2f\n", (rounds > 1 ? "ratio verify/ping (median)" : "ratio verify/ping"), median(ratio, rounds), median(cratio, rounds)
  printf "RATIO verify/ping = %.2f\n", median(ratio, rounds)
  printf "CPU-RATIO verify/ping = %.2f   (server CPU per ping request / per verify request)\n", median(cratio, rounds)
}'
