#!/usr/bin/env bash
# Installs the Debian packages the interop tests drive (Direct Connect, Tox, I2P) (real clients and the
# tools the harness calls). Idempotent: does nothing, quietly, when all are present;
# runs `apt-get update` only when something is missing. Needs root (or sudo) and apt.
#   scripts/install-test-deps.sh
set -euo pipefail

pkgs=(ncdc eiskaltdcpp-daemon microdc2 tmux rhash bzip2 curl
      libtoxcore-dev toxcore-utils libsodium-dev pkg-config gcc
      i2pd iproute2 uhub openssl nftables)

missing=()
for p in "${pkgs[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$p")
  fi
done
[ ${#missing[@]} -eq 0 ] && exit 0

if ! command -v apt-get >/dev/null 2>&1; then
  echo "install-test-deps: apt-get not found; install by hand: ${missing[*]}" >&2
  exit 1
fi
sudo=()
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then sudo=(sudo); else
    echo "install-test-deps: not root and no sudo; install by hand: ${missing[*]}" >&2
    exit 1
  fi
fi

echo "install-test-deps: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
