#!/bin/sh
# Install mtft's build dependencies from Debian's packages, only those that are
# missing (idempotent). Needs root or sudo when something is missing.
set -eu
PKGS="build-essential cmake pkg-config libopenblas-dev libopenblas-openmp-dev libcjson-dev libyaml-dev check"
[ "${MTFT_DEPS_EXTRA:-}" ] && PKGS="$PKGS $MTFT_DEPS_EXTRA"
missing=""
for p in $PKGS; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing="$missing $p"
  fi
done
[ -z "$missing" ] && exit 0
echo "mtft: installing missing packages:$missing"
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then SUDO="sudo"; else
    echo "mtft: need root (or sudo) to install:$missing" >&2; exit 1; fi
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
# shellcheck disable=SC2086
$SUDO apt-get install -y -qq --no-install-recommends $missing
