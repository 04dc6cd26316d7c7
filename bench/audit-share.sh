#!/usr/bin/env bash
# The audit trail's share of a loaded server's CPU, sampled natively with `perf record` while
# wrk loads POST /v1/keys/{name}/verify (the same load as bench/verify.sh).
#
#   bench/audit-share.sh                    # 15 s of load, perf samples 8 s of it
#   DURABILITY=fsync bench/audit-share.sh   # the server's audit.durability
#   BIN=/other/build/sigvault bench/audit-share.sh
#
# Why beside bench/instructions.sh: callgrind counts instructions exactly, but under valgrind
# CPUID hides the SHA extensions, so every SHA-256 block (the chain MAC of each event, the
# verify's own HMAC) runs in software at several times its native cost, and the audit's
# share of instructions says more about valgrind than about the server. This samples the
# real thing: `perf record -e cpu-clock` (a software clock: no hardware counters needed) with
# DWARF call graphs on the server process, then sums the inclusive share of the audit's
# roots — the event's fields (`api::event_data`) and its chaining and write
# (`Auditor::record`) on the request's thread, the indexer task (`Indexer::run`), the
# fdatasync thread (`audit-sync`) and SQLite's worker thread (`sqlx-sqlite-wor`, where the
# store's inserts and WAL checkpoints run). Prints each part and
# `AUDIT-SHARE-NATIVE verify = P %`. Sampling perturbs the server a little, and a 2-core
# machine is noisy: compare builds in back-to-back runs.
#
# Environment: DURATION (15: wrk's run; the samples start WARMUP_S (3) into it and last
# SAMPLE_S (8)), MESSAGE_BYTES (256), DURABILITY (os), and lib.sh's CONNECTIONS, THREADS,
# PIN_CPUS, SKIP_BUILD, KEEP_LOGS, CALLER, BIN. Installs perf (Debian: linux-perf) with apt-get
# when missing. Never fails because of a figure; without a working perf it says so and prints
# `AUDIT-SHARE-NATIVE verify = ? %`.
# shellcheck source-path=SCRIPTDIR
set -euo pipefail

DURATION="${DURATION:-15}"
WARMUP_S="${WARMUP_S:-3}"
SAMPLE_S="${SAMPLE_S:-8}"
MESSAGE_BYTES="${MESSAGE_BYTES:-256}"
DURABILITY="${DURABILITY:-os}"
case "$DURABILITY" in
  os|fsync) ;;
  *) echo "audit-share.sh: DURABILITY must be os or fsync" >&2; exit 2;;
esac
export SIGVAULT_AUDIT__DURABILITY="$DURABILITY"
KEY_NAME="bench"

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=lib.sh
source "$here/lib.sh"

bench_check_caller audit-share.sh
bench_check_ints DURATION WARMUP_S SAMPLE_S MESSAGE_BYTES
[ $((WARMUP_S + SAMPLE_S)) -lt "$DURATION" ] || die "WARMUP_S + SAMPLE_S must be shorter than DURATION"
if ! command -v perf >/dev/null 2>&1; then
  sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  log "perf not found, installing linux-perf with apt-get"
  $sudo apt-get update -qq || true
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends linux-perf >/dev/null || true
fi
bench_tools python3
bench_tempdir
bench_build
[ -n "${BIN:-}" ] && bin="$BIN"
bench_pinning
bench_start_server
bench_verify_key "bench/audit-share.sh"

WRK_ENV=("BENCH_KEY=$KEY_NAME" "BENCH_MESSAGE=$message" "BENCH_SIGNATURE=$signature")
(run_wrk verify "$base/v1/keys/$KEY_NAME/verify" -s "$here/verify.lua") &
wrk_pid=$!
sleep "$WARMUP_S"
sampled=1
if ! command -v perf >/dev/null 2>&1 \
  || ! perf record -q -F 499 -e cpu-clock --call-graph dwarf,16384 -o "$work/perf.data" \
       -p "$server_pid" -- sleep "$SAMPLE_S" >"$work/perf.err" 2>&1; then
  sampled=0
  log "perf could not sample the server: $(tail -n 3 "$work/perf.err" 2>/dev/null | tr '\n' ' ')"
fi
wait "$wrk_pid" || die "the verify load failed"

share="?"
if [ "$sampled" = 1 ]; then
  perf report -i "$work/perf.data" --children --stdio -g none --sort sym >"$work/by-symbol.txt" 2>/dev/null || true
  perf report -i "$work/perf.data" --no-children --stdio -g none --sort comm >"$work/by-thread.txt" 2>/dev/null || true
  share="$(python3 - "$work/by-symbol.txt" "$work/by-thread.txt" <<'PY'
import re, sys
symbols = {"fields (api::event_data)": "sigvault::api::event_data",
           "chain and write (Auditor::record)": "sigvault::audit::writer::Auditor::record",
           "indexer task (Indexer::run)": "sigvault::audit::writer::indexer::Indexer::run"}
threads = {"fdatasync thread (audit-sync)": "audit-sync",
           "SQLite worker thread (sqlx-sqlite-wor)": "sqlx-sqlite-wor"}
found = {}
with open(sys.argv[1]) as f:
    for line in f:
        m = re.match(r"\s*([\d.]+)%\s+[\d.]+%\s+\[[.k]\]\s+(.*)", line)
        if not m:
            continue
        for label, root in symbols.items():
            if m.group(2).startswith(root):
                found[label] = max(found.get(label, 0.0), float(m.group(1)))
with open(sys.argv[2]) as f:
    for line in f:
        m = re.match(r"\s*([\d.]+)%\s+(\S.*?)\s*$", line)
        if m and m.group(2) in threads.values():
            for label, comm in threads.items():
                if comm == m.group(2):
                    found[label] = float(m.group(1))
for label in list(symbols) + list(threads):
    print("  %-42s %5.1f %%" % (label, found.get(label, 0.0)), file=sys.stderr)
print("%.1f" % sum(found.values()))
PY
)"
fi

echo "sigvault audit share of server CPU (perf cpu-clock samples, ${SAMPLE_S}s of a ${DURATION}s wrk verify load, $CONNECTIONS connections, caller $CALLER, audit.durability $DURABILITY)"
echo "pinning: $pinning"
echo "AUDIT-SHARE-NATIVE verify = $share %"
