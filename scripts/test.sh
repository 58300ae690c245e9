#!/usr/bin/env bash
# test.sh - the README's test command: install what is missing, build weft
# from scratch in build/ (or $WEFT_BUILD_DIR), run every test with ctest.
# Extra arguments go to cmake (e.g. -DWEFT_SANITIZE=address,undefined).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
build=${WEFT_BUILD_DIR:-build}
cmake -S . -B "$build" "$@" >/dev/null
cmake --build "$build" -j "$(nproc)"
cd "$build"
ctest --output-on-failure --timeout 900 -j 1
