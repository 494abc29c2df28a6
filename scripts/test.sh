#!/usr/bin/env bash
# Everything the test suite needs, then the suite. Safe to run on a fresh machine (Rust,
# Python 3, root, Debian's and PyPI's package registries reachable).
#   scripts/test.sh            build and run every test
#   OMNIPEER_FUZZ_SECS=60 scripts/test.sh   also run each fuzz target that long (nightly)
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
# The tests drive real peers and tools from Debian's packages; install what is missing.
for pkg in ${OMNIPEER_TEST_APT:-}; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need_apt+=("$pkg")
done
if [ ${#need_apt[@]} -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${need_apt[@]}"
fi

echo "== build"
cargo build --workspace --all-targets --locked 2>&1 | tail -n 3

echo "== tests"
cargo test --workspace --locked

if [ -n "${OMNIPEER_FUZZ_SECS:-}" ]; then
  echo "== fuzz (${OMNIPEER_FUZZ_SECS}s per target)"
  command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
  for t in $(cd fuzz && cargo +nightly fuzz list); do
    (cd fuzz && cargo +nightly fuzz run "$t" -- -max_total_time="$OMNIPEER_FUZZ_SECS")
  done
fi
