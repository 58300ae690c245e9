#!/usr/bin/env bash
# deps.sh - install the Debian packages weft needs to build and test, only
# those that are missing. Safe to run repeatedly; needs root (or sudo) only
# when something is missing.
set -euo pipefail

PKGS=(gcc make cmake pkg-config
      libsodium-dev libzmq3-dev libczmq-dev liblmdb-dev lmdb-utils
      libmsgpack-dev libcriterion-dev libjansson-dev)
if [ "${WEFT_DEPS_EXTRA:-}" != "" ]; then
  read -r -a extra <<<"$WEFT_DEPS_EXTRA"
  PKGS+=("${extra[@]}")
fi

missing=()
for p in "${PKGS[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "weft: installing missing packages: ${missing[*]}" >&2
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "weft: need root to install ${missing[*]}" >&2; exit 1; }
  SUDO=sudo
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
