#!/usr/bin/env bash
# Starts sigvault on the embedded default: a SoftHSM2 token and a SQLite database in
# ./.sigvault-dev (created on first start, reused afterwards). Installs SoftHSM2 through
# apt when it is missing. Extra arguments go to `sigvault dev` (e.g. --listen 0.0.0.0:8200).
set -euo pipefail
cd "$(dirname "$0")/.."
softhsm/install.sh
if [ ! -x target/release/sigvault ]; then
  echo "dev.sh: building sigvault (release) — the first build takes about 5 minutes on 2 cores" >&2
fi
# cargo prints its progress (the crates it compiles) on stderr; a later run that has
# nothing to rebuild prints one line.
exec cargo run --locked --release -- dev "$@"
