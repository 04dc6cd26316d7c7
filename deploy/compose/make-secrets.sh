#!/bin/sh
# Makes the compose secrets docker-compose.yml mounts, once: random values in
# deploy/compose/secrets/ (mode 0600, ignored by git). Run again: existing files are kept.
set -eu
dir="$(cd "$(dirname "$0")" && pwd)/secrets"
umask 077
mkdir -p "$dir"
random() { head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n'; }
keep() { [ -s "$dir/$1" ] || { printf '%s' "$2" >"$dir/$1"; echo "made secrets/$1"; }; }
keep root-token "svt_$(random)"
keep database-password "$(random)"
keep database-url "postgres://sigvault:$(cat "$dir/database-password")@postgres:5432/sigvault"
keep hsm-pin "$(random)"
keep hsm-so-pin "$(random)"
echo "root token: $(cat "$dir/root-token")"
