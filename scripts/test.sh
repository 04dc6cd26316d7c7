#!/usr/bin/env bash
# The whole test suite, exactly as CI runs it (.ci/run calls this and nothing else).
# Installs what the tests need when it is missing (SoftHSM2, PostgreSQL, Redis, Chromium,
# botocore, schemathesis), then checks formatting and lints, runs every unit, vector and
# black-box test (the black-box suite on SQLite and again on PostgreSQL), and every fuzz
# target briefly.
set -euo pipefail
cd "$(dirname "$0")/.."

command -v cargo >/dev/null || { echo "test.sh: cargo not found; install Rust with rustup (https://rustup.rs)" >&2; exit 1; }
if command -v rustup >/dev/null; then
  rustup toolchain install --profile minimal --component rustfmt,clippy "$(sed -n 's/^channel = "\(.*\)"/\1/p' rust-toolchain.toml)" >/dev/null 2>&1 || true
fi

softhsm/install.sh

# The PostgreSQL store's tests (its contract tests, and the black-box suite run on it) need a
# server: the one on 127.0.0.1:5432 when it lets `postgres` in, else a throwaway cluster
# (installed with apt when missing), stopped when the suite ends. Each test makes a fresh
# database of its own there and drops it.
eval "$(scripts/postgres.sh start)"
# The shared rate limits' tests need a Redis: the one on 127.0.0.1:6379 when it answers, else a
# throwaway server (installed with apt when missing), stopped when the suite ends.
eval "$(scripts/redis.sh start)"
trap 'scripts/postgres.sh stop; scripts/redis.sh stop' EXIT

# The compliance-report test renders its HTML page in headless Chromium (Debian's `chromium`).
if [ ! -x /usr/bin/chromium ]; then
  sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  echo "chromium: not found, installing with apt-get" >&2
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends chromium >/dev/null
  [ -x /usr/bin/chromium ] || { echo "chromium: installed, but /usr/bin/chromium is still missing" >&2; exit 1; }
fi

# The README tour test (tests/api/readme_tour.rs) runs the tour's shell blocks, which call the
# vault with curl and read its answers with jq.
if ! command -v jq >/dev/null || ! command -v curl >/dev/null; then
  sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  echo "jq, curl: not found, installing with apt-get" >&2
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends jq curl >/dev/null
  command -v jq >/dev/null && command -v curl >/dev/null || { echo "jq, curl: installed, but still not found" >&2; exit 1; }
fi

# The compose tests (tests/api/compose.rs) validate docker-compose.yml with Debian's
# docker-compose (no Docker engine is needed for that) and run its topology with haproxy.
if ! command -v haproxy >/dev/null || ! { command -v docker-compose >/dev/null || docker compose version >/dev/null 2>&1; }; then
  sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  echo "haproxy, docker-compose: not found, installing with apt-get" >&2
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends haproxy docker-compose >/dev/null
  command -v haproxy >/dev/null || { echo "haproxy: installed, but still not found" >&2; exit 1; }
fi

# The SigV4 tests sign requests with botocore (the AWS SDK for Python's signer) through
# examples/sigv4_sign.py, the script of docs/API.md's SigV4 example.
if ! python3 -c 'import botocore' 2>/dev/null; then
  sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  echo "botocore: not found, installing python3-botocore with apt-get" >&2
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends python3 python3-botocore >/dev/null || true
  if ! python3 -c 'import botocore' 2>/dev/null; then
    # A python3 outside Debian's (pyenv, …) does not see Debian's package: pip then.
    python3 -m pip install --quiet botocore 2>/dev/null || python3 -m pip install --quiet --break-system-packages botocore
  fi
  python3 -c 'import botocore' || { echo "botocore: still not importable" >&2; exit 1; }
fi

# The API fuzzing test (tests/api/schemathesis.rs) runs schemathesis, pinned, from a venv of
# its own under target/ (nothing is installed into the system's Python).
SCHEMATHESIS_VERSION=4.32.5
if ! target/schemathesis/bin/schemathesis --version 2>/dev/null | grep -qF "$SCHEMATHESIS_VERSION"; then
  if ! python3 -m venv --help >/dev/null 2>&1 || ! python3 -c 'import ensurepip' 2>/dev/null; then
    sudo=""
    [ "$(id -u)" -ne 0 ] && sudo="sudo"
    echo "python3-venv: not found, installing with apt-get" >&2
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends python3-venv >/dev/null
  fi
  echo "schemathesis: installing $SCHEMATHESIS_VERSION into target/schemathesis" >&2
  rm -rf target/schemathesis
  python3 -m venv target/schemathesis
  target/schemathesis/bin/pip install --quiet "schemathesis==$SCHEMATHESIS_VERSION"
fi

# The AWS KMS tests (src/kek/aws_kms, tests/api/kms.rs) each start moto's KMS server, pinned,
# from a venv of its own under target/ (moto keeps keys in memory only: a server per test).
MOTO_VERSION=5.2.6
if ! target/moto/bin/python -c "import moto, sys; sys.exit(moto.__version__ != '$MOTO_VERSION')" 2>/dev/null; then
  echo "moto: installing $MOTO_VERSION into target/moto" >&2
  rm -rf target/moto
  python3 -m venv target/moto
  target/moto/bin/pip install --quiet "moto[server]==$MOTO_VERSION"
fi
# The compatibility tests drive sigvault with the clients users already run: hvac (Vault's
# Python client) against the Transit-compatible API, boto3 (which moto brings) against the
# KMS-compatible one; the metrics test parses /metrics with prometheus_client. Pinned, in
# the same venv.
HVAC_VERSION=2.4.0
PROMETHEUS_CLIENT_VERSION=0.26.0
if ! target/moto/bin/python -c "
import importlib.metadata as m, sys
sys.exit(m.version('hvac') != '$HVAC_VERSION' or m.version('prometheus_client') != '$PROMETHEUS_CLIENT_VERSION')" 2>/dev/null; then
  echo "hvac, prometheus_client: installing into target/moto" >&2
  target/moto/bin/pip install --quiet "hvac==$HVAC_VERSION" "prometheus_client==$PROMETHEUS_CLIENT_VERSION"
fi

# The repository stands alone: no tracked file may point outside it to the design folder that
# sat beside the first checkouts (the pattern is split so this line does not match itself).
outside="../""shared"
if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
  if git ls-files -z | xargs -0 grep -I -l -F -- "$outside" 2>/dev/null; then
    echo "test.sh: the files above mention $outside; the repository must stand alone" >&2
    exit 1
  fi
fi

# Tests share one SoftHSM2 token directory per checkout (see .cargo/config.toml); start clean.
rm -rf target/softhsm-test

cargo fmt --all -- --check
# The fuzz targets are a crate of their own (fuzz/, not a member of this package).
cargo fmt --manifest-path fuzz/Cargo.toml -- --check
cargo clippy --locked --all-targets -- -D warnings
# The test-only PKCS#11 fault injector (a workspace member the black-box tests build and load).
cargo clippy --locked -p pkcs11-fault --all-targets -- -D warnings
# Each backend is a cargo feature: the library and the binary must build, lint-clean, with
# none of them and with each one alone (the tests need them all); the fuzz targets build the
# library with the facade `fuzzing` and the PKCS#11 provider only.
for features in "" "kek-pkcs11" "kek-aws-kms" "store-sqlite" "store-postgres" "ratelimit-redis" "kek-pkcs11,fuzzing"; do
  cargo clippy --locked --no-default-features ${features:+--features "$features"} --lib --bins -- -D warnings
done
cargo test --locked -p pkcs11-fault
# The fuzz targets' own code, linted in this package's target dir (its dependencies are
# already checked there).
CARGO_TARGET_DIR=target cargo clippy --locked --manifest-path fuzz/Cargo.toml --all-targets -- -D warnings
cargo test --locked --all-targets
# The black-box suite again on PostgreSQL: the same test bodies, each app on a fresh database
# of the server scripts/postgres.sh gave (tests/api/helpers/store.rs).
SIGVAULT_TEST_STORE=postgres cargo test --locked --test api

# Every fuzz target for a few seconds from its committed corpus (docs/FUZZING.md); a crash
# fails the suite. Needs the nightly toolchain and cargo-fuzz, which fuzz.sh installs.
scripts/fuzz.sh "${FUZZ_SECONDS:-10}"
