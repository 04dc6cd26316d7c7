#!/usr/bin/env bash
# Starts sigvault on the embedded default: a SoftHSM2 token and a SQLite database in
# ./.sigvault-dev (created on first start, reused afterwards). Installs SoftHSM2 through
# apt when it is missing. Extra arguments go to `sigvault dev` (e.g. --listen 0.0.0.0:8200).
set -euo pipefail
cd "$(dirname "$0")/.."
softhsm/install.sh
exec cargo run --locked --release --quiet -- dev "$@"
