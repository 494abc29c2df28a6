#!/usr/bin/env bash
# Installs the Debian packages the interop tests drive (Direct Connect, Tox, I2P) (real clients and the
# tools the harness calls). Idempotent: does nothing, quietly, when all are present;
# runs `apt-get update` only when something is missing. Needs root (or sudo) and apt.
#   scripts/install-test-deps.sh
set -euo pipefail

pkgs=(ncdc eiskaltdcpp-daemon microdc2 tmux rhash bzip2 curl
      libtoxcore-dev toxcore-utils libsodium-dev pkg-config gcc
      i2pd iproute2 uhub openssl nftables)

# NGC group chats (tox_group_*) need c-toxcore >= 0.2.19; Debian bookworm has 0.2.18,
# which every other Tox test uses. Debian trixie's 0.2.20 (and the libvpx it links) is
# unpacked into its own prefix, never installed system-wide; tests/tox_ngc_interop.rs
# builds its bot against it (OMNIPEER_TOXCORE_NGC overrides the prefix).
ngc_prefix=${OMNIPEER_TOXCORE_NGC:-/opt/toxcore-0.2.20}
if [ ! -e "$ngc_prefix/usr/lib/x86_64-linux-gnu/libtoxcore.so.2" ] && [ "$(uname -m)" = x86_64 ]; then
  ngc_sudo=()
  [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1 && ngc_sudo=(sudo)
  ngc_tmp=$(mktemp -d)
  ok=1
  for f in pool/main/libt/libtoxcore/libtoxcore2_0.2.20-1_amd64.deb \
           pool/main/libt/libtoxcore/libtoxcore-dev_0.2.20-1_amd64.deb \
           pool/main/libv/libvpx/libvpx9_1.15.0-2.1+deb13u1_amd64.deb; do
    curl -sfL -o "$ngc_tmp/$(basename "$f")" "http://deb.debian.org/debian/$f" || ok=0
  done
  if [ "$ok" = 1 ]; then
    "${ngc_sudo[@]}" mkdir -p "$ngc_prefix"
    for d in "$ngc_tmp"/*.deb; do "${ngc_sudo[@]}" dpkg -x "$d" "$ngc_prefix"; done
    echo "install-test-deps: c-toxcore 0.2.20 (NGC) unpacked in $ngc_prefix" >&2
  else
    echo "install-test-deps: could not download c-toxcore 0.2.20; the NGC interop tests will skip" >&2
  fi
  rm -rf "$ngc_tmp"
fi

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
