#!/usr/bin/env bash
# Everything the test suite needs, then the suite. Safe to run on a fresh machine (Rust,
# Python 3, root, Debian's and PyPI's package registries reachable).
#   scripts/test.sh            build and run every test
#   OMNIPEER_FUZZ_SECS=60 scripts/test.sh   also run each fuzz target that long (nightly)
set -euo pipefail
cd "$(dirname "$0")/.."

# The DC interop tests drive real peers from Debian's packages (ncdc, eiskaltdcpp-daemon,
# microdc2, ...). Interop tests skip when a peer is missing, so on CI a failed install is
# an error.
if ! scripts/install-test-deps.sh; then
  if [ -n "${CI:-}" ]; then
    echo "test.sh: cannot install the real peers the interop tests need" >&2
    exit 1
  fi
  echo "test.sh: real peers missing; their interop tests will be skipped" >&2
fi

# The Soulseek interop tests drive aioslsk and Nicotine+ from PyPI, in a venv.
if ! scripts/install-slsk-peers.sh >/dev/null; then
  if [ -n "${CI:-}" ]; then
    echo "test.sh: cannot install aioslsk and Nicotine+ for the Soulseek interop tests" >&2
    exit 1
  fi
  echo "test.sh: aioslsk/Nicotine+ missing; their interop tests will be skipped" >&2
fi

# The web UI's end-to-end test drives Debian's chromium through playwright-core (npm).
if ! scripts/install-web-test-deps.sh; then
  if [ -n "${CI:-}" ]; then
    echo "test.sh: cannot install chromium and playwright-core for the web UI test" >&2
    exit 1
  fi
  echo "test.sh: chromium/playwright-core missing; the web UI test will be skipped" >&2
fi

echo "== build"
cargo build --workspace --all-targets --locked 2>&1 | tail -n 3

# The habits the project keeps: rustfmt (rustfmt.toml) and clippy with warnings as errors.
echo "== fmt"
cargo fmt --all --check
echo "== clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings

echo "== tests"
cargo test --workspace --locked --no-fail-fast

if [ -n "${OMNIPEER_FUZZ_SECS:-}" ]; then
  echo "== fuzz (${OMNIPEER_FUZZ_SECS}s per target)"
  command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
  for t in $(cd fuzz && cargo +nightly fuzz list); do
    (cd fuzz && cargo +nightly fuzz run "$t" -- -max_total_time="$OMNIPEER_FUZZ_SECS")
  done
fi
