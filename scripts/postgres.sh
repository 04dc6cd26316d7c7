#!/usr/bin/env bash
# Makes sure a PostgreSQL server the tests can use answers, and prints the shell line that
# names it: `export SIGVAULT_TEST_POSTGRES_URL=postgres://…` (the server's admin database;
# every test creates a fresh database of its own there and drops it afterwards).
#
#   eval "$(scripts/postgres.sh start)"   # by scripts/test.sh
#   scripts/postgres.sh stop               # stops a cluster this script started
#
# In this order:
# 1. SIGVAULT_TEST_POSTGRES_URL already set: used as it is.
# 2. A server on 127.0.0.1:5432 that lets `postgres` in without a password (a developer's or a
#    CI machine's): used. (SIGVAULT_TEST_POSTGRES_SHARED names another URL to try instead.)
# 3. Otherwise a throwaway cluster: PostgreSQL is installed with apt when missing, and a
#    cluster is created in a directory of this checkout's own under /tmp (owned by the
#    `postgres` system user when run as root, since PostgreSQL refuses to run as root, and
#    a checkout under /root is closed to that user) and started on 127.0.0.1 at a port
#    derived from the checkout's path (55432–56431), trust auth, reachable only from this
#    machine. `stop` (or the next `start`) removes it.
set -euo pipefail
cd "$(dirname "$0")/.."

action=${1:-start}
checkout_sum=$(printf '%s' "$PWD" | cksum | cut -d' ' -f1)
cluster=${TMPDIR:-/tmp}/sigvault-postgres-test-$(id -u)-$checkout_sum
port=$((55432 + checkout_sum % 1000))

as_owner() {
  if [ "$(id -u)" -eq 0 ]; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

bin_dir() {
  # The newest installed server's binaries (Debian keeps them out of PATH).
  ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1
}

stop_cluster() {
  local bin
  bin=$(bin_dir)
  if [ -n "$bin" ] && [ -f "$cluster/data/postmaster.pid" ]; then
    as_owner "$bin/pg_ctl" -D "$cluster/data" stop -m fast >/dev/null 2>&1 || true
  fi
  rm -rf "$cluster"
}

answers() {
  # $1: URL. psql (the client) is needed to ask; without it nothing "answers".
  command -v psql >/dev/null && psql "$1" -XAtqc 'SELECT 1' >/dev/null 2>&1
}

case $action in
  stop)
    stop_cluster
    exit 0
    ;;
  start) ;;
  *)
    echo "postgres.sh: usage: postgres.sh start|stop" >&2
    exit 2
    ;;
esac

if [ -n "${SIGVAULT_TEST_POSTGRES_URL:-}" ]; then
  echo "export SIGVAULT_TEST_POSTGRES_URL='$SIGVAULT_TEST_POSTGRES_URL'"
  exit 0
fi

sudo=""
[ "$(id -u)" -ne 0 ] && sudo="sudo"
if ! command -v psql >/dev/null || [ -z "$(bin_dir)" ]; then
  echo "postgres.sh: PostgreSQL not found, installing it with apt-get" >&2
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends postgresql postgresql-client >/dev/null
fi

shared=${SIGVAULT_TEST_POSTGRES_SHARED:-postgres://postgres@127.0.0.1:5432/postgres}
if answers "$shared"; then
  echo "postgres.sh: using the server on 127.0.0.1:5432" >&2
  echo "export SIGVAULT_TEST_POSTGRES_URL='$shared'"
  exit 0
fi

bin=$(bin_dir)
[ -n "$bin" ] || { echo "postgres.sh: no PostgreSQL server binaries under /usr/lib/postgresql" >&2; exit 1; }
stop_cluster
mkdir -p "$cluster"
[ "$(id -u)" -eq 0 ] && chown postgres: "$cluster"
echo "postgres.sh: starting a throwaway cluster in $cluster on 127.0.0.1:$port" >&2
as_owner "$bin/initdb" -D "$cluster/data" -U postgres --auth=trust --no-sync -E UTF8 >"$cluster/initdb.log" 2>&1 ||
  { cat "$cluster/initdb.log" >&2; exit 1; }
# TLS as a production server has it (the store's TLS test connects with sslmode=require): a
# self-signed certificate made for this cluster.
if command -v openssl >/dev/null; then
  openssl req -new -x509 -days 2 -nodes -subj "/CN=127.0.0.1" \
    -keyout "$cluster/server.key" -out "$cluster/server.crt" >/dev/null 2>&1
  chmod 600 "$cluster/server.key"
  [ "$(id -u)" -eq 0 ] && chown postgres: "$cluster/server.key" "$cluster/server.crt"
  tls="-c ssl=on -c ssl_cert_file=$cluster/server.crt -c ssl_key_file=$cluster/server.key"
else
  tls=""
fi
# Durability is not under test against this cluster (a crash loses the cluster anyway):
# fsync off keeps the suite's thousands of small commits cheap.
as_owner "$bin/pg_ctl" -D "$cluster/data" -l "$cluster/server.log" -w -t 60 start \
  -o "-c listen_addresses=127.0.0.1 -p $port -k $cluster -c fsync=off -c max_connections=400 $tls" >/dev/null ||
  { cat "$cluster/server.log" >&2; exit 1; }
url=postgres://postgres@127.0.0.1:$port/postgres
answers "$url" || { echo "postgres.sh: the cluster started but does not answer at $url" >&2; exit 1; }
echo "export SIGVAULT_TEST_POSTGRES_URL='$url'"
