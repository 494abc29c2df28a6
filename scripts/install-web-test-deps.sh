#!/usr/bin/env bash
# Installs what the web UI's end-to-end test (crates/omnipeer/tests/web_ui.rs) drives:
# Debian's `chromium` (apt) and `playwright-core` (npm, from the committed
# package-lock.json into crates/omnipeer/tests/web/node_modules). Idempotent: does
# nothing, quietly, when both are present; runs `apt-get update` only when a package is
# missing. Node.js and npm come from Debian too when they are missing. Needs root (or
# sudo) and apt.
#   scripts/install-web-test-deps.sh
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages: chromium, and Node.js with npm when they are missing.
need=()
if ! dpkg-query -W -f='${Status}' chromium 2>/dev/null | grep -q 'install ok installed'; then need+=(chromium); fi
if ! command -v node >/dev/null 2>&1; then need+=(nodejs); fi
if ! command -v npm >/dev/null 2>&1; then need+=(npm); fi
if [ ${#need[@]} -gt 0 ]; then
  if ! command -v apt-get >/dev/null 2>&1; then
    echo "install-web-test-deps: apt-get not found; install ${need[*]} by hand" >&2
    exit 1
  fi
  sudo=()
  if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then sudo=(sudo); else
      echo "install-web-test-deps: not root and no sudo; install ${need[*]} by hand" >&2
      exit 1
    fi
  fi
  echo "install-web-test-deps: installing ${need[*]}" >&2
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

web=crates/omnipeer/tests/web
if ! command -v npm >/dev/null 2>&1; then
  echo "install-web-test-deps: npm not found; install Node.js (with npm) by hand" >&2
  exit 1
fi
# npm ci again only when the lock file changed since the last install.
stamp="$web/node_modules/.omnipeer-lock"
if [ ! -f "$web/node_modules/playwright-core/package.json" ] || ! cmp -s "$web/package-lock.json" "$stamp"; then
  echo "install-web-test-deps: npm ci in $web" >&2
  (cd "$web" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
  cp "$web/package-lock.json" "$stamp"
fi
