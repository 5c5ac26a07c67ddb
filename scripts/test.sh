#!/usr/bin/env bash
# The whole test suite: Rust unit, transcript and store tests, then end-to-end tests
# that start the real binary on free loopback ports and talk to it with Python's
# poplib and curl. Installs what it needs (pytest, curl, strace, nftables, Chromium,
# isync, fetchmail, selenium, prometheus_client) when missing.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! python3 -c 'import pytest' 2>/dev/null; then
    python3 -m pip install --quiet --disable-pip-version-check 'pytest>=8,<9'
fi
if ! command -v curl >/dev/null 2>&1; then
    (apt-get update -qq && apt-get install -y -qq curl) >/dev/null
fi
if ! command -v strace >/dev/null 2>&1; then
    (apt-get update -qq && apt-get install -y -qq strace) >/dev/null
fi
# tests/e2e/test_cluster.py cuts nodes off from each other with nftables rules.
if ! command -v nft >/dev/null 2>&1; then
    (apt-get update -qq && apt-get install -y -qq nftables) >/dev/null
fi

# tests/e2e/test_settings_browser.py drives headless Chromium through selenium;
# test_https_clients.py sets up mbsync (isync) and fetchmail from the autoconfig answer;
# test_https.py reads /metrics with prometheus_client's parser.
if ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1; then
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver) >/dev/null
fi
if ! command -v mbsync >/dev/null 2>&1 || ! command -v fetchmail >/dev/null 2>&1; then
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq isync fetchmail) >/dev/null
fi
if ! python3 -c 'import selenium' 2>/dev/null; then
    python3 -m pip install --quiet --disable-pip-version-check 'selenium>=4,<5'
fi
if ! python3 -c 'import prometheus_client' 2>/dev/null; then
    python3 -m pip install --quiet --disable-pip-version-check 'prometheus_client>=0.20,<1'
fi

cargo build --workspace --bins
scripts/check-layers.sh
cargo test --workspace
# The golden ENVELOPE/BODYSTRUCTURE values of the bulk corpus, recomputed independently.
python3 crates/mime/tests/check_bulk_expected.py --check
# --durations: the slowest tests in the log, to keep the suite within its time.
PORTICO_BIN="$PWD/target/debug/portico" python3 -m pytest -q --durations=25 tests/e2e "$@"
