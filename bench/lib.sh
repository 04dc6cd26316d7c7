# shellcheck shell=bash
# Shared machinery of the bench/*.sh load benchmarks; sourced, never run. Sourcing sets the
# common defaults below, $root (the repository) and cds there. A benchmark script sets its
# own defaults, sources this file, then calls, in this order:
#
#   bench_check_caller SCRIPT             CALLER must be service or root (exit 2 otherwise)
#   bench_check_ints NAME...              each named variable must be a positive integer
#   bench_tools [TOOL...]                 wrk (apt-get), SoftHSM2 (softhsm/install.sh), and
#                                         curl, base64, head plus the given tools must exist
#   bench_tempdir                         $work (mktemp -d) and the cleanup trap
#   bench_build                           cargo build --release unless SKIP_BUILD=1; $bin
#   bench_pinning                         server_pin / client_pin / pinning (see below)
#   bench_start_server                    sigvault dev on a free loopback port, root token in
#                                         $token and $work/auth.header; $base; GET ping 200
#   ... its own set-up with `call` / `json_string` / `bench_set_token`, or for the verify
#   benchmarks bench_verify_key DESC (key, service token, signed message, $verify_body) ...
#   WRK_ENV=(NAME=value ...)              extra environment for every wrk run (its Lua inputs)
#   bench_rounds RUN PATH [wrk args...]   ping, RUN1, ping, [RUN2, ping, ...] -> rows
#   ... its own after-load check ...
#   bench_report LABEL NAME WHAT          the table and `RATIO NAME/ping = X`
#
# Common environment (each script's header documents it for its users):
#   DURATION (10), CONNECTIONS (64), THREADS (2), ROUNDS (1), PIN_CPUS (1), SKIP_BUILD (0),
#   KEEP_LOGS (0), CALLER (service), SIGVAULT_LOG (server log filter, default warn), BIN (the
#   server binary, default this checkout's release build: set it to compare two builds).
# Secrets (the root token, caller tokens) go to curl through a header file and to wrk through
# the environment, never through a process's argv.

DURATION="${DURATION:-10}"
CONNECTIONS="${CONNECTIONS:-64}"
THREADS="${THREADS:-2}"
ROUNDS="${ROUNDS:-1}"
PIN_CPUS="${PIN_CPUS:-1}"
SKIP_BUILD="${SKIP_BUILD:-0}"
KEEP_LOGS="${KEEP_LOGS:-0}"
CALLER="${CALLER:-service}"

bench_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$bench_dir/.." && pwd)"
cd "$root" || exit 1

log() { echo "bench: $*" >&2; }
die() { echo "bench: error: $*" >&2; exit 1; }

bench_check_caller() { # script-name
  case "$CALLER" in
    service|root) ;;
    *) echo "$1: CALLER must be service or root" >&2; exit 2;;
  esac
}

bench_check_ints() { # NAME... -> dies unless each variable holds a positive integer
  local n
  for n in "$@"; do
    [[ "${!n}" =~ ^[1-9][0-9]*$ ]] || die "$n must be a positive integer (got '${!n}')"
  done
}

# ---- tools ---------------------------------------------------------------------------
bench_tools() { # [extra tool...]
  local sudo="" tool
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  if ! command -v wrk >/dev/null 2>&1; then
    log "wrk not found, installing with apt-get"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq wrk >/dev/null
    command -v wrk >/dev/null 2>&1 || die "wrk is still missing after apt-get install"
  fi
  bash "$root/softhsm/install.sh"
  for tool in curl base64 head "$@"; do
    command -v "$tool" >/dev/null 2>&1 || die "$tool is required"
  done
}

# ---- temp dir, cleanup ---------------------------------------------------------------
work=""
server_pid=""
bench_cleanup() {
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
  if [ -n "$work" ]; then
    if [ "$KEEP_LOGS" = "1" ]; then
      echo "bench: kept $work" >&2
    else
      rm -rf "$work"
    fi
  fi
  exit "$rc"
}
bench_tempdir() {
  work="$(mktemp -d "${TMPDIR:-/tmp}/sigvault-bench.XXXXXX")"
  trap bench_cleanup EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
}

# ---- build ---------------------------------------------------------------------------
bin="${BIN:-$root/target/release/sigvault}"
bench_build() {
  if [ "$SKIP_BUILD" != "1" ]; then
    log "cargo build --release"
    cargo build --release --quiet || die "cargo build --release failed"
  fi
  [ -x "$bin" ] || die "$bin is missing"
}

# ---- CPU pinning ---------------------------------------------------------------------
# On a 2-core machine the server gets one core and wrk (plus curl) the other, so that the
# load generator and the server do not steal time from each other and both runs see the
# same split. tokio sizes its worker pool from the affinity mask, so the server runs one
# worker thread on its core.
server_pin=()
client_pin=()
pinning=""
bench_pinning() {
  local ncpu
  ncpu="$(nproc 2>/dev/null || echo 1)"
  if [ "$PIN_CPUS" = "1" ] && command -v taskset >/dev/null 2>&1 && [ "$ncpu" -ge 2 ]; then
    server_pin=(taskset -c 1)
    client_pin=(taskset -c 0)
    pinning="server on CPU 1, wrk on CPU 0 (taskset)"
  else
    pinning="none (PIN_CPUS=$PIN_CPUS, taskset $(command -v taskset >/dev/null 2>&1 && echo present || echo missing), $ncpu CPUs)"
  fi
}

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

# The bearer token of the following curl calls and wrk runs: kept in $token (handed to wrk
# through the environment) and in $work/auth.header (handed to curl as a header file).
bench_set_token() { # token
  token="$1"
  (umask 077 && printf 'Authorization: Bearer %s\n' "$token" >"$work/auth.header")
}

port=""
token=""
base=""
bench_start_server() { # -> server_pid, base, token (the root token); checks GET ping
  port="$(free_port)" || die "no free port found"
  token="bench_$(head -c 32 /dev/urandom | base64 | tr -dc 'A-Za-z0-9' | head -c 40)"
  local data_dir="$work/data" line
  mkdir -m 700 "$data_dir"

  log "starting sigvault dev on 127.0.0.1:$port (pinning: $pinning)"
  SIGVAULT_ROOT_TOKEN="$token" SIGVAULT_LOG="${SIGVAULT_LOG:-warn}" \
    "${server_pin[@]}" "$bin" dev --data-dir "$data_dir" --listen "127.0.0.1:$port" \
    >"$work/server.out" 2>"$work/server.err" &
  server_pid=$!

  base=""
  for _ in $(seq 1 "${START_TRIES:-600}"); do
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
    die "sigvault dev did not print 'listening on' within $(( ${START_TRIES:-600} / 10 )) s"
  fi
  log "server ready at $base"

  bench_set_token "$token"
  call GET /v1/sys/ping 200 >/dev/null
}

# The verify benchmarks' set-up: an hmac-sha256 key $KEY_NAME owned by `bench-svc`; with
# CALLER=service a caller token of that service (group `service`, so every verify is decided
# by the shipped policy `service-sign-verify-own-keys`) becomes the token; one random
# $MESSAGE_BYTES-byte message signed, and its verify checked to answer "valid":true.
bench_verify_key() { # description-of-the-caller-token -> message, signature, verify_body
  call POST /v1/keys 201 "{\"name\":\"$KEY_NAME\",\"algorithm\":\"hmac-sha256\",\"owner\":\"bench-svc\",\"boundary\":\"${BOUNDARY:-process}\"}" >/dev/null
  if [ "$CALLER" = "service" ]; then
    local svc_token who
    svc_token="$(call POST /v1/auth/tokens 201 "{\"principal\":\"bench-svc\",\"groups\":[\"service\"],\"description\":\"$1\"}" | json_string token)"
    [ -n "$svc_token" ] || die "no token in the create-token response"
    bench_set_token "$svc_token"
    who="$(call GET /v1/auth/whoami 200)"
    [[ "$who" == *'"groups":["service"]'* ]] || die "the bench token is not a service: $who"
    log "verifying as principal bench-svc in group service (shipped policies)"
  fi
  message="$(head -c "$MESSAGE_BYTES" /dev/urandom | base64 -w0)"
  signature="$(call POST "/v1/keys/$KEY_NAME/sign" 200 "{\"message\":\"$message\"}" | json_string signature)"
  [ -n "$signature" ] || die "no signature in the sign response"
  verify_body="{\"message\":\"$message\",\"signature\":\"$signature\"}"
  local check
  check="$(call POST "/v1/keys/$KEY_NAME/verify" 200 "$verify_body")"
  [[ "$check" =~ \"valid\"[[:space:]]*:[[:space:]]*true ]] || die "verify did not answer \"valid\":true: $check"
  log "verify of the bench message answers 200 \"valid\":true"
}

# curl writes the body to a file and prints the status; any non-expected status fails.
# A json_body of "@FILE" sends the file's contents (curl's --data-binary syntax).
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

# Extra environment of every wrk run, as NAME=value words (the script's Lua inputs); wrk
# also gets BENCH_TOKEN=$token. Exported in a subshell by a builtin, so never in any argv.
WRK_ENV=()

# run_wrk NAME URL [extra wrk args...] -> sets RPS, REQS, CPU_S (server CPU seconds used
# while wrk ran) and WALL_S (how long wrk ran); fails on non-2xx/3xx or socket errors
RPS=""; REQS=""; CPU_S=""; WALL_S=""
run_wrk() {
  local name="$1" url="$2"; shift 2
  local out="$work/wrk-$name.txt"
  log "wrk $name: ${DURATION}s, $CONNECTIONS connections, $THREADS threads -> $url"
  local t0 t1 w0 w1
  t0="$(server_ticks)"; w0="$(date +%s.%N)"
  if ! (
      if [ "${#WRK_ENV[@]}" -gt 0 ]; then export "${WRK_ENV[@]}"; fi
      BENCH_TOKEN="$token" exec "${client_pin[@]}" wrk -t"$THREADS" -c"$CONNECTIONS" -d"${DURATION}s" --timeout 10s "$@" "$url"
    ) >"$out" 2>&1; then
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

# bench_rounds RUN PATH [extra wrk args...]
# ROUNDS=1 (default): ping, RUN1, ping. ROUNDS=N: ping, RUN1, ping, RUN2, …, ping; each run
# of the operation is compared with the mean of the ping runs on either side of it.
rows=()   # "kind rps requests server_cpu_seconds wall_seconds" per wrk run, in order
bench_rounds() {
  local run="$1" path="$2" r; shift 2
  rows=()
  run_wrk ping1 "$base/v1/sys/ping"
  rows+=("ping $RPS $REQS $CPU_S $WALL_S")
  for r in $(seq 1 "$ROUNDS"); do
    run_wrk "$run$r" "$base$path" "$@"
    rows+=("op $RPS $REQS $CPU_S $WALL_S")
    run_wrk "ping$((r + 1))" "$base/v1/sys/ping"
    rows+=("ping $RPS $REQS $CPU_S $WALL_S")
  done
}

# ---- report --------------------------------------------------------------------------
# bench_report LABEL NAME WHAT
#   LABEL  the operation's rows in the table, e.g. "POST /v1/keys/bench/verify"
#   NAME   the ratio's name: "RATIO NAME/ping = X", e.g. "verify" or "sigv4-verify"
#   WHAT   the workload, in the title line after "N s per run, ", e.g. "256-byte message"
bench_report() {
  local label="$1" name="$2" what="$3"
  printf '%s\n' "${rows[@]}" | awk -v d="$DURATION" -v c="$CONNECTIONS" -v t="$THREADS" \
      -v what="$what" -v pin="$pinning" -v caller="$CALLER" -v label="$label" -v name="$name" '
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
  printf "sigvault %s vs ping: wrk %d threads, %d keep-alive connections, %d s per run, %s, %d round(s)\n", name, t, c, d, what, rounds
  printf "pinning: %s\n", pin
  printf "caller: %s\n", (caller == "service" ? "service token (group service), shipped Cedar policies" : "root token (group admin), shipped Cedar policies")
  printf "%-32s %12s %14s %12s\n", "endpoint", "requests/s", "server CPU/req", "server busy"
  p = 0; v = 0
  for (i = 1; i <= n; i++) {
    if (kind[i] == "ping") row = sprintf("GET /v1/sys/ping (run %d)", ++p)
    else row = label (rounds > 1 ? sprintf(" (%d)", ++v) : "")
    printf "%-32s %12.0f %11.1f us %11.0f%%\n", row, rps[i], us[i], (wall[i] > 0) ? cpu[i] / wall[i] * 100 : 0
  }
  printf "%-32s %12.0f %11.1f us   (ping drift first->last %+.1f%%)\n", "GET /v1/sys/ping (mean)", pmean, pus, drift
  if (rounds > 1) printf "%-32s %12.0f %11.1f us\n", label " (mean)", vmean, vus
  for (r = 1; r <= rounds && rounds > 1; r++)
    printf "%-32s %12.2f %14.2f\n", sprintf("ratio %s/ping, round %d", name, r), ratio[r], cratio[r]
  printf "%-32s %12.2f %14.2f\n", "ratio " name "/ping" (rounds > 1 ? " (median)" : ""), median(ratio, rounds), median(cratio, rounds)
  printf "RATIO %s/ping = %.2f\n", name, median(ratio, rounds)
  printf "CPU-RATIO %s/ping = %.2f   (server CPU per ping request / per %s request)\n", name, median(cratio, rounds), name
}'
}
