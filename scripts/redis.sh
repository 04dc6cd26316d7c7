#!/usr/bin/env bash
# Makes sure a Redis the tests can use answers, and prints the shell line that names it:
# `export SIGVAULT_TEST_REDIS_URL=redis://…` (the shared rate limits' tests; each uses a key
# namespace of its own and deletes its keys).
#
#   eval "$(scripts/redis.sh start)"   # by scripts/test.sh
#   scripts/redis.sh stop               # stops a server this script started
#
# In this order:
# 1. SIGVAULT_TEST_REDIS_URL already set: used as it is.
# 2. A Redis on 127.0.0.1:6379 that answers PING: used.
# 3. Otherwise a throwaway server: redis-server is installed with apt when missing and started
#    on 127.0.0.1 at a port derived from the checkout's path (56432–57431), without
#    persistence, reachable only from this machine. `stop` (or the next `start`) ends it.
set -euo pipefail
cd "$(dirname "$0")/.."

action=${1:-start}
checkout_sum=$(printf '%s' "$PWD" | cksum | cut -d' ' -f1)
dir=${TMPDIR:-/tmp}/sigvault-redis-test-$(id -u)-$checkout_sum
port=$((56432 + checkout_sum % 1000))

# Whether a Redis answers PING on 127.0.0.1:$1 (bash's /dev/tcp: no client needed).
answers() {
  timeout 2 bash -c "exec 3<>/dev/tcp/127.0.0.1/$1 && printf 'PING\r\n' >&3 && head -c 5 <&3" 2>/dev/null | grep -q '+PONG'
}

stop_server() {
  if [ -f "$dir/redis.pid" ]; then
    kill "$(cat "$dir/redis.pid")" 2>/dev/null || true
  fi
  rm -rf "$dir"
}

case $action in
  stop)
    stop_server
    exit 0
    ;;
  start) ;;
  *)
    echo "usage: scripts/redis.sh start|stop" >&2
    exit 2
    ;;
esac

if [ -n "${SIGVAULT_TEST_REDIS_URL:-}" ]; then
  echo "export SIGVAULT_TEST_REDIS_URL='$SIGVAULT_TEST_REDIS_URL'"
  exit 0
fi
if answers 6379; then
  echo "export SIGVAULT_TEST_REDIS_URL='redis://127.0.0.1:6379'"
  exit 0
fi

stop_server
if ! command -v redis-server >/dev/null; then
  sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  echo "redis-server: not found, installing with apt-get" >&2
  $sudo apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends redis-server >&2
fi
mkdir -p "$dir"
redis-server --bind 127.0.0.1 --port "$port" --save '' --appendonly no --dir "$dir" \
  --daemonize yes --pidfile "$dir/redis.pid" --logfile "$dir/redis.log" >&2
for _ in $(seq 1 50); do
  answers "$port" && break
  sleep 0.1
done
answers "$port" || { echo "redis-server did not answer on 127.0.0.1:$port (log: $dir/redis.log)" >&2; exit 1; }
echo "export SIGVAULT_TEST_REDIS_URL='redis://127.0.0.1:$port'"
