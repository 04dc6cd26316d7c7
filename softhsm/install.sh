#!/usr/bin/env bash
# Installs SoftHSM2 (and OpenSC's pkcs11-tool, handy for inspecting tokens) through apt
# when the module is missing. Idempotent; prints the module path it found.
set -euo pipefail

find_module() {
  for candidate in /usr/lib/softhsm/libsofthsm2.so /usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so \
                   /usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so /usr/local/lib/softhsm/libsofthsm2.so; do
    [ -f "$candidate" ] && { echo "$candidate"; return 0; }
  done
  return 1
}

if module=$(find_module); then
  echo "softhsm2: found $module" >&2
  exit 0
fi

sudo=""
[ "$(id -u)" -ne 0 ] && sudo="sudo"
echo "softhsm2: not found, installing with apt-get" >&2
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq softhsm2 opensc >/dev/null
module=$(find_module) || { echo "softhsm2: installed, but libsofthsm2.so is still missing" >&2; exit 1; }
echo "softhsm2: installed $module" >&2
