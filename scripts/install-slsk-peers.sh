#!/usr/bin/env bash
# Installs the REAL Soulseek clients the slsk interop tests drive headless on 127.0.0.1:
# aioslsk 1.7.1 and Nicotine+ 3.3.11 (its core, pynicotine, run without GTK), in one venv.
#
#   scripts/install-slsk-peers.sh          # prints the venv's python path on its last line
#   OMNIPEER_VENV=/some/dir scripts/install-slsk-peers.sh
#
# Venv: ${OMNIPEER_VENV:-$HOME/.cache/omnipeer/slsk-venv}. The Rust harness
# (crates/omnipeer/tests/slsk_support) looks in the same place (or $OMNIPEER_SLSK_PYTHON).
# Idempotent: when both packages are already installed at the pinned versions it only prints
# the path. Installs python3-venv with apt only when `python3 -m venv` is unusable.
#
# Nicotine+ is installed with --no-deps: its only dependency is PyGObject (GTK), which pip
# would try to build from source (meson, cairo headers) and which headless mode never imports.
set -euo pipefail

AIOSLSK_VERSION=1.7.1
NICOTINE_VERSION=3.3.11
VENV="${OMNIPEER_VENV:-${HOME:-/root}/.cache/omnipeer/slsk-venv}"
PY="$VENV/bin/python"

log() { echo "install-slsk-peers: $*" >&2; }

installed_ok() {
  [ -x "$PY" ] || return 1
  "$PY" - "$AIOSLSK_VERSION" "$NICOTINE_VERSION" <<'EOF' >/dev/null 2>&1
import sys
from importlib.metadata import version
assert version("aioslsk") == sys.argv[1], "aioslsk"
assert version("nicotine-plus") == sys.argv[2], "nicotine-plus"
import aioslsk.client  # noqa: F401  (its dependencies import)
import pynicotine.slskmessages  # noqa: F401
EOF
}

if installed_ok; then
  echo "$PY"
  exit 0
fi

command -v python3 >/dev/null 2>&1 || { log "python3 not found"; exit 1; }

# `python3 -m venv` needs ensurepip, which Debian ships in python3-venv.
if [ ! -x "$PY" ]; then
  if ! python3 -c 'import ensurepip, venv' >/dev/null 2>&1; then
    if ! command -v apt-get >/dev/null 2>&1; then
      log "python3-venv missing and no apt-get; install it by hand"; exit 1
    fi
    sudo=()
    if [ "$(id -u)" -ne 0 ]; then
      if command -v sudo >/dev/null 2>&1; then sudo=(sudo); else
        log "not root and no sudo; install python3-venv by hand"; exit 1
      fi
    fi
    log "installing python3-venv with apt"
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
      apt-get install -y -qq --no-install-recommends python3-venv >/dev/null
  fi
  rm -rf "$VENV"
  mkdir -p "$(dirname "$VENV")"
  log "creating venv $VENV"
  python3 -m venv "$VENV"
fi

pip=("$PY" -m pip --disable-pip-version-check --no-input -q)
log "installing aioslsk==$AIOSLSK_VERSION"
"${pip[@]}" install "aioslsk==$AIOSLSK_VERSION" >&2
log "installing nicotine-plus==$NICOTINE_VERSION (--no-deps: headless needs no GTK)"
"${pip[@]}" install --no-deps "nicotine-plus==$NICOTINE_VERSION" >&2

if ! installed_ok; then
  log "installed, but the import check failed:"
  "$PY" -c 'import aioslsk.client, pynicotine.slskmessages' >&2 || true
  exit 1
fi
echo "$PY"
